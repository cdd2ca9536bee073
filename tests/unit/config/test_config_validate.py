"""validate(): unimplemented fields and extensions, and the semantic checks."""

from __future__ import annotations

import pytest
from cfg_helpers import BASE_YAML, HCM_PATH, ROUTE_PATH, ROUTER_FILTER, edit, line_containing

from outrider.config import supported
from outrider.config.errors import ConfigIssue
from outrider.config.loader import load_bootstrap
from outrider.config.validate import has_errors, unservable_listeners, validate

CORS_FILTER = """\
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
"""
SECOND_LISTENER = """\
  - name: {name}
    address:
      socket_address: {{address: 0.0.0.0, port_value: {port}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: second
          route_config: {{name: r2}}
          http_filters:
""" + ROUTER_FILTER


def issues_of(write, text: str, **kwargs) -> list[ConfigIssue]:
    return validate(load_bootstrap(write(text)), **kwargs)


def only_issue(issues: list[ConfigIssue]) -> ConfigIssue:
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


def test_good_config_has_no_issues(write):
    assert issues_of(write, BASE_YAML) == []


def test_unimplemented_field_reported_with_path_and_line(write):
    text = edit(BASE_YAML, "    type: STATIC\n",
                "    type: STATIC\n    outlier_detection:\n      consecutive_5xx: 3\n")
    issue = only_issue(issues_of(write, text))
    assert issue.severity == "error"
    assert issue.field_path == "static_resources.clusters[0].outlier_detection"
    assert issue.line == line_containing(text, "outlier_detection")
    assert str(issue) == (f"{issue.path}:{issue.line}: error: static_resources.clusters[0]."
                          "outlier_detection: not implemented by Outrider yet (it would be ignored)")


def test_unimplemented_field_inside_typed_config(write):
    text = edit(BASE_YAML, "stat_prefix: ingress", "stat_prefix: ingress\n          via: outrider")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == HCM_PATH + ".via"
    assert issue.line == line_containing(text, "via: outrider")


def test_allow_unimplemented_downgrades_only_unimplemented(write):
    text = edit(BASE_YAML, "    type: STATIC\n",
                "    type: STATIC\n    outlier_detection: {consecutive_5xx: 3}\n")
    text = edit(text, "{cluster: backend}", "{cluster: nowhere}")
    strict = issues_of(write, text)
    assert [i.severity for i in strict] == ["error", "error"]
    relaxed = issues_of(write, text, allow_unimplemented=True)
    by_path = {i.field_path: i.severity for i in relaxed}
    assert by_path["static_resources.clusters[0].outlier_detection"] == "warning"
    assert by_path[ROUTE_PATH + ".cluster"] == "error"  # a broken config stays an error
    assert has_errors(relaxed)


def test_accepted_but_ignored_is_a_warning_and_node_is_silent(write):
    text = "node: {id: n1, cluster: c1}\n" + edit(
        BASE_YAML, "admin:\n", "admin:\n  access_log_path: /dev/null\n")
    issue = only_issue(issues_of(write, text))
    assert issue.severity == "warning"
    assert issue.field_path == "admin.access_log_path"
    assert not has_errors([issue])


def test_unimplemented_http_filter_type_is_named(write):
    text = edit(BASE_YAML, ROUTER_FILTER, CORS_FILTER + ROUTER_FILTER)
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == HCM_PATH + ".http_filters[0].typed_config"
    assert "envoy.filters.http.cors" in issue.message
    assert "is not implemented" in issue.message


@pytest.mark.parametrize(("old", "new", "path", "value"), [
    ("type: STATIC", "type: EDS", "static_resources.clusters[0].type", "EDS"),
    ("stat_prefix: ingress", "stat_prefix: ingress\n          codec_type: HTTP2",
     HCM_PATH + ".codec_type", "HTTP2"),
    ("lb_policy: ROUND_ROBIN", ("lb_policy: RING_HASH\n    ring_hash_lb_config: "
     "{hash_function: MURMUR_HASH_2}"), ("static_resources.clusters[0].ring_hash_lb_config"
     ".hash_function"), "MURMUR_HASH_2"),
])
def test_restricted_enum_values(write, old, new, path, value):
    issue = only_issue(issues_of(write, edit(BASE_YAML, old, new)))
    assert issue.field_path == path
    assert issue.message.startswith(f"{value} is not implemented")


