"""The compiled route table: virtual hosts, route matching, actions and rewrites."""

from __future__ import annotations

from collections import Counter

import pytest
from route_helpers import req, routes, table

from outrider.router.header_mutation import FormatterContext
from outrider.router.route_table import RouteConfigError, RouteTable

# --- virtual host selection -------------------------------------------------------------------

DOMAINS = """
name: rc
virtual_hosts:
- {name: exact, domains: [api.foo.com, "api.foo.com:8443"], routes: []}
- {name: suffix, domains: ["*.foo.com"], routes: []}
- {name: longer_suffix, domains: ["*-bar.foo.com"], routes: []}
- {name: prefix, domains: ["api.*"], routes: []}
- {name: longer_prefix, domains: ["api.foo.*"], routes: []}
- {name: mixed_case, domains: [Shop.Example.COM], routes: []}
- {name: default, domains: ["*"], routes: []}
"""


@pytest.mark.parametrize(("authority", "vhost"), [
    ("api.foo.com", "exact"),
    ("API.FOO.COM", "exact"),  # authority is lowercased
    ("shop.example.com", "mixed_case"),  # domains are lowercased
    ("api.foo.com:8443", "exact"),  # exact host including the port first
    ("www.foo.com", "suffix"),
    ("baz-bar.foo.com", "longer_suffix"),  # longest suffix wildcard wins
    ("x.baz-bar.foo.com", "longer_suffix"),
    ("api.foo.org", "longer_prefix"),  # suffixes before prefixes; longest prefix wins
    ("api.other", "prefix"),
    (".foo.com", "default"),  # a wildcard matches at least one character
    ("-bar.foo.com", "suffix"),  # '*-bar' needs one char, '*.foo.com' is then tried
    ("api.", "default"),
    ("other.org", "default"),
    ("api.foo.com:9000", "longer_prefix"),  # no port stripping: falls to prefix wildcards
    ("www.foo.com:80", "default"),  # ports are not stripped by default
    ("", "default"),
])
def test_domain_precedence(authority: str, vhost: str) -> None:
    found = table(DOMAINS).find_virtual_host(authority)
    assert found is not None and found.name == vhost


def test_no_default_virtual_host_means_no_route() -> None:
    rt = table("""
        virtual_hosts:
        - {name: a, domains: [a.com], routes: [{match: {prefix: /}, route: {cluster: c}}]}
    """)
    assert rt.find_virtual_host("b.com") is None
    assert rt.route(req("/", authority="b.com")) is None
    assert rt.route(req("/", authority="a.com")).cluster_name == "c"


def test_ignore_port_in_host_matching() -> None:
    config = """
        ignore_port_in_host_matching: true
        virtual_hosts:
        - {name: a, domains: [a.com], routes: []}
        - {name: v6, domains: ["[::1]"], routes: []}
        - {name: d, domains: ["*"], routes: []}
    """
    rt = table(config)
    assert rt.find_virtual_host("a.com:8080").name == "a"
    assert rt.find_virtual_host("[::1]:8080").name == "v6"
    assert rt.find_virtual_host("[::1]").name == "v6"  # the IPv6 colons are not a port


def test_strip_port_fallback_is_opt_in() -> None:
    config = """
        virtual_hosts:
        - {name: a, domains: [a.com], routes: []}
        - {name: ap, domains: ["a.com:1"], routes: []}
        - {name: d, domains: ["*"], routes: []}
    """
    assert table(config).find_virtual_host("a.com:8080").name == "d"
    fallback = table(config, strip_port_fallback=True)
    assert fallback.find_virtual_host("a.com:8080").name == "a"
    assert fallback.find_virtual_host("a.com:1").name == "ap"  # exact with port first
    assert fallback.find_virtual_host("b.com:8080").name == "d"


@pytest.mark.parametrize(("domains", "message"), [
    ('[{name: a, domains: [x.com]}, {name: b, domains: [X.com]}]', "duplicate domain 'x.com'"),
    ('[{name: a, domains: ["*.x.com"]}, {name: b, domains: ["*.x.com"]}]', "duplicate"),
    ('[{name: a, domains: ["x.*"]}, {name: b, domains: ["x.*"]}]', "duplicate"),
    ('[{name: a, domains: ["*"]}, {name: b, domains: ["*"]}]', "single wildcard"),
])
def test_duplicate_domains_are_config_errors(domains: str, message: str) -> None:
    with pytest.raises(RouteConfigError, match=message):
        table(f"{{name: rc, virtual_hosts: {domains}}}")


