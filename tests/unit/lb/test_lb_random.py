"""RANDOM: uniform with equal weights, weight-proportional otherwise."""

from __future__ import annotations

from lb_helpers import CHI2_CRITICAL_0_001, chi_square, hosts, make_lb, set_healthy, spread

from outrider.lb.random_lb import RandomLoadBalancer


def test_uniform_spread_chi_square():
    hs = hosts(10)
    lb, _, _ = make_lb({"lb_policy": "RANDOM"}, hs)
    assert isinstance(lb, RandomLoadBalancer)
    n = 20_000
    counts = spread(lb, n)
    stat = chi_square([counts[h] for h in hs], [n / 10] * 10)
    assert stat < CHI2_CRITICAL_0_001[9]
    assert len(counts) == 10


def test_weighted_spread_chi_square():
    hs = hosts(4, weights=[1, 1, 2, 4])
    lb, _, _ = make_lb({"lb_policy": "RANDOM"}, hs)
    n = 16_000
    counts = spread(lb, n)
    expected = [n * w / 8 for w in (1, 1, 2, 4)]
    assert chi_square([counts[h] for h in hs], expected) < CHI2_CRITICAL_0_001[3]


def test_not_a_rotation():
    hs = hosts(3)
    lb, _, _ = make_lb({"lb_policy": "RANDOM"}, hs)
    picks = [lb.choose_host(None) for _ in range(30)]
    assert any(picks[i] is picks[i + 1] for i in range(29))


def test_unhealthy_excluded_and_empty_is_none():
    hs = hosts(3)
    lb, ps, _ = make_lb({"lb_policy": "RANDOM"}, hs)
    set_healthy(hs[0], False)
    ps.notify()
    assert hs[0] not in spread(lb, 500)
    ps.update([])
    assert lb.choose_host(None) is None