def test_router_missing(write):
    text = edit(BASE_YAML, ROUTER_FILTER, CORS_FILTER)
    messages = [i.message for i in issues_of(write, text, allow_unimplemented=True)
                if i.severity == "error"]
    assert any("no envoy.filters.http.router filter" in m for m in messages)


def test_no_http_filters_at_all(write):
    text = edit(BASE_YAML, "          http_filters:\n" + ROUTER_FILTER, "")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == HCM_PATH
    assert "#4045" in issue.message


def test_router_not_last(write):
    text = edit(BASE_YAML, ROUTER_FILTER, ROUTER_FILTER + CORS_FILTER)
    issues = issues_of(write, text, allow_unimplemented=True)
    errors = [i for i in issues if i.severity == "error"]
    assert len(errors) == 1
    assert errors[0].field_path == HCM_PATH + ".http_filters[0]"
    assert "must be the last" in errors[0].message


def test_http_filter_without_typed_config(write):
    text = edit(BASE_YAML, ROUTER_FILTER, "          - name: envoy.filters.http.router\n")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == HCM_PATH + ".http_filters[0]"
    assert "has no typed_config" in issue.message


def test_undefined_cluster(write):
    text = edit(BASE_YAML, "{cluster: backend}", "{cluster: nope}")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == ROUTE_PATH + ".cluster"
    assert issue.message == "unknown cluster 'nope'"
    assert issue.line == line_containing(text, "{cluster: nope}")


def test_undefined_weighted_cluster_and_validate_clusters_false(write):
    text = edit(BASE_YAML, "{cluster: backend}",
                "{weighted_clusters: {clusters: [{name: backend, weight: 1}, {name: gone, weight: 1}]}}")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == ROUTE_PATH + ".weighted_clusters.clusters[1].name"
    relaxed = edit(text, "name: local\n", "name: local\n            validate_clusters: false\n")
    assert issues_of(write, relaxed) == []


def test_weighted_clusters_need_weights_summing_above_zero(write):
    missing = edit(BASE_YAML, "{cluster: backend}", "{weighted_clusters: {clusters: [{name: backend}]}}")
    issues = issues_of(write, missing)
    assert [i.message for i in issues] == [
        "weight is required", "the sum of the weights must be greater than 0"]
    zero = edit(BASE_YAML, "{cluster: backend}",
                "{weighted_clusters: {clusters: [{name: backend, weight: 0}]}}")
    issue = only_issue(issues_of(write, zero))
    assert issue.field_path == ROUTE_PATH + ".weighted_clusters"


def test_duplicate_listener_address(write):
    text = edit(BASE_YAML, "  clusters:\n",
                SECOND_LISTENER.format(name="l1", port=10000) + "  clusters:\n")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == "static_resources.listeners[1].address"
    assert "duplicate listener address 0.0.0.0:10000" in issue.message


def test_duplicate_listener_name(write):
    text = edit(BASE_YAML, "  clusters:\n",
                SECOND_LISTENER.format(name="l0", port=10001) + "  clusters:\n")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == "static_resources.listeners[1].name"


def test_duplicate_cluster_name(write):
    text = BASE_YAML + "  - name: backend\n    connect_timeout: 2s\n"
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == "static_resources.clusters[1].name"
    assert "duplicate cluster 'backend'" in issue.message


def test_static_cluster_with_host_name(write):
    text = edit(BASE_YAML, "{address: 127.0.0.1, port_value: 8080}",
                "{address: backend.local, port_value: 8080}")
    issue = only_issue(issues_of(write, text))
    assert "malformed IP address: backend.local" in issue.message
    assert issues_of(write, edit(text, "type: STATIC", "type: STRICT_DNS")) == []


