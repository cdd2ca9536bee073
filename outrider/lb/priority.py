"""Priority levels, panic mode and locality weighting: which hosts a request may go to.

This is Envoy's ``LoadBalancerBase`` / ``ZoneAwareLoadBalancerBase`` logic, recomputed only when
the PrioritySet changes (``rebuild``), never per request:

* **Health of a priority** = ``min(100, overprovisioning_factor * healthy // total)`` (integer
  percent; the factor is 140 by default, i.e. 1.4).
* **Normalized total health** = ``min(100, Σ health)``. Each priority takes
  ``min(remaining, health * 100 // normalized_total)`` percent of the traffic, in order; rounding
  leftovers go to the first priority with any health. With nothing healthy anywhere, P0 gets 100.
* **Panic**: a priority whose healthy share (``100 * healthy / total``) is below
  ``healthy_panic_threshold`` (default 50; 0 disables) is *in panic*: a request routed there is
  balanced over all its hosts, healthy or not, and ``lb_healthy_panic`` is counted. When the
  normalized total health itself drops below the threshold, every priority is in panic and the
  load is split by host count instead.
* **Localities** (``locality_weighted_lb_config``): within a non-panicking priority a locality is
  picked by EDF over ``locality_weight * min(1, factor/100 * healthy/total)``, then a host within
  it. Localities of weight 0 get no traffic.

A ``HostSource`` is one list of hosts a policy balances over (Envoy's ``HostsSource``); policies
attach their per-source state (round-robin index, EDF schedule) to ``HostSource.state`` when the
sources are rebuilt.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable

from outrider.lb.edf import EdfScheduler
from outrider.upstream.host import Host, PrioritySet

DEFAULT_OVERPROVISIONING_FACTOR = 140
DEFAULT_HEALTHY_PANIC_THRESHOLD = 50.0

# HostSource kinds.
HEALTHY = 0
ALL_HOSTS = 1
LOCALITY_HEALTHY = 2


class HostSource:
    """One list of hosts to balance over, plus the owning policy's state for it."""

    __slots__ = ("hosts", "kind", "locality_index", "priority", "state")

    def __init__(self, priority: int, kind: int, hosts: list[Host], locality_index: int = -1):
        self.priority = priority
        self.kind = kind
        self.locality_index = locality_index
        self.hosts = hosts
        self.state: object = None

    def __repr__(self) -> str:
        return (f"HostSource(p={self.priority}, kind={self.kind}, "
                f"locality={self.locality_index}, n={len(self.hosts)})")