# --- route matching ---------------------------------------------------------------------------


def test_first_match_wins_dead_captures_deadretry() -> None:
    rt = routes("""
        - {name: dead, match: {prefix: /dead}, route: {cluster: dead}}
        - {name: deadretry, match: {prefix: /deadretry}, route: {cluster: retry}}
        - {name: rest, match: {prefix: /}, route: {cluster: rest}}
    """)
    assert rt.route(req("/deadretry")).name == "dead"
    assert rt.route(req("/dea")).name == "rest"


@pytest.mark.parametrize(("match", "path", "expected"), [
    ("{prefix: /api}", "/api/v1?x=1", True),
    ("{prefix: /api}", "/API/v1", False),
    ("{prefix: /api, case_sensitive: false}", "/API/v1", True),
    ("{prefix: '/api?x'}", "/api?x=1", False),  # the query string is never matched
    ("{path: /exact}", "/exact", True),
    ("{path: /exact}", "/exact?q=1", True),
    ("{path: /exact}", "/exact#frag", True),
    ("{path: /exact}", "/exact/", False),
    ("{path: /exact}", "/EXACT", False),
    ("{path: /exact, case_sensitive: false}", "/EXACT", True),
    ("{safe_regex: {regex: '/v[0-9]+/users'}}", "/v2/users?id=3", True),
    ("{safe_regex: {regex: '/v[0-9]+'}}", "/v2/users", False),  # whole path
    ("{safe_regex: {regex: '/V[0-9]+'}, case_sensitive: false}", "/v2", False),  # n/a to regex
    ("{path_separated_prefix: /psp}", "/psp", True),
    ("{path_separated_prefix: /psp}", "/psp/x", True),
    ("{path_separated_prefix: /psp}", "/psp?q", True),
    ("{path_separated_prefix: /psp}", "/pspx", False),
    ("{path_separated_prefix: /psp, case_sensitive: false}", "/PSP/x", True),
])
def test_path_specifiers(match: str, path: str, expected: bool) -> None:
    rt = routes(f"[{{match: {match}, route: {{cluster: c}}}}]")
    assert (rt.route(req(path)) is not None) is expected


def test_ignore_path_parameters_in_path_matching() -> None:
    rt = routes("[{match: {path: /a/b}, route: {cluster: c}}]",
                ignore_path_parameters_in_path_matching=True)
    assert rt.route(req("/a/b;jsessionid=1?x")) is not None
    assert routes("[{match: {path: /a/b}, route: {cluster: c}}]").route(req("/a/b;j=1")) is None


def test_route_entry_matches_agrees_with_the_table() -> None:
    rt = routes("""
        - {name: a, match: {path: /a/b, headers: [{name: x-k, present_match: true}]}, route: {cluster: c}}
        - {name: b, match: {prefix: /}, route: {cluster: c}}
    """, ignore_path_parameters_in_path_matching=True)
    first = rt.virtual_hosts[0].routes[0]
    assert first.matches(req("/a/b;p=1?q", headers=[("x-k", "v")]))
    assert not first.matches(req("/a/b;p=1?q"))
    assert not first.matches(req("/a/c", headers=[("x-k", "v")]))


def test_path_separated_prefix_with_trailing_slash_is_rejected() -> None:
    with pytest.raises(RouteConfigError, match="path_separated_prefix"):
        routes("[{match: {path_separated_prefix: /psp/}, route: {cluster: c}}]")


def test_header_and_query_conditions_are_anded() -> None:
    rt = routes("""
        - name: canary
          match:
            prefix: /
            headers: [{name: x-canary, string_match: {exact: "1"}}]
            query_parameters: [{name: v, string_match: {exact: "2"}}]
          route: {cluster: canary}
        - {name: stable, match: {prefix: /}, route: {cluster: stable}}
    """)
    assert rt.route(req("/?v=2", headers=[("x-canary", "1")])).name == "canary"
    assert rt.route(req("/?v=2")).name == "stable"
    assert rt.route(req("/?v=3", headers=[("x-canary", "1")])).name == "stable"


