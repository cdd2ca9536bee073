"""What ``--allow-unimplemented`` must never let through: config whose absence weakens security.

``--allow-unimplemented`` turns "not implemented" into "ignored with a warning". For most fields
that only loses a feature. For some it would change who gets in or who they appear to be:
serving a TLS listener as plaintext, serving one filter chain to clients the config gives
another, skipping a filter that would have denied a request or stripped a spoofed identity
header, or letting a route match requests its conditions exclude. Those stay errors whatever
the flag says; refusing to start is safer than starting without them. This module is the list,
as data, with the reason for each entry (and for the extensions deliberately left out).
"""

from __future__ import annotations

from google.protobuf.message import Message

from outrider.config import typed

_HTTP = "envoy.extensions.filters.http."
_NETWORK = "envoy.extensions.filters.network."
_LISTENER = "envoy.extensions.filters.listener."

DENIES = "it can deny traffic"
_IDENTITY_HEADERS = ("it rewrites request headers (it is how configs strip spoofable identity "
                     "headers), so a client's own headers would reach the upstream")
_CLIENT_ADDRESS = ("it changes the client address that x-forwarded-for, internal-address and "
                   "IP-based checks trust")
_UPSTREAM_SOURCE = "it makes upstream connections come from the client's own address"

# Extension packages (prefixes of the type's full name) → why ignoring one weakens security.
GUARDING_EXTENSIONS: dict[str, str] = {
    # Authentication, authorization, rate and admission limits, and filters that run user code
    # or ask a service that decides.
    **{_HTTP + name + ".": DENIES for name in (
        "rbac", "ext_authz", "jwt_authn", "oauth2", "basic_auth", "api_key_auth", "csrf",
        "local_ratelimit", "ratelimit", "rate_limit_quota", "admission_control",
        "adaptive_concurrency", "proto_api_scrubber", "ext_proc", "lua", "wasm", "golang",
        "dynamic_modules", "composite")},
    **{_NETWORK + name + ".": DENIES for name in (
        "rbac", "ext_authz", "local_ratelimit", "ratelimit", "connection_limit", "ext_proc",
        "wasm", "golang", "client_ssl_auth")},
    _LISTENER + "local_ratelimit.": DENIES,
    # HTTP filters that refuse what is too big, too fast, looping or of the wrong kind.
    _HTTP + "buffer.": "it refuses request bodies over max_request_bytes (413)",
    _HTTP + "file_system_buffer.": "it refuses bodies over its buffer limits",
    _HTTP + "bandwidth_limit.": "it throttles request and response bodies",
    _HTTP + "cdn_loop.": "it refuses requests that looped through this CDN too often",
    _HTTP + "mcp.": "it can refuse requests that are not MCP (traffic_mode: REJECT_NO_MCP)",
    _HTTP + "mcp_router.": "it decides which backend each MCP request reaches",
    # HTTP filters that set or strip what the upstream takes as the client's identity.
    _HTTP + "header_mutation.": _IDENTITY_HEADERS,
    _HTTP + "transform.": _IDENTITY_HEADERS,
    _HTTP + "header_to_metadata.": "it can remove the headers it reads (remove: true)",
    _HTTP + "ip_tagging.": ("it sets x-envoy-ip-tags from the client address, which routes "
                            "and upstreams trust; a client's own header would pass instead"),
    _HTTP + "geoip.": ("it sets geolocation headers upstreams trust; a client's own would "
                       "pass instead"),
    _HTTP + "original_src.": _UPSTREAM_SOURCE,
    # Listener filters: who the client is, and where its connection goes.
    _LISTENER + "proxy_protocol.": _CLIENT_ADDRESS,
    _LISTENER + "original_src.": _UPSTREAM_SOURCE,
    _LISTENER + "original_dst.": ("it hands a redirected connection to the listener of its "
                                  "original destination"),
}
# Left out, as ignoring them lets nothing more through and changes no identity:
#   http cors: browsers enforce CORS; the filter only answers preflights and adds headers.
#   http fault, kill_request, tap, grpc_stats, health_check: test, debug or health answers.
#   http credential_injector, aws_request_signing, aws_lambda, gcp_authn: they add the proxy's
#     credentials; without them the upstream refuses (fails closed).
#   http grpc_json_transcoder, grpc_web, grpc_http1_*, connect_grpc_bridge, compressor,
#     decompressor, gzip, cache*, custom_response: translate or reshape; the gRPC upstream
#     refuses what is left untranslated.
#   http json_to_metadata, set_metadata, set_filter_state, *_extraction, proto_message_logging,
#     thrift_to_metadata: they only feed metadata to filters refused above (rbac, ratelimit).
#   http dynamic_forward_proxy, on_demand, stateful_session, alternate_protocols_cache,
#     upstream_codec: need cluster kinds or xDS Outrider refuses, or only pick among hosts.
#   network geoip, set_filter_state, sni_cluster, sni_dynamic_forward_proxy: feed filters or
#     tcp_proxy, which Outrider refuses or skips; tcp_proxy, redis and the other terminal
#     network filters make the listener unservable, so it is skipped, not served wrongly.
#   listener tls_inspector, http_inspector: they only feed filter_chain_match (an error below).

