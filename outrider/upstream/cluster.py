"""Clusters: a named set of upstream hosts with its load balancer and connection pools.

``ClusterSettings`` is the config translation (pure); ``Cluster`` is the per-worker runtime:
membership (``PrioritySet``), the load balancer, one connection pool per host, and stats. The
runtime's membership changes only by applying membership events (``Cluster.apply``).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from outrider.config.durations import seconds, timeout, uint_value
from outrider.lb.factory import LbStats, create_load_balancer
from outrider.pool.http1 import Http1ConnPool
from outrider.stats.store import Scope, StatsStruct
from outrider.upstream.host import Host, PrioritySet
from outrider.upstream.membership import (
    HEALTHY,
    ClusterMembership,
    ClusterUpdate,
    HealthFlag,
    HealthUpdate,
    HostDescription,
    HostKey,
    HostState,
    LogicalAddressUpdate,
    MembershipUpdate,
)
from outrider.upstream.resource_manager import (
    PRIORITY_NAMES,
    ResourceManager,
    Thresholds,
    per_host_max_connections,
    thresholds_by_priority,
)

log = logging.getLogger("outrider.upstream")
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
    GAUGES = ("upstream_cx_active", "upstream_rq_active")
    # Membership is decided by discovery (the main process): the same in every worker.
    SHARED_GAUGES = ("membership_total", "membership_healthy")

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
    # From the endpoint's health_status (EDS-style static health); False = FAILED_EDS_HEALTH.
    healthy: bool = True
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
    # Circuit-breaker thresholds at the DEFAULT and HIGH routing priorities, and each host's
    # connection limit (``per_host_thresholds``; None: none).
    circuit_breakers: tuple[Thresholds, Thresholds] = (Thresholds(), Thresholds())
    per_host_max_connections: tuple[int | None, int | None] = (None, None)

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
            circuit_breakers=thresholds_by_priority(cluster.circuit_breakers),
            per_host_max_connections=per_host_max_connections(cluster.circuit_breakers),
        )


def host_state_for(endpoint: Endpoint, address: str, resolved: bool = False) -> HostState:
    """The HostState of a configured endpoint at ``address`` (the endpoint's own, or one
    ``resolved`` from its DNS name). Its hostname (``auto_host_rewrite``, hashing by hostname) is,
    as in Envoy, the endpoint's ``hostname`` field, else for a resolved endpoint the DNS name; a
    ``health_status`` that takes it out of rotation is ``FAILED_EDS_HEALTH``."""
    hostname = endpoint.hostname or (endpoint.address if resolved else "")
    description = HostDescription(address, endpoint.port, endpoint.weight, endpoint.priority,
                                  endpoint.locality, endpoint.locality_weight, hostname)
    return HostState(description, HEALTHY if endpoint.healthy else HealthFlag.FAILED_EDS_HEALTH)


def static_membership(settings: ClusterSettings) -> ClusterMembership:
    """A STATIC cluster's membership, from its config.

    Both sides build it: the discovery side as its authoritative copy, every worker's Cluster
    for itself (so a STATIC cluster serves before, and without, any update).
    """
    membership = ClusterMembership(settings.name)
    membership.replace((host_state_for(e, e.address) for e in settings.endpoints), initial=True)
    return membership


class Cluster:
    """The runtime cluster of one worker.

    Membership and health change only through ``apply`` (``apply_membership``, ``apply_health``,
    ``apply_logical_address``), with the events ``outrider.upstream.membership`` describes; a
    STATIC cluster applies its config's membership itself when built.
    """

    def __init__(self, settings: ClusterSettings, scope: Scope, loop,
                 rng: random.Random | None = None, worker_index: int = 0,
                 serving: bool = True) -> None:
        self.settings = settings
        self.name = settings.name
        self.loop = loop
        self.buffer_limit = settings.upstream.buffer_limit
        self.stats = ClusterStats(scope)
        self.priority_set = PrioritySet()
        # The same hosts as the PrioritySet, by key, in the order the updates gave them.
        self.hosts_by_key: dict[HostKey, Host] = {}
        # One pool per host and routing priority, as Envoy's; each priority has its own limits.
        self.pools: dict[tuple[str, int, int], Http1ConnPool] = {}
        self.resources = tuple(
            ResourceManager(thresholds,
                            scope.scope(f"circuit_breakers.{name}") if serving else None)
            for thresholds, name in zip(settings.circuit_breakers, PRIORITY_NAMES, strict=True))
        # The main process's copy of a cluster (``serving=False``, with worker processes)
        # tracks membership and health only: no balancer, no pools.
        self.lb = create_load_balancer(
            settings.proto, self.priority_set, rng=rng or random.Random(),
            clock=time.monotonic, stats=LbStats(scope),
            worker_index=worker_index) if serving else None
        if settings.type == "STATIC":
            self.apply_membership(static_membership(settings).snapshot())

    def apply(self, update: ClusterUpdate) -> None:
        """Apply one event of ``outrider.upstream.membership`` addressed to this cluster."""
        match update:
            case MembershipUpdate():
                self.apply_membership(update)
            case HealthUpdate():
                self.apply_health(update)
            case LogicalAddressUpdate():
                self.apply_logical_address(update)
            case _:
                raise TypeError(f"not a cluster update: {update!r}")

    def apply_membership(self, update: MembershipUpdate) -> None:
        """Add, change and remove hosts; the balancers rebuild.

        A host that stays is the same Host object: its load state and pool survive a change of
        weight or health. A new host is "new" for slow start unless the update is ``initial``
        (as in Envoy, slow start applies to hosts added after the cluster warmed up). A removed
        host's pool drains: requests in flight finish, none new reach it.
        """
        hosts = self.hosts_by_key
        changed = False
        for key in update.removed:
            gone = hosts.pop(key, None)
            if gone is None:
                continue
            changed = True
            for priority in range(len(PRIORITY_NAMES)):
                pool = self.pools.pop((gone.address, gone.port, priority), None)
                if pool is not None:
                    pool.drain()
        created_at = 0.0 if update.initial else time.monotonic()
        for state in update.added:
            key = state.description.key
            host = hosts.get(key)
            if host is None:
                hosts[key] = Host.from_state(state, created_at)
                changed = True
                continue
            if host.update_description(state.description):
                changed = True
            if self._set_health(host, state.health_flags):
                changed = True
        if changed:
            self.priority_set.update(list(hosts.values()))
            self._count_members()

    def apply_health(self, update: HealthUpdate) -> None:
        """One host's new health flags; the balancers rebuild their healthy lists. Ignored for a
        host that is not (any longer) a member."""
        host = self.hosts_by_key.get(update.key)
        if host is None:
            log.debug("cluster %s: health update for unknown host %s", self.name, update.key)
            return
        if self._set_health(host, update.health_flags):
            self.priority_set.notify()
            self._count_members()

    def apply_logical_address(self, update: LogicalAddressUpdate) -> None:
        """LOGICAL_DNS: the cluster's one host takes the newly resolved address.

        As Envoy's logical host, it stays the same host with the same pool: connections made
        from now on go to the new address, those already open to the old one serve on until
        they close (nothing drains on a DNS change, and the balancer has nothing to rebuild).
        """
        hosts = self.hosts_by_key
        if len(hosts) != 1:
            log.debug("cluster %s: logical address update for %d hosts", self.name, len(hosts))
            return
        [host] = hosts.values()
        if host.address == update.address:
            return
        moved = {priority: self.pools.pop((host.address, host.port, priority), None)
                 for priority in range(len(PRIORITY_NAMES))}
        host.update_description(replace(host.description, address=update.address))
        self.hosts_by_key = {host.description.key: host}
        for priority, pool in moved.items():
            if pool is not None:
                self.pools[(host.address, host.port, priority)] = pool

    def _set_health(self, host: Host, flags: HealthFlag) -> bool:
        """Set ``host``'s flags; a cleared active health check failure is a pass (slow start
        ramps from it, as Envoy's last_hc_pass_time). False if nothing changed."""
        failed_hc = host.health_flags & HealthFlag.FAILED_ACTIVE_HC
        if not host.set_health_flags(flags):
            return False
        if failed_hc and not flags & HealthFlag.FAILED_ACTIVE_HC:
            host.last_hc_pass_time = time.monotonic()
        return True

    def _count_members(self) -> None:
        hosts = self.hosts_by_key.values()
        self.stats.membership_total.set(len(hosts))
        self.stats.membership_healthy.set(sum(1 for h in hosts if h.healthy))

    def choose_host(self, context) -> Host | None:
        return self.lb.choose_host(context)

    def pool_for(self, host: Host, priority: int = 0) -> Http1ConnPool:
        """The pool for ``host`` at a routing ``priority`` (a route's; 0 is DEFAULT)."""
        key = (host.address, host.port, priority)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Http1ConnPool(
                host, self.settings.upstream, self.stats, self.loop, self.resources[priority],
                max_host_connections=self.settings.per_host_max_connections[priority])
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
        if success:
            host.rq_success += 1
        else:
            host.rq_error += 1
        self.lb.on_request_complete(host, rtt, success)

    def host_outcomes(self) -> dict:
        """Each host's requests in flight, successes and errors in this worker, by key."""
        return {key: (h.active_requests, h.rq_success, h.rq_error)
                for key, h in self.hosts_by_key.items()}

    def drain(self) -> None:
        """A reload removed or replaced this cluster: requests in flight finish, idle
        connections close, and nothing new comes (the cluster manager no longer names it)."""
        for pool in self.pools.values():
            pool.drain()
        for resources in self.resources:
            resources.close()

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close_all()
