"""Peak EWMA: latency-aware P2C without replacement; peak, decay and recovery."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from lb_helpers import ManualClock, hosts, make_lb, new_stats

from outrider.lb.peak_ewma import PeakEwmaLoadBalancer
from outrider.upstream.host import Host, PrioritySet

TYPED_STRUCT = "type.googleapis.com/xds.type.v3.TypedStruct"


def _config(**value) -> dict:
    return {"load_balancing_policy": {"policies": [{"typed_extension_config": {
        "name": "peak", "typed_config": {"@type": TYPED_STRUCT,
                                         "type_url": "outrider.lb.peak_ewma",
                                         "value": value}}}]}}


def _lb(host_list, clock=None, **value):
    lb, ps, _stats = make_lb(_config(**value), host_list, clock=clock or ManualClock())
    assert isinstance(lb, PeakEwmaLoadBalancer)
    return lb, ps


def test_config_values_reach_the_balancer():
    lb, _ = _lb(hosts(2), decay_time="5s", choice_count=3, default_rtt="25ms")
    assert (lb.decay_time, lb.choice_count, lb.default_rtt) == (5.0, 3, 0.025)


def test_defaults():
    lb, _ = _lb(hosts(2))
    assert (lb.decay_time, lb.choice_count, lb.default_rtt) == (10.0, 2, 0.010)


def test_slow_host_gets_nothing_when_idle_because_draws_are_distinct():
    hs = hosts(10)
    lb, _ = _lb(hs)
    for h in hs:
        lb.on_request_complete(h, 0.050 if h is hs[0] else 0.005, True)
    counts = Counter(lb.choose_host(None) for _ in range(20_000))
    # With replacement, "slow vs slow" would happen 1 in 100 picks (≈200 here).
    assert counts[hs[0]] == 0
    assert len(counts) == 9


def test_two_hosts_always_compares_both():
    fast, slow = hosts(2)
    lb, _ = _lb([fast, slow])
    lb.on_request_complete(fast, 0.001, True)
    lb.on_request_complete(slow, 0.002, True)
    assert all(lb.choose_host(None) is fast for _ in range(2000))


def test_outstanding_requests_raise_the_cost():
    fast, slow = hosts(2)
    lb, _ = _lb([fast, slow])
    lb.on_request_complete(fast, 0.005, True)
    lb.on_request_complete(slow, 0.050, True)
    fast.active_requests = 20  # 5 ms × 21 = 105 ms > 50 ms × 1
    assert lb.choose_host(None) is slow
    fast.active_requests = 8  # 45 ms < 50 ms
    assert lb.choose_host(None) is fast


def test_prefers_fast_hosts_under_a_closed_loop():
    clock = ManualClock()
    hs = hosts(10)
    lb, _ = _lb(hs, clock=clock)
    latency = {h: (0.050 if h is hs[0] else 0.005) for h in hs}
    rng = random.Random(4)
    counts: Counter = Counter()
    in_flight: list[tuple[float, Host]] = []
    for step in range(20_000):  # 50 concurrent requests, completions in latency order
        clock.now = 1000.0 + step * 0.0001
        while len(in_flight) >= 50:
            in_flight.sort(key=lambda x: x[0])
            _done_at, h = in_flight.pop(0)
            h.active_requests -= 1
            lb.on_request_complete(h, latency[h], True)
        h = lb.choose_host(None)
        h.active_requests += 1
        counts[h] += 1
        in_flight.append((clock.now + latency[h] * rng.uniform(0.9, 1.1), h))
    assert counts[hs[0]] / 20_000 < 0.02  # round robin would give it 10%


def test_peak_sample_is_believed_at_once_and_lower_samples_decay_in():
    clock = ManualClock()
    h = hosts(1)[0]
    lb, _ = _lb([h], clock=clock, decay_time="10s")
    lb.on_request_complete(h, 0.010, True)
    assert lb.estimate(h) == 0.010
    clock.advance(1.0)
    lb.on_request_complete(h, 0.100, True)
    assert lb.estimate(h) == 0.100  # peak: no smoothing upward
    clock.advance(5.0)
    lb.on_request_complete(h, 0.010, True)
    w = math.exp(-5.0 / 10.0)
    assert lb.estimate(h) == pytest.approx(0.100 * w + 0.010 * (1 - w))


def test_cost_decays_toward_zero_between_samples():
    clock = ManualClock()
    h = hosts(1)[0]
    lb, _ = _lb([h], clock=clock, decay_time="10s")
    lb.on_request_complete(h, 0.080, True)
    assert lb.cost(h, clock.now) == pytest.approx(0.080)
    assert lb.cost(h, clock.now + 10.0) == pytest.approx(0.080 / math.e)
    h.active_requests = 3
    assert lb.cost(h, clock.now) == pytest.approx(0.320)


def test_recovers_after_decay():
    clock = ManualClock()
    a, b = hosts(2)
    lb, _ = _lb([a, b], clock=clock, decay_time="10s")
    lb.on_request_complete(a, 0.100, True)  # a had a latency spike
    lb.on_request_complete(b, 0.010, True)
    picks: list[tuple[float, Host]] = []
    for _ in range(600):  # 60 s, one request every 100 ms; both hosts now answer in 10 ms
        clock.advance(0.1)
        h = lb.choose_host(None)
        picks.append((clock.now - 1000.0, h))
        lb.on_request_complete(h, 0.010, True)
    early = [h for t, h in picks if t < 20.0]
    late = [h for t, h in picks if t >= 40.0]
    # 100 ms × e^(-t/10) drops below 10 ms only after t ≈ 23 s.
    assert a not in early
    assert late.count(a) / len(late) > 0.3


def test_unmeasured_host_costs_default_rtt():
    measured, new = hosts(2)
    lb, _ = _lb([measured, new], default_rtt="10ms")
    lb.on_request_complete(measured, 0.050, True)
    assert lb.estimate(new) is None
    assert lb.choose_host(None) is new
    lb.on_request_complete(measured, 0.001, True)  # lower: blends with the 50 ms history
    lb.on_request_complete(new, 0.200, True)
    assert lb.estimate(new) == 0.200


def test_failures_never_make_a_host_look_faster():
    clock = ManualClock()
    h = hosts(1)[0]
    lb, _ = _lb([h], clock=clock)
    lb.on_request_complete(h, 0.050, True)
    clock.advance(1.0)
    lb.on_request_complete(h, 0.0001, False)
    assert lb.estimate(h) >= 0.050 * math.exp(-0.1)
    fresh = hosts(1, prefix="10.9.9")[0]
    lb.on_request_complete(fresh, 0.0001, False)
    assert lb.estimate(fresh) == lb.default_rtt


def test_choice_count_three_picks_the_cheapest_of_three_distinct():
    hs = hosts(3)
    lb, _ = _lb(hs, choice_count=3)
    for i, h in enumerate(hs):
        lb.on_request_complete(h, 0.010 * (i + 1), True)
    assert all(lb.choose_host(None) is hs[0] for _ in range(500))


def test_candidates_are_sampled_without_replacement_for_large_choice_count():
    hs = hosts(10)
    lb, _ = _lb(hs, choice_count=4)
    for i, h in enumerate(hs):
        lb.on_request_complete(h, 0.001 * (i + 1), True)
    counts = Counter(lb.choose_host(None) for _ in range(5000))
    # The three most expensive hosts can never be the cheapest of four distinct draws.
    assert all(counts[h] == 0 for h in hs[7:])


def test_unhealthy_hosts_excluded_and_empty_is_none():
    hs = hosts(3)
    lb, ps = _lb(hs)
    hs[0].healthy = False
    ps.notify()
    assert hs[0] not in {lb.choose_host(None) for _ in range(200)}
    ps.update([])
    assert lb.choose_host(None) is None


def test_invalid_parameters_rejected():
    ps = PrioritySet.from_hosts(hosts(2))
    with pytest.raises(ValueError, match="choice_count"):
        PeakEwmaLoadBalancer(ps, rng=random.Random(), clock=lambda: 0.0, stats=new_stats(),
                             choice_count=1)
    with pytest.raises(ValueError, match="positive"):
        PeakEwmaLoadBalancer(ps, rng=random.Random(), clock=lambda: 0.0, stats=new_stats(),
                             decay_time=0)
