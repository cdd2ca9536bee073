"""The connection manager's header rules (Envoy's ConnectionManagerUtility), pure functions.

Request side: hop-by-hop stripping, x-forwarded-for / x-envoy-external-address per
``use_remote_address``, x-forwarded-proto, x-request-id, x-forwarded-client-cert per
``forward_client_cert_details``, and stripping Envoy's control headers from external requests.
Response side: the ``server`` header and hop-by-hop stripping.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from outrider.codec.http1 import HOP_BY_HOP
from outrider.http.headers import RequestHeaders, ResponseHeaders

# Envoy's default "internal" networks when internal_address_config is unset (RFC1918, RFC4193).
_INTERNAL_NETS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def is_internal_address(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _INTERNAL_NETS if net.version == addr.version)


@dataclass(frozen=True)
class HeaderRulesConfig:
    use_remote_address: bool = False
    xff_num_trusted_hops: int = 0
    skip_xff_append: bool = False
    generate_request_id: bool = True
    preserve_external_request_id: bool = False
    server_name: str = "outrider"
    # OVERWRITE (Envoy's default), APPEND_IF_ABSENT or PASS_THROUGH.
    server_header_transformation: str = "OVERWRITE"
    # The route configuration's internal_only_headers (lowercase): stripped from external
    # requests along with Envoy's own control headers.
    internal_only_headers: frozenset[str] = frozenset()
    # forward_client_cert_details: SANITIZE (Envoy's default), FORWARD_ONLY, APPEND_FORWARD,
    # SANITIZE_SET or ALWAYS_FORWARD_ONLY.
    forward_client_cert: str = "SANITIZE"
    # Whether a client's x-forwarded-client-cert is removed. Envoy keeps it only from an mTLS
    # peer (or always, with ALWAYS_FORWARD_ONLY); Outrider's connections are all plaintext, so
    # every other mode removes it (checked against Envoy 1.40 mode by mode).
    strip_client_cert: bool = field(init=False, repr=False)
    # What an external request loses (decided here, once): without and with use_remote_address.
    external_strip: frozenset[str] = field(init=False, repr=False)
    edge_strip: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "external_strip", _EXTERNAL_STRIP | self.internal_only_headers)
        object.__setattr__(self, "edge_strip", _EXTERNAL_STRIP_EDGE | self.internal_only_headers)
        object.__setattr__(self, "strip_client_cert",
                           self.forward_client_cert != "ALWAYS_FORWARD_ONLY")


# Request ids need uniqueness, not secrecy (Envoy uses its ordinary random generator too).
_getrandbits = random.Random().getrandbits
_UUID4_MASK = ~(0xF000 << 64) & ~(0xC000 << 48) & (1 << 128) - 1
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """A random (version 4) UUID string; several times cheaper than ``str(uuid.uuid4())``."""
    h = "%032x" % (_getrandbits(128) & _UUID4_MASK | _UUID4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def strip_hop_by_hop(headers) -> None:
    """Remove hop-by-hop headers and any header the Connection header names
    (``te: trailers`` stays, as in Envoy)."""
    for name, _ in headers:
        if name in HOP_BY_HOP:
            break
    else:
        return  # the common case: nothing to strip, nothing rebuilt
    connection = headers.get("connection")
    drop = HOP_BY_HOP
    if connection is not None:
        drop = HOP_BY_HOP.union(token.strip().lower() for token in connection.split(","))
    te = headers.get("te")
    headers.remove_if(drop.__contains__)
    if te is not None and te.strip().lower() == "trailers":
        headers.add("te", "trailers")


def mutate_request_headers(
    headers: RequestHeaders, remote_ip: str, config: HeaderRulesConfig
) -> bool:
    """Apply the downstream-request rules in place; return whether the request is internal."""
    # One pass finds everything the rules look at (this runs for every request).
    xff = xfp = request_id = None
    has_hop_by_hop = has_envoy = xff_repeated = has_xfcc = False
    for name, value in headers.items():
        if name[0] == "x":
            if name == "x-forwarded-for":
                if xff is None:
                    xff = value
                else:  # repeated: one list, as Envoy's header map joins them
                    xff = f"{xff},{value}"
                    xff_repeated = True
            elif name == "x-request-id":
                request_id = value
            elif name == "x-forwarded-proto":
                xfp = value
            elif name.startswith("x-envoy-"):
                has_envoy = True
            elif name == "x-forwarded-client-cert":
                has_xfcc = True
        elif name in HOP_BY_HOP:
            has_hop_by_hop = True
    if has_hop_by_hop:
        strip_hop_by_hop(headers)
    if has_xfcc:
        # A client's certificate claim is believed only from an mTLS peer (Envoy's default
        # SANITIZE drops it from everyone else): an upstream that trusts it cannot be lied to.
        if config.strip_client_cert:
            headers.remove("x-forwarded-client-cert")
        else:
            certs = headers.get_all("x-forwarded-client-cert")
            if len(certs) > 1:
                headers.set("x-forwarded-client-cert", ",".join(certs))  # one list, as Envoy's
    if config.use_remote_address:
        # The client is the peer, or with N trusted proxies in front the Nth XFF entry from
        # the right. Only that address can make a request internal; a client-supplied
        # x-forwarded-for never does (Envoy 1.40 treats such requests as external too).
        client_ip = remote_ip
        trusted_hops = config.xff_num_trusted_hops
        if trusted_hops:
            entries = [e.strip() for e in xff.split(",")] if xff else []
            client_ip = entries[-trusted_hops] if len(entries) >= trusted_hops else remote_ip
        internal = is_internal_address(client_ip)
        if not config.skip_xff_append:
            headers.set("x-forwarded-for", f"{xff},{remote_ip}" if xff else remote_ip)
        elif xff_repeated:
            headers.set("x-forwarded-for", xff)
        # A trusted proxy's x-forwarded-proto stands; an untrusted client's is replaced.
        if not trusted_hops or xfp is None:
            headers.set("x-forwarded-proto", headers.scheme)
        if internal:
            headers.set("x-envoy-internal", "true")
        else:
            # Envoy's control headers are honoured only from trusted (internal) peers; other
            # x-envoy-* headers pass through, as in Envoy.
            if has_envoy or config.internal_only_headers:
                headers.remove_if(config.edge_strip.__contains__)
            headers.set("x-envoy-external-address", client_ip)
    else:
        internal = False  # without use_remote_address, Envoy 1.40 calls every request external
        if xff_repeated:
            headers.set("x-forwarded-for", xff)
        if xfp is None:
            headers.add("x-forwarded-proto", headers.scheme)
        if has_envoy or config.internal_only_headers:
            headers.remove_if(config.external_strip.__contains__)
    if config.generate_request_id:
        if request_id is None:
            headers.add("x-request-id", new_request_id())
        elif config.use_remote_address and not internal and not config.preserve_external_request_id:
            headers.set("x-request-id", new_request_id())
    return internal


# The control headers Envoy 1.40 removes from external requests (ConnectionManagerUtility's
# cleanInternalHeaders, checked header by header against the binary); an edge request
# (use_remote_address) also loses the caller identity and original-request ones. Other
# x-envoy-* headers (x-envoy-attempt-count, ...) pass, as in Envoy; x-envoy-external-address
# passes too unless the edge replaces it.
_EXTERNAL_STRIP = frozenset((
    "x-envoy-internal", "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms", "x-envoy-force-trace", "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-retriable-status-codes", "x-envoy-retriable-header-names", "x-envoy-ip-tags",
    "x-envoy-original-url", "x-envoy-upstream-stream-duration-ms",
))
_EXTERNAL_STRIP_EDGE = _EXTERNAL_STRIP | {
    "x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node", "x-envoy-original-path", "x-envoy-original-host",
}


def mutate_response_headers(headers: ResponseHeaders, config: HeaderRulesConfig) -> tuple[bool, bool]:
    """Apply the response rules in place (hop-by-hop, ``server``).

    Returns whether the response has a ``date`` and a ``content-length`` header, found in the
    same single pass (the encoder needs both; this runs for every response).
    """
    items = headers.items()
    server_at = -1
    servers = 0
    has_date = has_length = has_hop_by_hop = False
    for i, (name, _) in enumerate(items):
        if name == "server":
            server_at = i
            servers += 1
        elif name == "date":
            has_date = True
        elif name == "content-length":
            has_length = True
        elif name in HOP_BY_HOP:
            has_hop_by_hop = True
    if has_hop_by_hop:
        strip_hop_by_hop(headers)
    mode = config.server_header_transformation
    if mode == "OVERWRITE":
        if servers == 1 and not has_hop_by_hop:
            items[server_at] = ("server", config.server_name)
        else:
            headers.set("server", config.server_name)
    elif mode == "APPEND_IF_ABSENT" and not servers:
        headers.add("server", config.server_name)
    return has_date, has_length
