"""LEAST_REQUEST: P2C with replacement, full scan, load-scaled EDF for unequal weights."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from lb_helpers import CHI2_CRITICAL_0_001, chi_square, hosts, make_lb, new_stats, spread

from outrider.lb.least_request import LeastRequestLoadBalancer
from outrider.upstream.host import PrioritySet

LR = {"lb_policy": "LEAST_REQUEST"}


def test_spread_with_no_load_is_uniform():
    hs = hosts(10)
    lb, _, _ = make_lb(LR, hs)
    assert isinstance(lb, LeastRequestLoadBalancer)
    n = 20_000
    counts = spread(lb, n)
    assert chi_square([counts[h] for h in hs], [n / 10] * 10) < CHI2_CRITICAL_0_001[9]


def test_p2c_picks_the_less_loaded_of_two():
    idle, busy = hosts(2)
    busy.active_requests = 5
    lb, _, _ = make_lb(LR, [idle, busy])
    counts = spread(lb, 4000)
    # With replacement, "busy vs busy" happens 1/4 of the time: busy gets ≈ 25%.
    assert counts[busy] / 4000 == pytest.approx(0.25, abs=0.03)
    assert counts[idle] / 4000 == pytest.approx(0.75, abs=0.03)


def test_p2c_prefers_idle_hosts_among_many():
    hs = hosts(10)
    for h in hs[:5]:
        h.active_requests = 3
    lb, _, _ = make_lb(LR, hs)
    counts = spread(lb, 10_000)
    loaded = sum(counts[h] for h in hs[:5])
    # A loaded host wins only if both draws are loaded: (1/2)^2.
    assert loaded / 10_000 == pytest.approx(0.25, abs=0.02)


def test_choice_count_three_narrows_the_busy_share():
    hs = hosts(10)
    for h in hs[:5]:
        h.active_requests = 3
    lb, _, _ = make_lb({**LR, "least_request_lb_config": {"choice_count": 3}}, hs)
    counts = spread(lb, 10_000)
    loaded = sum(counts[h] for h in hs[:5])
    assert loaded / 10_000 == pytest.approx(0.125, abs=0.015)


def test_full_scan_always_finds_the_minimum_and_spreads_ties():
    hs = hosts(6)
    for i, h in enumerate(hs):
        h.active_requests = 2 if i % 2 else 0
    ps = PrioritySet.from_hosts(hs)
    lb = LeastRequestLoadBalancer(ps, rng=random.Random(3), clock=lambda: 0.0,
                                  stats=new_stats(), full_scan=True)
    counts = Counter(lb.choose_host(None) for _ in range(6000))
    assert set(counts) == {hs[0], hs[2], hs[4]}
    assert chi_square([counts[h] for h in (hs[0], hs[2], hs[4])], [2000] * 3) \
        < CHI2_CRITICAL_0_001[2]


def test_unequal_weights_use_weight_over_active_plus_one():
    a, b = hosts(2, weights=[2, 1])
    lb, _, _ = make_lb(LR, [a, b])
    counts = spread(lb, 3000)
    assert counts[a] == pytest.approx(2000, abs=5)
    # a carries 3 requests: its weight becomes 2 / 4 = 0.5 against b's 1 / 1.
    a.active_requests = 3
    counts = spread(lb, 3000)
    assert counts[b] / 3000 == pytest.approx(2 / 3, abs=0.02)


def test_active_request_bias_zero_ignores_load():
    a, b = hosts(2, weights=[2, 1])
    a.active_requests = 50
    cfg = {**LR, "least_request_lb_config": {
        "active_request_bias": {"default_value": 0.0, "runtime_key": "k"}}}
    lb, _, _ = make_lb(cfg, [a, b])
    counts = spread(lb, 3000)
    assert counts[a] == pytest.approx(2000, abs=5)


def test_active_request_bias_two_punishes_load_harder():
    a, b = hosts(2, weights=[2, 1])
    a.active_requests = 1
    cfg = {**LR, "least_request_lb_config": {
        "active_request_bias": {"default_value": 2.0, "runtime_key": "k"}}}
    lb, _, _ = make_lb(cfg, [a, b])
    counts = spread(lb, 3000)
    # a: 2 / 2^2 = 0.5, b: 1 → b gets 2/3.
    assert counts[b] / 3000 == pytest.approx(2 / 3, abs=0.02)


def test_bad_choice_count_rejected():
    with pytest.raises(ValueError, match="choice_count"):
        LeastRequestLoadBalancer(PrioritySet.from_hosts(hosts(2)), rng=random.Random(),
                                 clock=lambda: 0.0, stats=new_stats(), choice_count=1)
