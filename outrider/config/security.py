"""What ``--allow-unimplemented`` must never let through: config whose absence weakens security.

``--allow-unimplemented`` turns "not implemented" into "ignored with a warning". For most fields
that only loses a feature. For some it would change who gets in: serving a TLS listener as
plaintext, or skipping an authorization, rate-limit or programmable filter that would have
denied requests. Those stay errors whatever the flag says; refusing to start is safer than
starting without them. This module is the list, as data.
"""

from __future__ import annotations

from google.protobuf.message import Message

from outrider.config import typed

_HTTP = "envoy.extensions.filters.http."
_NETWORK = "envoy.extensions.filters.network."
_LISTENER = "envoy.extensions.filters.listener."

# Proto packages (prefixes of the type's full name) of extensions that can deny traffic:
# authentication and authorization, rate and admission limits, and filters that run user
# code or call out to a service that decides.
DENYING_PACKAGES: tuple[str, ...] = (
    *(_HTTP + name + "." for name in (
        "rbac", "ext_authz", "jwt_authn", "oauth2", "basic_auth", "api_key_auth", "csrf",
        "local_ratelimit", "ratelimit", "rate_limit_quota", "admission_control",
        "adaptive_concurrency", "proto_api_scrubber", "ext_proc", "lua", "wasm", "golang",
        "dynamic_modules", "composite")),
    *(_NETWORK + name + "." for name in (
        "rbac", "ext_authz", "local_ratelimit", "ratelimit", "connection_limit", "ext_proc",
        "wasm", "golang", "client_ssl_auth")),
    _LISTENER + "local_ratelimit.",
)

_TRANSPORT_SOCKET = "envoy.config.core.v3.TransportSocket"
# Transport sockets that encrypt or authenticate: ignoring them means plaintext.
_SECURE_SOCKETS = tuple(f"envoy.extensions.transport_sockets.{name}." for name in (
    "tls", "starttls", "alts", "s2a", "quic"))

# (message type, field) → why ignoring the field weakens security.
SECURITY_FIELDS: dict[tuple[str, str], str] = {
    ("envoy.config.route.v3.VirtualHost", "require_tls"):
        "ignoring it would serve plaintext requests the config says must use TLS",
    ("envoy.config.cluster.v3.Cluster", "transport_socket_matches"):
        "ignoring it would send plaintext where the config asks for TLS",
}


def denies_traffic(type_name: str) -> bool:
    """True when the extension ``type_name`` can refuse requests or connections."""
    return type_name.startswith(DENYING_PACKAGES)


def security_reason(msg: Message, field_name: str, value: object) -> str | None:
    """Why ignoring ``msg.<field_name>`` (set to ``value``) weakens security, or None."""
    reason = SECURITY_FIELDS.get((msg.DESCRIPTOR.full_name, field_name))
    if reason is not None:
        return reason
    if isinstance(value, Message) and value.DESCRIPTOR.full_name == _TRANSPORT_SOCKET:
        secure = _secure_socket(value)
        if secure:
            return (f"{secure} would be ignored, so traffic the config encrypts or "
                    "authenticates would go in plaintext")
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
