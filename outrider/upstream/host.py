"""Hosts and host sets: the membership a load balancer chooses from.

A ``Host`` is one upstream endpoint of a cluster. Health flags are set by the health checker and the
outlier detector (later issues); the load balancers only read ``healthy``. ``active_requests`` is
kept by the router (incremented when a request is assigned, decremented when it ends) and read by
LEAST_REQUEST and peak EWMA.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Host:
    """One upstream endpoint."""

    __slots__ = (
        "address", "port", "address_string", "weight", "priority", "locality", "locality_weight",
        "hostname", "healthy", "active_requests", "created_at", "lb_state", "stats",
        "last_hc_pass_time",
    )

    def __init__(
        self,
        address: str,
        port: int,
        weight: int = 1,
        priority: int = 0,
        locality: tuple[str, str, str] = ("", "", ""),
        locality_weight: int = 0,
        hostname: str = "",
        created_at: float = 0.0,
    ) -> None:
        self.address = address
        self.port = port
        # ``ip:port``, as Envoy prints it in /clusters, logs and %UPSTREAM_HOST%.
        self.address_string = f"{address}:{port}"
        self.weight = weight
        self.priority = priority
        # (region, zone, sub_zone) and the locality's load_balancing_weight (0 = unset).
        self.locality = locality
        self.locality_weight = locality_weight
        self.hostname = hostname
        self.healthy = True
        self.active_requests = 0
        # When the host joined the cluster (clock seconds), for slow start.
        self.created_at = created_at
        # When the host last turned healthy (clock seconds), set by the health checker; slow start
        # ramps from max(created_at, last_hc_pass_time). None = never health checked.
        self.last_hc_pass_time: float | None = None
        # Per-policy scratch state (e.g. peak EWMA's latency estimate); owned by the policy.
        self.lb_state: object = None
        self.stats: object = None


    def __repr__(self) -> str:
        return f"Host({self.address_string}, w={self.weight}, p={self.priority})"


@dataclass
class HostSet:
    """The hosts of one priority level."""

    priority: int
    hosts: list[Host] = field(default_factory=list)

    @property
    def healthy_hosts(self) -> list[Host]:
        return [h for h in self.hosts if h.healthy]


@dataclass
class PrioritySet:
    """Host sets indexed by priority (0 is the most preferred).

    ``update`` replaces the membership; listeners registered with ``on_update`` (load balancers
    that precompute rings or schedules) rebuild then, never on the request path.
    """

    host_sets: list[HostSet] = field(default_factory=list)
    _callbacks: list = field(default_factory=list, repr=False)

    @classmethod
    def from_hosts(cls, hosts: list[Host]) -> PrioritySet:
        ps = cls()
        ps.update(hosts)
        return ps

    def update(self, hosts: list[Host]) -> None:
        levels = max((h.priority for h in hosts), default=-1) + 1
        self.host_sets = [HostSet(p) for p in range(levels)]
        for host in hosts:
            self.host_sets[host.priority].hosts.append(host)
        self.notify()

    def notify(self) -> None:
        """Call after membership or health changes."""
        for callback in self._callbacks:
            callback(self)

    def on_update(self, callback) -> None:
        self._callbacks.append(callback)

    @property
    def all_hosts(self) -> list[Host]:
        return [h for hs in self.host_sets for h in hs.hosts]
