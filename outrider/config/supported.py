"""What Outrider implements, as data: message type → field → :class:`Rule`.

``validate()`` walks every field the user set (``ListFields()``) and looks it up here:

* a field listed as ``OK`` is implemented; if it holds a message, that message is checked in turn
  against its own entry (``Rule.table`` names a context-specific entry where the same message
  type is supported differently in two places, e.g. ``CommonHttpProtocolOptions`` downstream and
  upstream);
* ``ignored(note)`` is accepted with a warning: it has no effect in Outrider yet, and ignoring it
  cannot route, drop or expose traffic differently from what the user asked;
* ``inert(note)`` is accepted silently: it has no effect in Envoy either for a config Outrider can
  run (e.g. ``node`` only identifies the proxy to an xDS server, which Outrider does not speak);
* a field missing from its message's entry is not implemented: an error (it would be ignored);
* a message type reached through an ``OK`` field must have an entry, or be in ``LEAF_TYPES``
  (values read whole, like ``Duration``). A unit test enforces this, so "absent" never silently
  means "everything supported".

``Any`` fields (``typed_config``) name an extension slot; the unpacked type (or a TypedStruct's
inner ``type_url``) must be registered in ``EXTENSIONS[slot]``. Enum fields may restrict values.

To add a feature: add its fields here, in the same change that implements them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["supported", "ignored", "inert"]


@dataclass(frozen=True, slots=True)
class Rule:
    """How Outrider treats one field (see the module docstring)."""

    status: Status = "supported"
    note: str = ""
    enums: frozenset[str] | None = None  # allowed enum value names; None = all
    slot: str | None = None  # for Any fields (and maps of Any): the extension slot
    table: str | None = None  # SUPPORTED key for the nested message; None = its type name


OK = Rule()


def ignored(note: str) -> Rule:
    """Accepted with a warning carrying ``note``."""
    return Rule("ignored", note)


def inert(note: str) -> Rule:
    """Accepted silently; ``note`` documents why that is safe."""
    return Rule("inert", note)


def only(*values: str) -> Rule:
    """A supported enum field restricted to ``values``."""
    return Rule(enums=frozenset(values))


def extension(slot: str) -> Rule:
    """A supported Any field whose type must be registered in ``EXTENSIONS[slot]``."""
    return Rule(slot=slot)


def via(table: str) -> Rule:
    """A supported message field checked against the context-specific entry ``table``."""
    return Rule(table=table)


def fields(*names: str) -> dict[str, Rule]:
    """Shorthand: every name is ``OK``."""
    return dict.fromkeys(names, OK)


HEADER_MUTATIONS = fields(
    "request_headers_to_add", "request_headers_to_remove",
    "response_headers_to_add", "response_headers_to_remove",
)

HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "envoy.extensions.filters.http.router.v3.Router"
UPSTREAM_HTTP = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
LBP = "envoy.extensions.load_balancing_policies"

# Extension slot → the types that may fill it (TypedStruct: its inner type_url's name).
EXTENSIONS: dict[str, set[str]] = {
    "network_filter": {HCM},
    "http_filter": {ROUTER},
    "listener_filter": set(),  # none yet; each is reported, and a guarding one stays an error
    "upstream_protocol_options": {UPSTREAM_HTTP},
    "lb_policy": {
        f"{LBP}.round_robin.v3.RoundRobin",
        f"{LBP}.least_request.v3.LeastRequest",
        f"{LBP}.random.v3.Random",
        f"{LBP}.ring_hash.v3.RingHash",
        f"{LBP}.maglev.v3.Maglev",
        # Latency-aware LB; no proto in xds-protos, so only as a TypedStruct type_url.
        "outrider.lb.peak_ewma",
        f"{LBP}.peak_ewma.v3alpha.PeakEwma",
    },
}


def register_extension(slot: str, type_name: str) -> None:
    """Declare that ``type_name`` (a message full name or TypedStruct type) implements ``slot``.

    Called by extension registries (``outrider.api.register_http_filter`` → slot "http_filter").
    """
    EXTENSIONS.setdefault(slot, set()).add(type_name)


# Messages read whole as values: never descended into.
LEAF_TYPES = frozenset({
    "google.protobuf.Duration", "google.protobuf.Struct", "google.protobuf.Value",
    "google.protobuf.ListValue", "google.protobuf.Empty",
    *(f"google.protobuf.{n}Value" for n in
      ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")),
    "envoy.type.v3.Percent",
})

_SOCKET = "envoy.config.core.v3.SocketAddress"
_ROUTE = "envoy.config.route.v3."
_CLUSTER = "envoy.config.cluster.v3.Cluster"
_EP = "envoy.config.endpoint.v3."
_SLOW_START = fields("slow_start_window", "aggression", "min_weight_percent")
_NOT_WRITTEN = "the admin access log is not written yet"

SUPPORTED: dict[str, dict[str, Rule]] = {
    # -- bootstrap and admin --------------------------------------------------------------------
    "envoy.config.bootstrap.v3.Bootstrap": {
        "static_resources": OK,
        "admin": OK,
        "node": inert("identifies the proxy to xDS servers and in /server_info; "
                      "Outrider has no xDS client yet"),
    },
    "envoy.config.bootstrap.v3.Bootstrap.StaticResources": fields("listeners", "clusters"),
    "envoy.config.bootstrap.v3.Admin": {
        "address": OK,
        "access_log_path": ignored(_NOT_WRITTEN),
        "access_log": ignored(_NOT_WRITTEN),
        "profile_path": inert("only used by the CPU profiler endpoints, which Outrider lacks"),
    },
    "envoy.config.core.v3.Address": fields("socket_address"),
    _SOCKET: {**fields("address", "port_value", "ipv4_compat"), "protocol": only("TCP")},
    # -- listeners ------------------------------------------------------------------------------
    "envoy.config.listener.v3.Listener": {
        **fields("name", "address", "filter_chains", "per_connection_buffer_limit_bytes",
                 "stat_prefix"),
        "traffic_direction": inert("only names tracing spans ingress or egress, and Outrider "
                                   "does not trace yet"),
        # Judged filter by filter (its typed_config), so one that guards (proxy_protocol,
        # local_ratelimit) stays an error with --allow-unimplemented.
        "listener_filters": OK,
    },
    "envoy.config.listener.v3.ListenerFilter": {
        "name": OK, "typed_config": extension("listener_filter"),
    },
    "envoy.config.listener.v3.FilterChain": {
        **fields("filters"),
        "name": inert("a label for filter-chain discovery and matchers, unused with one chain"),
    },
    "envoy.config.listener.v3.Filter": {"name": OK, "typed_config": extension("network_filter")},
    # -- HTTP connection manager ----------------------------------------------------------------
    HCM: {
        **fields(
            "stat_prefix", "route_config", "http_filters", "server_name",
            "server_header_transformation", "generate_request_id", "use_remote_address",
            "xff_num_trusted_hops", "skip_xff_append", "request_timeout",
            "request_headers_timeout", "stream_idle_timeout", "max_request_headers_kb",
            "normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
            "preserve_external_request_id", "always_set_request_id_in_response",
            "forward_client_cert_details"),
        "set_current_client_cert_details": inert(
            "only describes the client certificate of an mTLS connection, and Outrider "
            "terminates no TLS (a TLS transport socket is refused)"),
        "drain_timeout": inert("the HTTP/2 GOAWAY interval; HTTP/1 connections drain with "
                               "connection: close"),
        "delayed_close_timeout": ignored("Outrider closes a connection as soon as its last "
                                         "response is flushed"),
        "codec_type": only("AUTO", "HTTP1"),
        "tracing": ignored("Outrider does not trace yet: no spans are reported, and the "
                           "route decorator's x-envoy-decorator-operation header is not set"),
        "common_http_protocol_options": via("downstream CommonHttpProtocolOptions"),
        "http_protocol_options": via("downstream Http1ProtocolOptions"),
    },
    "downstream CommonHttpProtocolOptions": fields(
        "idle_timeout", "max_headers_count", "headers_with_underscores_action"),
    "downstream Http1ProtocolOptions": fields(
        "accept_http_10", "default_host_for_http_10", "allow_absolute_url"),
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {
        "name": OK, "typed_config": extension("http_filter"),
    },
    ROUTER: {
        "suppress_envoy_headers": OK,
        "start_child_span": inert("only acts with HCM tracing, which is refused as unsupported"),
    },
    # -- routes ---------------------------------------------------------------------------------
    _ROUTE + "RouteConfiguration": {
        **fields("name", "virtual_hosts", "most_specific_header_mutations_wins",
                 "validate_clusters", "internal_only_headers",
                 "max_direct_response_body_size_bytes"),
        **HEADER_MUTATIONS,
    },
    _ROUTE + "VirtualHost": {**fields("name", "domains", "routes"), **HEADER_MUTATIONS},
    _ROUTE + "Route": {
        **fields("name", "match", "route", "redirect", "direct_response"), **HEADER_MUTATIONS,
        "decorator": inert("names the route's tracing span; it acts only with HCM tracing, "
                           "which Outrider accepts with a warning and does not perform yet"),
    },
    _ROUTE + "RouteMatch": fields(
        "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
        "query_parameters"),
    _ROUTE + "HeaderMatcher": fields(
        "name", "string_match", "present_match", "invert_match", "range_match",
        "treat_missing_header_as_empty",
        # Deprecated spellings of string_match, still common in configs.
        "exact_match", "prefix_match", "suffix_match", "contains_match", "safe_regex_match"),
    "envoy.type.v3.Int64Range": fields("start", "end"),
    _ROUTE + "QueryParameterMatcher": fields("name", "string_match", "present_match"),
    "envoy.type.matcher.v3.StringMatcher": fields(
        "exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"),
    "envoy.type.matcher.v3.RegexMatcher": fields("google_re2", "regex"),
    "envoy.type.matcher.v3.RegexMatcher.GoogleRE2": {
        "max_program_size": inert("deprecated; Envoy ignores it as well"),
    },
    "envoy.type.matcher.v3.RegexMatchAndSubstitute": fields("pattern", "substitution"),
    _ROUTE + "RouteAction": fields(
        "cluster", "weighted_clusters", "cluster_header", "cluster_not_found_response_code",
        "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "timeout", "idle_timeout",
        "hash_policy", "host_rewrite_header", "host_rewrite_path_regex", "auto_host_rewrite",
        "append_x_forwarded_host", "priority"),
    _ROUTE + "WeightedCluster": {
        "clusters": OK,
        "total_weight": inert("deprecated; Envoy 1.40 uses the sum of the weights as well"),
    },
    _ROUTE + "WeightedCluster.ClusterWeight": {
        **fields("name", "weight", "host_rewrite_literal"), **HEADER_MUTATIONS,
    },
    _ROUTE + "RouteAction.HashPolicy": fields(
        "header", "cookie", "connection_properties", "query_parameter", "terminal"),
    _ROUTE + "RouteAction.HashPolicy.Header": fields("header_name"),
    _ROUTE + "RouteAction.HashPolicy.Cookie": fields("name", "ttl", "path"),
    _ROUTE + "RouteAction.HashPolicy.ConnectionProperties": fields("source_ip"),
    _ROUTE + "RouteAction.HashPolicy.QueryParameter": fields("name"),
    _ROUTE + "RedirectAction": fields(
        "https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect",
        "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"),
    _ROUTE + "DirectResponseAction": {"status": OK, "body": via("direct response body")},
    "direct response body": fields("inline_string", "inline_bytes"),
    "envoy.config.core.v3.HeaderValueOption": fields(
        "header", "append", "append_action", "keep_empty_value"),
    "envoy.config.core.v3.HeaderValue": fields("key", "value"),
    # -- clusters -------------------------------------------------------------------------------
    _CLUSTER: {
        **fields(
            "name", "connect_timeout", "per_connection_buffer_limit_bytes", "load_assignment",
            "dns_refresh_rate", "dns_lookup_family",
            "max_requests_per_connection", "common_lb_config", "least_request_lb_config",
            "round_robin_lb_config", "ring_hash_lb_config", "maglev_lb_config",
            "load_balancing_policy", "circuit_breakers"),
        "type": only("STATIC", "STRICT_DNS", "LOGICAL_DNS"),
        "respect_dns_ttl": ignored("the system resolver reports no TTL; dns_refresh_rate "
                                   "is used"),
        "lb_policy": only("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV",
                          "LOAD_BALANCING_POLICY_CONFIG"),
        "typed_extension_protocol_options": extension("upstream_protocol_options"),
    },
    # Thresholds per routing priority; counts per worker process (docs/architecture.md).
    # max_retries and retry_budget bound retries, which are inert until retry_policy is
    # implemented (as in Envoy without a retry policy).
    # per_host_thresholds: Envoy reads only max_connections there (and so does Outrider).
    "envoy.config.cluster.v3.CircuitBreakers": fields("thresholds", "per_host_thresholds"),
    "envoy.config.cluster.v3.CircuitBreakers.Thresholds": fields(
        "priority", "max_connections", "max_pending_requests", "max_requests", "max_retries",
        "retry_budget", "track_remaining"),
    "envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget": fields(
        "budget_percent", "min_retry_concurrency"),
    _EP + "ClusterLoadAssignment": fields("cluster_name", "endpoints", "policy"),
    _EP + "ClusterLoadAssignment.Policy": fields("overprovisioning_factor"),
    _EP + "LocalityLbEndpoints": fields(
        "locality", "lb_endpoints", "load_balancing_weight", "priority"),
    "envoy.config.core.v3.Locality": fields("region", "zone", "sub_zone"),
    _EP + "LbEndpoint": {
        **fields("endpoint", "health_status", "load_balancing_weight"),
        "metadata": ignored("endpoint metadata is not used yet (no subset load balancing "
                            "or metadata formatters)"),
    },
    _EP + "Endpoint": fields("address", "hostname"),
    _CLUSTER + ".CommonLbConfig": fields("healthy_panic_threshold", "locality_weighted_lb_config"),
    _CLUSTER + ".CommonLbConfig.LocalityWeightedLbConfig": {},
    _CLUSTER + ".LeastRequestLbConfig": fields(
        "choice_count", "active_request_bias", "slow_start_config"),
    _CLUSTER + ".RoundRobinLbConfig": fields("slow_start_config"),
    _CLUSTER + ".SlowStartConfig": _SLOW_START,
    # Outrider has no runtime layers, so a runtime_key never overrides default_value; Envoy
    # behaves the same when the key is absent from its runtime.
    "envoy.config.core.v3.RuntimeDouble": fields("default_value", "runtime_key"),
    _CLUSTER + ".RingHashLbConfig": {
        **fields("minimum_ring_size", "maximum_ring_size"), "hash_function": only("XX_HASH"),
    },
    _CLUSTER + ".MaglevLbConfig": fields("table_size"),
    "envoy.config.cluster.v3.LoadBalancingPolicy": fields("policies"),
    "envoy.config.cluster.v3.LoadBalancingPolicy.Policy": {
        "typed_extension_config": via("load balancing policy"),
    },
    "load balancing policy": {"name": OK, "typed_config": extension("lb_policy")},
    UPSTREAM_HTTP: {
        "common_http_protocol_options": via("upstream CommonHttpProtocolOptions"),
        "explicit_http_config": OK,
    },
    "upstream CommonHttpProtocolOptions": fields("idle_timeout", "max_requests_per_connection",
                                                 "max_response_headers_kb"),
    UPSTREAM_HTTP + ".ExplicitHttpConfig": {
        "http_protocol_options": via("upstream Http1ProtocolOptions"),
    },
    "upstream Http1ProtocolOptions": {},  # HTTP/1.1 upstream; no option is implemented yet
    # -- load-balancing policy extensions -------------------------------------------------------
    f"{LBP}.round_robin.v3.RoundRobin": fields("slow_start_config", "locality_lb_config"),
    f"{LBP}.least_request.v3.LeastRequest": {
        **fields("choice_count", "active_request_bias", "slow_start_config",
                 "locality_lb_config", "selection_method"),
        "enable_full_scan": OK,  # deprecated spelling of selection_method: FULL_SCAN
    },
    f"{LBP}.random.v3.Random": fields("locality_lb_config"),
    f"{LBP}.ring_hash.v3.RingHash": {
        **fields("minimum_ring_size", "maximum_ring_size"), "hash_function": only("XX_HASH"),
    },
    f"{LBP}.maglev.v3.Maglev": fields("table_size"),
    # Envoy contrib's message, registered by outrider.lb.config (not in xds-protos).
    f"{LBP}.peak_ewma.v3alpha.PeakEwma": {
        **fields("decay_time", "default_rtt"),
        "aggregation_interval": inert("contrib Envoy batches RTT samples; Outrider folds each "
                                      "one in as it arrives, which is the limit of a 0s interval"),
        "max_samples_per_host": inert("bounds contrib Envoy's sample batch; Outrider keeps none"),
    },
    f"{LBP}.common.v3.SlowStartConfig": _SLOW_START,
    f"{LBP}.common.v3.LocalityLbConfig": fields("locality_weighted_lb_config"),
    f"{LBP}.common.v3.LocalityLbConfig.LocalityWeightedLbConfig": {},
}
