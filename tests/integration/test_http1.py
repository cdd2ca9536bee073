"""HTTP/1.1 mechanics through real sockets: keep-alive, pipelining, bodies both ways, HEAD,
100-continue, absolute-form URIs, HTTP/1.0, and upstream connection reuse limits."""

from __future__ import annotations

import pytest

from tests.support.client import RawClient, build
from tests.support.marks import outrider_only
from tests.support.origin import Origin
from tests.support.proxy import bootstrap, cluster, free_port

HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@pytest.fixture(scope="module")
def limited_origin():
    origin = Origin("limited").start()
    yield origin
    origin.stop()


def _config(origins, limited_port: int, hcm_extra: dict | None = None) -> dict:
    routes = [
        {"match": {"prefix": "/limited/"}, "route": {"cluster": "limited", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}},
    ]
    limited = cluster("limited", [limited_port], typed_extension_protocol_options={
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "common_http_protocol_options": {"max_requests_per_connection": 2},
            "explicit_http_config": {"http_protocol_options": {}},
        }})
    return bootstrap(free_port(), routes, [cluster("a", [origins["a"].port]), limited],
                     hcm_extra=hcm_extra)


@pytest.fixture(scope="module")
def proxy(origins, limited_origin, start_proxy):
    return start_proxy(_config(origins, limited_origin.port))


@pytest.fixture(scope="module")
def http10_proxy(origins, limited_origin, start_proxy):
    return start_proxy(_config(origins, limited_origin.port, {
        "http_protocol_options": {"accept_http_10": True}}))


@pytest.fixture
def client(proxy):
    c = RawClient(proxy.port)
    yield c
    c.close()


def one(client: RawClient, raw: bytes):
    return client.exchange(raw, require_complete=True)


# -- connection reuse -----------------------------------------------------------------------------

def test_keep_alive_reuses_both_connections(proxy, origins, client):
    origin = origins["a"]
    assert one(client, build("GET", "/echo")).status == 200  # warms the upstream pool
    before = origin.connections
    for i in range(20):
        response = one(client, build("GET", f"/echo/{i}"))
        assert response.status == 200
        assert response.echo().path == f"/echo/{i}"
        assert response.header("connection") is None
    assert origin.connections == before  # one upstream connection served them all
    # A second client connection reuses the same idle upstream connection too.
    other = RawClient(proxy.port)
    try:
        assert one(other, build("GET", "/echo")).status == 200
    finally:
        other.close()
    assert origin.connections == before


def test_max_requests_per_connection(proxy, limited_origin, client):
    before = limited_origin.connections
    for _ in range(6):
        assert one(client, build("GET", "/limited/echo")).status == 200
    assert limited_origin.connections - before == 3


def test_pipelined_requests_answered_in_order(client):
    client.send(b"".join(build("GET", f"/echo/{i}") for i in range(3)))
    responses = client.read_responses(3)
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.echo().path for r in responses] == ["/echo/0", "/echo/1", "/echo/2"]
    client.buffer = b""
    assert one(client, build("GET", "/echo/3")).status == 200  # still open


def test_pipelined_slow_first_request_keeps_order(client):
    client.send(build("GET", "/sleep/0.2") + build("GET", "/echo/fast"))
    responses = client.read_responses(2)
    assert [r.echo().path for r in responses] == ["/sleep/0.2", "/echo/fast"]


def test_pipelined_with_connection_close_on_last(client):
    client.send(build("GET", "/echo/0") + build("GET", "/echo/1")
                + build("GET", "/echo/2", headers=[("Connection", "close")]))
    responses = client.read_responses(3)
    assert [r.echo().path for r in responses] == ["/echo/0", "/echo/1", "/echo/2"]
    assert responses[2].header("connection") == "close"
    assert client.is_closed()


def test_malformed_request_pipelined_behind_a_good_one(client):
    # The good request is answered first, then the malformed one gets its 400, then close.
    client.send(build("GET", "/sleep/0.2") + b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n")
    responses = client.read_responses(2)
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].echo().path == "/sleep/0.2"
    assert responses[1].header("connection") == "close"
    assert client.is_closed()