def test_grpc_connect_and_runtime_fraction() -> None:
    rt = routes("""
        - {name: grpc, match: {prefix: /, grpc: {}}, route: {cluster: g}}
        - {name: connect, match: {connect_matcher: {}}, route: {cluster: t}}
        - name: ten_percent
          match: {prefix: /, runtime_fraction: {default_value: {numerator: 10}}}
          route: {cluster: canary}
        - {name: rest, match: {prefix: /}, route: {cluster: rest}}
    """)
    assert rt.route(req(headers=[("content-type", "application/grpc")])).name == "grpc"
    assert rt.route(req("/", method="CONNECT")).name == "connect"
    assert rt.route(req("/"), random_value=5).name == "ten_percent"
    assert rt.route(req("/"), random_value=110).name == "rest"  # 110 % 100 = 10, not < 10


def test_unsupported_match_criteria_never_match() -> None:
    rt = routes("""
        - name: meta
          match: {prefix: /, dynamic_metadata: [{filter: f, path: [{key: k}], value: {present_match: true}}]}
          route: {cluster: m}
        - name: cert
          match: {prefix: /, tls_context: {presented: true}}
          route: {cluster: t}
        - {name: no_cert, match: {prefix: /, tls_context: {presented: false}}, route: {cluster: n}}
    """)
    assert rt.route(req("/")).name == "no_cert"


def test_require_tls_redirects_plain_http() -> None:
    rt = table("""
        virtual_hosts:
        - name: secure
          domains: ["*"]
          require_tls: ALL
          routes: [{match: {prefix: /}, route: {cluster: c}}]
        - name: ext
          domains: [ext.com]
          require_tls: EXTERNAL_ONLY
          routes: [{match: {prefix: /}, route: {cluster: c}}]
    """)
    entry = rt.route(req("/a?b", authority="x.com:8080"))
    assert entry.kind == "redirect" and entry.redirect_status == 301
    assert entry.redirect_location(req("/a?b", authority="x.com:8080")) == "https://x.com:8080/a?b"
    assert rt.route(req("/", headers=[("x-forwarded-proto", "https")])).kind == "route"
    assert rt.route(req("/", scheme="https")).kind == "route"
    internal = req("/", authority="ext.com", headers=[("x-envoy-internal", "true")])
    assert rt.route(internal).kind == "route"
    assert rt.route(req("/", authority="ext.com")).kind == "redirect"


# --- cluster selection ------------------------------------------------------------------------


def test_cluster_and_cluster_header() -> None:
    rt = routes("""
        - {match: {prefix: /static}, route: {cluster: static}}
        - {match: {prefix: /}, route: {cluster_header: X-Cluster, cluster_not_found_response_code: NOT_FOUND}}
    """)
    assert rt.route(req("/static")).pick_cluster(req(), 0) == "static"
    entry = rt.route(req("/dyn"))
    assert entry.cluster_header == "x-cluster"
    assert entry.pick_cluster(req(headers=[("x-cluster", "blue"), ("x-cluster", "red")]), 0) == "blue"
    assert entry.pick_cluster(req(), 0) is None
    assert entry.pick_cluster(req(headers=[("x-cluster", "")]), 0) is None
    assert entry.cluster_not_found_response_code == 404
    assert rt.route(req("/static")).cluster_not_found_response_code == 503


WEIGHTED = """
- match: {prefix: /}
  route:
    weighted_clusters:
      clusters:
      - {name: a, weight: 80}
      - {name: b, weight: 20}
      - {name: never, weight: 0}
"""


def test_weighted_clusters_walk_cumulative_weights() -> None:
    entry = routes(WEIGHTED).route(req())
    assert entry.total_weight == 100
    picks = [entry.pick_cluster(req(), v) for v in (0, 79, 80, 99, 100, 179, 180)]
    assert picks == ["a", "a", "b", "b", "a", "a", "b"]
    counts = Counter(entry.pick_cluster(req(), v) for v in range(10_000))
    assert counts == {"a": 8000, "b": 2000}


