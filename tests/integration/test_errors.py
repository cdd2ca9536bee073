"""Errors exactly as Envoy 1.40 answers them: upstream failures, timeouts, malformed requests."""

from __future__ import annotations

import time

import pytest

from tests.support.client import RawClient, build
from tests.support.marks import outrider_only
from tests.support.proxy import bootstrap, cluster, free_port

RESET_BEFORE_HEADERS = "upstream connect error or disconnect/reset before headers. reset reason: "


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    routes = [
        {"match": {"prefix": "/refused"}, "route": {"cluster": "refused"}},
        {"match": {"prefix": "/empty"}, "route": {"cluster": "empty"}},
        {"match": {"prefix": "/hang"}, "route": {"cluster": "a", "timeout": "0.5s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}},
    ]
    clusters = [
        cluster("a", [origins["a"].port]),
        cluster("refused", [free_port()]),
        {**cluster("empty", []), "load_assignment": {"cluster_name": "empty", "endpoints": []}},
    ]
    return start_proxy(bootstrap(free_port(), routes, clusters, hcm_extra={
        "request_headers_timeout": "0.5s", "stream_idle_timeout": "1s"}))


@pytest.fixture
def client(proxy):
    c = RawClient(proxy.port)
    yield c
    c.close()


def one(client: RawClient, raw: bytes):
    return client.exchange(raw)


def assert_usable(client: RawClient) -> None:
    response = one(client, build("GET", "/echo/again"))
    assert response.status == 200 and response.echo().path == "/echo/again"


# -- upstream failures ----------------------------------------------------------------------------

def test_connect_refused_is_503(client):
    response = one(client, build("GET", "/refused"))
    assert response.status == 503
    assert response.body.decode() == RESET_BEFORE_HEADERS + "remote connection failure"
    assert response.header("content-type") == "text/plain"
    assert_usable(client)


def test_no_hosts_is_503(client):
    response = one(client, build("GET", "/empty"))
    assert (response.status, response.body) == (503, b"no healthy upstream")
    assert_usable(client)


def test_route_timeout_is_504_and_connection_stays_usable(client):
    start = time.monotonic()
    response = one(client, build("GET", "/hang"))
    elapsed = time.monotonic() - start
    assert (response.status, response.body) == (504, b"upstream request timeout")
    assert 0.4 <= elapsed < 3
    assert response.header("connection") is None
    assert_usable(client)


def test_upstream_garbage_is_502(client):
    response = one(client, build("GET", "/garbage"))
    assert response.status == 502
    assert response.body.decode() == RESET_BEFORE_HEADERS + "protocol error"
    assert_usable(client)


@pytest.mark.parametrize("path", ["/truncate", "/reset-after-headers"])
def test_upstream_failure_mid_body_closes_client(proxy, client, path):
    client.send(build("GET", path))
    data = client.read_until_close()
    assert client.closed_by_peer
    assert data.startswith(b"HTTP/1.1 200")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 1000" in head.lower()
    assert len(body) < 1000  # the client can tell the response is incomplete
    fresh = RawClient(proxy.port)
    try:
        assert_usable(fresh)
    finally:
        fresh.close()


# -- malformed requests ---------------------------------------------------------------------------

BAD_REQUEST = (400, b"Bad Request")
MALFORMED = {
    "cl-and-te": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BAD_REQUEST),
    "two-content-lengths": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                            b"Content-Length: 2\r\n\r\nab", BAD_REQUEST),
    "bad-content-length": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"
                           b"hello", BAD_REQUEST),
    "bad-chunk-size": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", BAD_REQUEST),
    "chunk-missing-crlf": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"5\r\nhelloXX0\r\n\r\n", BAD_REQUEST),
    "space-in-header-name": (b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
                             BAD_REQUEST),
    "space-before-colon": (b"GET /echo HTTP/1.1\r\nHost: x\r\nx-a : v\r\n\r\n", BAD_REQUEST),
    "header-without-colon": (b"GET /echo HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
                             BAD_REQUEST),
    "nul-in-value": (b"GET /echo HTTP/1.1\r\nHost: x\r\nx-a: a\x00b\r\n\r\n", BAD_REQUEST),
    "missing-host": (b"GET /echo HTTP/1.1\r\nx-a: b\r\n\r\n", (400, b"")),
    "invalid-method": (b"FOO /echo HTTP/1.1\r\nHost: x\r\n\r\n", BAD_REQUEST),
    "lowercase-method": (b"get /echo HTTP/1.1\r\nHost: x\r\n\r\n", BAD_REQUEST),
    "fragment": (b"GET /echo#frag HTTP/1.1\r\nHost: x\r\n\r\n", (400, b"")),
    "no-leading-slash": (b"GET echo HTTP/1.1\r\nHost: x\r\n\r\n", BAD_REQUEST),
    "bad-host": (b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", BAD_REQUEST),
    "te-gzip-chunked": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
                        b"\r\n0\r\n\r\n", (501, b"Not Implemented")),
    "te-identity": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
                    (501, b"Not Implemented")),
    "http-2.0-on-h1": (b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", (426, b"Upgrade Required")),
    "uri-70kb": (b"GET /echo?" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 (431, b"Request Header Fields Too Large")),
    "header-61kb": (b"GET /echo HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 61_440 + b"\r\n\r\n",
                    (431, b"Request Header Fields Too Large")),
    "101-headers": (b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                    + b"".join(b"x-h%d: v\r\n" % i for i in range(100)) + b"\r\n",
                    (431, b"Request Header Fields Too Large")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request(client, origins, case):
    raw, (status, body) = MALFORMED[case]
    forwarded = len(origins["a"].requests)
    response = one(client, raw)
    assert (response.status, response.body) == (status, body)
    assert response.header("connection") == "close"
    assert client.is_closed()
    assert len(origins["a"].requests) == forwarded  # nothing reached the upstream


@outrider_only
@pytest.mark.parametrize("raw", [
    # Deliberate deviations (reliability.md §3 ⚠ rows #23 and #40): Envoy strips a bare CR and
    # merges two Hosts as "a,b"; RFC 9110/9112 and nginx/HAProxy answer 400, and so do we.
    b"GET /echo HTTP/1.1\r\nHost: x\r\nx-a: a\rb\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    # Envoy accepts bare-LF line endings; llhttp's leniency for them also accepts a bare LF
    # ending chunk data (a smuggling vector, reliability.md #13), so Outrider stays strict.
    b"GET /echo HTTP/1.1\nHost: x\nx-a: b\n\n",
], ids=["bare-cr-in-value", "duplicate-host", "bare-lf"])
def test_malformed_request_stricter_than_envoy(client, raw):
    response = one(client, raw)
    assert (response.status, response.body) == BAD_REQUEST
    assert client.is_closed()


@pytest.mark.parametrize("size", [59_000])
def test_large_header_under_the_limit_passes(client, size):
    response = one(client, build("GET", "/echo", headers=[("x-big", "a" * size)]))
    assert response.status == 200
    assert len(response.echo().header("x-big")) == size


def test_hundred_headers_pass(client):
    headers = [(f"x-h{i}", "v") for i in range(99)]  # plus Host: 100
    response = one(client, build("GET", "/echo", headers=headers))
    assert response.status == 200
    assert response.echo().header("x-h98") == "v"


def test_chunk_size_with_trailing_space_accepted(client, origins):
    response = one(client, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"5 \r\nhello\r\n0\r\n\r\n")
    assert response.status == 200
    assert origins["a"].last.body == b"hello"


def test_upgrade_websocket_is_403(client):
    response = one(client, build("GET", "/echo", headers=[
        ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]))
    assert response.status == 403
    assert client.is_closed()


def test_upgrade_h2c_is_served_as_http1(client):
    response = one(client, build("GET", "/echo", headers=[
        ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]))
    assert response.status == 200
    assert not {"upgrade", "http2-settings", "connection"} & response.echo().names()
    assert_usable(client)


def test_connect_is_404(client):
    response = one(client, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert (response.status, response.body) == (404, b"")
    assert client.is_closed()


# -- client-side timeouts -------------------------------------------------------------------------

def test_request_headers_timeout(client):
    start = time.monotonic()
    client.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    response = one(client, b"")
    elapsed = time.monotonic() - start
    assert (response.status, response.body) == (408, b"request header timeout")
    assert response.header("connection") == "close"
    assert 0.4 <= elapsed < 3
    assert client.is_closed()


def test_request_headers_timeout_starts_with_the_first_byte(client, origins):
    # An idle keep-alive connection is not a slow request: the timer waits for a first byte.
    assert one(client, build("GET", "/echo")).status == 200
    assert not client.is_closed(timeout=0.8)
    assert_usable(client)


def test_stream_idle_timeout_on_slow_body(client, origins):
    start = time.monotonic()
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
    response = one(client, b"")
    elapsed = time.monotonic() - start
    assert (response.status, response.body) == (408, b"stream timeout")
    assert 0.9 <= elapsed < 4
    assert client.is_closed()