LB_POLICIES = """\
    load_balancing_policy:
      policies:
{entries}"""
CSWRR = """\
      - typed_extension_config:
          name: cswrr
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin
"""
PEAK_EWMA = """\
      - typed_extension_config:
          name: ewma
          typed_config:
            "@type": type.googleapis.com/xds.type.v3.TypedStruct
            type_url: type.googleapis.com/outrider.lb.peak_ewma
            value: {decay: 10s}
"""
LEAST_REQUEST = """\
      - typed_extension_config:
          name: lr
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest
            choice_count: 3
"""


def with_policies(*entries: str) -> str:
    return edit(BASE_YAML, "    lb_policy: ROUND_ROBIN\n",
                LB_POLICIES.format(entries="".join(entries)))


CONTRIB_PEAK_EWMA = """\
      - typed_extension_config:
          name: contrib
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma
            decay_time: 5s
            aggregation_interval: 0.1s
"""


def test_peak_ewma_typed_struct_and_built_in_policies_are_accepted(write):
    assert issues_of(write, with_policies(PEAK_EWMA)) == []
    assert issues_of(write, with_policies(CONTRIB_PEAK_EWMA)) == []
    assert issues_of(write, with_policies(LEAST_REQUEST)) == []


def test_lb_policy_falls_back_to_the_first_implemented(write):
    text = with_policies(CSWRR, LEAST_REQUEST)
    issue = only_issue(issues_of(write, text))
    assert issue.severity == "warning"
    assert issue.field_path == "static_resources.clusters[0].load_balancing_policy.policies[0]"
    assert "using policies[1]" in issue.message


def test_lb_policy_with_nothing_implemented_is_an_error(write):
    issue = only_issue(issues_of(write, with_policies(CSWRR)))
    assert issue.severity == "error"
    assert "ClientSideWeightedRoundRobin" in issue.message


def test_unimplemented_field_inside_a_chosen_lb_policy(write):
    text = with_policies(LEAST_REQUEST.replace(
        "choice_count: 3", "locality_lb_config: {zone_aware_lb_config: {}}"))
    issue = only_issue(issues_of(write, text))
    assert issue.field_path.endswith("typed_config.locality_lb_config.zone_aware_lb_config")


def test_issues_come_in_file_order(write):
    # The walk visits static_resources before layered_runtime (proto field order), and
    # listeners before clusters; the file has them the other way round.
    text = "layered_runtime: {}\n" + edit(BASE_YAML, "    type: STATIC\n",
                                          "    type: STATIC\n    outlier_detection: {}\n")
    text = edit(text, "stat_prefix: ingress", "stat_prefix: ingress\n          via: x")
    issues = issues_of(write, text)
    assert [i.field_path for i in issues] == [
        "layered_runtime", HCM_PATH + ".via", "static_resources.clusters[0].outlier_detection"]
    assert [i.line for i in issues] == sorted(i.line for i in issues)


def test_register_extension_admits_a_python_filter(write, monkeypatch):
    monkeypatch.setitem(supported.EXTENSIONS, "http_filter", set(supported.EXTENSIONS["http_filter"]))
    python_filter = """\
          - name: my.filter
            typed_config:
              "@type": type.googleapis.com/xds.type.v3.TypedStruct
              type_url: type.googleapis.com/acme.filters.Auth
              value: {module: acme.auth, class: Auth}
"""
    text = edit(BASE_YAML, ROUTER_FILTER, python_filter + ROUTER_FILTER)
    assert "acme.filters.Auth" in only_issue(issues_of(write, text)).message
    supported.register_extension("http_filter", "acme.filters.Auth")
    assert issues_of(write, text) == []


# -- --allow-unimplemented never weakens security (issue 8) -------------------------------------

TLS_SOCKET = """\
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
"""


def _with_http_filter(type_url: str, name: str = "f", config: str = "") -> str:
    return edit(BASE_YAML, ROUTER_FILTER, f"""\
          - name: {name}
            typed_config:
              "@type": type.googleapis.com/{type_url}
""" + "".join(f"              {line}\n" for line in config.splitlines()) + ROUTER_FILTER)


def only_error(issues: list[ConfigIssue]) -> ConfigIssue:
    return only_issue([i for i in issues if i.severity == "error"])


