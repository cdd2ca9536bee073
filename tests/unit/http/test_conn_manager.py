"""The HTTP connection manager through its downstream connection, as a playbook: bytes in,
then the exact bytes written, reads paused or resumed, the connection closed. No sockets: a
recording transport, a manual clock and a fake router (hcm_helpers)."""

from __future__ import annotations

import re

import pytest
from hcm_helpers import DATE, Downstream, FakeRoute, local_reply, upstream_reply

from outrider.http import active_stream

GET_A = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n"
GET_C = b"GET /c HTTP/1.1\r\nHost: example.com\r\n\r\n"


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch):
    monkeypatch.setattr(active_stream, "http_date", lambda: DATE)


def post(body: bytes, path: str = "/p", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: example.com\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# -- one request --------------------------------------------------------------------------------

def test_get_is_routed_with_end_stream_and_answered():
    d = Downstream()
    assert d.feed(GET_A) == b""
    [router] = d.routers
    assert router.events == [("headers", "GET", "/a", True)]
    router.respond(200, b"ok", headers=[("server", "origin")])
    assert d.transport.take() == (
        b"HTTP/1.1 200 OK\r\nserver: outrider\r\ncontent-length: 2\r\ndate: " + DATE.encode()
        + b"\r\n\r\nok")
    assert d.transport.closed is False
    assert (d.counter("downstream_rq_total"), d.counter("downstream_rq_2xx"),
            d.gauge("downstream_rq_active")) == (1, 1, 0)


def test_request_headers_get_the_header_rules_before_routing():
    d = Downstream()
    d.feed(b"GET /a HTTP/1.1\r\nHost: example.com\r\nX-Envoy-Retry-On: 5xx\r\nX-A: 1\r\n\r\n")
    headers = d.routers[0].request_headers
    assert d.route_table.seen == [headers]
    names = [name for name, _ in headers]
    assert names == ["x-a", "x-forwarded-proto", "x-request-id"]


def test_content_length_body_in_later_reads():
    d = Downstream()
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhello")
    d.feed(b"world")
    assert d.routers[0].events == [
        ("headers", "POST", "/p", False), ("data", b"hello", False), ("data", b"world", False),
        ("data", b"", True)]


def test_chunked_request_body_is_decoded_for_the_router():
    d = Downstream()
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n\r\n")
    assert d.routers[0].events == [
        ("headers", "POST", "/p", False), ("data", b"hello", False), ("data", b"", True)]


# -- response encoding ---------------------------------------------------------------------------

def test_response_without_length_is_chunked_on_http_1_1():
    d = Downstream()
    d.feed(GET_A)
    router = d.routers[0]
    router.respond(200, content_length=False, end=False)
    router.stream.encode_data(b"hello", False)
    router.stream.encode_data(b"world!", True)
    assert d.transport.take() == (
        b"HTTP/1.1 200 OK\r\ndate: " + DATE.encode() + b"\r\nserver: outrider\r\n"
        b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n")
    assert d.transport.closed is False


def test_chunked_response_ended_by_an_empty_frame():
    d = Downstream()
    d.feed(GET_A)
    stream = d.routers[0].stream
    d.routers[0].respond(200, content_length=False, end=False)
    stream.encode_data(b"abc", False)
    d.transport.take()
    stream.encode_data(b"", True)
    assert d.transport.take() == b"0\r\n\r\n"


def test_upstream_chunked_framing_is_not_forwarded():
    d = Downstream()
    d.feed(GET_A)
    d.routers[0].respond(200, content_length=False, end=False,
                         headers=[("transfer-encoding", "chunked")])
    d.routers[0].stream.encode_data(b"x", True)
    assert d.transport.take().count(b"transfer-encoding") == 1


GET_10_KEEP_ALIVE = b"GET /a HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"


def test_response_without_length_on_http_1_0_closes_the_connection():
    d = Downstream(accept_http_10=True)
    d.feed(GET_10_KEEP_ALIVE)
    router = d.routers[0]
    router.respond(200, content_length=False, end=False)
    router.stream.encode_data(b"body", True)
    assert d.transport.take() == (
        b"HTTP/1.0 200 OK\r\ndate: " + DATE.encode() + b"\r\nserver: outrider\r\n"
        b"connection: close\r\n\r\nbody")
    assert d.transport.closed is True


def test_http_1_0_keep_alive_with_a_length_is_answered_in_1_0_and_stays_open():
    # Envoy with accept_http_10: an HTTP/1.0 status line and an explicit keep-alive, so
    # `ab -k` and other HTTP/1.0 keep-alive clients reuse the connection.
    d = Downstream(accept_http_10=True)
    d.feed(GET_10_KEEP_ALIVE)
    d.routers[0].respond(200, b"ok")
    assert d.transport.take() == (
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\ndate: " + DATE.encode()
        + b"\r\nserver: outrider\r\nconnection: keep-alive\r\n\r\nok")
    assert d.transport.closed is False
    d.feed(GET_10_KEEP_ALIVE)
    d.routers[1].respond(204)
    out = d.transport.take()
    assert out.startswith(b"HTTP/1.0 204 No Content\r\n")
    assert out.endswith(b"connection: keep-alive\r\n\r\n")


def test_http_1_0_local_reply_keeps_a_keep_alive_connection():
    d = Downstream(accept_http_10=True)
    d.feed(GET_10_KEEP_ALIVE)
    d.routers[0].stream.send_local_reply(404, "", "route_not_found")
    out = d.transport.take()
    assert out.startswith(b"HTTP/1.0 404 Not Found\r\n")
    assert out.endswith(b"connection: keep-alive\r\n\r\n")
    assert d.transport.closed is False


def test_http_1_0_without_keep_alive_is_answered_in_1_0_and_closed():
    d = Downstream(accept_http_10=True)
    d.feed(b"GET /a HTTP/1.0\r\nHost: example.com\r\n\r\n")
    d.routers[0].respond(200, b"ok")
    out = d.transport.take()
    assert out.startswith(b"HTTP/1.0 200 OK\r\n")
    assert out.endswith(b"connection: close\r\n\r\nok")
    assert d.transport.closed is True


def test_http_1_0_without_host_gets_default_host_for_http_10():
    d = Downstream(accept_http_10=True, default_host_for_http_10="default.example")
    d.feed(b"GET /a HTTP/1.0\r\n\r\n")
    assert d.routers[0].request_headers.authority == "default.example"


def test_http_1_0_without_host_or_default_host_is_400():
    # Envoy: missing_host_header, an empty 400 (in HTTP/1.0) and the connection closed.
    d = Downstream(accept_http_10=True)
    out = d.feed(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n")
    assert out.endswith(b"connection: close\r\n\r\n")
    assert d.routers == [] and d.transport.closed is True


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_are_never_chunked(status):
    d = Downstream()
    d.feed(GET_A)
    d.routers[0].respond(status, content_length=False, end=False)
    d.routers[0].stream.encode_data(b"", True)
    out = d.transport.take()
    assert b"transfer-encoding" not in out
    assert out.endswith(b"server: outrider\r\n\r\n")


def test_head_response_has_no_body_and_is_not_chunked():
    d = Downstream()
    d.feed(b"HEAD /a HTTP/1.1\r\nHost: example.com\r\n\r\n")
    d.routers[0].respond(200, b"hello")
    assert d.transport.take() == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: " + DATE.encode()
        + b"\r\nserver: outrider\r\n\r\n")
    d.feed(GET_B)
    assert d.routers[1].events == [("headers", "GET", "/b", True)]


def test_local_reply_to_head_has_length_but_no_body():
    d = Downstream()
    d.feed(b"HEAD /a HTTP/1.1\r\nHost: example.com\r\n\r\n")
    d.routers[0].stream.send_local_reply(503, "no healthy upstream", "no_healthy_upstream")
    assert d.transport.take() == (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
        b"content-length: 19\r\nserver: outrider\r\ndate: " + DATE.encode() + b"\r\n\r\n")


def test_connection_close_from_the_client_is_honoured():
    d = Downstream()
    d.feed(b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    d.routers[0].respond(200, b"ok")
    assert d.transport.take() == upstream_reply("200 OK", b"ok", close=True)
    assert (d.transport.closed, d.transport.aborted) == (True, False)


def test_always_set_request_id_in_response():
    d = Downstream(always_set_request_id_in_response=True)
    d.feed(b"GET /a HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: rid-1\r\n\r\n")
    d.routers[0].respond(200)
    assert b"x-request-id: rid-1\r\n" in d.transport.take()


# -- local replies -------------------------------------------------------------------------------

def test_local_reply_keeps_the_connection_open():
    d = Downstream()
    d.feed(GET_A)
    d.routers[0].stream.send_local_reply(503, "no healthy upstream", "no_healthy_upstream")
    assert d.transport.take() == local_reply("503 Service Unavailable", b"no healthy upstream")
    assert d.transport.closed is False
    assert d.counter("downstream_rq_5xx") == 1


def test_local_reply_without_body_has_no_content_type():
    d = Downstream()
    d.feed(GET_A)
    d.routers[0].stream.send_local_reply(404, "", "route_not_found")
    assert d.transport.take() == local_reply("404 Not Found")


def test_local_reply_carries_the_routes_response_headers():
    d = Downstream(route=FakeRoute(response_headers=[("x-route", "r")]))
    d.feed(GET_A)
    d.routers[0].stream.send_local_reply(503, "no healthy upstream", "no_healthy_upstream")
    assert d.transport.take() == local_reply("503 Service Unavailable", b"no healthy upstream",
                                             extra=b"x-route: r\r\n")


def test_local_reply_after_the_response_started_resets_the_connection():
    d = Downstream()
    d.feed(GET_A)
    d.routers[0].respond(200, content_length=False, end=False)
    d.transport.take()
    d.routers[0].stream.send_local_reply(503, "late", "late")
    assert d.transport.take() == b""
    assert d.transport.aborted is True


# -- protocol errors -----------------------------------------------------------------------------

def test_http_1_0_is_refused_with_426_and_close():
    d = Downstream()
    assert d.feed(b"GET / HTTP/1.0\r\n\r\n") == local_reply(
        "426 Upgrade Required", b"Upgrade Required", close=True)
    assert d.transport.closed is True
    assert d.routers == []


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.0\r\nHost: \r\n\r\n", b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n",
    b"GET /#f HTTP/1.0\r\nHost: a\r\n\r\n",
], ids=["empty-host", "invalid-host", "fragment"])
def test_http_1_0_is_refused_with_426_before_the_host_and_path_checks(request_bytes):
    # As Envoy 1.40 answers each (its codec's refusal): not our empty/invalid Host 400.
    d = Downstream()
    assert d.feed(request_bytes) == local_reply("426 Upgrade Required", b"Upgrade Required",
                                                close=True)
    assert d.counter("downstream_cx_protocol_error") == 1


@pytest.mark.parametrize(("request_bytes", "protocol_errors"), [
    (b"GET / HTTP/1.0\r\n\r\n", 1),
    (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 0),
    (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 0),
], ids=["http10-426", "websocket-403", "connect-404"])
def test_closing_local_reply_during_headers_is_counted_once(request_bytes, protocol_errors):
    d = Downstream()
    d.feed(request_bytes)
    assert d.counter("downstream_rq_4xx") == 1
    assert d.counter("downstream_cx_protocol_error") == protocol_errors


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
], ids=["absent", "named-by-connection"])
def test_missing_host_is_400_with_an_empty_body_and_close(request_bytes):
    # The connection manager's check in Envoy, not its codec's: no protocol error counted.
    d = Downstream()
    assert d.feed(request_bytes) == local_reply("400 Bad Request", close=True)
    assert d.transport.closed is True
    assert d.counter("downstream_cx_protocol_error") == 0
    assert d.counter("downstream_rq_4xx") == 1
    assert d.routers == []