def priority_health(healthy: int, total: int, overprovisioning_factor: int) -> int:
    """Integer health score of one priority level, 0..100."""
    if total == 0:
        return 0
    return min(100, overprovisioning_factor * healthy // total)


def distribute_load(health: list[int]) -> list[int]:
    """Envoy's priority load (percent per priority, summing to 100) from health scores."""
    loads = [0] * max(1, len(health))
    normalized_total = min(100, sum(health))
    if normalized_total == 0:
        loads[0] = 100
        return loads
    remaining = 100
    first_available = -1
    for i, h in enumerate(health):
        if first_available < 0 and h > 0:
            first_available = i
        loads[i] = min(remaining, h * 100 // normalized_total)
        remaining -= loads[i]
    if remaining:
        loads[first_available] += remaining
    return loads


def total_panic_load(host_counts: list[int]) -> list[int]:
    """Priority load in total panic: proportional to host counts, leftovers to the first
    non-empty priority."""
    loads = [0] * max(1, len(host_counts))
    total = sum(host_counts)
    if total == 0:
        loads[0] = 100
        return loads
    remaining = 100
    first_nonempty = -1
    for i, n in enumerate(host_counts):
        if first_nonempty < 0 and n:
            first_nonempty = i
        loads[i] = 100 * n // total
        remaining -= loads[i]
    loads[first_nonempty] += remaining
    return loads


class PriorityLevel:
    """The precomputed view of one priority: host lists, localities, panic flag."""

    __slots__ = (
        "all_source",
        "health",
        "healthy_hosts",
        "healthy_source",
        "hosts",
        "locality_effective",
        "locality_healthy_hosts",
        "locality_hosts",
        "locality_scheduler",
        "locality_sources",
        "locality_weights",
        "panic",
        "priority",
    )

    def __init__(self, priority: int, hosts: list[Host], overprovisioning_factor: int) -> None:
        self.priority = priority
        self.hosts = hosts
        self.healthy_hosts = [h for h in hosts if h.healthy]
        self.health = priority_health(len(self.healthy_hosts), len(hosts), overprovisioning_factor)
        self.panic = False
        # Localities in order of first appearance.
        index: dict[tuple[str, str, str], int] = {}
        self.locality_hosts: list[list[Host]] = []
        self.locality_weights: list[int] = []
        for host in hosts:
            i = index.get(host.locality)
            if i is None:
                i = index[host.locality] = len(self.locality_hosts)
                self.locality_hosts.append([])
                self.locality_weights.append(host.locality_weight)
            self.locality_hosts[i].append(host)
        self.locality_healthy_hosts = [[h for h in lh if h.healthy] for lh in self.locality_hosts]
        self.healthy_source = HostSource(priority, HEALTHY, self.healthy_hosts)
        self.all_source = HostSource(priority, ALL_HOSTS, hosts)
        self.locality_sources: list[HostSource] = []
        self.locality_scheduler: EdfScheduler[int] | None = None
        self.locality_effective: list[float] = []

    def build_locality_scheduler(self, overprovisioning_factor: int) -> None:
        """EDF over localities by effective weight; none when no locality can take traffic."""
        effective = self.locality_effective = []
        for i, all_in_locality in enumerate(self.locality_hosts):
            healthy = len(self.locality_healthy_hosts[i])
            availability = min(1.0, overprovisioning_factor / 100.0 * healthy / len(all_in_locality))
            effective.append(self.locality_weights[i] * availability)
        self.locality_sources = [
            HostSource(self.priority, LOCALITY_HEALTHY, hosts, i)
            for i, hosts in enumerate(self.locality_healthy_hosts)
        ]
        live = [i for i, w in enumerate(effective) if w > 0]
        if not live:
            self.locality_scheduler = None
            return
        self.locality_scheduler = EdfScheduler.create_with_picks(live, effective.__getitem__, 0)

    def sources(self) -> list[HostSource]:
        return [self.healthy_source, self.all_source, *self.locality_sources]


class PriorityState:
    """Priority loads, panic flags and locality schedules of one PrioritySet.

    ``rebuild(priority_set)`` recomputes everything; ``choose_source()`` is the per-request
    step for random-based policies, ``choose_priority(hash64)`` for hash-based ones.
    """

    def __init__(
        self,
        *,
        overprovisioning_factor: int = DEFAULT_OVERPROVISIONING_FACTOR,
        healthy_panic_threshold: float = DEFAULT_HEALTHY_PANIC_THRESHOLD,
        locality_weighted: bool = False,
        on_panic: Callable[[], None] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        self.overprovisioning_factor = overprovisioning_factor
        self.healthy_panic_threshold = healthy_panic_threshold
        self.locality_weighted = locality_weighted
        self._on_panic = on_panic
        self._rng = rng or random.Random()
        self.levels: list[PriorityLevel] = []
        self.healthy_load: list[int] = [100]
        self._cumulative: list[int] = [100]
        # When traffic can only go to one source, the per-request step is a constant.
        self._fixed: HostSource | None = None
        self._fixed_panic = False

    # -- rebuild (off the request path) ---------------------------------------------------------

    def rebuild(self, priority_set: PrioritySet) -> list[HostSource]:
        """Recompute from the current membership and health; returns every HostSource."""
        factor = self.overprovisioning_factor
        self.levels = [PriorityLevel(hs.priority, list(hs.hosts), factor)
                       for hs in priority_set.host_sets]
        if not self.levels:
            self.levels = [PriorityLevel(0, [], factor)]
        levels = self.levels
        health = [lvl.health for lvl in levels]
        normalized_total = min(100, sum(health))
        threshold = self.healthy_panic_threshold
        loads = distribute_load(health)
        if not (threshold == 0 and normalized_total == 0):
            for lvl in levels:
                lvl.panic = normalized_total == 0 or self._in_panic(lvl)
            if normalized_total < threshold:
                loads = total_panic_load([len(lvl.hosts) for lvl in levels])
        self.healthy_load = loads
        cumulative, acc = [], 0
        for load in loads:
            acc += load
            cumulative.append(acc)
        self._cumulative = cumulative
        if self.locality_weighted:
            for lvl in levels:
                lvl.build_locality_scheduler(factor)
        loaded = [lvl for lvl, load in zip(levels, loads, strict=True) if load]
        self._fixed = None
        self._fixed_panic = False
        if len(loaded) == 1:
            only = loaded[0]
            if only.panic:
                self._fixed, self._fixed_panic = only.all_source, True
            elif only.locality_scheduler is None:
                self._fixed = only.healthy_source
        return [src for lvl in levels for src in lvl.sources()]

    def _in_panic(self, level: PriorityLevel) -> bool:
        total = len(level.hosts)
        healthy_percent = 100.0 * len(level.healthy_hosts) / total if total else 0.0
        return healthy_percent < self.healthy_panic_threshold

    # -- per request ------------------------------------------------------------------------------

    def choose_priority(self, hash64: int) -> int:
        """Envoy's choosePriority: ``hash % 100 + 1`` against the cumulative priority load."""
        cumulative = self._cumulative
        if len(cumulative) == 1:
            return 0
        return min(bisect_left(cumulative, hash64 % 100 + 1), len(cumulative) - 1)

    def choose_source(self) -> HostSource:
        """The host list for one request (counts panic); draws the priority at random."""
        fixed = self._fixed
        if fixed is not None:
            if self._fixed_panic:
                self._on_panic()
            return fixed
        level = self.levels[self.choose_priority(self._rng.getrandbits(64))]
        if level.panic:
            self._on_panic()
            return level.all_source
        scheduler = level.locality_scheduler
        if scheduler is not None:
            index = scheduler.pick_and_add(level.locality_effective.__getitem__)
            return level.locality_sources[index]  # type: ignore[index]
        return level.healthy_source

    def is_panic(self, priority: int) -> bool:
        return self.levels[priority].panic