def test_weighted_clusters_with_random_source() -> None:
    import random

    rng = random.Random(7)
    entry = routes(WEIGHTED).route(req())
    counts = Counter(entry.pick_cluster(req(), rng.getrandbits(63)) for _ in range(20_000))
    assert 0.78 < counts["a"] / 20_000 < 0.82
    assert "never" not in counts


def test_weighted_cluster_header_name_and_cluster_header_entries() -> None:
    entry = routes("""
        - match: {prefix: /}
          route:
            weighted_clusters:
              header_name: x-random
              total_weight: 10
              clusters:
              - {name: a, weight: 5}
              - {cluster_header: x-target, weight: 5}
    """).route(req())
    assert entry.total_weight == 10  # the sum of weights; total_weight is ignored
    assert entry.pick_cluster(req(headers=[("x-random", "7")]), 0) is None  # header absent
    assert entry.pick_cluster(req(headers=[("x-random", "7"), ("x-target", "t")]), 0) == "t"
    assert entry.pick_cluster(req(headers=[("x-random", "2")]), 9) == "a"
    # not a single unsigned integer: the caller's random value is used
    assert entry.pick_cluster(req(headers=[("x-random", "-1")]), 3) == "a"


@pytest.mark.parametrize(("clusters", "message"), [
    ("[{name: a, weight: 0}]", "greater than 0"),
    ("[{name: a, weight: 4294967295}, {name: b, weight: 1}]", "exceeds"),
    ("[{weight: 1}]", "exactly one of name or cluster_header"),
    ("[{name: a, cluster_header: x, weight: 1}]", "exactly one of name or cluster_header"),
])
def test_weighted_cluster_config_errors(clusters: str, message: str) -> None:
    with pytest.raises(RouteConfigError, match=message):
        routes(f"[{{name: r1, match: {{prefix: /}}, route: {{weighted_clusters: "
               f"{{clusters: {clusters}}}}}}}]")


# --- timeouts and raw policies ----------------------------------------------------------------


@pytest.mark.parametrize(("action", "timeout", "idle"), [
    ("{cluster: c}", 15.0, None),
    ("{cluster: c, timeout: 0s}", None, None),
    ("{cluster: c, timeout: 2.5s, idle_timeout: 30s}", 2.5, 30.0),
    ("{cluster: c, idle_timeout: 0s}", 15.0, 0.0),
    ("{cluster: c, timeout: 0.0004s}", None, None),  # millisecond granularity, as Envoy
])
def test_timeouts(action: str, timeout: float | None, idle: float | None) -> None:
    entry = routes(f"[{{match: {{prefix: /}}, route: {action}}}]").route(req())
    assert entry.timeout == timeout
    assert entry.idle_timeout == idle


def test_raw_policies_are_kept_route_over_vhost() -> None:
    rt = table("""
        request_mirror_policies: [{cluster: mirror_rc}]
        virtual_hosts:
        - name: vh
          domains: ["*"]
          retry_policy: {retry_on: 5xx, num_retries: 3}
          hedge_policy: {hedge_on_per_try_timeout: true}
          typed_per_filter_config:
            f1: {"@type": type.googleapis.com/google.protobuf.Empty}
          routes:
          - match: {prefix: /own}
            typed_per_filter_config:
              f2: {"@type": type.googleapis.com/google.protobuf.Empty}
            route:
              cluster: c
              retry_policy: {retry_on: reset}
              hash_policy: [{header: {header_name: x-user}}]
              request_mirror_policies: [{cluster: mirror_route}]
          - match: {prefix: /}
            route: {cluster: c}
    """)
    own, inherited = rt.route(req("/own")), rt.route(req("/x"))
    assert own.retry_policy_proto.retry_on == "reset"
    assert inherited.retry_policy_proto.retry_on == "5xx"
    assert inherited.retry_policy_proto.num_retries.value == 3
    assert own.hedge_policy_proto.hedge_on_per_try_timeout
    assert [p.header.header_name for p in own.hash_policy] == ["x-user"]
    assert inherited.hash_policy == []
    assert [m.cluster for m in own.request_mirror_policies] == ["mirror_route"]
    assert [m.cluster for m in inherited.request_mirror_policies] == ["mirror_rc"]
    assert sorted(own.typed_per_filter_config) == ["f1", "f2"]
    assert sorted(inherited.typed_per_filter_config) == ["f1"]
    assert own.virtual_host.name == "vh"


