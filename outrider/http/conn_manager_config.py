"""The HTTP connection manager's settings, translated once from Envoy's HttpConnectionManager."""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from outrider.config.durations import bool_value, timeout, uint_value
from outrider.http.header_rules import HeaderRulesConfig
from outrider.router.route_table import RouteTable

_HCM = hcm_pb2.HttpConnectionManager


@dataclass
class ConnectionManagerConfig:
    stat_prefix: str
    route_table: RouteTable
    header_rules: HeaderRulesConfig = field(default_factory=HeaderRulesConfig)
    suppress_envoy_headers: bool = False
    accept_http_10: bool = False
    allow_absolute_url: bool = True
    default_host_for_http_10: str = ""
    normalize_path: bool = False
    merge_slashes: bool = False
    # path_with_escaped_slashes_action: KEEP_UNCHANGED (the default), REJECT_REQUEST,
    # UNESCAPE_AND_REDIRECT or UNESCAPE_AND_FORWARD.
    escaped_slashes_action: str = "KEEP_UNCHANGED"
    max_request_headers_kb: int = 60
    max_headers_count: int = 100
    reject_headers_with_underscores: bool = False
    drop_headers_with_underscores: bool = False
    # Timeouts in seconds; None disables.
    idle_timeout: float | None = 3600.0
    request_timeout: float | None = None
    request_headers_timeout: float | None = None
    stream_idle_timeout: float | None = 300.0
    max_connection_duration: float | None = None
    always_set_request_id_in_response: bool = False
    # Whether a header-name policy, or any path normalization, applies (checked per request).
    checks_header_names: bool = field(init=False, default=False)
    normalizes_paths: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.checks_header_names = (self.reject_headers_with_underscores
                                    or self.drop_headers_with_underscores)
        self.normalizes_paths = bool(self.normalize_path or self.merge_slashes
                                     or self.escaped_slashes_action != "KEEP_UNCHANGED")

    @classmethod
    def from_proto(cls, hcm: hcm_pb2.HttpConnectionManager) -> ConnectionManagerConfig:
        common = hcm.common_http_protocol_options
        h1 = hcm.http_protocol_options
        suppress = False
        for http_filter in hcm.http_filters:
            if http_filter.name == "envoy.filters.http.router" or http_filter.typed_config.type_url.endswith(
                "envoy.extensions.filters.http.router.v3.Router"
            ):
                from envoy.extensions.filters.http.router.v3 import router_pb2

                router = router_pb2.Router()
                if http_filter.HasField("typed_config"):
                    http_filter.typed_config.Unpack(router)
                suppress = router.suppress_envoy_headers
        server_transform = _HCM.ServerHeaderTransformation.Name(hcm.server_header_transformation)
        underscores = common.headers_with_underscores_action
        actions = type(common).HeadersWithUnderscoresAction
        generate_request_id = (
            hcm.generate_request_id.value if hcm.HasField("generate_request_id") else True
        )
        route_table = RouteTable.from_proto(hcm.route_config)
        escaped_slashes = _HCM.PathWithEscapedSlashesAction.Name(
            hcm.path_with_escaped_slashes_action)
        if escaped_slashes == "IMPLEMENTATION_SPECIFIC_DEFAULT":
            escaped_slashes = "KEEP_UNCHANGED"  # Envoy's default without a runtime override
        return cls(
            stat_prefix=hcm.stat_prefix,
            route_table=route_table,
            header_rules=HeaderRulesConfig(
                use_remote_address=hcm.use_remote_address.value,
                xff_num_trusted_hops=hcm.xff_num_trusted_hops,
                skip_xff_append=hcm.skip_xff_append,
                generate_request_id=generate_request_id,
                preserve_external_request_id=hcm.preserve_external_request_id,
                server_name=hcm.server_name or "outrider",
                server_header_transformation=server_transform,
                internal_only_headers=frozenset(route_table.internal_only_headers),
                forward_client_cert=_HCM.ForwardClientCertDetails.Name(
                    hcm.forward_client_cert_details),
            ),
            suppress_envoy_headers=suppress,
            accept_http_10=h1.accept_http_10,
            allow_absolute_url=bool_value(h1, "allow_absolute_url", True),
            default_host_for_http_10=h1.default_host_for_http_10,
            normalize_path=hcm.normalize_path.value,
            merge_slashes=hcm.merge_slashes,
            escaped_slashes_action=escaped_slashes,
            max_request_headers_kb=uint_value(hcm, "max_request_headers_kb", 60),
            max_headers_count=uint_value(common, "max_headers_count", 100),
            reject_headers_with_underscores=underscores == actions.REJECT_REQUEST,
            drop_headers_with_underscores=underscores == actions.DROP_HEADER,
            idle_timeout=timeout(common, "idle_timeout", 3600.0),
            request_timeout=timeout(hcm, "request_timeout", None),
            request_headers_timeout=timeout(hcm, "request_headers_timeout", None),
            stream_idle_timeout=timeout(hcm, "stream_idle_timeout", 300.0),
            max_connection_duration=timeout(common, "max_connection_duration", None),
            always_set_request_id_in_response=hcm.always_set_request_id_in_response,
        )