_TRANSPORT_SOCKET = "envoy.config.core.v3.TransportSocket"
_CONFIG_SOURCE = "envoy.config.core.v3.ExtensionConfigSource"
# Transport sockets that encrypt or authenticate: ignoring them means plaintext.
_SECURE_SOCKETS = tuple(f"envoy.extensions.transport_sockets.{name}." for name in (
    "tls", "starttls", "alts", "s2a", "quic"))

_CHAINS = ("Outrider serves a listener's first filter chain to every client (it has no "
           "filter-chain matching yet), so clients the config sends elsewhere would get it")
_HOST_SEEN = "it changes the host that virtual hosts are matched against"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

# (message type, field) → why ignoring the field weakens security.
SECURITY_FIELDS: dict[tuple[str, str], str] = {
    ("envoy.config.route.v3.VirtualHost", "require_tls"):
        "ignoring it would serve plaintext requests the config says must use TLS",
    ("envoy.config.cluster.v3.Cluster", "transport_socket_matches"):
        "ignoring it would send plaintext where the config asks for TLS",
    ("envoy.config.listener.v3.FilterChain", "filter_chain_match"): _CHAINS,
    ("envoy.config.listener.v3.Listener", "default_filter_chain"): _CHAINS,
    ("envoy.config.listener.v3.Listener", "filter_chain_matcher"): _CHAINS,
    ("envoy.config.listener.v3.FilterChain", "use_proxy_proto"): _CLIENT_ADDRESS,
    ("envoy.config.listener.v3.Listener", "use_original_dst"):
        "it hands redirected connections to the listener of their original destination",
    (_HCM, "internal_address_config"):
        "it decides which peers are internal: whose x-envoy-* headers are trusted and who "
        "may send internal_only_headers",
    (_HCM, "original_ip_detection_extensions"): _CLIENT_ADDRESS,
    (_HCM, "early_header_mutation_extensions"): _IDENTITY_HEADERS,
    (_HCM, "path_normalization_options"): "it changes the path that routes match",
    (_HCM, "strip_matching_host_port"): _HOST_SEEN,
    (_HCM, "strip_any_host_port"): _HOST_SEEN,
    (_HCM, "strip_trailing_host_dot"): _HOST_SEEN,
}
# Message types any of whose fields, ignored, weakens security.
SECURITY_MESSAGES: dict[str, str] = {
    "envoy.config.route.v3.RouteMatch":
        "ignoring a match condition makes the route match requests the config keeps from it",
}


def guard_reason(type_name: str) -> str:
    """Why ignoring the extension ``type_name`` weakens security, or ""."""
    for package, reason in GUARDING_EXTENSIONS.items():
        if type_name.startswith(package):
            return reason
    return ""


def security_reason(msg: Message, field_name: str, value: object) -> str | None:
    """Why ignoring ``msg.<field_name>`` (set to ``value``) weakens security, or None."""
    full_name = msg.DESCRIPTOR.full_name
    reason = SECURITY_FIELDS.get((full_name, field_name)) or SECURITY_MESSAGES.get(full_name)
    if reason is not None:
        return reason
    if not isinstance(value, Message):
        return None
    kind = value.DESCRIPTOR.full_name
    if kind == _TRANSPORT_SOCKET:
        secure = _secure_socket(value)
        if secure:
            return (f"{secure} would be ignored, so traffic the config encrypts or "
                    "authenticates would go in plaintext")
    elif kind == _CONFIG_SOURCE:  # a filter found by discovery: judged by the types it allows
        for type_url in value.type_urls:  # type: ignore[attr-defined]
            reason = guard_reason(typed.type_name(type_url))
            if reason:
                return f"{typed.type_name(type_url)} may be discovered here, and {reason}"
    return None


def _secure_socket(socket: Message) -> str:
    """The TLS-like transport socket type in ``socket`` (or in a wrapper inside it), or ""."""
    packed = socket.typed_config  # type: ignore[attr-defined]
    kind = typed.extension_type(packed) or socket.name  # type: ignore[attr-defined]
    if kind.startswith(_SECURE_SOCKETS) or kind in ("envoy.transport_sockets.tls", "tls"):
        return kind
    inner = typed.unpack(packed) if packed.type_url else None
    # Wrappers (proxy_protocol, tcp_stats, http_11_proxy...) carry the real socket inside.
    if inner is not None and "transport_socket" in inner.DESCRIPTOR.fields_by_name \
            and inner.HasField("transport_socket"):
        return _secure_socket(inner.transport_socket)  # type: ignore[attr-defined]
    return ""


STAYS_AN_ERROR = ("refused even with --allow-unimplemented, as ignoring it would weaken "
                  "security")