# --- rewrites ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("match", "action", "path", "new_path"), [
    ("{prefix: /api/}", "{prefix_rewrite: /}", "/api/users?id=1", "/users?id=1"),
    ("{prefix: /api, case_sensitive: false}", "{prefix_rewrite: /v2}", "/API/x", "/v2/x"),
    ("{path: /old}", "{prefix_rewrite: /new}", "/old?q=1", "/new?q=1"),
    ("{path_separated_prefix: /psp}", "{prefix_rewrite: /x}", "/psp/a", "/x/a"),
    ("{safe_regex: {regex: '/s/.*'}}", "{prefix_rewrite: /all}", "/s/a?q", "/all?q"),
    ("{prefix: /}", ("{regex_rewrite: {pattern: {regex: '^/service/([^/]+)(/.*)$'}, "
     "substitution: '\\2/instance/\\1'}}"), "/service/foo/v1/api?x=1", "/v1/api/instance/foo?x=1"),
    ("{prefix: /}", "{regex_rewrite: {pattern: {regex: 'one'}, substitution: two}}",
     "/one/one?one", "/two/two?one"),
])
def test_path_rewrites_keep_query_and_record_original(match: str, action: str, path: str,
                                                      new_path: str) -> None:
    action = action[:-1] + ", cluster: c}"
    entry = routes(f"[{{match: {match}, route: {action}}}]").route(req(path))
    headers = req(path)
    entry.rewrite_request(headers)
    assert headers.path == new_path
    assert headers.get("x-envoy-original-path") == path


def test_no_rewrite_leaves_path_and_headers_alone() -> None:
    entry = routes("[{match: {prefix: /}, route: {cluster: c}}]").route(req())
    headers = req("/a?b")
    entry.rewrite_request(headers)
    assert headers.path == "/a?b" and headers.items() == []


def test_suppressed_envoy_headers() -> None:
    entry = routes("[{match: {prefix: /a}, route: {cluster: c, prefix_rewrite: /b, "
                   "host_rewrite_literal: new.host}}]").route(req("/a"))
    headers = req("/a", authority="old.host")
    entry.rewrite_request(headers, insert_envoy_headers=False)
    assert (headers.path, headers.authority, headers.items()) == ("/b", "new.host", [])


def test_host_rewrites() -> None:
    rt = routes("""
        - match: {prefix: /lit}
          route: {cluster: c, host_rewrite_literal: backend.internal, append_x_forwarded_host: true}
        - match: {prefix: /hdr}
          route: {cluster: c, host_rewrite_header: X-Host}
        - match: {prefix: /re}
          route:
            cluster: c
            host_rewrite_path_regex: {pattern: {regex: '^/re/([^/]+).*$'}, substitution: '\\1.svc'}
    """)
    headers = req("/lit", authority="public.com")
    rt.route(headers).rewrite_request(headers)
    assert headers.authority == "backend.internal"
    assert headers.get("x-forwarded-host") == "public.com"
    assert headers.get("x-envoy-original-host") == "public.com"
    rt.route(headers).rewrite_request(headers)  # x-forwarded-host is appended idempotently
    assert headers.get_all("x-forwarded-host") == ["public.com,backend.internal"]

    headers = req("/hdr", authority="a.com", headers=[("x-host", "b.com")])
    rt.route(headers).rewrite_request(headers)
    assert headers.authority == "b.com" and headers.get("x-forwarded-host") is None
    headers = req("/hdr", authority="a.com")
    rt.route(headers).rewrite_request(headers)
    assert headers.authority == "a.com"  # header absent: no rewrite

    headers = req("/re/orders/1?x", authority="a.com")
    rt.route(headers).rewrite_request(headers)
    assert headers.authority == "orders.svc"


