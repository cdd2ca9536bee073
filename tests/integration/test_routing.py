"""Routing through real sockets: domains, matchers, actions, rewrites, header mutations."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.support.client import RawClient, build
from tests.support.proxy import bootstrap, cluster, free_port
from tests.support.scenarios import routing_config


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    a, b, c = (origins[n].port for n in "abc")
    return start_proxy(routing_config(free_port(), a, b, c))


def get(proxy, path: str, host: str = "example.com", headers=(), method: str = "GET"):
    response, _ = request_keep(proxy, build(method, path, host, headers))
    return response


def request_keep(proxy, raw: bytes):
    """Send one request on a new connection and read one response (no close detection)."""
    client = RawClient(proxy.port)
    try:
        client.send(raw)
        responses = client.read_responses(1)
        assert responses and responses[0].complete, f"no complete response to {raw[:80]!r}"
        return responses[0], client.closed_by_peer
    finally:
        client.close()


# -- virtual host selection -----------------------------------------------------------------------

@pytest.mark.parametrize("host, vhost", [
    ("api.example.com", "exact"),
    ("API.Example.COM", "exact"),  # domains match case-insensitively
    ("x.api.example.com", "suffix-long"),  # the longest wildcard suffix wins
    ("foo.example.com", "suffix"),
    ("api.x.example.com", "suffix"),  # a suffix wildcard beats a prefix wildcard
    ("api.other.org", "prefix"),
    ("other.org", "catchall"),
])
def test_domain_precedence(proxy, host, vhost):
    response = get(proxy, "/" if vhost != "catchall" else "/direct", host)
    assert response.status == 200
    assert response.body == (vhost.encode() if vhost != "catchall" else b"direct body")


# -- path matching --------------------------------------------------------------------------------

@pytest.mark.parametrize("path, body", [
    ("/exact", b"path-exact"),
    ("/psp", b"psp"),
    ("/psp/x", b"psp"),
    ("/psp?x=1", b"psp"),
    ("/re/123", b"regex"),
    ("/CASELESS/x", b"caseless"),
    ("/caseless", b"caseless"),
    ("/deadretry", b"dead"),  # routes match in order: /dead captures /deadretry
])
def test_path_matchers(proxy, path, body):
    response = get(proxy, path)
    assert (response.status, response.body) == (200, body)


@pytest.mark.parametrize("path", [
    "/exact/more",  # `path` is exact
    "/pspx",  # path_separated_prefix needs a separator
    "/re/123x",  # safe_regex must match the whole path
    "/re/",
    "/nothing-here",
])
def test_no_route_is_404_with_empty_body(proxy, path):
    response = get(proxy, path)
    assert response.status == 404
    assert response.body == b""
    assert response.header("content-length") == "0"


# -- header and query matchers --------------------------------------------------------------------

@pytest.mark.parametrize("headers, body", [
    ([("x-m", "e")], b"hdr-exact"),
    ([("x-m", "prefixed")], b"hdr-prefix"),
    ([("x-m", "is-a-suf")], b"hdr-suffix"),
    ([("x-m", "in-mid-dle")], b"hdr-contains"),
    ([("x-m", "r42")], b"hdr-regex"),
    ([("x-m", "r42x"), ("x-present", "")], b"hdr-present"),  # regex is a full match
    ([("x-present", "anything")], b"hdr-present"),
    ([], b"hdr-absent"),  # invert_match of present_match
    ([("x-m", "E")], b"hdr-absent"),  # exact is case-sensitive
])
def test_header_matchers(proxy, headers, body):
    response = get(proxy, "/hdr", headers=headers)
    assert (response.status, response.body) == (200, body)


def test_header_matchers_are_conjunctive_with_path_fallthrough(proxy):
    # x-absent present: no /hdr route matches at all.
    assert get(proxy, "/hdr", headers=[("x-absent", "1")]).status == 404


@pytest.mark.parametrize("query, body", [
    ("?v=1", b"q-exact"),
    ("?a=b&v=1", b"q-exact"),
    ("?v=2", b"q-none"),
    ("?p", b"q-present"),
    ("?p=", b"q-present"),
    ("?v=2&p=x", b"q-present"),
    ("", b"q-none"),
])
def test_query_parameter_matchers(proxy, query, body):
    response = get(proxy, "/q" + query)
    assert (response.status, response.body) == (200, body)


# -- cluster actions ------------------------------------------------------------------------------

def test_prefix_route_reaches_cluster(proxy, origins):
    response = get(proxy, "/echo/x?y=1")
    assert response.status == 200
    echo = response.echo()
    assert (echo.origin, echo.method, echo.path) == ("a", "GET", "/echo/x?y=1")
    assert response.header("x-origin") == "a"


def test_weighted_clusters_spread(proxy):
    client = RawClient(proxy.port)
    counts = Counter()
    try:
        for _ in range(200):
            client.send(build("GET", "/weighted/echo"))
            response = client.read_responses(1)[-1]
            client.buffer = b""
            assert response.status == 200
            counts[response.header("x-origin")] += 1
    finally:
        client.close()
    # 80/20 over 200 requests: mean 160, sd 5.7; Envoy gave 167/33.
    assert set(counts) <= {"a", "b"}
    assert 140 <= counts["a"] <= 180, counts


@pytest.mark.parametrize("name", ["b", "c"])
def test_cluster_header_picks_cluster(proxy, name):
    response = get(proxy, "/by-header/echo", headers=[("x-cluster", name)])
    assert response.status == 200
    assert response.header("x-origin") == name


@pytest.mark.parametrize("headers", [[("x-cluster", "nope")], []])
def test_unknown_cluster_is_503(proxy, headers):
    response = get(proxy, "/by-header/echo", headers=headers)
    assert response.status == 503
    assert response.body == b""


# -- rewrites -------------------------------------------------------------------------------------

def test_prefix_rewrite_sets_original_path(proxy):
    echo = get(proxy, "/rewrite/echo?q=1").echo()
    assert echo.path == "/new/echo?q=1"
    assert echo.header_all("x-envoy-original-path") == ["/rewrite/echo?q=1"]
    assert echo.header("host") == "example.com"


def test_regex_rewrite(proxy):
    echo = get(proxy, "/rx/abc/123").echo()
    assert echo.path == "/123/abc"
    assert echo.header("x-envoy-original-path") == "/rx/abc/123"


def test_regex_rewrite_without_match_keeps_path(proxy):
    echo = get(proxy, "/rx/ABC/123").echo()
    assert echo.path == "/rx/ABC/123"


def test_host_rewrite_literal(proxy):
    echo = get(proxy, "/hostrw/echo").echo()
    assert echo.header_all("host") == ["rewritten.example"]
    assert echo.path == "/hostrw/echo"


# -- redirects and direct responses ---------------------------------------------------------------

@pytest.mark.parametrize("path, status, location", [
    ("/redirect/x?y=1", 301, "http://example.com/elsewhere?y=1"),
    ("/https/a?b=1", 301, "https://example.com/https/a?b=1"),
    ("/found", 302, "http://new.example/found"),
])
def test_redirect(proxy, path, status, location):
    response = get(proxy, path)
    assert response.status == status
    assert response.header("location") == location
    assert response.body == b""


def test_direct_response(proxy):
    response = get(proxy, "/direct")
    assert (response.status, response.body) == (200, b"direct body")
    assert response.header("content-length") == "11"
    assert response.header("content-type") == "text/plain"


def test_direct_response_without_body(proxy):
    response = get(proxy, "/direct-empty")
    assert (response.status, response.body) == (503, b"")


def test_direct_response_to_head_has_no_body(proxy):
    client = RawClient(proxy.port)
    try:
        client.send(build("HEAD", "/direct"))
        head = client.recv_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"content-length: 11\r\n" in head.lower()
        client.send(build("GET", "/exact"))  # the next response follows the head directly
        assert client.recv_until(b"\r\n\r\n").startswith(b"HTTP/1.1 200")
    finally:
        client.close()


# -- header mutations at route, virtual host and route-config level -------------------------------

def test_request_headers_to_add_at_three_levels(proxy):
    echo = get(proxy, "/echo", "mutate.example", headers=[
        ("x-level", "client"), ("x-if-absent", "client"), ("x-overwrite", "client"),
    ]).echo()
    # Appended most specific first: route, then virtual host, then route config.
    assert echo.header_all("x-level") == ["client", "route", "vhost", "rc"]
    assert echo.header_all("x-if-absent") == ["client"]  # ADD_IF_ABSENT
    assert echo.header_all("x-overwrite") == ["route"]  # OVERWRITE_IF_EXISTS_OR_ADD
    assert echo.header_all("x-ow-exists") == []  # OVERWRITE_IF_EXISTS, absent stays absent


def test_request_headers_add_actions_when_absent(proxy):
    echo = get(proxy, "/echo", "mutate.example", headers=[("x-ow-exists", "client")]).echo()
    assert echo.header_all("x-if-absent") == ["route"]
    assert echo.header_all("x-overwrite") == ["route"]
    assert echo.header_all("x-ow-exists") == ["route"]
    assert echo.header_all("x-level") == ["route", "vhost", "rc"]


def test_request_headers_to_remove_at_three_levels(proxy):
    echo = get(proxy, "/echo", "mutate.example", headers=[
        ("x-remove-route", "1"), ("x-remove-vh", "1"), ("x-remove-rc", "1"), ("x-keep", "1"),
    ]).echo()
    assert not {"x-remove-route", "x-remove-vh", "x-remove-rc"} & echo.names()
    assert echo.header("x-keep") == "1"


def test_route_config_level_applies_to_every_virtual_host(proxy):
    echo = get(proxy, "/echo", headers=[("x-remove-rc", "1"), ("x-remove-vh", "1")]).echo()
    assert echo.header_all("x-level") == ["rc"]
    assert "x-remove-rc" not in echo.names()
    assert echo.header("x-remove-vh") == "1"  # that rule belongs to another virtual host


def test_response_headers_to_add_and_remove_at_three_levels(proxy):
    response = get(proxy, "/headers?x-drop-route=1&x-drop-vh=1&x-drop-rc=1&x-resp-level=origin"
                   "&x-kept=1", "mutate.example")
    assert response.status == 200
    assert response.header_all("x-resp-level") == ["origin", "route", "vhost", "rc"]
    assert not {"x-drop-route", "x-drop-vh", "x-drop-rc"} & {k for k, _ in response.headers}
    assert response.header("x-kept") == "1"


def test_response_headers_on_direct_response(proxy):
    response = get(proxy, "/direct")
    assert response.header_all("x-resp-level") == ["rc"]


@pytest.mark.parametrize("path, status", [
    ("/refused", 503), ("/empty", 503), ("/hang", 504), ("/garbage", 502),
])
def test_response_headers_on_local_replies_after_routing(proxy, path, status):
    # Once a route is chosen, Envoy applies its response header mutations to local replies too.
    response = get(proxy, path)
    assert response.status == status
    assert response.header_all("x-resp-level") == ["rc"]


def test_no_response_headers_without_a_route(proxy):
    response = get(proxy, "/nothing-here")
    assert response.status == 404
    assert response.header("x-resp-level") is None


def test_expected_timeout_header_follows_route_timeout(proxy):
    assert get(proxy, "/echo").echo().header("x-envoy-expected-rq-timeout-ms") == "15000"
    assert get(proxy, "/short/echo").echo().header("x-envoy-expected-rq-timeout-ms") == "500"


def test_request_id_is_uuid4(proxy):
    first = get(proxy, "/echo").echo().header("x-request-id")
    second = get(proxy, "/echo").echo().header("x-request-id")
    uuid4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert uuid4.match(first) and uuid4.match(second)
    assert first != second


def test_no_route_keeps_connection_open(proxy):
    """A 404 keeps the connection open: the next request on it is answered."""
    client = RawClient(proxy.port)
    try:
        client.send(build("GET", "/nothing-here") + build("GET", "/exact"))
        responses = client.read_responses(2)
        assert [r.status for r in responses] == [404, 200]
    finally:
        client.close()



# -- host rewrites, weighted-cluster headers, direct response size, decorators (issue 8) -----------

def _rewrite_routes() -> list[dict]:
    def to(prefix: str, **action) -> dict:
        return {"match": {"prefix": prefix}, "route": action}

    return [
        to("/xfh/", cluster="a", host_rewrite_literal="lit.example", append_x_forwarded_host=True),
        to("/hrh/", cluster="a", host_rewrite_header="x-host", append_x_forwarded_host=True),
        to("/hrr/", cluster="a", host_rewrite_path_regex={
            "pattern": {"regex": "^/hrr/([^/]+).*$"}, "substitution": "\\1.svc"}),
        to("/auto-dns/", cluster="dns", auto_host_rewrite=True, append_x_forwarded_host=True),
        to("/auto-static/", cluster="a", auto_host_rewrite=True),
        to("/wc/", weighted_clusters={"clusters": [
            {"name": "a", "weight": 1, "host_rewrite_literal": "wc.example",
             "request_headers_to_add": [{"header": {"key": "x-wc", "value": "a"}}],
             "request_headers_to_remove": ["x-gone"],
             "response_headers_to_add": [{"header": {"key": "x-wc-resp", "value": "a"}}],
             "response_headers_to_remove": ["x-origin"]}]}),
        {"match": {"prefix": "/big"}, "direct_response": {
            "status": 200, "body": {"inline_string": "b" * 5000}}},
        {**to("/deco/", cluster="a"), "name": "decorated", "decorator": {"operation": "op"}},
    ]


@pytest.fixture(scope="module")
def rewrites(origins, start_proxy):
    dns = cluster("dns", [], type="STRICT_DNS", dns_lookup_family="V4_ONLY")
    dns["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "localhost", "port_value": origins["a"].port}}}}]}]
    config = bootstrap(free_port(), _rewrite_routes(), [cluster("a", [origins["a"].port]), dns],
                       hcm_extra={"tracing": {}},
                       listener_extra={"traffic_direction": "INBOUND"})
    config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["max_direct_response_body_size_bytes"] = 6000
    return start_proxy(config)


def test_host_rewrite_literal_appends_x_forwarded_host(rewrites):
    echo = get(rewrites, "/xfh/x", headers=[("x-forwarded-host", "first.example")]).echo()
    assert echo.header_all("host") == ["lit.example"]
    assert echo.header_all("x-forwarded-host") == ["first.example,example.com"]
    assert echo.header_all("x-envoy-original-host") == ["example.com"]


def test_host_rewrite_header(rewrites):
    echo = get(rewrites, "/hrh/x", headers=[("x-host", "from-header.example")]).echo()
    assert echo.header_all("host") == ["from-header.example"]
    assert echo.header_all("x-forwarded-host") == ["example.com"]
    echo = get(rewrites, "/hrh/x").echo()  # no such header: the Host stays
    assert echo.header_all("host") == ["example.com"]
    assert "x-forwarded-host" not in echo.names()


def test_host_rewrite_path_regex(rewrites):
    echo = get(rewrites, "/hrr/orders/1?q=1").echo()
    assert echo.header_all("host") == ["orders.svc"]
    assert echo.path == "/hrr/orders/1?q=1"


def test_auto_host_rewrite_uses_the_dns_name(rewrites):
    echo = get(rewrites, "/auto-dns/x").echo()
    assert echo.header_all("host") == ["localhost"]
    assert echo.header_all("x-forwarded-host") == ["example.com"]
    # A STATIC endpoint without a hostname has none to rewrite to.
    assert get(rewrites, "/auto-static/x").echo().header_all("host") == ["example.com"]


def test_weighted_cluster_header_mutations_and_host_rewrite(rewrites):
    response = get(rewrites, "/wc/x", headers=[("x-gone", "1")])
    echo = response.echo()
    assert echo.header_all("host") == ["wc.example"]
    assert echo.header_all("x-wc") == ["a"]
    assert "x-gone" not in echo.names()
    assert "x-envoy-original-host" not in echo.names()  # a weighted cluster's rewrite keeps none
    assert response.header_all("x-wc-resp") == ["a"]
    assert response.header("x-origin") is None


def test_max_direct_response_body_size_bytes_allows_a_larger_body(rewrites):
    response = get(rewrites, "/big")
    assert response.status == 200 and response.body == b"b" * 5000


def test_route_decorator_and_tracing_are_accepted_and_change_nothing(rewrites):
    response = get(rewrites, "/deco/x")
    assert response.status == 200
    assert response.echo().path == "/deco/x"
