"""Header rules through real sockets: hop-by-hop, request ids, forwarding headers, x-envoy-*."""

from __future__ import annotations

import ipaddress
import re

import pytest

from tests.support.client import RawClient, build
from tests.support.marks import SERVER_NAME, outrider_only
from tests.support.proxy import bootstrap, cluster, free_port

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _routes() -> list[dict]:
    return [
        {"match": {"prefix": "/short/"}, "route": {"cluster": "a", "timeout": "0.1s",
                                                    "prefix_rewrite": "/"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}},
    ]


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    """Default connection manager settings (use_remote_address false)."""
    return start_proxy(bootstrap(free_port(), _routes(), [cluster("a", [origins["a"].port])]))


@pytest.fixture(scope="module")
def edge(origins, start_proxy):
    """An edge proxy: use_remote_address and its own server_name."""
    return start_proxy(bootstrap(free_port(), _routes(), [cluster("a", [origins["a"].port])],
                                 hcm_extra={"use_remote_address": True,
                                            "server_name": "edge-proxy"}))


def _with_internal_only_headers(config: dict) -> dict:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    hcm["route_config"]["internal_only_headers"] = ["x-secret"]
    return config


@pytest.fixture(scope="module")
def internal_only(origins, start_proxy):
    """A route configuration naming internal_only_headers (Envoy strips them from external
    requests, with or without use_remote_address)."""
    return start_proxy(_with_internal_only_headers(
        bootstrap(free_port(), _routes(), [cluster("a", [origins["a"].port])])))


def exchange(proxy, raw: bytes):
    client = RawClient(proxy.port)
    try:
        client.send(raw)
        responses = client.read_responses(1)
        assert responses and responses[0].complete, f"no complete response to {raw[:80]!r}"
        return responses[0]
    finally:
        client.close()


def get(proxy, path: str = "/echo", headers=()):
    return exchange(proxy, build("GET", path, "example.com", headers))


# -- hop-by-hop -----------------------------------------------------------------------------------

def test_hop_by_hop_request_headers_are_stripped(proxy):
    echo = get(proxy, headers=[
        ("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"), ("X-Normal", "n"),
    ]).echo()
    assert not {"connection", "x-secret", "keep-alive", "proxy-connection"} & echo.names()
    assert echo.header("x-normal") == "n"


def test_te_trailers_is_forwarded_other_te_values_are_not(proxy):
    # Envoy keeps "te: trailers" (gRPC needs it) and strips any other TE value.
    assert get(proxy, headers=[("TE", "trailers")]).echo().header_all("te") == ["trailers"]
    assert "te" not in get(proxy, headers=[("TE", "gzip")]).echo().names()


def test_transfer_encoding_is_not_forwarded_as_is_for_length_bodies(proxy, origins):
    response = exchange(proxy, build("POST", "/echo", "example.com", body=b"hello"))
    echo = response.echo()
    assert echo.body_length == 5
    assert echo.header("content-length") == "5"
    assert "transfer-encoding" not in echo.names()


def test_hop_by_hop_response_headers_are_stripped(proxy):
    response = get(proxy, "/headers?keep-alive=timeout%3D5&proxy-connection=keep-alive"
                          "&upgrade=h2c&x-kept=1")
    names = {k for k, _ in response.headers}
    assert response.status == 200
    assert not {"keep-alive", "proxy-connection", "connection", "upgrade"} & names
    assert response.header("x-kept") == "1"


@outrider_only
def test_connection_named_response_headers_are_stripped(proxy):
    # RFC 9110 §7.6.1 (and the brief) ask for this; Envoy 1.40 forwards such response headers.
    response = get(proxy, "/headers?connection=x-drop-me&x-drop-me=1&x-kept=1")
    names = {k for k, _ in response.headers}
    assert response.status == 200
    assert not {"x-drop-me", "connection"} & names
    assert response.header("x-kept") == "1"


# -- x-request-id ---------------------------------------------------------------------------------

def test_request_id_generated_when_absent(proxy):
    first = get(proxy).echo().header_all("x-request-id")
    second = get(proxy).echo().header_all("x-request-id")
    assert len(first) == len(second) == 1
    assert UUID4.match(first[0]) and UUID4.match(second[0])
    assert first != second


def test_request_id_kept_from_a_trusted_hop(proxy):
    echo = get(proxy, headers=[("x-request-id", "my-request-id")]).echo()
    assert echo.header_all("x-request-id") == ["my-request-id"]


