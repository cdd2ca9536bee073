"""A cluster's circuit breakers (Envoy's ResourceManager): thresholds per routing priority,
applied by its pools.

Envoy applies these limits to every cluster, configured or not: 1024 connections, 1024 pending
requests, 1024 active requests and 3 concurrent retries, so one slow upstream cannot make the
proxy open connections or queue requests without bound. ``circuit_breakers.thresholds`` sets
them per priority (DEFAULT, HIGH; a route's ``priority`` picks one), as Envoy does. Counts are
per worker process (Envoy's are per process, shared by its worker threads: docs/architecture.md).

The gauges (``circuit_breakers.<priority>.cx_open``, ``rq_pending_open``, ``rq_open``,
``rq_retry_open``, ``cx_pool_open`` and, with ``track_remaining``, ``remaining_cx``,
``remaining_pending``, ``remaining_rq``, ``remaining_retries``) are computed when stats are read,
not on every request. Pure counters otherwise, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from outrider.config.durations import uint_value

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_PENDING_REQUESTS = 1024
DEFAULT_MAX_REQUESTS = 1024
DEFAULT_MAX_RETRIES = 3

# envoy.config.core.v3.RoutingPriority, and the names Envoy's stats give them.
DEFAULT_PRIORITY, HIGH_PRIORITY = 0, 1
PRIORITY_NAMES = ("default", "high")


@dataclass(frozen=True)
class Thresholds:
    """One priority's limits (``CircuitBreakers.Thresholds``)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_pending_requests: int = DEFAULT_MAX_PENDING_REQUESTS
    max_requests: int = DEFAULT_MAX_REQUESTS
    max_retries: int = DEFAULT_MAX_RETRIES
    track_remaining: bool = False

    @classmethod
    def from_proto(cls, proto) -> Thresholds:
        return cls(
            max_connections=uint_value(proto, "max_connections", DEFAULT_MAX_CONNECTIONS),
            max_pending_requests=uint_value(proto, "max_pending_requests",
                                            DEFAULT_MAX_PENDING_REQUESTS),
            max_requests=uint_value(proto, "max_requests", DEFAULT_MAX_REQUESTS),
            max_retries=uint_value(proto, "max_retries", DEFAULT_MAX_RETRIES),
            track_remaining=proto.track_remaining,
        )


def thresholds_by_priority(circuit_breakers) -> tuple[Thresholds, Thresholds]:
    """(DEFAULT, HIGH) thresholds from a cluster's ``circuit_breakers``; a priority the config
    does not name keeps Envoy's defaults, and of two entries for one priority the last wins
    (as Envoy reads them)."""
    found = [Thresholds(), Thresholds()]
    for proto in circuit_breakers.thresholds:
        found[proto.priority] = Thresholds.from_proto(proto)
    return found[0], found[1]


def per_host_max_connections(circuit_breakers) -> tuple[int | None, int | None]:
    """(DEFAULT, HIGH) ``per_host_thresholds.max_connections``: each host's connection limit
    (per worker), None for none. Envoy reads only ``max_connections`` there."""
    found: list[int | None] = [None, None]
    for proto in circuit_breakers.per_host_thresholds:
        if proto.HasField("max_connections"):
            found[proto.priority] = proto.max_connections.value
    return found[0], found[1]


@dataclass
class ResourceLimit:
    """One bounded resource: how many are in use, and how many may be."""

    max: int
    count: int = 0

    def can_create(self) -> bool:
        return self.count < self.max

    def inc(self) -> None:
        self.count += 1

    def dec(self) -> None:
        self.count -= 1


class ResourceManager:
    """The limits of one cluster at one routing priority, and their gauges."""

    def __init__(self, thresholds: Thresholds = Thresholds(), scope=None) -> None:
        self.thresholds = thresholds
        self.connections = ResourceLimit(thresholds.max_connections)
        self.pending_requests = ResourceLimit(thresholds.max_pending_requests)
        self.requests = ResourceLimit(thresholds.max_requests)
        self.retries = ResourceLimit(thresholds.max_retries)
        self._gauges = None
        if scope is not None:
            names = [("cx_open", self.connections), ("rq_pending_open", self.pending_requests),
                     ("rq_open", self.requests), ("rq_retry_open", self.retries)]
            self._gauges = [(scope.gauge(name), limit) for name, limit in names]
            scope.gauge("cx_pool_open")  # Envoy's per-host pool limit: not configurable here
            self._remaining = None
            if thresholds.track_remaining:
                remaining = [("remaining_cx", self.connections),
                             ("remaining_pending", self.pending_requests),
                             ("remaining_rq", self.requests), ("remaining_retries", self.retries)]
                self._remaining = [(scope.gauge(name), limit) for name, limit in remaining]
            self._scope = scope
            scope.store.set_refresher(scope.prefix, self.refresh_gauges)

    def close(self) -> None:
        """Its cluster is gone: stop refreshing its gauges."""
        if self._gauges is not None:
            self._scope.store.drop_refresher(self._scope.prefix, self.refresh_gauges)

    def refresh_gauges(self) -> None:
        """Bring the gauges up to date (the stats store calls this before it is read)."""
        for gauge, limit in self._gauges:
            gauge.value = 1 if limit.count >= limit.max else 0
        for gauge, limit in self._remaining or ():
            gauge.value = max(0, limit.max - limit.count)
