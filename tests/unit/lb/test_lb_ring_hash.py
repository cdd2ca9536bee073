"""RING_HASH: Envoy's ring (XXH64 of "ip:port_i"), sizes, lookups, minimal disruption."""

from __future__ import annotations

import random

import pytest
import xxhash
from lb_helpers import CHI2_CRITICAL_0_001, Context, chi_square, hosts, make_lb

from outrider.lb.ring_hash import RingHashLoadBalancer
from outrider.upstream.host import Host

RH = {"lb_policy": "RING_HASH"}


def _ring(lb):
    return lb.tables[0]


def _keys(n: int, seed: int = 99) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(64) for _ in range(n)]


def test_ring_points_are_envoys_hash_keys():
    hs = hosts(3)
    lb, _, stats = make_lb(RH, hs)
    assert isinstance(lb, RingHashLoadBalancer)
    ring = _ring(lb)
    # 1024 / 3 → each host gets ceil(341.3) = 342 points named "<ip>:<port>_<i>".
    expected = sorted(
        xxhash.xxh64_intdigest(f"{h.address}:{h.port}_{i}".encode())
        for h in hs for i in range(342))
    assert list(ring.hashes) == expected
    gauges = stats.scope.store.gauges()
    assert gauges["cluster.test.ring_hash_lb.size"].value == 1026
    assert gauges["cluster.test.ring_hash_lb.min_hashes_per_host"].value == 342


@pytest.mark.parametrize(("weights", "ring_cfg", "size", "per_host"), [
    ([1] * 10, {}, 1030, [103] * 10),
    ([1, 3], {}, 1024, [256, 768]),
    # min_w = 1/1000: 1024 would need 2 points for the light host → 2000, capped at 1500.
    ([1, 999], {"maximum_ring_size": 1500}, 1500, [2, 1498]),
    ([1, 1, 2], {"minimum_ring_size": 8, "maximum_ring_size": 100}, 8, [2, 2, 4]),
])
def test_ring_sizes_scale_with_weights_and_limits(weights, ring_cfg, size, per_host):
    hs = hosts(len(weights), weights=weights)
    lb, _, _ = make_lb({**RH, "ring_hash_lb_config": ring_cfg}, hs)
    ring = _ring(lb)
    assert len(ring) == size
    owners = [ring.hosts[i] for i in ring.indices]
    assert [owners.count(h) for h in hs] == per_host


def test_lookup_takes_first_point_at_or_after_the_hash_and_wraps():
    lb, _, _ = make_lb(RH, hosts(4))
    ring = _ring(lb)
    owner = [ring.hosts[i] for i in ring.indices]
    assert ring.choose(ring.hashes[5], 0) is owner[5]
    assert ring.choose(ring.hashes[5] + 1, 0) is owner[6]
    assert ring.choose(ring.hashes[-1] + 1, 0) is owner[0]
    assert ring.choose(0, 0) is owner[0]
    assert ring.choose(ring.hashes[5], 2) is owner[7]  # retry attempt walks the ring


def test_same_key_same_host_and_weighted_spread():
    hs = hosts(4, weights=[1, 1, 1, 1])
    lb, _, _ = make_lb({**RH, "ring_hash_lb_config": {"minimum_ring_size": 65536}}, hs)
    keys = _keys(20_000)
    first = [lb.choose_host(Context(k)) for k in keys]
    again = [lb.choose_host(Context(k)) for k in keys]
    assert first == again
    counts = [first.count(h) for h in hs]
    # A big ring spreads keys close to evenly.
    assert chi_square(counts, [5000] * 4) < 4 * CHI2_CRITICAL_0_001[3]
    assert max(counts) / min(counts) < 1.1


# Envoy gives every host ceil(minimum_ring_size / N) points (equal weights), so N and N - 1 hosts
# get the same count when ceil(R / N) == ceil(R / (N - 1)); R = 2401 gives 49 points per host
# for both 49 and 50 hosts. Then the ring is perfectly minimal: only the removed host's keys move.
STABLE = {**RH, "ring_hash_lb_config": {"minimum_ring_size": 2401}}


def test_removing_one_of_n_moves_only_its_keys():
    n = 50
    hs = hosts(n)
    lb, ps, _ = make_lb(STABLE, hs)
    keys = _keys(20_000)
    before = [lb.choose_host(Context(k)) for k in keys]
    for gone in hs[::10]:
        ps.update([h for h in hs if h is not gone])
        after = [lb.choose_host(Context(k)) for k in keys]
        moved = [i for i in range(len(keys)) if before[i] is not after[i]]
        assert moved == [i for i in range(len(keys)) if before[i] is gone]
        assert len(moved) / len(keys) <= 1.2 / n
        ps.update(hs)


def test_adding_a_host_moves_keys_only_to_it():
    hs = hosts(49)
    lb, ps, _ = make_lb(STABLE, hs)
    keys = _keys(20_000)
    before = [lb.choose_host(Context(k)) for k in keys]
    newcomer = Host("10.0.1.77", 80)
    ps.update([*hs, newcomer])
    after = [lb.choose_host(Context(k)) for k in keys]
    moved = [i for i in range(len(keys)) if before[i] is not after[i]]
    assert moved and all(after[i] is newcomer for i in moved)
    assert len(moved) / len(keys) <= 1.2 / 50


def test_removal_that_rescales_the_ring_stays_bounded():
    # Default ring, 10 → 9 hosts: survivors go from 103 to 114 points each (Envoy's scaling), so
    # besides the removed host's ~1/N, the survivors' new points take over some arcs.
    n = 10
    hs = hosts(n)
    lb, ps, _ = make_lb(RH, hs)
    keys = _keys(20_000)
    before = [lb.choose_host(Context(k)) for k in keys]
    gone = hs[3]
    ps.update([h for h in hs if h is not gone])
    after = [lb.choose_host(Context(k)) for k in keys]
    assert all(a is not gone for a in after)
    assert all(after[i] is not before[i] for i in range(len(keys)) if before[i] is gone)
    moved = sum(1 for b, a in zip(before, after, strict=True) if b is not a)
    assert moved / len(keys) <= 2.0 / n


def test_no_hash_key_falls_back_to_random_hosts():
    hs = hosts(5)
    lb, _, _ = make_lb(RH, hs)
    picks = {lb.choose_host(Context(None)) for _ in range(200)}
    assert picks == set(hs)


def test_rebuild_only_on_update():
    hs = hosts(3)
    lb, ps, _ = make_lb(RH, hs)
    ring = _ring(lb)
    for k in _keys(100):
        lb.choose_host(Context(k))
    assert _ring(lb) is ring
    ps.notify()
    assert _ring(lb) is not ring


def test_use_hostname_for_hashing():
    a = Host("10.0.0.1", 80, hostname="alpha.example")
    b = Host("10.0.0.2", 80, hostname="beta.example")
    lb, _, _ = make_lb({**RH, "common_lb_config": {
        "consistent_hashing_lb_config": {"use_hostname_for_hashing": True}}}, [a, b])
    assert xxhash.xxh64_intdigest(b"alpha.example_0") in set(_ring(lb).hashes)


def test_retry_attempts_move_to_the_next_points():
    hs = hosts(5)
    lb, _, _ = make_lb(RH, hs)
    key = _keys(1)[0]
    first = lb.choose_host(Context(key))
    ctx = Context(key, reject=[first], retries=5)
    assert lb.choose_host(ctx) is not first