def test_header_too_large_is_431_with_its_body():
    d = Downstream(max_request_headers_kb=1)
    out = d.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 1100 + b"\r\n\r\n")
    assert out == local_reply("431 Request Header Fields Too Large",
                              b"Request Header Fields Too Large", close=True)


def test_content_length_with_transfer_encoding_is_400():
    d = Downstream()
    out = d.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    assert out == local_reply("400 Bad Request", b"Bad Request", close=True)
    assert d.routers == []


def test_malformed_request_behind_a_good_one_is_answered_in_turn():
    d = Downstream()
    assert d.feed(GET_A + b"GARBAGE / HTTP/1.1\r\n\r\n") == b""
    assert d.transport.closed is False
    d.routers[0].respond(200, b"a")
    assert d.transport.take() == upstream_reply("200 OK", b"a") + local_reply(
        "400 Bad Request", b"Bad Request", close=True)
    assert d.transport.closed is True
    assert len(d.routers) == 1


def test_nothing_after_a_protocol_error_is_parsed():
    d = Downstream()
    d.feed(GET_A + b"GARBAGE / HTTP/1.1\r\n\r\n" + GET_B)
    d.feed(GET_C)
    d.routers[0].respond(200, b"a")
    assert len(d.routers) == 1


def test_bad_chunk_after_the_response_started_resets():
    d = Downstream()
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n")
    d.routers[0].respond(200, content_length=False, end=False)
    d.transport.take()
    d.feed(b"zz\r\n")
    assert d.transport.take() == b""
    assert d.transport.aborted is True
    assert d.routers[0].events[-1] == ("reset",)


