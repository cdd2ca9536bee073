"""The connection manager's header rules (outrider.http.header_rules), Envoy's
ConnectionManagerUtility: envoy-features.md "Request headers added", "Response headers" and
"Client x-envoy-* headers" rows, checked against the 1.40 binary by tests/integration."""

from __future__ import annotations

import re
import uuid

import pytest

from outrider.http.header_rules import (
    HeaderRulesConfig,
    is_internal_address,
    mutate_request_headers,
    mutate_response_headers,
    new_request_id,
    strip_hop_by_hop,
)
from outrider.http.headers import HeaderMap, RequestHeaders, ResponseHeaders

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EXTERNAL = "203.0.113.7"
INTERNAL = "10.1.2.3"
DEFAULT = HeaderRulesConfig()
EDGE = HeaderRulesConfig(use_remote_address=True)
NO_ID = HeaderRulesConfig(generate_request_id=False)

# Envoy's control headers, stripped from every external request (each checked against the
# 1.40 binary, with and without use_remote_address).
CONTROL = [
    "x-envoy-internal", "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms", "x-envoy-force-trace", "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-retriable-status-codes", "x-envoy-retriable-header-names", "x-envoy-ip-tags",
    "x-envoy-original-url", "x-envoy-upstream-stream-duration-ms",
]
# Caller identity and original-request headers, stripped only at the edge (use_remote_address).
EDGE_ONLY = ["x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
             "x-envoy-downstream-service-node", "x-envoy-original-path",
             "x-envoy-original-host"]
# x-envoy-* headers Envoy 1.40 passes from external clients, edge or not.
PASSED = ["x-envoy-custom", "x-envoy-attempt-count", "x-envoy-is-timeout-retry",
          "x-envoy-immediate-health-check-fail", "x-envoy-upstream-service-time"]


def req(*items, scheme: str = "http") -> RequestHeaders:
    return RequestHeaders("GET", "/", "example.com", scheme, list(items))


def names(headers) -> list[str]:
    return [name for name, _ in headers.items()]


# -- new_request_id ---------------------------------------------------------------------------------

def test_new_request_id_is_a_valid_uuid4():
    for _ in range(200):
        value = new_request_id()
        assert UUID4.match(value), value
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_new_request_ids_differ():
    assert len({new_request_id() for _ in range(1000)}) == 1000


# -- internal addresses -------------------------------------------------------------------------------

@pytest.mark.parametrize(("ip", "internal"), [
    ("10.0.0.1", True), ("172.16.0.1", True), ("172.31.255.255", True), ("192.168.1.1", True),
    ("fc00::1", True), ("fd12:3456::1", True),
    ("172.32.0.1", False), ("127.0.0.1", False), ("::1", False), ("203.0.113.7", False),
    ("2001:db8::1", False), ("", False), ("not-an-ip", False),
])
def test_internal_addresses_are_rfc1918_and_rfc4193_only(ip, internal):
    # envoy-features.md: with no internal_address_config, loopback is not internal.
    assert is_internal_address(ip) is internal


# -- hop-by-hop -----------------------------------------------------------------------------------------

def test_strip_hop_by_hop_removes_hop_headers_and_connection_named_ones():
    headers = HeaderMap([
        ("connection", "keep-alive, X-Secret"), ("x-secret", "s"), ("keep-alive", "5"),
        ("proxy-connection", "k"), ("transfer-encoding", "chunked"), ("upgrade", "h2c"),
        ("trailer", "t"), ("proxy-authenticate", "Basic"), ("x-normal", "n"),
    ])
    strip_hop_by_hop(headers)
    assert headers.items() == [("x-normal", "n")]


def test_strip_hop_by_hop_keeps_te_trailers_only():
    headers = HeaderMap([("te", " Trailers "), ("x-a", "1")])
    strip_hop_by_hop(headers)
    assert headers.items() == [("x-a", "1"), ("te", "trailers")]
    headers = HeaderMap([("te", "gzip"), ("x-a", "1")])
    strip_hop_by_hop(headers)
    assert headers.items() == [("x-a", "1")]