def test_request_id_replaced_from_an_external_client(edge):
    echo = get(edge, headers=[("x-request-id", "my-request-id")]).echo()
    values = echo.header_all("x-request-id")
    assert len(values) == 1 and UUID4.match(values[0])


# -- x-forwarded-* ---------------------------------------------------------------------------------

def test_forwarded_proto_added(proxy):
    assert get(proxy).echo().header_all("x-forwarded-proto") == ["http"]


def test_forwarded_proto_overwritten_at_the_edge(edge):
    echo = get(edge, headers=[("x-forwarded-proto", "https")]).echo()
    assert echo.header_all("x-forwarded-proto") == ["http"]


def test_forwarded_for_unchanged_by_default(proxy):
    echo = get(proxy, headers=[("x-forwarded-for", "203.0.113.7")]).echo()
    assert echo.header_all("x-forwarded-for") == ["203.0.113.7"]
    assert "x-envoy-external-address" not in echo.names()
    assert "x-forwarded-for" not in get(proxy).echo().names()


def test_forwarded_for_appended_with_use_remote_address(edge):
    echo = get(edge, headers=[("x-forwarded-for", "203.0.113.7")]).echo()
    [xff] = echo.header_all("x-forwarded-for")
    first, appended = xff.split(",")
    assert first == "203.0.113.7"
    # The peer; for a loopback peer Envoy appends the host's own address instead.
    ipaddress.ip_address(appended.strip())
    assert echo.header_all("x-envoy-external-address") == ["127.0.0.1"]


def test_forwarded_for_created_with_use_remote_address(edge):
    echo = get(edge).echo()
    [xff] = echo.header_all("x-forwarded-for")
    ipaddress.ip_address(xff)
    assert echo.header_all("x-envoy-external-address") == ["127.0.0.1"]


# -- x-envoy-* -------------------------------------------------------------------------------------