def test_host_rewrite_keeps_the_old_host_before_appending_it_to_x_forwarded_host() -> None:
    # Envoy's Utility::updateAuthority order; a client's x-forwarded-host keeps its place.
    rt = routes("[{match: {prefix: /}, route: {cluster: c, host_rewrite_literal: new.host, "
                "append_x_forwarded_host: true}}]")
    headers = req("/", authority="old.host")
    rt.route(headers).rewrite_request(headers)
    assert headers.items() == [("x-envoy-original-host", "old.host"),
                               ("x-forwarded-host", "old.host")]
    headers = req("/", authority="old.host", headers=[("x-forwarded-host", "first.host")])
    rt.route(headers).rewrite_request(headers)
    assert headers.items() == [("x-forwarded-host", "first.host,old.host"),
                               ("x-envoy-original-host", "old.host")]


class _Host:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname


def test_auto_host_rewrite_uses_the_chosen_hosts_hostname() -> None:
    rt = routes("[{match: {prefix: /}, route: {cluster: c, auto_host_rewrite: true, "
                "append_x_forwarded_host: true}}]")
    entry = rt.route(req())
    assert entry.rewrites_request
    headers = req("/", authority="public.com")
    entry.rewrite_request(headers, host=_Host("svc.internal"))
    assert headers.authority == "svc.internal"
    assert headers.items() == [("x-envoy-original-host", "public.com"),
                               ("x-forwarded-host", "public.com")]
    headers = req("/", authority="public.com")
    entry.rewrite_request(headers, host=_Host(""))  # a STATIC host without a hostname
    assert headers.authority == "public.com" and headers.items() == []


def test_auto_host_rewrite_false_rewrites_nothing() -> None:
    entry = routes("[{match: {prefix: /}, route: {cluster: c, auto_host_rewrite: false}}]"
                   ).route(req())
    assert not entry.rewrites_request
    headers = req("/", authority="public.com")
    entry.rewrite_request(headers, host=_Host("svc.internal"))
    assert headers.authority == "public.com"


def test_weighted_cluster_mutations_alone_are_applied() -> None:
    # The router skips the mutation calls on routes whose flags are off: a weighted cluster
    # carrying the route's only mutations must turn them on.
    entry = routes("""
        - match: {prefix: /}
          route:
            weighted_clusters:
              clusters:
              - name: a
                weight: 1
                request_headers_to_add: [{header: {key: x-wc, value: a}}]
                response_headers_to_remove: [x-drop]
    """).route(req())
    assert entry.mutates_request and entry.mutates_response
    assert not routes("[{match: {prefix: /}, route: {weighted_clusters: {clusters: "
                      "[{name: a, weight: 1}]}}}]").route(req()).mutates_request


def test_weighted_cluster_host_rewrite_yields_to_route_level() -> None:
    entry = routes("""
        - match: {prefix: /}
          route:
            weighted_clusters:
              clusters: [{name: a, weight: 1, host_rewrite_literal: a.internal}]
    """).route(req())
    headers = req(authority="public.com")
    entry.rewrite_request(headers, weighted_cluster=entry.pick_weighted_cluster(headers, 0))
    assert headers.authority == "a.internal"


def test_two_path_rewrites_are_a_config_error() -> None:
    with pytest.raises(RouteConfigError, match="only one of prefix_rewrite"):
        routes("[{match: {prefix: /}, route: {cluster: c, prefix_rewrite: /x, regex_rewrite: "
               "{pattern: {regex: a}, substitution: b}}}]")


def test_bad_regex_names_virtual_host_and_route() -> None:
    with pytest.raises(RouteConfigError, match=r"virtual host 'vh' route 'broken'.*invalid regex"):
        routes("[{name: broken, match: {safe_regex: {regex: '(('}}, route: {cluster: c}}]")


# --- redirects and direct responses -----------------------------------------------------------


