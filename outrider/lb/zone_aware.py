"""Shared skeleton of the random-driven policies (Envoy's ZoneAware/EdfLoadBalancerBase).

``ZoneAwareLoadBalancer`` owns the priority/panic/locality step (``PriorityState``), the
host-selection retry loop and the rebuild-on-update wiring; subclasses prepare per-source state in
``_build_source`` and pick within a source in ``_pick``.

``EdfLoadBalancer`` adds Envoy's weighted scheduling: when the hosts of a source have unequal
weights (or some are in slow start), picks come from an EDF schedule whose weights are recomputed
at each pick by ``_host_weight``; otherwise ``_unweighted_pick`` runs (plain rotation for round
robin, P2C for least request), which is cheaper and, with equal weights, exactly as fair.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from outrider.lb.base import LbStats, LoadBalancerBase, LoadBalancerContext
from outrider.lb.edf import EdfScheduler
from outrider.lb.priority import (
    DEFAULT_HEALTHY_PANIC_THRESHOLD,
    DEFAULT_OVERPROVISIONING_FACTOR,
    HostSource,
    PriorityState,
)
from outrider.upstream.host import Host, PrioritySet


@dataclass(frozen=True)
class CommonLbSettings:
    """The cluster-wide knobs every policy shares (``common_lb_config`` + load_assignment)."""

    overprovisioning_factor: int = DEFAULT_OVERPROVISIONING_FACTOR
    healthy_panic_threshold: float = DEFAULT_HEALTHY_PANIC_THRESHOLD
    locality_weighted: bool = False


@dataclass(frozen=True)
class SlowStart:
    """``slow_start_config``: a new host's weight ramps over ``window`` seconds.

    factor = max(min_weight_percent / 100, time_factor ** (1 / aggression)), where
    time_factor = max(1 ms, now - start) / window and start = max(created_at, last_hc_pass_time).
    """

    window: float
    aggression: float = 1.0
    min_weight_percent: float = 10.0

    def factor(self, host: Host, now: float) -> float:
        """Weight multiplier for ``host`` at ``now`` (1.0 once out of the window)."""
        start = host.created_at
        passed = host.last_hc_pass_time
        if passed is not None and passed > start:
            start = passed
        elapsed = now - start
        if elapsed >= self.window or not host.healthy:
            return 1.0
        time_factor = max(0.001, elapsed) / self.window
        if self.aggression != 1.0:
            time_factor = time_factor ** (1.0 / self.aggression)
        return max(time_factor, self.min_weight_percent / 100.0)


DEFAULT_COMMON = CommonLbSettings()


class ZoneAwareLoadBalancer(LoadBalancerBase):
    """Priority/panic/locality handling + retry loop; subclasses pick within a HostSource."""

    def __init__(
        self,
        priority_set: PrioritySet,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        stats: LbStats,
        common: CommonLbSettings = DEFAULT_COMMON,
        worker_index: int = 0,
    ) -> None:
        self._rng = rng
        self._clock = clock
        self._stats = stats
        self._priority = PriorityState(
            overprovisioning_factor=common.overprovisioning_factor,
            healthy_panic_threshold=common.healthy_panic_threshold,
            locality_weighted=common.locality_weighted,
            on_panic=stats.lb_healthy_panic.inc,
            rng=rng,
        )
        # Envoy seeds each worker's schedule at a random offset so workers do not move in
        # lockstep; adding the worker index keeps them apart even under one fixed test seed.
        self._seed = rng.getrandbits(32) + worker_index
        self.priority_set = priority_set
        priority_set.on_update(self.refresh)
        self.refresh(priority_set)

    @property
    def priority_state(self) -> PriorityState:
        return self._priority

    def refresh(self, priority_set: PrioritySet) -> None:
        """Rebuild every source's state; the PrioritySet calls this after any change."""
        for source in self._priority.rebuild(priority_set):
            self._build_source(source)

    def _build_source(self, source: HostSource) -> None:
        """Prepare ``source.state`` for ``_pick`` (off the request path)."""

    def _pick(self, source: HostSource) -> Host | None:
        raise NotImplementedError

    def choose_host(self, context: LoadBalancerContext | None) -> Host | None:
        """A host by priority load, panic and locality, then by the policy; honours
        ``should_select_another_host`` up to ``host_selection_retry_max_attempts`` re-picks."""
        host = self._pick(self._priority.choose_source())
        if context is None or host is None:
            return host
        retries = context.host_selection_retry_max_attempts
        while retries > 0 and context.should_select_another_host(host):
            retries -= 1
            host = self._pick(self._priority.choose_source())
            if host is None:
                return None
        return host


class _EdfSourceState:
    __slots__ = ("edf", "rr_index")

    def __init__(self, edf: EdfScheduler[Host] | None, rr_index: int) -> None:
        self.edf = edf
        self.rr_index = rr_index


class EdfLoadBalancer(ZoneAwareLoadBalancer):
    """Weighted EDF when weights differ or hosts are ramping; ``_unweighted_pick`` otherwise."""

    def __init__(
        self,
        priority_set: PrioritySet,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        stats: LbStats,
        common: CommonLbSettings = DEFAULT_COMMON,
        worker_index: int = 0,
        slow_start: SlowStart | None = None,
    ) -> None:
        self._slow_start = slow_start
        # Clock time until which some host may still be ramping (Envoy's latest_host_added_time
        # + window); past it, _host_weight skips the clock read.
        self._slow_start_until = float("-inf")
        super().__init__(priority_set, rng=rng, clock=clock, stats=stats, common=common,
                         worker_index=worker_index)

    def refresh(self, priority_set: PrioritySet) -> None:
        slow_start = self._slow_start
        if slow_start is not None:
            latest = float("-inf")
            for host in priority_set.all_hosts:
                start = host.created_at
                if host.last_hc_pass_time is not None and host.last_hc_pass_time > start:
                    start = host.last_hc_pass_time
                latest = max(latest, start)
            self._slow_start_until = latest + slow_start.window
        super().refresh(priority_set)

    def _in_slow_start(self) -> bool:
        return self._slow_start is not None and self._clock() < self._slow_start_until

    def _build_source(self, source: HostSource) -> None:
        hosts = source.hosts
        edf: EdfScheduler[Host] | None = None
        if len(hosts) > 1 and (not _weights_equal(hosts) or self._in_slow_start()):
            edf = EdfScheduler.create_with_picks(hosts, self._host_weight, self._seed % len(hosts))
        source.state = _EdfSourceState(edf, self._seed)

    def _pick(self, source: HostSource) -> Host | None:
        state: _EdfSourceState = source.state  # type: ignore[assignment]
        if state.edf is not None:
            return state.edf.pick_and_add(self._host_weight)
        hosts = source.hosts
        if not hosts:
            return None
        return self._unweighted_pick(hosts, state)

    def _host_weight(self, host: Host) -> float:
        """The host's scheduling weight now (load-balancing weight × slow-start factor)."""
        weight = float(host.weight)
        if self._slow_start_until != float("-inf"):
            now = self._clock()
            if now < self._slow_start_until:
                weight *= self._slow_start.factor(host, now)  # type: ignore[union-attr]
        return weight

    def _unweighted_pick(self, hosts: list[Host], state: _EdfSourceState) -> Host:
        raise NotImplementedError


def _weights_equal(hosts: list[Host]) -> bool:
    first = hosts[0].weight
    return all(h.weight == first for h in hosts)
