"""Peak EWMA (★ beyond Envoy): latency-aware power of two choices, as in Finagle and tower.

Each host carries two time-decayed RTT estimates (``Host.lb_state``, an ``EwmaState``):

* **observe** (``on_request_complete``): let ``w = exp(-elapsed / decay_time)``, elapsed being the
  time since the host's last sample, and ``seen = estimate × w`` the estimate as the cost function
  sees it now. The *peak* estimate: a sample above ``seen`` becomes the estimate at once
  (slowness is believed immediately); otherwise ``estimate = estimate × w + rtt × (1 − w)``. The
  *typical* estimate is the same time-weighted EWMA without the peak rule, except that a sample
  weighs at least ``1/n`` (the host's n-th sample): ``typical += (rtt − typical) × max(1 − w,
  1/n)``. So it starts as the mean of the host's first samples and becomes the time-weighted
  EWMA once that gives a new sample more weight (for a busy host within milliseconds). The
  first sample replaces the default in both. A failed request never makes a host look faster:
  its sample is ``max(rtt, default_rtt, seen)``.
* **read**: both estimates decay toward zero with the time since the last sample,
  ``× exp(-(now − last sample) / decay_time)``. This is what lets a host that was slow get probed
  again once it has been left alone for a while (tower and Finagle decay on read too). Reading
  stores nothing, so the estimates do not depend on how often the balancer looked at them.
* **cost** = ``peak estimate × (active_requests + 1) / weight``. A host never measured costs
  ``default_rtt × (active + 1) / weight`` (default 10 ms, Envoy's contrib default: a new host gets
  probed soon, and its first response replaces the guess).
* **pick**: ``choice_count`` (default 2) *distinct* hosts drawn uniformly without replacement;
  the cheapest wins, except that a measured candidate whose typical estimate is more than
  ``latency_ratio_limit`` (default 2) times another measured candidate's is never chosen over it
  (see below; 0 turns the rule off, leaving exactly Finagle's and tower's rule). A candidate
  whose last evidence says it is over that limit (its stored typical estimate is more than
  ``latency_ratio_limit`` times the other's) but that decay has made eligible again is probed
  one request at a time: while it has a request in flight, the other candidate wins. Drawing with
  replacement (Envoy's LEAST_REQUEST) compares a host with itself once in N² picks, which puts a
  floor of ~1/N² of traffic under even the slowest host.

Priorities, panic and health come from ``ZoneAwareLoadBalancer`` like the other policies.

**What the references do.** Finagle's ``PeakEwma`` (finagle-core ``loadbalancer/PeakEwma.scala``)
and tower's ``load::PeakEwma`` (used by linkerd2-proxy) keep one peak-sensitive EWMA per endpoint
with ``decay_time`` 10 s, decay it toward zero whenever the load is read, and report
``estimate × (pending + 1)``; P2C (Finagle's ``P2CPick``, tower's ``p2c::Balance``) draws two
distinct endpoints and takes the lower load. Finagle measures from acquiring the session to its
release (whole response) and counts it pending for that time; linkerd measures and counts pending
until the first response body frame (``PendingUntilFirstData``), tower by default until the
response future resolves. Outrider measures to the response headers and counts the request active
until it completes: the same for ordinary responses. Unmeasured endpoints: tower starts from
``default_rtt`` (decaying from creation), Finagle costs 0 when idle and a huge penalty once one
probe is pending; Outrider uses a constant ``default_rtt`` (the field and default of Envoy's
contrib policy), and the latency ratio limit below never excludes an unmeasured host. Neither
reference penalises failures (they leave that to failure accrual/outlier detection); Outrider's
"a failure never looks faster" rule is its own. Tower and Finagle store the read-time decay back
into the estimate, so there the weight of a sample depends on how recently the load was *read*;
Outrider decays on read without storing, so it depends only on time between samples. A literal
port of tower's estimator behaves the same as Outrider's in ``bench/lb_sim.py``.

**Why the latency ratio limit.** With upstreams that serve requests concurrently (latency does not
grow with the number in flight, as in issue 3's benchmark: 9 hosts at 5 ms, one at 50 ms, 50
closed-loop connections), the load term overstates a fast host's cost: a fast host typically has
~5 requests in flight, so ``5 ms × 6 = 30 ms`` is close to the idle slow host's ``50 ms × 1``, and
the slow host wins P2C whenever the fast candidate is momentarily busier. The faithful policy (and
a literal port of tower's) therefore keeps about one request in flight on the slow host at all
times, 0.15–0.3% of the traffic, which puts the slow host's 50 ms straight into p99.9. The limit
says the load term may trade against latency only between hosts of comparable speed: when one
candidate is typically more than ``k`` times slower than the other, the faster one wins however
busy it is. It is self-limiting: if the fast hosts' latency does grow with load (a saturated
server), their estimates grow and the rule stops applying; and the excluded host is still probed
once its typical estimate has decayed to ``k ×`` the other's (after about
``decay_time × ln(ratio / k)``, ~14 s for 50 ms vs 6 ms). So its recovery is noticed later than
in the references, but it is back to a fair share about as soon (``bench/lb_sim.py --recover-at``:
first traffic ~8 s after it recovers, ~95% of a fair share after ~25 s; without the limit ~30 s).

The rule compares the *typical* estimates, not the peak ones, because the peak estimate also
absorbs delays that are not the upstream's: a stall of the proxy's own event loop (GC, a long
callback, a neighbour stealing the core) delays every response in flight, sets the peak estimate
of every busy fast host to ~the stall for seconds (the peak decays with ``decay_time``), but
leaves the idle slow host's at 50 ms; comparing peaks then lets the slow host back in after every
stall. The typical EWMA moves by only ``stall × (stall / decay_time)``. The cost keeps the peak
estimate, so a host that turns slow is avoided at once by the load-weighted comparison (back to
the references' ~0.2%), and excluded outright once its typical estimate passes ``k ×`` the
others', after ``decay_time × ln((slow − fast) / (slow − k × fast))``: ~1.5 s for 5 → 50 ms.
Measured in ``bench/lb_sim.py`` (20 s): the slow host's share falls from 0.16% to 0.002% and
p99.9 from 50 ms to the all-healthy 6 ms; it stays at the all-healthy p99.9 with loop stalls of
10–80 ms, with upstreams whose latency grows with load, and with the proxy saturated. It costs
one more float per host and two more multiplications per pick.

**Why averaged first samples and one probe at a time** (issue 8: the tail must not depend on
luck). A host's first samples come from a fresh proxy's first requests, which wait for connects,
cold code paths, a loop stall or a neighbour on the core. When the typical estimate kept its
first sample for seconds, a run's fate hung on it: one 30 ms stall while the first requests were
out made the fast hosts' first samples ~36 ms, their typical estimates stayed above half the slow
host's 50 ms for ~4.5 s, and meanwhile the slow host was not excluded, took 0.15–0.4% of the
measured requests and p99.9 was 51 ms (``bench/lb_sim.py --startup-stall-ms 30``; the real proxy
with the stall injected did the same); averaged, they are under 10 ms ~100 ms in, and the slow
host is excluded from its first answer on. Where a probe falls is luck too:
``decay_time × ln(ratio / k)`` after the slow host's last sample, earlier on a busier machine
(fast hosts' estimates higher), so inside a 10 s run or not. The probing host's cost is then its
decayed estimate, ~``k ×`` a fast host's latency, against fast hosts costing their latency ×
(in flight + 1), so every pick that drew it in the 50 ms before its first answer chose it: a
burst of 4–5 slow requests at 8k req/s, more when a stall had just raised the fast hosts' peak
estimates. That matters more than the count suggests: wrk corrects for coordinated omission, so
each 50 ms response counts ~7 times in the benchmark's p99.9, and ~13 of them in a 10 s run
already miss the 2× target (``bench/README.md``). The first answer tells as much as the burst
(the time weighting gives the others almost no weight), so a probe is one request. A recovered
host leaves probation after a few fast probes (with few samples, each moves its typical estimate
by ``1/n``). Both cost one counter per host and two comparisons per pick.
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

# A measured candidate whose typical latency is more than this many times another's never wins.
DEFAULT_LATENCY_RATIO_LIMIT = 2.0


class EwmaState:
    """One host's peak and typical RTT estimates (seconds), its last sample time (clock s) and
    how many samples it has had."""

    __slots__ = ("estimate", "samples", "stamp", "typical")

    def __init__(self, estimate: float, stamp: float) -> None:
        self.estimate = estimate
        self.typical = estimate
        self.stamp = stamp
        self.samples = 1


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
        latency_ratio_limit: float = DEFAULT_LATENCY_RATIO_LIMIT,
    ) -> None:
        if decay_time <= 0 or default_rtt <= 0:
            raise ValueError("peak_ewma: decay_time and default_rtt must be positive")
        if choice_count < 2:
            raise ValueError("peak_ewma: choice_count must be at least 2")
        if not (latency_ratio_limit == 0 or 1 < latency_ratio_limit < math.inf):
            raise ValueError("peak_ewma: latency_ratio_limit must be 0 (off) or greater than 1")
        self.decay_time = decay_time
        self.choice_count = choice_count
        self.default_rtt = default_rtt
        self.latency_ratio_limit = latency_ratio_limit
        self._inv_decay = 1.0 / decay_time
        super().__init__(priority_set, rng=rng, clock=clock, stats=stats, common=common,
                         worker_index=worker_index)

    # -- latency feedback ---------------------------------------------------------------------------

    def on_request_complete(self, host: Host, rtt_seconds: float, success: bool) -> None:
        """Fold one response time into ``host``'s estimates."""
        now = self._clock()
        state = host.lb_state
        if state.__class__ is not EwmaState:
            sample = rtt_seconds if success else max(rtt_seconds, self.default_rtt)
            host.lb_state = EwmaState(sample, now)
            return
        w = _exp(min(0.0, state.stamp - now) * self._inv_decay)  # type: ignore[union-attr]
        estimate = state.estimate  # type: ignore[union-attr]
        seen = estimate * w
        if not success:
            rtt_seconds = max(rtt_seconds, self.default_rtt, seen)
        blend = rtt_seconds * (1.0 - w)
        # Typical: until the time weighting gives a new sample more weight, the mean of the
        # samples so far, so the first one (often a startup stall or a connect) is not kept for
        # seconds: the ratio limit below must not depend on how lucky that sample was.
        n = state.samples + 1  # type: ignore[union-attr]
        state.samples = n  # type: ignore[union-attr]
        share = 1.0 - w
        if share < 1.0 / n:
            share = 1.0 / n
        state.typical += (rtt_seconds - state.typical) * share  # type: ignore[union-attr]
        # Peak: a sample above the decayed estimate replaces it; otherwise it blends in.
        state.estimate = rtt_seconds if rtt_seconds > seen else estimate * w + blend  # type: ignore[union-attr]
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
        """The host's stored peak estimate (seconds), None if never measured."""
        state = host.lb_state
        return state.estimate if state.__class__ is EwmaState else None  # type: ignore[union-attr]

    def typical(self, host: Host, now: float | None = None) -> float | None:
        """The host's typical estimate (seconds), decayed to ``now`` if given; None if never
        measured."""
        state = host.lb_state
        if state.__class__ is not EwmaState:
            return None
        rtt = state.typical  # type: ignore[union-attr]
        if now is not None and now > state.stamp:  # type: ignore[union-attr]
            rtt *= _exp((state.stamp - now) * self._inv_decay)  # type: ignore[union-attr]
        return rtt

    # -- selection ----------------------------------------------------------------------------------

    def _pick(self, source: HostSource) -> Host | None:
        hosts = source.hosts
        n = len(hosts)
        if n <= 1:
            return hosts[0] if n else None
        now = self._clock()
        if self.choice_count == 2 or n == 2:
            rand = self._rng.random
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            a, b = hosts[i], hosts[j]
            sa, sb = a.lb_state, b.lb_state
            if sa.__class__ is not EwmaState or sb.__class__ is not EwmaState:
                # No evidence about one of them: the cost alone decides.
                return b if self.cost(b, now) < self.cost(a, now) else a
            inv = self._inv_decay
            # The clock is monotonic, so stamp <= now and exp() <= 1.
            da = _exp((sa.stamp - now) * inv)  # type: ignore[union-attr]
            db = _exp((sb.stamp - now) * inv)  # type: ignore[union-attr]
            limit = self.latency_ratio_limit
            if limit:
                ua = sa.typical  # type: ignore[union-attr]
                ub = sb.typical  # type: ignore[union-attr]
                ta = ua * da
                tb = ub * db
                if ta > limit * tb:
                    return b
                if tb > limit * ta:
                    return a
                # Eligible again only because its estimate decayed: one probe at a time.
                if a.active_requests and ua > limit * ub:
                    return b
                if b.active_requests and ub > limit * ua:
                    return a
            ca = sa.estimate * da * (a.active_requests + 1)  # type: ignore[union-attr]
            cb = sb.estimate * db * (b.active_requests + 1)  # type: ignore[union-attr]
            if a.weight != b.weight:
                ca /= a.weight or 1
                cb /= b.weight or 1
            return b if cb < ca else a
        if self.choice_count >= n:
            candidates = hosts
        else:
            candidates = [hosts[i] for i in self._rng.sample(range(n), self.choice_count)]
        limit = self.latency_ratio_limit
        if limit:
            typical = [self.typical(h, now) for h in candidates]
            measured = [t for t in typical if t is not None]
            if len(measured) > 1:
                cutoff = limit * min(measured)
                # As above: a host whose last evidence is over the limit gets one probe at a time.
                stored = [self.typical(h) for h in candidates]
                probe_cutoff = limit * min(t for t in stored if t is not None)
                candidates = [h for h, t, last in zip(candidates, typical, stored, strict=True)
                              if t is None or (t <= cutoff and not (
                                  h.active_requests and last > probe_cutoff))]
        return min(candidates, key=lambda h: self.cost(h, now))