@pytest.mark.parametrize("type_name", [
    "envoy.extensions.filters.http.rbac.v3.RBAC",
    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
    "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
    "envoy.extensions.filters.http.wasm.v3.Wasm",
    "envoy.extensions.filters.http.lua.v3.Lua",
])
def test_filters_that_deny_stay_errors_with_allow_unimplemented(write, type_name):
    issues = issues_of(write, _with_http_filter(type_name), allow_unimplemented=True)
    issue = only_error(issues)
    assert issue.field_path == f"{HCM_PATH}.http_filters[0].typed_config"
    assert "refused even with --allow-unimplemented" in issue.message
    assert "it can deny traffic" in issue.message


def test_filter_that_cannot_deny_is_a_warning_with_allow_unimplemented(write):
    text = _with_http_filter("envoy.extensions.filters.http.cors.v3.Cors")
    assert has_errors(issues_of(write, text))
    issues = issues_of(write, text, allow_unimplemented=True)
    assert not has_errors(issues)
    assert any("envoy.extensions.filters.http.cors.v3.Cors" in i.message for i in issues)


def test_listener_tls_stays_an_error_with_allow_unimplemented(write):
    text = edit(BASE_YAML, ROUTER_FILTER, ROUTER_FILTER + TLS_SOCKET)
    issues = issues_of(write, text, allow_unimplemented=True)
    issue = only_error(issues)
    assert issue.field_path == "static_resources.listeners[0].filter_chains[0].transport_socket"
    assert "DownstreamTlsContext would be ignored" in issue.message
    assert issue.line == line_containing(text, "transport_socket:")


def test_cluster_tls_stays_an_error_with_allow_unimplemented(write):
    text = edit(BASE_YAML, "    lb_policy: ROUND_ROBIN\n", """\
    lb_policy: ROUND_ROBIN
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
""")
    issue = only_issue(issues_of(write, text, allow_unimplemented=True))
    assert issue.severity == "error"
    assert issue.field_path == "static_resources.clusters[0].transport_socket"


@pytest.mark.parametrize(("type_name", "config", "reason"), [
    ("header_mutation.v3.HeaderMutation", "mutations: {request_mutations: [{remove: x-user}]}",
     "it rewrites request headers"),
    ("buffer.v3.Buffer", "max_request_bytes: 1024", "max_request_bytes (413)"),
    ("bandwidth_limit.v3.BandwidthLimit", "stat_prefix: bw\nenable_mode: REQUEST", "throttles"),
    ("mcp.v3.Mcp", "traffic_mode: REJECT_NO_MCP", "REJECT_NO_MCP"),
    ("cdn_loop.v3.CdnLoopConfig", "cdn_id: edge", "looped"),
    ("ip_tagging.v3.IPTagging", "ip_tags: [{ip_tag_name: office, ip_list: [{address_prefix: "
     "10.0.0.0, prefix_len: 8}]}]", "x-envoy-ip-tags"),
])
def test_filters_that_limit_or_set_identity_stay_errors(write, type_name, config, reason):
    text = _with_http_filter(f"envoy.extensions.filters.http.{type_name}", config=config)
    issue = only_error(issues_of(write, text, allow_unimplemented=True))
    assert issue.field_path == f"{HCM_PATH}.http_filters[0].typed_config"
    assert "refused even with --allow-unimplemented" in issue.message and reason in issue.message


@pytest.mark.parametrize(("setting", "reason"), [
    ("internal_address_config: {cidr_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]}",
     "which peers are internal"),
    ("original_ip_detection_extensions:\n          - name: xff\n            typed_config:\n"
     "              \"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection"
     ".custom_header.v3.CustomHeaderConfig\n              header_name: x-real-ip",
     "changes the client address"),
    ("path_normalization_options: {forwarding_transformation: {operations: "
     "[{normalize_path_rfc_3986: {}}]}}", "changes the path that routes match"),
    ("strip_any_host_port: true", "the host that virtual hosts are matched against"),
], ids=["internal_address_config", "original_ip_detection_extensions",
        "path_normalization_options", "strip_any_host_port"])
