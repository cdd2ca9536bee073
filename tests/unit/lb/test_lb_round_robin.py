"""ROUND_ROBIN: rotation, per-worker offsets, weights (EDF), slow start, health, retries."""

from __future__ import annotations

import pytest
from lb_helpers import (
    CHI2_CRITICAL_0_001,
    Context,
    ManualClock,
    chi_square,
    hosts,
    make_lb,
    set_healthy,
    spread,
)

from outrider.lb.round_robin import RoundRobinLoadBalancer
from outrider.upstream.host import Host


def test_factory_default_is_round_robin():
    lb, _, _ = make_lb(None, hosts(3))
    assert isinstance(lb, RoundRobinLoadBalancer)


def test_equal_weights_rotate_through_every_host_in_order():
    hs = hosts(5)
    lb, _, _ = make_lb(None, hs)
    picks = [lb.choose_host(None) for _ in range(15)]
    start = hs.index(picks[0])
    assert picks == [hs[(start + i) % 5] for i in range(15)]


def test_spread_is_exact_for_equal_weights():
    hs = hosts(10)
    lb, _, _ = make_lb(None, hs)
    counts = spread(lb, 10_000)
    assert all(counts[h] == 1000 for h in hs)


def test_workers_start_at_different_offsets():
    hs = hosts(10)
    firsts = {make_lb(None, hs, seed=7, worker_index=w)[0].choose_host(None) for w in range(4)}
    assert len(firsts) == 4


def test_weights_are_honoured_and_interleaved():
    a, b = hosts(2, weights=[3, 1])
    lb, _, _ = make_lb(None, [a, b])
    picks = [lb.choose_host(None) for _ in range(400)]
    assert picks.count(a) == 300 and picks.count(b) == 100
    # Smooth: never more than four a's in a row (not a,a,a,...,b,b,b).
    run = best = 0
    for p in picks:
        run = run + 1 if p is a else 0
        best = max(best, run)
    assert best <= 4


def test_weighted_spread_chi_square():
    hs = hosts(5, weights=[1, 2, 3, 4, 5])
    lb, _, _ = make_lb(None, hs)
    n = 15_000
    counts = spread(lb, n)
    expected = [n * h.weight / 15 for h in hs]
    assert chi_square([counts[h] for h in hs], expected) < CHI2_CRITICAL_0_001[4]
    assert abs(counts[hs[4]] - 5000) <= 2


def test_unhealthy_hosts_are_skipped_after_notify():
    hs = hosts(4)
    lb, ps, stats = make_lb(None, hs)
    set_healthy(hs[1], False)
    ps.notify()
    counts = spread(lb, 300)
    assert counts[hs[1]] == 0 and all(counts[h] == 100 for h in hs if h is not hs[1])
    assert stats.lb_healthy_panic.value == 0


def test_no_hosts_gives_none():
    lb, _, _ = make_lb(None, [])
    assert lb.choose_host(None) is None


def test_retry_picks_another_host_when_context_rejects():
    hs = hosts(3)
    lb, _, _ = make_lb(None, hs)
    first = lb.choose_host(None)
    ctx = Context(reject=[hs[(hs.index(first) + 1) % 3]], retries=2)
    host = lb.choose_host(ctx)
    assert host is not None and host not in ctx.reject
    assert len(ctx.asked) == 2


def test_retry_gives_up_after_max_attempts_and_returns_last_pick():
    hs = hosts(3)
    lb, _, _ = make_lb(None, hs)
    ctx = Context(reject=hs, retries=2)
    assert lb.choose_host(ctx) in hs
    assert len(ctx.asked) == 2  # first pick + 2 re-picks; the last one is returned regardless


def _slow_start_config(window: str = "10s", aggression: float | None = None,
                       min_weight_percent: float | None = None) -> dict:
    ss: dict = {"slow_start_window": window}
    if aggression is not None:
        ss["aggression"] = {"default_value": aggression, "runtime_key": "a"}
    if min_weight_percent is not None:
        ss["min_weight_percent"] = {"value": min_weight_percent}
    return {"round_robin_lb_config": {"slow_start_config": ss}}


def test_slow_start_ramps_a_new_host_linearly():
    clock = ManualClock(1000.0)
    old = hosts(1, prefix="10.0.1")[0]
    new = Host("10.0.0.9", 80, created_at=1000.0)
    # min_weight_percent keeps the new host's first EDF deadline reasonable (Envoy's reason for it).
    lb, _, _ = make_lb(_slow_start_config("10s"), [old, new], clock=clock)
    shares = []
    for _ in range(4):
        clock.advance(2.0)  # t = 2, 4, 6, 8 s into the window
        picks = [lb.choose_host(None) for _ in range(1000)]
        shares.append(picks.count(new) / 1000)
    # Weight factor t/window: shares ≈ f / (1 + f) = 1/6, 2/7, 3/8, 4/9.
    for share, f in zip(shares, (0.2, 0.4, 0.6, 0.8), strict=True):
        assert share == pytest.approx(f / (1 + f), abs=0.04)
    clock.advance(10.0)
    picks = [lb.choose_host(None) for _ in range(1000)]
    assert picks.count(new) == pytest.approx(500, abs=15)


def test_slow_start_min_weight_percent_and_aggression():
    clock = ManualClock(1000.0)
    old = hosts(1, prefix="10.0.1")[0]
    new = Host("10.0.0.9", 80, created_at=1000.0)
    lb, _, _ = make_lb(_slow_start_config("100s", aggression=2.0, min_weight_percent=10.0),
                       [old, new], clock=clock)
    clock.advance(0.5)  # time factor 0.005 → sqrt ≈ 0.07 → floored at 0.10
    picks = [lb.choose_host(None) for _ in range(2000)]
    assert picks.count(new) / 2000 == pytest.approx(0.1 / 1.1, abs=0.02)
    clock.advance(24.5)  # time factor 0.25 → aggression 2 → sqrt = 0.5
    picks = [lb.choose_host(None) for _ in range(2000)]
    assert picks.count(new) / 2000 == pytest.approx(0.5 / 1.5, abs=0.03)


def test_hosts_outside_the_window_are_not_ramped():
    clock = ManualClock(1000.0)
    hs = hosts(2)  # created long ago
    lb, _, _ = make_lb(_slow_start_config("10s"), hs, clock=clock)
    counts = spread(lb, 1000)
    assert counts[hs[0]] == counts[hs[1]] == 500