def test_connection_close_request(client):
    response = one(client, build("GET", "/echo", headers=[("Connection", "close")]))
    assert response.status == 200
    assert response.header("connection") == "close"
    assert client.is_closed()


# -- request bodies -------------------------------------------------------------------------------

def test_chunked_request_body_forwarded_intact(client, origins):
    raw = (b"POST /echo HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    response = one(client, raw)
    assert response.status == 200
    assert response.echo().body_length == 11
    assert origins["a"].last.body == b"hello world"
    assert origins["a"].last.headers.get("transfer-encoding") == "chunked"


def test_chunked_request_body_sent_in_pieces(client, origins):
    client.send(b"POST /echo HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = bytes(range(256)) * 400
    for start in range(0, len(body), 30000):
        piece = body[start:start + 30000]
        client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    response = one(client, b"0\r\n\r\n")
    assert response.echo().body_length == len(body)
    assert origins["a"].last.body == body


def test_content_length_request_body(client, origins):
    body = b"0123456789abcdef" * 8192  # 128 KiB
    response = one(client, build("POST", "/echo", body=body))
    assert response.status == 200
    assert response.echo().body_length == len(body)
    assert origins["a"].last.body == body
    assert origins["a"].last.headers.get("content-length") == str(len(body))


def test_empty_body_post(client, origins):
    response = one(client, build("POST", "/echo", headers=[("Content-Length", "0")]))
    assert response.echo().body_length == 0
    assert response.echo().method == "POST"


# -- response bodies ------------------------------------------------------------------------------

def test_content_length_response(client):
    response = one(client, build("GET", "/size/100000"))
    assert response.header("content-length") == "100000"
    assert response.body == b"x" * 100000


def test_chunked_response_rechunked(client):
    client.send(build("GET", "/chunked/5000"))
    responses = client.read_responses(1)
    assert responses[0].header("transfer-encoding") == "chunked"
    assert responses[0].body == b"y" * 5000
    assert client.buffer.endswith(b"0\r\n\r\n")
    client.buffer = b""
    assert one(client, build("GET", "/echo")).status == 200


def test_close_delimited_upstream_response(client):
    response = one(client, build("GET", "/close-delimited/3000"))
    assert response.status == 200
    assert response.body == b"z" * 3000
    # Re-framed for the client, so its connection stays usable.
    assert one(client, build("GET", "/echo")).status == 200


def test_head_has_no_body_and_keeps_content_length(client):
    client.send(build("HEAD", "/head-cl"))
    head = client.recv_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\ncontent-length: 5\r\n" in head.lower()
    client.send(build("GET", "/echo/after-head"))
    response = one(client, b"")  # the next bytes are the next response, no stray body
    assert response.echo().path == "/echo/after-head"


def test_head_of_a_large_body(client):
    client.send(build("HEAD", "/size/1000000"))
    head = client.recv_until(b"\r\n\r\n")
    assert b"\r\ncontent-length: 1000000\r\n" in head.lower()
    response = one(client, build("GET", "/echo"))
    assert response.status == 200


# -- Expect, absolute-form, versions --------------------------------------------------------------

def test_expect_100_continue(client, origins):
    client.send(b"POST /echo HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n"
                b"Content-Length: 5\r\n\r\n")
    interim = client.recv_until(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    response = one(client, b"hello")
    assert response.status == 200
    assert origins["a"].last.body == b"hello"
    assert "expect" not in origins["a"].last.headers


def test_absolute_form_uri(client, origins):
    response = one(client, b"GET http://abs.example/echo?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n")
    assert response.status == 200
    assert origins["a"].last.path == "/echo?q=1"
    assert origins["a"].last.header_list.count(("host", "abs.example")) == 1
    assert "ignored" not in origins["a"].last.headers.values()


def test_http10_gets_426(client):
    response = one(client, b"GET /echo HTTP/1.0\r\nHost: example.com\r\n\r\n")
    assert response.status == 426
    assert response.body == b"Upgrade Required"
    assert client.is_closed()


@pytest.mark.parametrize("host_lines", [b"Host: \r\n", b"Host: a b\r\n",
                                        b"Host: a\r\nHost: b\r\n", b""],
                         ids=["empty", "invalid", "duplicate", "absent"])
def test_http10_gets_426_whatever_its_host(proxy, host_lines):
    # Envoy refuses HTTP/1.0 before it looks at the Host: 426, not our Host 400s.
    c = RawClient(proxy.port)
    try:
        response = one(c, b"GET /echo HTTP/1.0\r\n" + host_lines + b"\r\n")
        assert (response.status, response.body) == (426, b"Upgrade Required")
        assert c.is_closed()
    finally:
        c.close()


def test_100_continue_is_sent_before_a_missing_host_is_refused(client):
    client.send(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert client.recv_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    [response] = client.read_responses(1)
    assert (response.status, response.body) == (400, b"")
    assert client.is_closed()


def test_http10_accepted_when_configured(http10_proxy, origins):
    c = RawClient(http10_proxy.port)
    try:
        c.send(b"GET /echo HTTP/1.0\r\nHost: example.com\r\n\r\n")
        data = c.read_until_close()  # HTTP/1.0 without keep-alive: the response ends with close
    finally:
        c.close()
    assert data.startswith(b"HTTP/1.") and data[9:12] == b"200"
    assert data.endswith(b"}")  # the whole JSON body arrived
    assert origins["a"].last.path == "/echo"


# What ApacheBench sends with -k: HTTP/1.0 asking for keep-alive.
AB_REQUEST = (b"GET /echo HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: example.com\r\n"
              b"User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n")


def test_http10_keep_alive_client_reuses_its_connection(http10_proxy):
    """`ab -k` and other HTTP/1.0 keep-alive clients: each answer is an HTTP/1.0 response that
    says keep-alive and has a length, and the connection serves the next request (Envoy)."""
    c = RawClient(http10_proxy.port)
    try:
        for _ in range(3):
            c.send(AB_REQUEST)
            head = c.recv_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 200 OK\r\n")
            assert b"\r\nconnection: keep-alive\r\n" in head
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(c.buffer) < length:
                c.buffer += c.sock.recv(65536)
            assert c.buffer[:length].endswith(b"}")
            c.buffer = c.buffer[length:]
        assert not c.is_closed(0.3)
    finally:
        c.close()


def test_http10_keep_alive_without_a_length_is_closed(http10_proxy):
    # An HTTP/1.0 client cannot be sent chunks: the answer ends with the connection.
    c = RawClient(http10_proxy.port)
    try:
        c.send(AB_REQUEST.replace(b"/echo", b"/chunked/2500"))
        data = c.read_until_close()
    finally:
        c.close()
    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in data
    assert data.endswith(b"y" * 100)


def test_http10_without_host_or_default_host_is_400(http10_proxy):
    c = RawClient(http10_proxy.port)
    try:
        c.send(b"GET /echo HTTP/1.0\r\n\r\n")
        data = c.read_until_close()
    finally:
        c.close()
    assert data.startswith(b"HTTP/1.0 400 Bad Request\r\n")


@outrider_only
def test_empty_host_is_400(client):
    # A deliberate difference: Envoy forwards "host: " (docs/compatibility.md); nginx says 400.
    response = one(client, b"GET /echo HTTP/1.1\r\nHost: \r\n\r\n")
    assert response.status == 400
    assert client.is_closed()


def test_100_continue_and_codec_errors_are_counted_as_envoy_counts_them(proxy):
    def counters() -> dict[str, int]:
        stats = proxy.stats()
        return {name: int(stats[f"http.ingress_http.downstream_rq_{name}"])
                for name in ("total", "1xx", "2xx", "4xx")}

    before = counters()
    c = RawClient(proxy.port)
    try:
        c.send(b"POST /echo HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5\r\n\r\n")
        assert c.recv_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert one(c, b"hello").status == 200
    finally:
        c.close()
    c = RawClient(proxy.port)
    try:  # refused by the codec: still a request, answered 400
        assert one(c, b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n").status == 400
    finally:
        c.close()
    after = counters()
    assert {name: after[name] - before[name] for name in after} == {
        "total": 2, "1xx": 1, "2xx": 1, "4xx": 1}