def test_bad_chunk_before_the_response_is_400_and_the_router_is_reset():
    d = Downstream()
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert d.feed(b"zz\r\n") == local_reply("400 Bad Request", b"Bad Request", close=True)
    assert d.routers[0].events[-1] == ("reset",)


def test_reject_headers_with_underscores():
    d = Downstream(reject_headers_with_underscores=True)
    out = d.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX_Foo: 1\r\n\r\n")
    assert out == local_reply("400 Bad Request", b"Bad Request", close=True)


# -- path_with_escaped_slashes_action (orders and answers as the 1.40 binary) --------------------

ESCAPED = b"GET /a%2F..%2Fb//c%5C?q=%2F HTTP/1.1\r\nHost: a\r\n\r\n"


def test_escaped_slashes_kept_unchanged_by_default():
    d = Downstream()
    d.feed(ESCAPED)
    assert d.routers[0].request_headers.path == "/a%2F..%2Fb//c%5C?q=%2F"


def test_escaped_slashes_rejected_with_an_empty_400():
    d = Downstream(escaped_slashes_action="REJECT_REQUEST")
    assert d.feed(ESCAPED) == local_reply("400 Bad Request", close=True)
    assert d.routers == []
    assert d.counter("downstream_rq_failed_path_normalization") == 1