CONTROL_HEADERS = [
    ("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "3"),
    ("x-envoy-upstream-rq-timeout-ms", "50"), ("x-envoy-upstream-rq-per-try-timeout-ms", "50"),
    ("x-envoy-retriable-status-codes", "500"), ("x-envoy-upstream-alt-stat-name", "alt"),
    ("x-envoy-expected-rq-timeout-ms", "1"), ("x-envoy-force-trace", "1"),
]


@pytest.mark.parametrize("which", ["proxy", "edge"])
def test_client_envoy_control_headers_stripped(request, which):
    target = request.getfixturevalue(which)
    echo = get(target, headers=CONTROL_HEADERS).echo()
    assert not {name for name, _ in CONTROL_HEADERS[:-2]} & echo.names()
    assert "x-envoy-force-trace" not in echo.names()
    assert echo.header_all("x-envoy-expected-rq-timeout-ms") == ["15000"]


def test_private_forwarded_for_does_not_make_a_request_internal(proxy):
    # A client could write any x-forwarded-for; with no internal_address_config Envoy 1.40
    # treats the request as external: control headers stripped, no x-envoy-internal.
    echo = get(proxy, headers=[("x-forwarded-for", "10.1.2.3"), ("x-envoy-retry-on", "5xx")]).echo()
    assert "x-envoy-retry-on" not in echo.names()
    assert "x-envoy-internal" not in echo.names()
    assert echo.header_all("x-forwarded-for") == ["10.1.2.3"]


def test_client_timeout_header_is_ignored(proxy):
    # /short/ has a 100 ms route timeout; an external client cannot lengthen (or shorten) it.
    response = get(proxy, "/short/sleep/0.3", headers=[("x-envoy-upstream-rq-timeout-ms", "5000")])
    assert response.status == 504
    response = get(proxy, "/sleep/0.2", headers=[("x-envoy-upstream-rq-timeout-ms", "20")])
    assert response.status == 200


def test_other_client_envoy_headers_pass_through(proxy):
    # Envoy strips its control headers only (ConnectionManagerUtility::cleanInternalHeaders);
    # other x-envoy-* names reach the upstream unchanged, and without use_remote_address so do
    # x-envoy-original-path, x-envoy-original-host and x-envoy-external-address (1.40 binary).
    passed = [("x-envoy-custom", "c"), ("x-envoy-original-path", "/forged"),
              ("x-envoy-original-host", "forged.example"), ("x-envoy-attempt-count", "3"),
              ("x-envoy-external-address", "1.2.3.4")]
    echo = get(proxy, headers=passed).echo()
    for name, value in passed:
        assert echo.header_all(name) == [value], name


@pytest.mark.parametrize("which", ["proxy", "edge"])
def test_original_request_and_ip_tag_headers_are_stripped(request, which):
    # x-envoy-ip-tags, x-envoy-original-url and x-envoy-upstream-stream-duration-ms go from
    # every external request; at the edge x-envoy-original-path and -host go too (as Envoy).
    stripped = ["x-envoy-ip-tags", "x-envoy-original-url", "x-envoy-upstream-stream-duration-ms"]
    edge_only = ["x-envoy-original-path", "x-envoy-original-host"]
    echo = get(request.getfixturevalue(which),
               headers=[(name, "forged") for name in stripped + edge_only]).echo()
    assert not set(stripped) & echo.names()
    if which == "edge":
        assert not set(edge_only) & echo.names()
    else:
        assert set(edge_only) <= echo.names()


def test_internal_only_headers_are_stripped_from_external_requests(internal_only):
    echo = get(internal_only, headers=[("x-secret", "s"), ("x-public", "p")]).echo()
    assert "x-secret" not in echo.names()
    assert echo.header_all("x-public") == ["p"]


@pytest.mark.parametrize("which", ["proxy", "edge"])
def test_repeated_forwarded_for_is_joined(request, which):
    # Envoy's header map joins a repeated x-forwarded-for into one value, appended to or not.
    echo = get(request.getfixturevalue(which), headers=[
        ("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "198.51.100.2")]).echo()
    [value] = echo.header_all("x-forwarded-for")
    assert value.startswith("198.51.100.1,198.51.100.2")
    assert value == "198.51.100.1,198.51.100.2" if which == "proxy" else value.count(",") == 2


@pytest.fixture(scope="module")
def xfcc_always_forward(origins, start_proxy):
    return start_proxy(bootstrap(free_port(), _routes(), [cluster("a", [origins["a"].port])],
                                 hcm_extra={"forward_client_cert_details": "ALWAYS_FORWARD_ONLY"}))


@pytest.fixture(scope="module")
def xfcc_sanitize_set(origins, start_proxy):
    return start_proxy(bootstrap(free_port(), _routes(), [cluster("a", [origins["a"].port])],
                                 hcm_extra={"forward_client_cert_details": "SANITIZE_SET",
                                            "set_current_client_cert_details": {"uri": True}}))


FORGED_XFCC = [("x-forwarded-client-cert", "By=spiffe://admin;Hash=1"),
               ("x-forwarded-client-cert", "Hash=2")]


@pytest.mark.parametrize("which", ["proxy", "edge", "xfcc_sanitize_set"])
def test_client_supplied_client_cert_header_is_removed(request, which):
    # A plaintext client cannot vouch for a certificate: an upstream trusting XFCC would be
    # handed a forged identity (Envoy 1.40 removes it in every mode but ALWAYS_FORWARD_ONLY).
    echo = get(request.getfixturevalue(which), headers=FORGED_XFCC).echo()
    assert "x-forwarded-client-cert" not in echo.names()


def test_client_cert_header_always_forwarded_as_one_list(xfcc_always_forward):
    echo = get(xfcc_always_forward, headers=FORGED_XFCC).echo()
    assert echo.header_all("x-forwarded-client-cert") == ["By=spiffe://admin;Hash=1,Hash=2"]


def test_expected_rq_timeout_sent_upstream(proxy):
    assert get(proxy).echo().header_all("x-envoy-expected-rq-timeout-ms") == ["15000"]
    assert get(proxy, "/short/echo").echo().header_all("x-envoy-expected-rq-timeout-ms") == ["100"]


# -- response headers -----------------------------------------------------------------------------

def test_upstream_service_time_and_server(proxy):
    response = get(proxy)
    assert response.status == 200
    [service_time] = response.header_all("x-envoy-upstream-service-time")
    assert service_time.isdigit()
    assert response.header_all("server") == [SERVER_NAME]  # overwrites the origin's "origin"
    assert response.header("date")


def test_server_name_override(edge):
    response = get(edge)
    assert response.header_all("server") == ["edge-proxy"]


def test_server_header_on_local_replies(proxy, edge):
    assert get(proxy, "/short/hang").header_all("server") == [SERVER_NAME]
    response = exchange(edge, b"GET /echo HTTP/1.1\r\n\r\n")  # no Host: a codec-level 400
    assert response.status == 400
    assert response.header_all("server") == ["edge-proxy"]


def test_local_reply_has_no_upstream_service_time(proxy):
    response = get(proxy, "/short/hang")
    assert response.status == 504
    assert response.header("x-envoy-upstream-service-time") is None