def test_strip_hop_by_hop_leaves_a_clean_map_untouched():
    items = [("x-a", "1"), ("x-b", "2")]
    headers = HeaderMap(items)
    before = headers.items()
    strip_hop_by_hop(headers)
    assert headers.items() is before
    assert headers.items() == items


def test_request_rules_strip_hop_by_hop_headers_added_after_the_codec():
    headers = req(("connection", "x-secret"), ("x-secret", "s"), ("upgrade", "h2c"), ("x-a", "1"))
    mutate_request_headers(headers, EXTERNAL, NO_ID)
    assert headers.items() == [("x-a", "1"), ("x-forwarded-proto", "http")]


# -- x-forwarded-for / x-envoy-external-address -----------------------------------------------------------

def test_default_leaves_x_forwarded_for_as_the_client_sent_it():
    headers = req(("x-forwarded-for", "198.51.100.1"))
    assert mutate_request_headers(headers, EXTERNAL, NO_ID) is False
    assert headers.items() == [("x-forwarded-for", "198.51.100.1"), ("x-forwarded-proto", "http")]


def test_default_does_not_add_x_forwarded_for():
    headers = req()
    mutate_request_headers(headers, EXTERNAL, NO_ID)
    assert "x-forwarded-for" not in headers
    assert "x-envoy-external-address" not in headers


def test_use_remote_address_appends_the_peer_and_sets_external_address():
    headers = req(("x-forwarded-for", "198.51.100.1"))
    config = HeaderRulesConfig(use_remote_address=True, generate_request_id=False)
    assert mutate_request_headers(headers, EXTERNAL, config) is False
    assert headers.items() == [
        ("x-forwarded-for", f"198.51.100.1,{EXTERNAL}"), ("x-forwarded-proto", "http"),
        ("x-envoy-external-address", EXTERNAL)]


def test_use_remote_address_creates_x_forwarded_for():
    headers = req()
    mutate_request_headers(headers, EXTERNAL, EDGE)
    assert headers.get_all("x-forwarded-for") == [EXTERNAL]
    assert headers.get_all("x-envoy-external-address") == [EXTERNAL]


@pytest.mark.parametrize("config", [NO_ID, HeaderRulesConfig(
    use_remote_address=True, skip_xff_append=True, generate_request_id=False)],
    ids=["default", "skip_xff_append"])
def test_repeated_x_forwarded_for_is_joined_as_envoy_joins_it(config):
    # Envoy's header map joins a repeated x-forwarded-for into one "a,b" value, in the first
    # one's place, whether or not it appends the peer.
    headers = req(("x-forwarded-for", "198.51.100.1"), ("x-a", "a"),
                  ("x-forwarded-for", "198.51.100.2, 198.51.100.3"))
    mutate_request_headers(headers, EXTERNAL, config)
    assert headers.items()[:2] == [("x-forwarded-for", "198.51.100.1,198.51.100.2, 198.51.100.3"),
                                   ("x-a", "a")]
    assert len(headers.get_all("x-forwarded-for")) == 1