def test_escaped_slashes_unescaped_then_normalized_then_redirected():
    d = Downstream(escaped_slashes_action="UNESCAPE_AND_REDIRECT", normalize_path=True,
                   merge_slashes=True)
    assert d.feed(ESCAPED) == local_reply("307 Temporary Redirect",
                                          extra=b"location: /b/c/?q=%2F\r\n")
    assert d.routers == [] and d.transport.closed is False
    assert d.counter("downstream_rq_redirected_with_normalized_path") == 1
    d.feed(b"GET /b/c/?q=%2F HTTP/1.1\r\nHost: a\r\n\r\n")  # the path is final: no redirect
    assert d.routers[0].request_headers.path == "/b/c/?q=%2F"


GRPC_REFUSED = (b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 13\r\n"
                b"content-length: 0\r\nconnection: close\r\n\r\n")


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
def test_escaped_slashes_redirect_refuses_a_grpc_request(content_type):
    # gRPC clients follow no redirect: Envoy 1.40 answers a failed path normalization, as a
    # gRPC status (200, grpc-status 13), and closes.
    d = Downstream(escaped_slashes_action="UNESCAPE_AND_REDIRECT")
    out = d.feed(b"POST /a%2Fb HTTP/1.1\r\nHost: a\r\ncontent-type: " + content_type.encode()
                 + b"\r\ncontent-length: 0\r\n\r\n")
    assert re.sub(rb"date: [^\r]*\r\n", b"", out) == GRPC_REFUSED.replace(
        b"content-length: 0\r\n", b"content-length: 0\r\nserver: outrider\r\n")
    assert d.routers == [] and d.transport.closed is True
    assert (d.counter("downstream_rq_failed_path_normalization"),
            d.counter("downstream_rq_redirected_with_normalized_path"),
            d.counter("downstream_rq_2xx")) == (1, 0, 1)


@pytest.mark.parametrize("content_type", ["application/grpc-web", "application/grpc;x=1",
                                          "Application/gRPC", "application/grpcx"])