@pytest.mark.parametrize(("redirect", "request_", "location", "status"), [
    ("{https_redirect: true}", ("/a?b=1", "foo.com"), "https://foo.com/a?b=1", 301),
    ("{https_redirect: true}", ("/a", "foo.com:80"), "https://foo.com/a", 301),  # default port
    ("{https_redirect: true}", ("/a", "foo.com:8080"), "https://foo.com:8080/a", 301),
    ("{scheme_redirect: https, port_redirect: 8443}", ("/a", "foo.com:80"),
     "https://foo.com:8443/a", 301),
    ("{host_redirect: new.com}", ("/a?x", "foo.com"), "http://new.com/a?x", 301),
    ("{host_redirect: new.com, port_redirect: 81}", ("/a", "foo.com:90"), "http://new.com:81/a",
     301),
    ("{port_redirect: 81}", ("/a", "foo.com:90"), "http://foo.com:81/a", 301),
    ("{port_redirect: 81}", ("/a", "[::1]:90"), "http://[::1]:81/a", 301),
    ("{path_redirect: /new, response_code: FOUND}", ("/old?x=1", "h"), "http://h/new?x=1", 302),
    ("{path_redirect: '/new?y=2', strip_query: true}", ("/old?x=1", "h"), "http://h/new?y=2",
     301),  # a path_redirect with a query keeps it, whatever strip_query says
    ("{path_redirect: /new, strip_query: true, response_code: SEE_OTHER}", ("/old?x=1", "h"),
     "http://h/new", 303),
    ("{prefix_rewrite: /v2/, response_code: TEMPORARY_REDIRECT}", ("/v1/a?q", "h"),
     "http://h/v2/a?q", 307),
    (("{regex_rewrite: {pattern: {regex: '^/v1/(\\w+)/x$'}, substitution: '/x/\\1'}, "
     "response_code: PERMANENT_REDIRECT}"), ("/v1/abc/x?q", "h"), "http://h/x/abc?q", 308),
    ("{strip_query: true, host_redirect: h2}", ("/v1/a?q=1", "h"), "http://h2/v1/a", 301),
])
def test_redirects(redirect: str, request_: tuple[str, str], location: str, status: int) -> None:
    match = "{prefix: /v1/}" if "rewrite" in redirect else "{prefix: /}"
    rt = routes(f"[{{match: {match}, redirect: {redirect}}}]")
    path, authority = request_
    entry = rt.route(req(path, authority=authority))
    assert entry.kind == "redirect" and entry.adds_location
    headers = req(path, authority=authority)
    assert entry.redirect_location(headers) == location
    assert entry.redirect_status == status
    assert headers.path == path  # computing the location does not touch the request


def test_redirect_uses_the_request_scheme() -> None:
    entry = routes("[{match: {prefix: /}, redirect: {host_redirect: b.com}}]").route(req())
    assert entry.redirect_location(req("/x", scheme="https")) == "https://b.com/x"


def test_direct_responses() -> None:
    rt = routes("""
        - {match: {path: /health}, direct_response: {status: 200, body: {inline_string: ok}}}
        - {match: {path: /bytes}, direct_response: {status: 503, body: {inline_bytes: AAEC}}}
        - {match: {path: /empty}, direct_response: {status: 204}}
        - {match: {path: /moved}, direct_response: {status: 301}}
    """)
    health = rt.route(req("/health"))
    assert (health.kind, health.direct_status, health.direct_body) == ("direct_response", 200,
                                                                      b"ok")
    assert not health.adds_location
    assert rt.route(req("/bytes")).direct_body == b"\x00\x01\x02"
    assert rt.route(req("/empty")).direct_body == b""
    moved = rt.route(req("/moved"))
    assert moved.adds_location
    assert moved.redirect_location(req("/moved?x", authority="h:80")) == "http://h:80/moved?x"
    assert health.pick_cluster(req(), 0) is None and health.timeout is None


def test_direct_response_body_limits() -> None:
    big = "x" * 4097
    with pytest.raises(RouteConfigError, match="maximum is 4096"):
        routes(f"[{{match: {{prefix: /}}, direct_response: {{status: 200, body: "
               f"{{inline_string: {big}}}}}}}]")
    entry = routes(f"[{{match: {{prefix: /}}, direct_response: {{status: 200, body: "
                   f"{{inline_string: {big}}}}}}}]",
                   max_direct_response_body_size_bytes=5000).route(req())
    assert len(entry.direct_body) == 4097
    with pytest.raises(RouteConfigError, match="status 99"):
        routes("[{match: {prefix: /}, direct_response: {status: 99}}]")


