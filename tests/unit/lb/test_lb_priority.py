"""Priority spill-over (Envoy's documented tables), panic mode, locality weighting."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from lb_helpers import (
    CHI2_CRITICAL_0_001,
    Context,
    chi_square,
    make_lb,
    set_healthy,
    spread,
)

from outrider.lb.priority import distribute_load, priority_health, total_panic_load
from outrider.upstream.host import Host


def _level(priority: int, total: int, healthy: int, tag: str = "") -> list[Host]:
    out = []
    for i in range(total):
        h = Host(f"10.{priority}.{len(tag)}.{i}", 80, priority=priority)
        set_healthy(h, i < healthy)
        out.append(h)
    return out


def _loads(*levels: tuple[int, int], config: dict | None = None) -> list[int]:
    hs = [h for p, (total, healthy) in enumerate(levels) for h in _level(p, total, healthy)]
    lb, _, _ = make_lb(config, hs)
    return lb.priority_state.healthy_load


# Envoy docs, "Priority levels": P=1 100% healthy; P=0 health → traffic to P0 / P1.
@pytest.mark.parametrize(("p0_healthy", "expected"), [
    (100, [100, 0]), (72, [100, 0]), (71, [99, 1]), (50, [70, 30]), (25, [35, 65]),
    (0, [0, 100]),
])
def test_two_priority_table(p0_healthy, expected):
    assert _loads((100, p0_healthy), (100, 100)) == expected


@pytest.mark.parametrize(("p0", "p1", "expected"), [
    (100, 100, [100, 0]), (72, 72, [100, 0]), (71, 71, [99, 1]), (50, 50, [70, 30]),
    (25, 100, [35, 65]), (25, 25, [50, 50]),
])
def test_two_priority_table_with_degraded_p1(p0, p1, expected):
    assert _loads((100, p0), (100, p1)) == expected


@pytest.mark.parametrize(("p0", "p1", "p2", "expected"), [
    (100, 100, 100, [100, 0, 0]), (72, 72, 100, [100, 0, 0]), (71, 71, 100, [99, 1, 0]),
    (50, 50, 100, [70, 30, 0]), (25, 100, 100, [35, 65, 0]), (25, 25, 100, [35, 35, 30]),
    # The docs print 36/36/28 (rounded shares of 35/35/28 over 98); Envoy's integer code gives
    # 35/35/28 and hands the 2-point remainder to the first healthy priority.
    (25, 25, 20, [37, 35, 28]),
])
def test_three_priority_table(p0, p1, p2, expected):
    assert _loads((100, p0), (100, p1), (100, p2)) == expected


def test_pure_functions():
    assert priority_health(5, 10, 140) == 70
    assert priority_health(0, 0, 140) == 0
    assert distribute_load([20, 30]) == [40, 60]
    assert distribute_load([0, 0]) == [100, 0]
    assert total_panic_load([1, 2]) == [34, 66]


def test_traffic_follows_the_priority_load():
    hs = _level(0, 10, 5) + _level(1, 10, 10)
    lb, _, stats = make_lb(None, hs)
    n = 10_000
    counts = Counter(h.priority for h in (lb.choose_host(None) for _ in range(n)))
    assert chi_square([counts[0], counts[1]], [0.7 * n, 0.3 * n]) < CHI2_CRITICAL_0_001[1]
    assert stats.lb_healthy_panic.value == 0


def test_overprovisioning_factor_from_load_assignment():
    hs = _level(0, 10, 5) + _level(1, 10, 10)
    cfg = {"load_assignment": {"cluster_name": "test", "policy": {
        "overprovisioning_factor": 200}}}
    lb, _, _ = make_lb(cfg, hs)
    assert lb.priority_state.healthy_load == [100, 0]


def test_panic_spreads_over_all_hosts_and_counts():
    hs = _level(0, 3, 1)  # 33% healthy < 50%: Envoy panics (verified on 1.40)
    lb, _, stats = make_lb(None, hs)
    counts = spread(lb, 300)
    assert set(counts) == set(hs)
    assert stats.lb_healthy_panic.value == 300


def test_half_healthy_is_not_panic():
    hs = _level(0, 2, 1)
    lb, _, stats = make_lb(None, hs)
    assert set(spread(lb, 100)) == {hs[0]}
    assert stats.lb_healthy_panic.value == 0


def test_panic_threshold_from_config_and_zero_disables():
    hs = _level(0, 4, 1)
    lb, _, stats = make_lb({"common_lb_config": {"healthy_panic_threshold": {"value": 20}}}, hs)
    assert set(spread(lb, 100)) == {hs[0]}
    for h in hs:
        set_healthy(h, False)
    lb, _, stats = make_lb({"common_lb_config": {"healthy_panic_threshold": {"value": 0}}}, hs)
    assert lb.choose_host(None) is None
    assert stats.lb_healthy_panic.value == 0


def test_total_panic_splits_by_host_count():
    hs = _level(0, 4, 0) + _level(1, 4, 1)  # normalized health 35 < 50
    lb, _, stats = make_lb(None, hs)
    assert lb.priority_state.healthy_load == [50, 50]
    counts = spread(lb, 800)
    assert set(counts) == set(hs)
    assert stats.lb_healthy_panic.value == 800


def test_hash_policies_panic_too():
    hs = _level(0, 3, 1)
    lb, _, stats = make_lb({"lb_policy": "RING_HASH"}, hs)
    rng = random.Random(2)
    seen = {lb.choose_host(Context(rng.getrandbits(64))) for _ in range(300)}
    assert len(seen) == 3
    assert stats.lb_healthy_panic.value == 300


def test_health_change_rebuilds_through_notify():
    hs = _level(0, 4, 4)
    lb, ps, _ = make_lb(None, hs)
    assert len(spread(lb, 40)) == 4
    set_healthy(hs[0], False)
    set_healthy(hs[1], False)
    ps.notify()
    assert set(spread(lb, 40)) == set(hs[2:])


def _locality_hosts(spec: list[tuple[str, int, int, int]]) -> list[Host]:
    """(zone, locality weight, hosts, healthy) → hosts."""
    out = []
    for zone, weight, total, healthy in spec:
        for i in range(total):
            h = Host(f"10.1.{len(out)}.{i}", 80, locality=("r", zone, ""), locality_weight=weight)
            set_healthy(h, i < healthy)
            out.append(h)
    return out


LOCALITY = {"common_lb_config": {"locality_weighted_lb_config": {}}}


def test_locality_weights_split_traffic():
    hs = _locality_hosts([("a", 1, 2, 2), ("b", 3, 2, 2)])
    lb, _, _ = make_lb(LOCALITY, hs)
    counts = Counter(h.locality[1] for h in (lb.choose_host(None) for _ in range(4000)))
    assert counts == {"a": 1000, "b": 3000}  # EDF: exact


def test_locality_weight_scaled_by_availability():
    # b: 1 of 2 healthy → availability min(1, 1.4 × 0.5) = 0.7 → effective 2.1 vs 1.
    hs = _locality_hosts([("a", 1, 2, 2), ("b", 3, 2, 1)])
    lb, _, _ = make_lb(LOCALITY, hs)
    picks = [lb.choose_host(None) for _ in range(3100)]
    assert sum(1 for h in picks if h.locality[1] == "b") == pytest.approx(2100, abs=2)
    assert all(h.healthy for h in picks)


def test_zero_weight_locality_gets_nothing():
    hs = _locality_hosts([("a", 0, 2, 2), ("b", 1, 2, 2)])
    lb, _, _ = make_lb(LOCALITY, hs)
    assert {h.locality[1] for h in (lb.choose_host(None) for _ in range(200))} == {"b"}


def test_without_locality_weighting_localities_are_ignored():
    hs = _locality_hosts([("a", 1, 2, 2), ("b", 3, 2, 2)])
    lb, _, _ = make_lb(None, hs)
    counts = Counter(h.locality[1] for h in (lb.choose_host(None) for _ in range(4000)))
    assert counts == {"a": 2000, "b": 2000}


def test_locality_weights_fold_into_the_hash_ring():
    hs = _locality_hosts([("a", 1, 2, 2), ("b", 3, 2, 2)])
    lb, _, _ = make_lb({"lb_policy": "MAGLEV", **LOCALITY}, hs)
    counts = lb.tables[0].entry_counts()
    share_b = sum(c for h, c in counts.items() if h.locality[1] == "b") / 65537
    assert share_b == pytest.approx(0.75, abs=0.001)