def test_connection_manager_settings_that_change_trust_stay_errors(write, setting, reason):
    text = edit(BASE_YAML, "stat_prefix: ingress\n", f"stat_prefix: ingress\n          {setting}\n")
    issue = only_error(issues_of(write, text, allow_unimplemented=True))
    assert issue.field_path == f"{HCM_PATH}.{setting.split(':')[0]}"
    assert reason in issue.message


def test_route_match_condition_stays_an_error(write):
    # Ignored, runtime_fraction 0% would let the route match every request instead of none.
    text = edit(BASE_YAML, 'match: {prefix: "/"}',
                'match: {prefix: "/", runtime_fraction: {default_value: {numerator: 0}}}')
    issue = only_error(issues_of(write, text, allow_unimplemented=True))
    assert issue.field_path == ROUTE_PATH.removesuffix(".route") + ".match.runtime_fraction"


TWO_CHAINS = """\
    - filter_chain_match:
        source_prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]
      filters:
"""


def test_filter_chain_selection_stays_an_error(write):
    # Outrider serves the first chain to every client: the 10/8-only chain would serve all.
    chains = edit(BASE_YAML, "    - filters:\n", TWO_CHAINS)
    issue = only_error(issues_of(write, chains, allow_unimplemented=True))
    assert issue.field_path == "static_resources.listeners[0].filter_chains[0].filter_chain_match"
    assert "first filter chain to every client" in issue.message
    default = chains.replace("    filter_chains:\n", "    default_filter_chain:\n      filters: []\n"
                             "    filter_chains:\n", 1)
    errors = [i for i in issues_of(write, default, allow_unimplemented=True)
              if i.severity == "error"]
    assert [i.field_path for i in errors] == [
        "static_resources.listeners[0].default_filter_chain",
        "static_resources.listeners[0].filter_chains[0].filter_chain_match"]


LISTENER_FILTER = """\
    listener_filters:
    - name: lf
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.{type_name}
{config}    filter_chains:
"""


@pytest.mark.parametrize(("type_name", "config", "reason"), [
    ("local_ratelimit.v3.LocalRateLimit", "        stat_prefix: lrl\n        token_bucket: "
     "{max_tokens: 1, fill_interval: 1s}\n", "it can deny traffic"),
    ("proxy_protocol.v3.ProxyProtocol", "", "changes the client address"),
])
def test_listener_filters_that_guard_stay_errors(write, type_name, config, reason):
    text = edit(BASE_YAML, "    filter_chains:\n",
                LISTENER_FILTER.format(type_name=type_name, config=config))
    issue = only_error(issues_of(write, text, allow_unimplemented=True))
    assert issue.field_path == "static_resources.listeners[0].listener_filters[0].typed_config"
    assert reason in issue.message
    assert issue.line == line_containing(text, "- name: lf") + 1  # its typed_config


def test_listener_filter_that_only_inspects_is_a_warning(write):
    text = edit(BASE_YAML, "    filter_chains:\n", LISTENER_FILTER.format(
        type_name="tls_inspector.v3.TlsInspector", config=""))
    assert has_errors(issues_of(write, text))
    issue = only_issue(issues_of(write, text, allow_unimplemented=True))
    assert issue.severity == "warning" and "TlsInspector ('lf') is not implemented" in issue.message


def test_discovered_listener_filter_that_can_deny_stays_an_error(write):
    text = edit(BASE_YAML, "    filter_chains:\n", """\
    listener_filters:
    - name: lf
      config_discovery:
        config_source: {ads: {}}
        type_urls: [type.googleapis.com/envoy.extensions.filters.listener.local_ratelimit.v3.LocalRateLimit]
    filter_chains:
""")
    issue = only_error(issues_of(write, text, allow_unimplemented=True))
    assert issue.field_path == "static_resources.listeners[0].listener_filters[0].config_discovery"
    assert "LocalRateLimit may be discovered here, and it can deny traffic" in issue.message


