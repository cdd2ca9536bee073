"""Peak EWMA (★ beyond Envoy): latency-aware power of two choices, as in Finagle and tower.

Each host carries a peak-sensitive, time-decayed RTT estimate (``Host.lb_state``):

* **observe** (``on_request_complete``): let ``w = exp(-elapsed / decay_time)``, elapsed being the
  time since the host's last sample, and ``seen = estimate × w`` the estimate as the cost function
  sees it now. A sample above ``seen`` becomes the estimate at once (the *peak*: slowness is
  believed immediately); otherwise ``estimate = estimate × w + rtt × (1 − w)``. The first sample
  replaces the default. A failed request never makes a host look faster: its sample is
  ``max(rtt, default_rtt, seen)``.
* **cost** = ``estimate × exp(-(now − last sample) / decay_time) × (active_requests + 1) / weight``.
  The read-time decay toward zero is what lets a host that was slow get probed again once it
  has been left alone for a while (tower and Finagle decay on read the same way); a host never
  measured costs ``default_rtt × (active + 1) / weight`` (default 10 ms, Envoy's contrib default:
  a new host gets probed soon, and its first response replaces the guess).
* **pick**: ``choice_count`` (default 2) *distinct* hosts drawn uniformly without replacement;
  the cheapest wins. Drawing with replacement (Envoy's LEAST_REQUEST) compares a host with itself
  once in N² picks, which puts a floor of ~1/N² of traffic under even the slowest host.

Priorities, panic and health come from ``ZoneAwareLoadBalancer`` like the other policies.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from outrider.lb.base import LbStats
from outrider.lb.priority import HostSource
from outrider.lb.zone_aware import DEFAULT_COMMON, CommonLbSettings, ZoneAwareLoadBalancer
from outrider.upstream.host import Host, PrioritySet

_exp = math.exp


class EwmaState:
    """One host's RTT estimate (seconds) and when it was last sampled (clock seconds)."""

    __slots__ = ("estimate", "stamp")

    def __init__(self, estimate: float, stamp: float) -> None:
        self.estimate = estimate
        self.stamp = stamp


class PeakEwmaLoadBalancer(ZoneAwareLoadBalancer):
    """P2C (without replacement) over peak-EWMA latency × outstanding requests."""

    def __init__(
        self,
        priority_set: PrioritySet,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        stats: LbStats,
        common: CommonLbSettings = DEFAULT_COMMON,
        worker_index: int = 0,
        decay_time: float = 10.0,
        choice_count: int = 2,
        default_rtt: float = 0.010,
    ) -> None:
        if decay_time <= 0 or default_rtt <= 0:
            raise ValueError("peak_ewma: decay_time and default_rtt must be positive")
        if choice_count < 2:
            raise ValueError("peak_ewma: choice_count must be at least 2")
        self.decay_time = decay_time
        self.choice_count = choice_count
        self.default_rtt = default_rtt
        self._inv_decay = 1.0 / decay_time
        super().__init__(priority_set, rng=rng, clock=clock, stats=stats, common=common,
                         worker_index=worker_index)

    # -- latency feedback ---------------------------------------------------------------------------

    def on_request_complete(self, host: Host, rtt_seconds: float, success: bool) -> None:
        """Fold one response time into ``host``'s estimate."""
        now = self._clock()
        state = host.lb_state
        if state.__class__ is not EwmaState:
            sample = rtt_seconds if success else max(rtt_seconds, self.default_rtt)
            host.lb_state = EwmaState(sample, now)
            return
        w = math.exp(min(0.0, state.stamp - now) * self._inv_decay)  # type: ignore[union-attr]
        seen = state.estimate * w  # type: ignore[union-attr]
        if not success:
            rtt_seconds = max(rtt_seconds, self.default_rtt, seen)
        if rtt_seconds > seen:
            state.estimate = rtt_seconds  # type: ignore[union-attr]
        else:
            state.estimate = state.estimate * w + rtt_seconds * (1.0 - w)  # type: ignore[union-attr]
        state.stamp = now  # type: ignore[union-attr]

    def cost(self, host: Host, now: float) -> float:
        """The host's load cost at ``now`` (lower is better)."""
        state = host.lb_state
        if state.__class__ is EwmaState:
            elapsed = now - state.stamp  # type: ignore[union-attr]
            rtt = state.estimate  # type: ignore[union-attr]
            if elapsed > 0:
                rtt *= _exp(-elapsed * self._inv_decay)
        else:
            rtt = self.default_rtt
        return rtt * (host.active_requests + 1) / (host.weight or 1)

    def estimate(self, host: Host) -> float | None:
        """The host's stored estimate (seconds), None if never measured."""
        state = host.lb_state
        return state.estimate if state.__class__ is EwmaState else None  # type: ignore[union-attr]

    # -- selection ----------------------------------------------------------------------------------

    def _pick(self, source: HostSource) -> Host | None:
        hosts = source.hosts
        n = len(hosts)
        if n <= 1:
            return hosts[0] if n else None
        now = self._clock()
        cost = self.cost
        if self.choice_count == 2 or n == 2:
            rand = self._rng.random
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            a, b = hosts[i], hosts[j]
            # cost() inlined for the common case: both measured, equal weights.
            sa, sb = a.lb_state, b.lb_state
            if sa.__class__ is EwmaState and sb.__class__ is EwmaState and a.weight == b.weight:
                inv = self._inv_decay
                # The clock is monotonic, so stamp <= now and exp() <= 1.
                ca = sa.estimate * _exp((sa.stamp - now) * inv) * (  # type: ignore[union-attr]
                    a.active_requests + 1)
                cb = sb.estimate * _exp((sb.stamp - now) * inv) * (  # type: ignore[union-attr]
                    b.active_requests + 1)
                return b if cb < ca else a
            return b if cost(b, now) < cost(a, now) else a
        if self.choice_count >= n:
            candidates = hosts
        else:
            candidates = [hosts[i] for i in self._rng.sample(range(n), self.choice_count)]
        return min(candidates, key=lambda h: cost(h, now))
