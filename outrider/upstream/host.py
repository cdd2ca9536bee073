"""Hosts and host sets: the membership a load balancer chooses from.

A ``Host`` is one worker's runtime view of an upstream endpoint of a cluster. It holds three
kinds of state, kept apart (``outrider.upstream.membership`` explains the split):

* **identity and weight**: ``description``, an immutable ``HostDescription``. It is the source of
  truth; ``address``, ``port``, ``address_string``, ``weight``, ``priority``, ``locality``,
  ``locality_weight`` and ``hostname`` are plain copies of it, made by ``_describe`` only (when
  the host is built or an update is applied), so the balancers and the router read a slot, not
  a property. Never assign them: call ``update_description``.
* **health**: ``health_flags`` (``HealthFlag``s) and its copy ``healthy`` (no flag set), set by
  ``set_health_flags`` only, which the cluster calls when it applies a health or membership
  update. After changing either, call the PrioritySet's ``notify()`` (the cluster does).
* **load**, this worker's own: ``active_requests`` (incremented by the router when a request is
  assigned, decremented when it ends; read by LEAST_REQUEST and peak EWMA), ``lb_state`` (owned by
  the policy), ``stats``, ``created_at`` and ``last_hc_pass_time`` (slow start).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from outrider.upstream.membership import HEALTHY, HealthFlag, HostDescription, HostState


class Host:
    """One upstream endpoint, as one worker sees it."""

    __slots__ = (
        "description", "health_flags",
        # Copies of ``description`` and ``health_flags``, for the request path (see above).
        "address", "port", "address_string", "weight", "priority", "locality", "locality_weight",
        "hostname", "healthy",
        # Load state, per worker.
        "active_requests", "created_at", "lb_state", "last_hc_pass_time",
        # Outcomes of the requests this worker sent it (Envoy's per-host rq_success/rq_error),
        # reported to the main process with the stats: what outlier detection will judge.
        "rq_success", "rq_error",
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
        health_flags: HealthFlag = HEALTHY,
    ) -> None:
        """A host from loose fields (tests, benchmarks); clusters use ``from_state``."""
        self._init(HostDescription(address, port, weight, priority, locality, locality_weight,
                                   hostname), health_flags, created_at)

    @classmethod
    def from_state(cls, state: HostState, created_at: float = 0.0) -> Host:
        """A new host for ``state`` that joined its cluster at ``created_at`` (clock seconds)."""
        host = cls.__new__(cls)
        host._init(state.description, state.health_flags, created_at)
        return host

    def _init(self, description: HostDescription, health_flags: HealthFlag,
              created_at: float) -> None:
        self._describe(description)
        self._set_health(HealthFlag(health_flags))
        self.active_requests = 0
        # When the host joined the cluster (clock seconds), for slow start.
        self.created_at = created_at
        # When the host last turned healthy (clock seconds), set when an active health check
        # failure clears; slow start ramps from max(created_at, last_hc_pass_time). None = never.
        self.last_hc_pass_time: float | None = None
        # Per-policy scratch state (e.g. peak EWMA's latency estimate); owned by the policy.
        self.lb_state: object = None
        self.rq_success = 0
        self.rq_error = 0

    def _describe(self, description: HostDescription) -> None:
        """Take ``description`` and refresh the request path's copies of it."""
        self.description = description
        self.address = description.address
        self.port = description.port
        # ``ip:port``, as Envoy prints it in /clusters, logs and %UPSTREAM_HOST%.
        self.address_string = f"{description.address}:{description.port}"
        self.weight = description.weight
        self.priority = description.priority
        self.locality = description.locality
        self.locality_weight = description.locality_weight
        self.hostname = description.hostname

    def update_description(self, description: HostDescription) -> bool:
        """Describe this host anew (a weight change, a logical host's new address), keeping its
        load state; False if ``description`` is the current one."""
        if description == self.description:
            return False
        self._describe(description)
        return True

    def set_health_flags(self, flags: HealthFlag) -> bool:
        """Set the health flags (and ``healthy``); False if they were already ``flags``."""
        flags = HealthFlag(flags)
        if flags == self.health_flags:
            return False
        self._set_health(flags)
        return True

    def _set_health(self, flags: HealthFlag) -> None:
        self.health_flags = flags
        self.healthy = not flags

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