def test_network_rbac_stays_an_error(write):
    text = edit(BASE_YAML, "    - filters:\n", """\
    - filters:
      - name: nrbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: nrbac
          rules: {action: DENY, policies: {}}
""")
    issue = only_error(issues_of(write, text, allow_unimplemented=True))
    assert issue.field_path == "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
    assert "network.rbac.v3.RBAC ('nrbac')" in issue.message and "deny" in issue.message


def test_tls_wrapped_in_another_transport_socket_stays_an_error(write):
    text = edit(BASE_YAML, ROUTER_FILTER, ROUTER_FILTER + """\
      transport_socket:
        name: pp
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport
          transport_socket:
            name: t
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
""")
    issue = only_error(issues_of(write, text, allow_unimplemented=True))
    assert issue.field_path == "static_resources.listeners[0].filter_chains[0].transport_socket"
    assert "tls.v3.DownstreamTlsContext would be ignored" in issue.message


def test_require_tls_stays_an_error_with_allow_unimplemented(write):
    text = edit(BASE_YAML, "              domains: [\"*\"]\n",
                "              domains: [\"*\"]\n              require_tls: ALL\n")
    issue = only_issue(issues_of(write, text, allow_unimplemented=True))
    assert issue.severity == "error" and issue.field_path.endswith("virtual_hosts[0].require_tls")


# -- listeners Outrider cannot serve, and other config kinds ------------------------------------

TCP_PROXY_LISTENER = """\
  - name: tcp
    address:
      socket_address: {address: 0.0.0.0, port_value: 10001}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
"""


def test_tcp_proxy_listener_is_an_error_or_named_and_skipped(write):
    text = edit(BASE_YAML, "  clusters:\n", TCP_PROXY_LISTENER + "  clusters:\n")
    assert has_errors(issues_of(write, text))
    loaded = load_bootstrap(write(text))
    issues = validate(loaded, allow_unimplemented=True)
    assert not has_errors(issues)
    skipped = [i for i in issues if "is skipped" in i.message]
    assert [(i.field_path, i.line) for i in skipped] == [
        ("static_resources.listeners[1]", line_containing(text, "- name: tcp"))]
    assert "listener 'tcp' is skipped: its network filters " \
           "(envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy) are not implemented" \
           in skipped[0].message
    assert unservable_listeners(loaded.bootstrap) == [(1, skipped[0].message.split(": ", 1)[1])]


def test_internal_listener_is_not_implemented_not_address_is_necessary(write):
    text = edit(BASE_YAML, "    address:\n      socket_address: {address: 0.0.0.0, port_value: 10000}\n",
                "    internal_listener: {}\n")
    issue = only_issue(issues_of(write, text))
    assert issue.field_path == "static_resources.listeners[0].internal_listener"
    assert issue.message == "internal listeners are not implemented by Outrider"
    warnings = issues_of(write, text, allow_unimplemented=True)
    assert any("listener 'l0' is skipped: internal listeners" in i.message for i in warnings)


def test_no_listeners_and_no_admin_is_a_warning(write):
    issue = only_issue(issues_of(write, "static_resources: {}\n"))
    assert issue.severity == "warning" and "no listeners and no admin" in issue.message


def test_what_the_server_cannot_build_is_found_by_validate(write):
    # An invalid rewrite escape passes the table and semantic checks but not the route table.
    text = edit(BASE_YAML, "{cluster: backend}", """
                  cluster: backend
                  regex_rewrite: {pattern: {regex: "^/(.*)"}, substitution: "/\\\\9"}""")
    issue = only_issue(issues_of(write, text))
    assert issue.severity == "error" and issue.message.startswith("cannot be built: ")


def test_listener_without_network_filters_is_skipped_with_a_warning(write):
    # Envoy accepts a filter chain without filters; Outrider has nothing to run on it.
    text = edit(BASE_YAML, "  clusters:\n", """\
  - name: bare
    address:
      socket_address: {address: 0.0.0.0, port_value: 10001}
    filter_chains:
    - filters: []
  clusters:
""")
    issue = only_issue(issues_of(write, text))
    assert (issue.severity, issue.field_path) == ("warning", "static_resources.listeners[1]")
    assert issue.message == "listener 'bare' is skipped: it has no network filters"