def test_direct_response_body_from_file(tmp_path) -> None:
    body = tmp_path / "body.txt"
    body.write_bytes(b"from file")
    entry = routes(f"[{{match: {{prefix: /}}, direct_response: {{status: 200, body: "
                   f"{{filename: '{body}'}}}}}}]").route(req())
    assert entry.direct_body == b"from file"
    with pytest.raises(RouteConfigError, match="response body file"):
        routes("[{match: {prefix: /}, direct_response: {status: 200, body: "
               "{filename: /nonexistent/x}}}]")


def test_non_forwarding_action() -> None:
    entry = routes("[{match: {prefix: /}, non_forwarding_action: {}}]").route(req())
    assert entry.kind == "non_forwarding" and entry.pick_cluster(req(), 0) is None


def test_route_without_action_is_a_config_error() -> None:
    with pytest.raises(RouteConfigError, match="no action"):
        routes("[{match: {prefix: /}}]")


# --- header mutations across levels -----------------------------------------------------------

LEVELS = """
name: rc
request_headers_to_add:
- {header: {key: x-level, value: config}}
- {header: {key: x-only-config, value: c}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
response_headers_to_add:
- {header: {key: x-level, value: config}}
virtual_hosts:
- name: vh
  domains: ["*"]
  request_headers_to_add:
  - {header: {key: x-level, value: vhost}}
  - {header: {key: x-only-config, value: v}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  request_headers_to_remove: [x-drop-vh]
  response_headers_to_add:
  - {header: {key: x-level, value: vhost}}
  routes:
  - match: {prefix: /}
    request_headers_to_add:
    - {header: {key: x-level, value: route}}
    request_headers_to_remove: [x-drop-route]
    response_headers_to_add:
    - {header: {key: x-level, value: route}}
    response_headers_to_remove: [server]
    route:
      weighted_clusters:
        clusters:
        - name: a
          weight: 1
          request_headers_to_add: [{header: {key: x-level, value: cluster}}]
          response_headers_to_add: [{header: {key: x-level, value: cluster}}]
"""


def test_request_mutations_most_specific_first() -> None:
    from outrider.http.headers import ResponseHeaders

    entry = table(LEVELS).route(req())
    headers = req(headers=[("x-drop-route", "1"), ("x-drop-vh", "1"), ("x-keep", "1")])
    entry.finalize_request_headers(headers, FormatterContext(),
                                   weighted_cluster=entry.pick_weighted_cluster(headers, 0))
    assert headers.get_all("x-level") == ["cluster", "route", "vhost", "config"]
    assert headers.get_all("x-only-config") == ["c"]  # the least specific level wins by default
    assert "x-drop-route" not in headers and "x-drop-vh" not in headers
    assert headers.get("x-keep") == "1"

    response = ResponseHeaders(200, [("server", "upstream")])
    entry.finalize_response_headers(response, FormatterContext(request_headers=headers))
    assert response.get_all("x-level") == ["route", "vhost", "config"]
    assert "server" not in response


def test_most_specific_header_mutations_wins_reverses_the_order() -> None:
    rt = table(LEVELS.replace("name: rc", "name: rc\nmost_specific_header_mutations_wins: true",
                              1))
    entry = rt.route(req())
    headers = req()
    entry.finalize_request_headers(headers, FormatterContext())
    assert headers.get_all("x-level") == ["config", "vhost", "route"]
    assert headers.get_all("x-only-config") == ["v"]


def test_mutations_of_pseudo_headers_or_host_are_config_errors() -> None:
    for field, name in (("request_headers_to_add", "{header: {key: ':path', value: x}}"),
                        ("request_headers_to_add", "{header: {key: Host, value: x}}"),
                        ("response_headers_to_add", "{header: {key: ':status', value: x}}")):
        with pytest.raises(RouteConfigError, match=r"virtual host 'vh'.*may not be modified"):
            routes(f"[{{match: {{prefix: /}}, route: {{cluster: c}}, {field}: [{name}]}}]")
    for name in (":authority", "host"):
        with pytest.raises(RouteConfigError, match="may not be removed"):
            table(f"{{request_headers_to_remove: ['{name}'], virtual_hosts: []}}")


def test_empty_table_routes_nothing() -> None:
    rt = RouteTable.from_proto(__import__("route_helpers").route_config("{name: empty}"))
    assert rt.route(req()) is None and rt.find_virtual_host("a") is None