def test_escaped_slashes_redirect_of_what_envoy_does_not_call_grpc(content_type):
    d = Downstream(escaped_slashes_action="UNESCAPE_AND_REDIRECT")
    out = d.feed(b"GET /a%2Fb HTTP/1.1\r\nHost: a\r\ncontent-type: " + content_type.encode()
                 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 307 Temporary Redirect\r\n")


def test_escaped_slashes_reject_of_a_grpc_request_is_a_grpc_status():
    d = Downstream(escaped_slashes_action="REJECT_REQUEST")
    out = d.feed(b"POST /a%2Fb HTTP/1.1\r\nHost: a\r\ncontent-type: application/grpc\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"grpc-status: 13\r\n" in out


def test_fragment_is_an_empty_400_counted_as_a_failed_path_normalization():
    d = Downstream()
    assert d.feed(b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n") == local_reply(
        "400 Bad Request", close=True)
    assert d.routers == []
    assert (d.counter("downstream_rq_failed_path_normalization"),
            d.counter("downstream_cx_protocol_error")) == (1, 0)


def test_escaped_slashes_unescaped_and_forwarded():
    d = Downstream(escaped_slashes_action="UNESCAPE_AND_FORWARD")
    d.feed(ESCAPED)
    assert d.routers[0].request_headers.path == "/a/../b//c\\?q=%2F"
    assert d.counter("downstream_rq_redirected_with_normalized_path") == 0


def test_normalize_path_failure_is_an_empty_400():
    d = Downstream(normalize_path=True)
    assert d.feed(b"GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n") == local_reply(
        "400 Bad Request", close=True)
    assert d.counter("downstream_rq_failed_path_normalization") == 1


def test_drop_headers_with_underscores():
    d = Downstream(drop_headers_with_underscores=True)
    d.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX_Foo: 1\r\nX-Bar: 2\r\n\r\n")
    assert d.routers[0].request_headers.get_all("x_foo") == []
    assert d.routers[0].request_headers.get_all("x-bar") == ["2"]


def test_websocket_upgrade_without_upgrade_configs_is_403_and_close():
    d = Downstream()
    out = d.feed(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
    assert out == local_reply("403 Forbidden", close=True)
    assert d.routers == []


def test_h2c_upgrade_is_ignored_and_stripped():
    d = Downstream()
    d.feed(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"HTTP2-Settings: AAMAAABk\r\n\r\n")
    headers = d.routers[0].request_headers
    assert "upgrade" not in headers
    assert "http2-settings" not in headers


def test_connect_without_a_connect_route_is_404_and_close():
    d = Downstream()
    out = d.feed(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n")
    assert out == local_reply("404 Not Found", close=True)


# -- pipelining ------------------------------------------------------------------------------------

def test_pipelined_requests_are_answered_in_order_with_reading_paused():
    d = Downstream()
    assert d.feed(GET_A + GET_B + GET_C) == b""
    assert len(d.routers) == 1
    assert (d.transport.reading, d.transport.pause_calls) == (False, 1)
    d.routers[0].respond(200, b"a")
    assert d.transport.take() == upstream_reply("200 OK", b"a")
    assert len(d.routers) == 2
    assert d.transport.reading is False  # /c still waits behind /b
    d.routers[1].respond(200, b"b")
    assert d.transport.take() == upstream_reply("200 OK", b"b")
    assert len(d.routers) == 3
    assert (d.transport.reading, d.transport.resume_calls) == (True, 1)
    d.routers[2].respond(200, b"c")
    assert d.transport.take() == upstream_reply("200 OK", b"c")
    assert [r.events[0][2] for r in d.routers] == ["/a", "/b", "/c"]
    assert d.gauge("downstream_rq_active") == 0


def test_pipelined_body_is_replayed_when_the_stream_starts():
    d = Downstream()
    d.feed(GET_A + post(b"hello"))
    assert len(d.routers) == 1
    d.routers[0].respond(200)
    assert len(d.routers) == 1  # the next stream starts from the loop, not from this call
    d.loop.run_ready()
    assert d.routers[1].events == [
        ("headers", "POST", "/p", False), ("data", b"hello", False), ("data", b"", True)]


def test_pipelined_requests_answered_locally_leave_in_one_write():
    d = Downstream(answer=200)
    out = d.feed(GET_A + GET_B + GET_C)
    assert len(d.transport.writes) == 1
    assert out == (upstream_reply("200 OK", b"/a") + upstream_reply("200 OK", b"/b")
                   + upstream_reply("200 OK", b"/c"))
    assert d.transport.reading is True


def test_connection_close_in_a_pipeline_ends_it():
    d = Downstream()
    d.feed(b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n" + GET_B)
    d.routers[0].respond(200, b"a")
    assert d.transport.take() == upstream_reply("200 OK", b"a", close=True)
    assert d.transport.closed is True
    assert len(d.routers) == 1


def test_queued_streams_never_reach_a_router_when_the_client_goes_away():
    d = Downstream()
    d.feed(GET_A + GET_B)
    d.lose()
    assert d.routers[0].events == [("headers", "GET", "/a", True), ("reset",)]
    assert len(d.routers) == 1
    assert d.gauge("downstream_cx_active") == 0
    assert d.gauge("downstream_rq_active") == 0


# -- 100-continue ---------------------------------------------------------------------------------

def test_expect_100_continue_is_answered_by_the_proxy_and_not_forwarded():
    d = Downstream()
    out = d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 5\r\n\r\n")
    assert out == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert "expect" not in d.routers[0].request_headers
    d.feed(b"hello")
    d.routers[0].respond(200, b"ok")
    assert d.transport.take() == upstream_reply("200 OK", b"ok")
    # Envoy counts the 100 it sent as well as the final status (seen on the 1.40 binary).
    assert (d.counter("downstream_rq_total"), d.counter("downstream_rq_1xx"),
            d.counter("downstream_rq_2xx")) == (1, 1, 1)


def test_expect_100_continue_on_a_pipelined_request_whose_body_arrived():
    d = Downstream()
    d.feed(GET_A + post(b"hello", extra="Expect: 100-continue\r\n"))
    d.routers[0].respond(200)
    assert b"100 Continue" not in d.transport.take()
    assert "expect" not in d.routers[1].request_headers


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
EXPECT = b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"


@pytest.mark.parametrize(("head", "config", "final"), [
    (b"POST /a%2Fb HTTP/1.1\r\nHost: a\r\n", {"escaped_slashes_action": "REJECT_REQUEST"},
     b"400"),
    (b"POST /a%2Fb HTTP/1.1\r\nHost: a\r\n",
     {"escaped_slashes_action": "UNESCAPE_AND_REDIRECT"}, b"307"),
    (b"POST /a HTTP/1.1\r\n", {}, b"400"),
    (b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: host\r\n", {}, b"400"),
    (b"POST /a#f HTTP/1.1\r\nHost: a\r\n", {}, b"400"),
], ids=["escaped-slash-reject", "escaped-slash-redirect", "no-host", "host-named-by-connection",
        "fragment"])
def test_100_continue_comes_before_the_host_and_path_checks(head, config, final):
    # Envoy 1.40's order: 100 Continue (counted in 1xx), then the Host and path checks.
    d = Downstream(**config)
    out = d.feed(head + EXPECT)
    assert out.startswith(CONTINUE + b"HTTP/1.1 " + final + b" ")
    assert d.counter("downstream_rq_1xx") == 1
    assert d.routers == []


@pytest.mark.parametrize(("head", "config", "final"), [
    (b"POST /a HTTP/1.1\r\nHost: a\r\nx_y: 1\r\n", {"reject_headers_with_underscores": True},
     b"400"),
    (b"POST /a HTTP/1.0\r\nHost: a\r\n", {}, b"426"),
    (b"POST /a HTTP/1.1\r\nHost: a b\r\n", {}, b"400"),
], ids=["underscore", "http10", "invalid-host"])
def test_no_100_continue_before_a_codec_refusal(head, config, final):
    # Envoy's codec refuses these before its connection manager answers any 100 Continue.
    d = Downstream(**config)
    assert d.feed(head + EXPECT).startswith(b"HTTP/1.1 " + final + b" ")
    assert d.counter("downstream_rq_1xx") == 0


def test_other_expectations_are_forwarded():
    d = Downstream()
    assert d.feed(post(b"", extra="Expect: something-else\r\n")) == b""
    assert d.routers[0].request_headers.get("expect") == "something-else"


# -- response before the request is complete --------------------------------------------------------

def test_response_before_the_request_completes_then_more_body_closes():
    d = Downstream()
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhello")
    d.routers[0].respond(403, b"no")
    d.transport.take()
    d.feed(b"wor")
    assert d.transport.closed is True


def test_response_before_the_request_completes_says_close():
    d = Downstream()
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhello")
    d.routers[0].respond(403, b"no")
    assert d.transport.take() == upstream_reply("403 Forbidden", b"no", close=True)
    assert d.transport.closed is True


# -- timeouts ---------------------------------------------------------------------------------------

def test_stream_idle_timeout_before_the_request_completes_is_408():
    # reliability.md #48: slow body, 408 "stream timeout", close.
    d = Downstream(stream_idle_timeout=3.0)
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhello")
    d.loop.advance(2.9)
    assert d.transport.take() == b""
    d.loop.advance(0.2)
    assert d.transport.take() == local_reply("408 Request Timeout", b"stream timeout", close=True)
    assert d.transport.closed is True
    assert d.routers[0].events[-1] == ("reset",)
    assert d.counter("downstream_rq_idle_timeout") == 1


def test_stream_idle_timeout_after_the_request_is_504():
    # envoy-features.md: 504 "stream timeout" (SI).
    d = Downstream(stream_idle_timeout=3.0)
    d.feed(GET_A)
    d.loop.advance(3.0)
    assert d.transport.take() == local_reply("504 Gateway Timeout", b"stream timeout", close=True)
    assert d.routers[0].stream.response_flags == "SI"


def test_stream_idle_timeout_counts_from_the_last_activity():
    d = Downstream(stream_idle_timeout=3.0)
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhello")
    d.loop.advance(2.0)
    d.feed(b"wor")
    d.loop.advance(2.0)
    assert d.transport.take() == b""
    d.loop.advance(1.0)
    assert d.transport.take().startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_route_idle_timeout_overrides_the_stream_idle_timeout():
    d = Downstream(route=FakeRoute(idle_timeout=1.0), stream_idle_timeout=300.0)
    d.feed(GET_A)
    d.loop.advance(1.0)
    assert d.transport.take().startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")


def test_no_stream_timeout_after_the_response_completes():
    d = Downstream(stream_idle_timeout=1.0, idle_timeout=None)
    d.feed(GET_A)
    d.routers[0].respond(200)
    d.transport.take()
    d.loop.advance(10.0)
    assert d.transport.take() == b""
    assert d.transport.closed is False


def test_route_deadline_fires_the_routers_timeout():
    d = Downstream(stream_idle_timeout=300.0)
    d.feed(GET_A)
    router = d.routers[0]
    router.deadline = d.loop.time() + 2.0
    router.stream.cm.schedule_deadline(router.deadline)
    d.loop.advance(1.9)
    assert router.events == [("headers", "GET", "/a", True)]
    d.loop.advance(0.1)
    assert router.events[-1] == ("deadline",)
    assert d.transport.take() == local_reply("504 Gateway Timeout", b"upstream request timeout")
    assert d.transport.closed is False  # reliability.md #49: the connection stays


def test_one_deadline_timer_serves_a_later_deadline_after_an_earlier_one():
    d = Downstream(stream_idle_timeout=10.0)
    d.feed(GET_A)
    router = d.routers[0]
    router.deadline = d.loop.time() + 20.0
    router.stream.cm.schedule_deadline(router.deadline)
    d.loop.advance(10.0)  # the stream idle timeout comes first
    assert d.transport.take().startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert ("deadline",) not in router.events


def test_deadline_after_the_response_started_is_a_reset():
    d = Downstream(stream_idle_timeout=2.0)
    d.feed(GET_A)
    d.routers[0].respond(200, content_length=False, end=False)
    d.transport.take()
    d.loop.advance(2.0)
    assert d.transport.take() == b""
    assert d.transport.aborted is True


def test_request_timeout_is_408_request_timeout():
    d = Downstream(request_timeout=5.0, stream_idle_timeout=None)
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhello")
    d.loop.advance(5.0)
    assert d.transport.take() == local_reply("408 Request Timeout", b"request timeout",
                                             close=True)
    assert d.counter("downstream_rq_timeout") == 1


def test_request_timeout_stops_when_the_request_completes():
    d = Downstream(request_timeout=5.0, stream_idle_timeout=None)
    d.feed(GET_A)
    d.loop.advance(10.0)
    assert d.transport.take() == b""


def test_request_headers_timeout_is_408_and_close():
    # reliability.md #47: 408 "request header timeout", close.
    d = Downstream(request_headers_timeout=2.0)
    d.feed(b"GET / HTTP/1.1\r\nHost: exa")
    d.loop.advance(1.0)
    d.feed(b"mple.com\r\n")
    d.loop.advance(1.0)
    assert d.transport.take() == local_reply("408 Request Timeout", b"request header timeout",
                                             close=True)
    assert d.transport.closed is True
    assert d.counter("downstream_rq_header_timeout") == 1


def test_request_headers_timeout_stops_at_the_end_of_the_headers():
    d = Downstream(request_headers_timeout=2.0)
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhel")
    d.loop.advance(5.0)
    assert (d.transport.take(), d.transport.closed) == (b"", False)
    assert d.counter("downstream_rq_header_timeout") == 0


def test_request_headers_timeout_is_not_armed_by_an_idle_connection():
    d = Downstream(request_headers_timeout=2.0)
    d.loop.advance(10.0)
    assert d.transport.closed is False


def test_connection_idle_timeout_closes_a_connection_without_streams():
    d = Downstream(idle_timeout=60.0)
    d.loop.advance(59.0)
    assert d.transport.closed is False
    d.loop.advance(1.0)
    assert (d.transport.closed, d.transport.take()) == (True, b"")
    assert d.counter("downstream_cx_idle_timeout") == 1


def test_connection_idle_timeout_counts_from_the_last_response():
    d = Downstream(idle_timeout=60.0, stream_idle_timeout=None)
    d.loop.advance(50.0)
    d.feed(GET_A)
    d.loop.advance(30.0)  # a stream is active: never idle
    assert d.transport.closed is False
    d.routers[0].respond(200)
    d.loop.advance(59.0)
    assert d.transport.closed is False
    d.loop.advance(1.0)
    assert d.transport.closed is True


def test_connection_idle_timeout_stops_at_the_first_byte_of_a_request():
    d = Downstream(idle_timeout=60.0)
    d.loop.advance(59.0)
    d.feed(b"GET / HTTP/1.1\r\nHo")
    d.loop.advance(2.0)
    assert d.transport.closed is False


def test_timers_are_cancelled_when_the_connection_closes():
    d = Downstream(idle_timeout=60.0, stream_idle_timeout=5.0, request_headers_timeout=1.0)
    d.feed(b"GET / HTTP/1.1\r\n")
    d.lose()
    assert d.loop.pending() == []


# -- connection lifecycle and flow control -----------------------------------------------------

def test_the_listener_sees_open_and_close():
    d = Downstream(buffer_limit=4096)
    assert d.opened == [d.connection]
    assert d.transport.limits == (4096, 2048)
    d.lose()
    assert d.closed == [d.connection]


def test_downstream_reset_reaches_the_router():
    d = Downstream()
    d.feed(GET_A)
    d.lose()
    assert d.routers[0].events[-1] == ("reset",)
    assert d.routers[0].stream.response_flags == "DC"
    assert d.gauge("downstream_rq_active") == 0


def test_write_watermarks_reach_the_active_streams_router():
    d = Downstream()
    d.feed(GET_A)
    d.connection.pause_writing()
    d.connection.resume_writing()
    assert d.routers[0].events[1:] == [("watermark", True), ("watermark", False)]


def test_read_disable_is_counted_between_pipelining_and_flow_control():
    d = Downstream()
    d.feed(GET_A + GET_B)  # pipelining holds reading off
    d.connection.read_disable(True)  # so does the upstream's flow control
    assert d.transport.pause_calls == 1
    d.routers[0].respond(200)  # the pipeline releases its hold
    assert d.transport.reading is False
    d.connection.read_disable(False)
    assert (d.transport.reading, d.transport.resume_calls) == (True, 1)


def test_writes_after_close_are_dropped():
    d = Downstream()
    d.feed(GET_A)
    router = d.routers[0]
    d.connection.close()
    router.stream.cm.connection.write(b"late")
    assert d.transport.writes_after_close == []


def test_a_pipelined_request_whose_head_completes_before_its_turn_starts_once():
    """The stream ahead ends (its successor's activation is scheduled on the loop) and the rest
    of the successor's head arrives before that runs: it is started once, by the activation,
    not a second time by its headers (a double start sent it upstream twice and the client got
    an extra response)."""
    d = Downstream()
    d.feed(GET_A + GET_B[:1])
    d.routers[0].respond(200, b"a")  # /b's activation is queued, not run
    d.connection.data_received(GET_B[1:])  # /b's head completes first
    d.transport.take()  # the loop runs the activation
    assert [r.events[0][2] for r in d.routers] == ["/a", "/b"]
    d.routers[1].respond(200, b"b")
    assert d.transport.take() == upstream_reply("200 OK", b"b")
    assert len(d.routers) == 2
