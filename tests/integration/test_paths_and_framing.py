"""Issue 8 through real sockets: ``path_with_escaped_slashes_action`` (every action) and
upstream answers whose framing Envoy refuses or keeps (204/304 with a length, bad lengths)."""

from __future__ import annotations

import pytest

from tests.support.client import RawClient, build
from tests.support.hostile import HostileUpstream, Seen, answer
from tests.support.proxy import bootstrap, cluster, free_port

RAW_ANSWERS = {
    "/304-length": b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
    "/204-chunked": b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n",
    "/204-length": b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\nabc",
    "/bad-length": b"HTTP/1.1 200 OK\r\ncontent-length: 2x\r\n\r\nok",
}


def _script(request: Seen) -> list:
    return [RAW_ANSWERS.get(request.path, answer(b"", "404 Not Found"))]


@pytest.fixture(scope="module")
def raw_upstream():
    upstream = HostileUpstream(_script).start()
    yield upstream
    upstream.stop()


def _config(origins, raw_port: int, **hcm) -> dict:
    routes = [{"match": {"prefix": "/raw/"}, "route": {"cluster": "raw", "prefix_rewrite": "/"}},
              {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]
    return bootstrap(free_port(), routes, [cluster("a", [origins["a"].port]),
                                           cluster("raw", [raw_port])], hcm_extra=hcm)


@pytest.fixture(scope="module")
def proxies(origins, raw_upstream, start_proxy):
    """One proxy per path_with_escaped_slashes_action (KEEP_UNCHANGED is the default)."""
    actions = ("KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_REDIRECT",
               "UNESCAPE_AND_FORWARD")
    return {action: start_proxy(_config(origins, raw_upstream.port,
                                         path_with_escaped_slashes_action=action))
            for action in actions}


def exchange(proxy, raw: bytes):
    client = RawClient(proxy.port)
    try:
        client.send(raw)
        [response] = client.read_responses(1)
        assert response.complete
        return response, client.is_closed(1.5)
    finally:
        client.close()


ESCAPED = "/echo/a%2Fb%5cc?q=%2F"


def test_keep_unchanged_forwards_the_path_as_it_came(proxies, origins):
    response, _ = exchange(proxies["KEEP_UNCHANGED"], build("GET", ESCAPED))
    assert response.status == 200
    assert response.echo().path == ESCAPED


def test_reject_request_is_400_and_close(proxies):
    before = int(proxies["REJECT_REQUEST"].stats()[
        "http.ingress_http.downstream_rq_failed_path_normalization"])
    response, closed = exchange(proxies["REJECT_REQUEST"], build("GET", ESCAPED))
    assert (response.status, response.body, closed) == (400, b"", True)
    assert int(proxies["REJECT_REQUEST"].stats()[
        "http.ingress_http.downstream_rq_failed_path_normalization"]) == before + 1


def test_reject_request_leaves_unescaped_paths_and_the_query_alone(proxies):
    response, _ = exchange(proxies["REJECT_REQUEST"], build("GET", "/echo/a%20b?q=%2F"))
    assert response.status == 200
    assert response.echo().path == "/echo/a%20b?q=%2F"


def test_unescape_and_redirect_sends_the_client_to_the_unescaped_path(proxies):
    proxy = proxies["UNESCAPE_AND_REDIRECT"]
    response, closed = exchange(proxy, build("GET", ESCAPED))
    assert (response.status, response.body, closed) == (307, b"", False)
    assert response.header("location") == "/echo/a/b\\c?q=%2F"
    assert proxy.stats()[
        "http.ingress_http.downstream_rq_redirected_with_normalized_path"] != "0"


def test_unescape_and_redirect_refuses_a_grpc_request(proxies):
    # gRPC clients follow no redirect: as Envoy, a failed path normalization answered as a gRPC
    # status (200, grpc-status 13, no body) on a closed connection, not a 307.
    proxy = proxies["UNESCAPE_AND_REDIRECT"]
    stat = "http.ingress_http.downstream_rq_failed_path_normalization"
    before = int(proxy.stats()[stat])
    response, closed = exchange(proxy, build("POST", ESCAPED, headers=[
        ("content-type", "application/grpc"), ("te", "trailers")], body=b"\0\0\0\0\0"))
    assert (response.status, response.body, closed) == (200, b"", True)
    assert (response.header("content-type"), response.header("grpc-status")) == (
        "application/grpc", "13")
    assert response.header("location") is None
    assert int(proxy.stats()[stat]) == before + 1


def test_100_continue_is_sent_before_the_path_is_rejected(proxies):
    # Envoy answers the 100 (and counts it) before its path checks: 100, then the 400.
    proxy = proxies["REJECT_REQUEST"]
    before = int(proxy.stats()["http.ingress_http.downstream_rq_1xx"])
    client = RawClient(proxy.port)
    try:
        client.send(build("POST", ESCAPED, headers=[("Expect", "100-continue"),
                                                    ("Content-Length", "5")]))
        assert client.recv_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        [response] = client.read_responses(1)
        assert (response.status, response.body) == (400, b"")
        assert client.is_closed(1.5)
    finally:
        client.close()
    assert int(proxy.stats()["http.ingress_http.downstream_rq_1xx"]) == before + 1


def test_unescape_and_forward_sends_the_unescaped_path_upstream(proxies):
    response, _ = exchange(proxies["UNESCAPE_AND_FORWARD"], build("GET", "/echo/a%2Fb%2fc?q=%2F"))
    assert response.status == 200
    assert response.echo().path == "/echo/a/b/c?q=%2F"


# -- upstream framing ------------------------------------------------------------------------

def test_upstream_304_keeps_the_length_of_the_representation(proxies):
    # A 304 carries the content-length of the selected representation and no body (Envoy
    # passes it through, as RFC 9110 §8.6 allows).
    response, closed = exchange(proxies["KEEP_UNCHANGED"], build("GET", "/raw/304-length"))
    assert (response.status, response.header("content-length"), response.body) == (
        304, "5", b"")
    assert not closed


@pytest.mark.parametrize("path", ["/raw/204-chunked", "/raw/204-length", "/raw/bad-length"])
def test_malformed_upstream_framing_is_502(proxies, path):
    response, _ = exchange(proxies["KEEP_UNCHANGED"], build("GET", path))
    assert response.status == 502
    assert response.body.endswith(b"reset reason: protocol error")
