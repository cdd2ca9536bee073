"""A cluster's circuit-breaker thresholds (Envoy's ResourceManager), applied by its pools.

Envoy applies these limits to every cluster, configured or not: 1024 connections, 1024 pending
requests, 1024 active requests and 3 concurrent retries, so one slow upstream cannot make the
proxy open connections or queue requests without bound. Counts are per worker, as Envoy's are
(its resource manager is shared by the workers of one process; with worker processes each
process has its own). Pure counters, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_PENDING_REQUESTS = 1024
DEFAULT_MAX_REQUESTS = 1024
DEFAULT_MAX_RETRIES = 3


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


@dataclass
class ResourceManager:
    """The thresholds of one cluster (the default routing priority)."""

    connections: ResourceLimit = field(
        default_factory=lambda: ResourceLimit(DEFAULT_MAX_CONNECTIONS))
    pending_requests: ResourceLimit = field(
        default_factory=lambda: ResourceLimit(DEFAULT_MAX_PENDING_REQUESTS))
    requests: ResourceLimit = field(default_factory=lambda: ResourceLimit(DEFAULT_MAX_REQUESTS))
    retries: ResourceLimit = field(default_factory=lambda: ResourceLimit(DEFAULT_MAX_RETRIES))