def test_use_remote_address_keeps_every_hop_of_repeated_x_forwarded_for():
    headers = req(("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "198.51.100.2"))
    mutate_request_headers(headers, EXTERNAL, EDGE)
    assert headers.get_all("x-forwarded-for") == [f"198.51.100.1,198.51.100.2,{EXTERNAL}"]


def test_skip_xff_append():
    headers = req(("x-forwarded-for", "198.51.100.1"))
    mutate_request_headers(headers, EXTERNAL,
                           HeaderRulesConfig(use_remote_address=True, skip_xff_append=True))
    assert headers.get_all("x-forwarded-for") == ["198.51.100.1"]
    assert headers.get_all("x-envoy-external-address") == [EXTERNAL]


def test_client_external_address_is_replaced_at_the_edge():
    headers = req(("x-envoy-external-address", "1.2.3.4"))
    mutate_request_headers(headers, EXTERNAL, EDGE)
    assert headers.get_all("x-envoy-external-address") == [EXTERNAL]


# -- internal requests ---------------------------------------------------------------------------------

def test_internal_peer_with_use_remote_address_is_internal():
    headers = req(("x-envoy-retry-on", "5xx"), ("x-request-id", "mine"))
    assert mutate_request_headers(headers, INTERNAL, EDGE) is True
    assert headers.items() == [
        ("x-envoy-retry-on", "5xx"), ("x-request-id", "mine"), ("x-forwarded-for", INTERNAL),
        ("x-forwarded-proto", "http"), ("x-envoy-internal", "true")]


def test_internal_peer_without_use_remote_address_is_external():
    # Without use_remote_address the peer is not trusted to decide.
    headers = req(("x-envoy-retry-on", "5xx"))
    assert mutate_request_headers(headers, INTERNAL, NO_ID) is False
    assert "x-envoy-retry-on" not in headers
    assert "x-envoy-internal" not in headers


def test_private_x_forwarded_for_does_not_make_a_request_internal():
    # tests/integration/test_headers.py checks the same against Envoy 1.40.
    headers = req(("x-forwarded-for", "10.1.2.3"), ("x-envoy-retry-on", "5xx"))
    assert mutate_request_headers(headers, EXTERNAL, NO_ID) is False
    assert headers.items() == [("x-forwarded-for", "10.1.2.3"), ("x-forwarded-proto", "http")]


def test_client_x_envoy_internal_is_stripped_from_an_external_request():
    headers = req(("x-envoy-internal", "true"))
    mutate_request_headers(headers, EXTERNAL, EDGE)
    assert "x-envoy-internal" not in headers


# -- x-envoy-* from external clients ---------------------------------------------------------------

@pytest.mark.parametrize("config", [NO_ID, HeaderRulesConfig(use_remote_address=True,
                                                             generate_request_id=False)],
                         ids=["default", "edge"])
def test_control_headers_are_stripped_and_other_x_envoy_headers_kept(config):
    headers = req(*[(name, "1") for name in CONTROL], *[(name, "c") for name in PASSED],
                  ("x-a", "a"))
    mutate_request_headers(headers, EXTERNAL, config)
    kept = [n for n in names(headers)
            if n not in ("x-forwarded-proto", "x-forwarded-for", "x-envoy-external-address")]
    assert kept == [*PASSED, "x-a"]


def test_client_external_address_passes_without_use_remote_address():
    headers = req(("x-envoy-external-address", "1.2.3.4"), ("x-envoy-retry-on", "5xx"))
    mutate_request_headers(headers, EXTERNAL, NO_ID)
    assert headers.get_all("x-envoy-external-address") == ["1.2.3.4"]


@pytest.mark.parametrize("use_remote_address", [False, True])
def test_internal_only_headers_are_stripped_from_external_requests(use_remote_address):
    config = HeaderRulesConfig(use_remote_address=use_remote_address, generate_request_id=False,
                               internal_only_headers=frozenset({"x-secret", "authz-hint"}))
    headers = req(("x-secret", "s"), ("authz-hint", "h"), ("x-a", "a"))
    mutate_request_headers(headers, EXTERNAL, config)
    assert "x-secret" not in headers and "authz-hint" not in headers
    assert headers.get("x-a") == "a"


def test_internal_only_headers_reach_the_upstream_from_internal_peers():
    config = HeaderRulesConfig(use_remote_address=True, generate_request_id=False,
                               internal_only_headers=frozenset({"x-secret"}))
    headers = req(("x-secret", "s"))
    assert mutate_request_headers(headers, INTERNAL, config) is True
    assert headers.get("x-secret") == "s"


def test_caller_identity_headers_are_kept_without_use_remote_address():
    headers = req(*[(name, "1") for name in EDGE_ONLY])
    mutate_request_headers(headers, EXTERNAL, NO_ID)
    assert names(headers) == EDGE_ONLY + ["x-forwarded-proto"]


def test_caller_identity_headers_are_stripped_at_the_edge():
    headers = req(*[(name, "1") for name in EDGE_ONLY], ("x-a", "a"))
    mutate_request_headers(headers, EXTERNAL, HeaderRulesConfig(use_remote_address=True,
                                                                generate_request_id=False))
    assert "x-a" in headers
    assert not set(EDGE_ONLY) & set(names(headers))


def test_internal_requests_keep_control_headers():
    headers = req(*[(name, "1") for name in CONTROL[1:] + EDGE_ONLY])
    mutate_request_headers(headers, INTERNAL, HeaderRulesConfig(use_remote_address=True,
                                                                generate_request_id=False))
    assert names(headers)[:len(CONTROL) - 1 + len(EDGE_ONLY)] == CONTROL[1:] + EDGE_ONLY


# -- x-forwarded-proto ---------------------------------------------------------------------------------

def test_x_forwarded_proto_added_from_the_scheme_when_absent():
    headers = req(scheme="https")
    mutate_request_headers(headers, EXTERNAL, NO_ID)
    assert headers.get_all("x-forwarded-proto") == ["https"]


def test_x_forwarded_proto_from_the_client_is_kept_by_default():
    headers = req(("x-forwarded-proto", "https"))
    mutate_request_headers(headers, EXTERNAL, NO_ID)
    assert headers.get_all("x-forwarded-proto") == ["https"]


def test_x_forwarded_proto_is_overwritten_at_the_edge():
    headers = req(("x-forwarded-proto", "https"))
    mutate_request_headers(headers, EXTERNAL, EDGE)
    assert headers.get_all("x-forwarded-proto") == ["http"]


def test_trusted_hops_at_the_edge():
    headers = req(("x-forwarded-proto", "https"), ("x-forwarded-for", "198.51.100.1"))
    config = HeaderRulesConfig(use_remote_address=True, xff_num_trusted_hops=1,
                               generate_request_id=False)
    mutate_request_headers(headers, EXTERNAL, config)
    assert headers.get_all("x-forwarded-proto") == ["https"]
    assert headers.get_all("x-forwarded-for") == [f"198.51.100.1,{EXTERNAL}"]
    assert headers.get_all("x-envoy-external-address") == ["198.51.100.1"]


# -- x-request-id -----------------------------------------------------------------------------------

def test_request_id_generated_when_absent():
    headers = req()
    mutate_request_headers(headers, EXTERNAL, DEFAULT)
    [value] = headers.get_all("x-request-id")
    assert UUID4.match(value)


def test_request_id_kept_without_use_remote_address():
    headers = req(("x-request-id", "mine"))
    mutate_request_headers(headers, EXTERNAL, DEFAULT)
    assert headers.get_all("x-request-id") == ["mine"]


def test_request_id_of_an_external_request_is_replaced_at_the_edge():
    headers = req(("x-request-id", "mine"))
    mutate_request_headers(headers, EXTERNAL, EDGE)
    [value] = headers.get_all("x-request-id")
    assert UUID4.match(value)


def test_request_id_preserved_at_the_edge_with_preserve_external_request_id():
    headers = req(("x-request-id", "mine"))
    mutate_request_headers(headers, EXTERNAL, HeaderRulesConfig(
        use_remote_address=True, preserve_external_request_id=True))
    assert headers.get_all("x-request-id") == ["mine"]


def test_request_id_of_an_internal_request_is_kept_at_the_edge():
    headers = req(("x-request-id", "mine"))
    mutate_request_headers(headers, INTERNAL, EDGE)
    assert headers.get_all("x-request-id") == ["mine"]


def test_generate_request_id_false_adds_nothing_and_keeps_the_clients():
    headers = req()
    mutate_request_headers(headers, EXTERNAL, HeaderRulesConfig(use_remote_address=True,
                                                                generate_request_id=False))
    assert "x-request-id" not in headers
    headers = req(("x-request-id", "mine"))
    mutate_request_headers(headers, EXTERNAL, HeaderRulesConfig(use_remote_address=True,
                                                                generate_request_id=False))
    assert headers.get_all("x-request-id") == ["mine"]


# forward_client_cert_details on a plaintext connection (every Outrider connection): each mode
# checked against the 1.40 binary with two client-supplied x-forwarded-client-cert headers.
XFCC = [("x-forwarded-client-cert", "By=spiffe://admin;Hash=1"),
        ("x-forwarded-client-cert", "Hash=2")]


@pytest.mark.parametrize("mode", ["SANITIZE", "FORWARD_ONLY", "APPEND_FORWARD", "SANITIZE_SET"])
@pytest.mark.parametrize("remote", [EXTERNAL, INTERNAL])
def test_client_cert_header_is_removed_unless_always_forwarded(mode, remote):
    config = HeaderRulesConfig(forward_client_cert=mode, use_remote_address=True)
    headers = req(*XFCC, ("x-other", "1"))
    mutate_request_headers(headers, remote, config)
    assert "x-forwarded-client-cert" not in headers
    assert headers.get("x-other") == "1"


def test_client_cert_header_is_removed_by_default():
    headers = req(*XFCC)
    mutate_request_headers(headers, EXTERNAL, DEFAULT)
    assert "x-forwarded-client-cert" not in headers


def test_always_forward_only_forwards_the_client_cert_header_as_one_list():
    headers = req(*XFCC)
    mutate_request_headers(headers, EXTERNAL,
                           HeaderRulesConfig(forward_client_cert="ALWAYS_FORWARD_ONLY"))
    assert headers.get_all("x-forwarded-client-cert") == ["By=spiffe://admin;Hash=1,Hash=2"]
    headers = req(XFCC[0])
    mutate_request_headers(headers, EXTERNAL,
                           HeaderRulesConfig(forward_client_cert="ALWAYS_FORWARD_ONLY"))
    assert headers.get_all("x-forwarded-client-cert") == ["By=spiffe://admin;Hash=1"]


# -- response side ------------------------------------------------------------------------------------

def test_server_header_overwritten_by_default():
    headers = ResponseHeaders(200, [("server", "origin"), ("x-a", "1")])
    mutate_response_headers(headers, DEFAULT)
    assert headers.items() == [("server", "outrider"), ("x-a", "1")]


def test_server_header_added_when_absent_in_overwrite_mode():
    headers = ResponseHeaders(200, [("x-a", "1")])
    mutate_response_headers(headers, HeaderRulesConfig(server_name="edge-proxy"))
    assert headers.items() == [("x-a", "1"), ("server", "edge-proxy")]


def test_server_header_append_if_absent():
    config = HeaderRulesConfig(server_header_transformation="APPEND_IF_ABSENT")
    kept = ResponseHeaders(200, [("server", "origin")])
    mutate_response_headers(kept, config)
    assert kept.items() == [("server", "origin")]
    added = ResponseHeaders(200, [])
    mutate_response_headers(added, config)
    assert added.items() == [("server", "outrider")]


def test_server_header_pass_through():
    config = HeaderRulesConfig(server_header_transformation="PASS_THROUGH")
    kept = ResponseHeaders(200, [("server", "origin")])
    mutate_response_headers(kept, config)
    assert kept.items() == [("server", "origin")]
    absent = ResponseHeaders(200, [])
    mutate_response_headers(absent, config)
    assert absent.items() == []


def test_response_hop_by_hop_headers_are_stripped():
    headers = ResponseHeaders(200, [
        ("connection", "x-drop-me"), ("x-drop-me", "1"), ("keep-alive", "timeout=5"),
        ("proxy-connection", "k"), ("upgrade", "h2c"), ("x-kept", "1")])
    mutate_response_headers(headers, DEFAULT)
    assert headers.items() == [("x-kept", "1"), ("server", "outrider")]
