"""Clusters: a named set of upstream hosts with its load balancer and connection pools.

``ClusterSettings`` is the config translation (pure); ``Cluster`` is the per-worker runtime:
membership (``PrioritySet``), the load balancer, one connection pool per host, and stats.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from outrider.config.durations import seconds, timeout, uint_value
from outrider.lb.factory import LbStats, create_load_balancer
from outrider.pool.http1 import Http1ConnPool
from outrider.stats.store import Scope, StatsStruct
from outrider.upstream.host import Host, PrioritySet
from outrider.upstream.resource_manager import ResourceManager

_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# envoy.config.core.v3.HealthStatus: UNHEALTHY, DRAINING and TIMEOUT take a host out of rotation
# (DEGRADED counts as healthy: Outrider has no degraded tier yet).
_UNHEALTHY_STATUSES = frozenset((2, 3, 4))
DEFAULT_BUFFER_LIMIT = 1024 * 1024


class ClusterStats(StatsStruct):
    """``cluster.<name>.*``, Envoy's names."""

    COUNTERS = (
        "upstream_cx_total", "upstream_cx_connect_fail", "upstream_cx_connect_timeout",
        "upstream_cx_destroy", "upstream_cx_idle_timeout", "upstream_cx_max_requests",
        "upstream_cx_none_healthy", "upstream_rq_total", "upstream_rq_completed",
        "upstream_rq_pending_total", "upstream_rq_pending_overflow", "upstream_cx_overflow",
        "upstream_rq_timeout", "upstream_rq_1xx",
        "upstream_rq_2xx", "upstream_rq_3xx", "upstream_rq_4xx", "upstream_rq_5xx",
        "update_attempt", "update_success", "update_failure",
    )
    GAUGES = ("upstream_cx_active", "upstream_rq_active", "membership_total",
              "membership_healthy")

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self._by_code: dict[int, object] = {}
        self._by_class = (self.upstream_rq_1xx, self.upstream_rq_1xx, self.upstream_rq_2xx,
                          self.upstream_rq_3xx, self.upstream_rq_4xx, self.upstream_rq_5xx)

    def count_response(self, status: int) -> None:
        counter = self._by_code.get(status)
        if counter is None:
            counter = self._by_code[status] = self.scope.counter(f"upstream_rq_{status}")
        counter.value += 1
        self._by_class[status // 100 if 100 <= status < 600 else 1].value += 1


@dataclass(frozen=True)
class UpstreamSettings:
    connect_timeout: float = 5.0
    buffer_limit: int = DEFAULT_BUFFER_LIMIT
    idle_timeout: float | None = 3600.0
    max_requests_per_connection: int = 0
    max_response_headers_kb: int = 60


@dataclass(frozen=True)
class Endpoint:
    """A configured endpoint: an address, or a DNS name for STRICT_DNS and LOGICAL_DNS."""

    address: str
    port: int
    weight: int
    priority: int
    locality: tuple[str, str, str]
    locality_weight: int
    healthy: bool = True  # from the endpoint's health_status (EDS-style static health)
    hostname: str = ""  # the endpoint's own ``hostname`` field


@dataclass
class ClusterSettings:
    name: str
    type: str  # "STATIC", "STRICT_DNS" or "LOGICAL_DNS"
    endpoints: list[Endpoint]
    upstream: UpstreamSettings
    dns_refresh_rate: float
    dns_lookup_family: str
    proto: cluster_pb2.Cluster

    @classmethod
    def from_proto(cls, cluster: cluster_pb2.Cluster) -> ClusterSettings:
        common = http_protocol_options_pb2.HttpProtocolOptions()
        if _HTTP_OPTIONS_KEY in cluster.typed_extension_protocol_options:
            cluster.typed_extension_protocol_options[_HTTP_OPTIONS_KEY].Unpack(common)
        options = common.common_http_protocol_options
        max_requests = uint_value(options, "max_requests_per_connection", 0) or uint_value(
            cluster, "max_requests_per_connection", 0)
        upstream = UpstreamSettings(
            connect_timeout=seconds(cluster, "connect_timeout", 5.0),
            buffer_limit=uint_value(cluster, "per_connection_buffer_limit_bytes",
                                    DEFAULT_BUFFER_LIMIT),
            idle_timeout=timeout(options, "idle_timeout", 3600.0),
            max_requests_per_connection=max_requests,
            max_response_headers_kb=uint_value(options, "max_response_headers_kb", 60),
        )
        endpoints = []
        for locality_endpoints in cluster.load_assignment.endpoints:
            loc = locality_endpoints.locality
            for lb_endpoint in locality_endpoints.lb_endpoints:
                sock = lb_endpoint.endpoint.address.socket_address
                endpoints.append(Endpoint(
                    address=sock.address,
                    port=sock.port_value,
                    weight=uint_value(lb_endpoint, "load_balancing_weight", 1),
                    priority=locality_endpoints.priority,
                    locality=(loc.region, loc.zone, loc.sub_zone),
                    locality_weight=uint_value(locality_endpoints, "load_balancing_weight", 0),
                    healthy=lb_endpoint.health_status not in _UNHEALTHY_STATUSES,
                    hostname=lb_endpoint.endpoint.hostname,
                ))
        # LOGICAL_DNS's one endpoint is a load-time check (config.constraints.envoy_load_checks).
        kind = cluster_pb2.Cluster.DiscoveryType.Name(cluster.type)
        return cls(
            name=cluster.name,
            type=kind,
            endpoints=endpoints,
            upstream=upstream,
            dns_refresh_rate=seconds(cluster, "dns_refresh_rate", 5.0) or 5.0,
            dns_lookup_family=cluster_pb2.Cluster.DnsLookupFamily.Name(cluster.dns_lookup_family),
            proto=cluster,
        )


def host_for(endpoint: Endpoint, address: str, resolved: bool = False) -> Host:
    """A Host for a configured endpoint at ``address`` (the endpoint's own, or one ``resolved``
    from its DNS name). Its hostname (``auto_host_rewrite``, hashing by hostname) is, as in
    Envoy, the endpoint's ``hostname`` field, else for a resolved endpoint the DNS name."""
    hostname = endpoint.hostname or (endpoint.address if resolved else "")
    host = Host(address, endpoint.port, endpoint.weight, endpoint.priority, endpoint.locality,
                endpoint.locality_weight, hostname=hostname)
    host.healthy = endpoint.healthy
    return host


class Cluster:
    """The runtime cluster of one worker."""

    def __init__(self, settings: ClusterSettings, scope: Scope, loop,
                 rng: random.Random | None = None, worker_index: int = 0) -> None:
        self.settings = settings
        self.name = settings.name
        self.loop = loop
        self.buffer_limit = settings.upstream.buffer_limit
        self.stats = ClusterStats(scope)
        self.priority_set = PrioritySet()
        self.pools: dict[tuple[str, int], Http1ConnPool] = {}
        self.resources = ResourceManager()  # Envoy's default thresholds (configurable: later)
        self.lb = create_load_balancer(
            settings.proto, self.priority_set, rng=rng or random.Random(),
            clock=time.monotonic, stats=LbStats(scope), worker_index=worker_index)
        if settings.type == "STATIC":
            self.set_hosts([host_for(e, e.address) for e in settings.endpoints], initial=True)

    def set_hosts(self, hosts: list[Host], initial: bool = False) -> None:
        """Replace the membership, keeping Host objects (and their pools) that stay.

        Hosts of the first membership are not "new" (no slow start), as in Envoy, where slow
        start applies to hosts added after the cluster warmed up.
        """
        current = {(h.address, h.port, h.priority): h for h in self.priority_set.all_hosts}
        merged = []
        for host in hosts:
            old = current.pop((host.address, host.port, host.priority), None)
            if old is not None:
                old.weight = host.weight
                merged.append(old)
            else:
                host.created_at = 0.0 if initial else time.monotonic()
                merged.append(host)
        for gone in current.values():
            # Removed hosts drain: requests in flight finish, none new reach them.
            pool = self.pools.pop((gone.address, gone.port), None)
            if pool is not None:
                pool.drain()
        self.priority_set.update(merged)
        self.stats.membership_total.set(len(merged))
        self.stats.membership_healthy.set(sum(1 for h in merged if h.healthy))

    def set_logical_address(self, endpoint: Endpoint, address: str) -> None:
        """LOGICAL_DNS: the cluster's one host takes the newly resolved ``address``.

        As Envoy's logical host, it stays the same host with the same pool: connections made
        from now on go to the new address, those already open to the old one serve on until
        they close (nothing drains on a DNS change).
        """
        hosts = self.priority_set.all_hosts
        if not hosts:
            self.set_hosts([host_for(endpoint, address, resolved=True)], initial=True)
            return
        host = hosts[0]
        if host.address == address:
            return
        pool = self.pools.pop((host.address, host.port), None)
        host.address = address
        host.address_string = f"{address}:{host.port}"
        if pool is not None:
            self.pools[(address, host.port)] = pool

    def choose_host(self, context) -> Host | None:
        return self.lb.choose_host(context)

    def pool_for(self, host: Host) -> Http1ConnPool:
        key = (host.address, host.port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Http1ConnPool(host, self.settings.upstream, self.stats,
                                                  self.loop, self.resources)
        return pool

    def on_request_start(self) -> None:
        stats = self.stats
        stats.upstream_rq_total.value += 1
        stats.upstream_rq_active.value += 1

    def on_request_end(self, host: Host, rtt: float, success: bool) -> None:
        """An attempt on ``host`` ended; ``rtt`` feeds latency-aware balancing."""
        stats = self.stats
        stats.upstream_rq_active.value -= 1
        stats.upstream_rq_completed.value += 1
        self.lb.on_request_complete(host, rtt, success)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close_all()
