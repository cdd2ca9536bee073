"""LEAST_REQUEST (Envoy's LeastRequestLoadBalancer).

* Equal weights: ``choice_count`` (default 2) hosts drawn uniformly **with replacement**; the one
  with the fewest ``active_requests`` wins (ties keep the earlier draw). This is Envoy's behaviour,
  kept on purpose: peak EWMA is the policy that draws without replacement.
* ``selection_method: FULL_SCAN``: the least-loaded host of the whole list, ties broken uniformly
  at random by reservoir sampling.
* Unequal weights (or slow start): EDF with weight ``w / (active + 1) ** active_request_bias``
  recomputed whenever a host is re-added to the schedule, i.e. at each of its picks.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from outrider.lb.base import LbStats
from outrider.lb.zone_aware import (
    DEFAULT_COMMON,
    CommonLbSettings,
    EdfLoadBalancer,
    SlowStart,
    _EdfSourceState,
)
from outrider.upstream.host import Host, PrioritySet


class LeastRequestLoadBalancer(EdfLoadBalancer):
    """P2C / full scan on active requests; load-scaled EDF for unequal weights."""

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
        choice_count: int = 2,
        active_request_bias: float = 1.0,
        full_scan: bool = False,
    ) -> None:
        if choice_count < 2:
            raise ValueError("least_request: choice_count must be at least 2")
        if active_request_bias < 0:
            raise ValueError("least_request: active_request_bias must be >= 0")
        self.choice_count = choice_count
        self.active_request_bias = active_request_bias
        self.full_scan = full_scan
        super().__init__(priority_set, rng=rng, clock=clock, stats=stats, common=common,
                         worker_index=worker_index, slow_start=slow_start)

    def _host_weight(self, host: Host) -> float:
        bias = self.active_request_bias
        if bias == 1.0:
            weight = host.weight / (host.active_requests + 1)
        elif bias == 0.0:
            weight = float(host.weight)
        else:
            weight = host.weight / (host.active_requests + 1) ** bias
        if self._slow_start_until != float("-inf"):
            now = self._clock()
            if now < self._slow_start_until:
                weight *= self._slow_start.factor(host, now)  # type: ignore[union-attr]
        return weight

    def _unweighted_pick(self, hosts: list[Host], state: _EdfSourceState) -> Host:
        if self.full_scan:
            return self._full_scan(hosts)
        rand = self._rng.random
        n = len(hosts)
        best = hosts[int(rand() * n)]
        if self.choice_count == 2:
            sampled = hosts[int(rand() * n)]
            return sampled if sampled.active_requests < best.active_requests else best
        for _ in range(self.choice_count - 1):
            sampled = hosts[int(rand() * n)]
            if sampled.active_requests < best.active_requests:
                best = sampled
        return best

    def _full_scan(self, hosts: list[Host]) -> Host:
        rand = self._rng.random
        best = hosts[0]
        least = best.active_requests
        tied = 1
        for host in hosts[1:]:
            active = host.active_requests
            if active < least:
                best, least, tied = host, active, 1
            elif active == least:
                tied += 1
                if int(rand() * tied) == 0:
                    best = host
        return best
