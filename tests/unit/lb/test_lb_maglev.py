"""MAGLEV: Envoy's permutation, balanced weighted table, minimal disruption."""

from __future__ import annotations

import random

import pytest
import xxhash
from lb_helpers import Context, hosts, make_lb

from outrider.lb.maglev import MaglevLoadBalancer, MaglevTable
from outrider.upstream.host import Host

MG = {"lb_policy": "MAGLEV"}


def _keys(n: int, seed: int = 5) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(64) for _ in range(n)]


def test_equal_weights_fill_the_table_evenly():
    hs = hosts(7)
    lb, _, stats = make_lb(MG, hs)
    assert isinstance(lb, MaglevLoadBalancer)
    table: MaglevTable = lb.tables[0]
    counts = table.entry_counts()
    assert sum(counts.values()) == 65537
    assert max(counts.values()) - min(counts.values()) <= 1
    gauges = stats.scope.store.gauges()
    assert gauges["cluster.test.maglev_lb.max_entries_per_host"].value == max(counts.values())


def test_weights_shape_the_table():
    hs = hosts(3, weights=[1, 2, 4])
    lb, _, _ = make_lb({**MG, "maglev_lb_config": {"table_size": 7919}}, hs)
    counts = lb.tables[0].entry_counts()
    assert counts[hs[0]] == pytest.approx(7919 / 7, abs=2)
    assert counts[hs[1]] == pytest.approx(2 * 7919 / 7, abs=2)
    assert counts[hs[2]] == pytest.approx(4 * 7919 / 7, abs=2)


def test_first_slot_follows_envoys_permutation():
    # With one host its first claim lands at offset = XXH64(key) % M.
    h = Host("10.1.2.3", 8080)
    table = MaglevTable([(h, 1.0)], 13, use_hostname=False)
    assert table.hosts == [h]
    two = Host("10.1.2.4", 8080)
    table = MaglevTable([(h, 0.5), (two, 0.5)], 13, use_hostname=False)
    key = b"10.1.2.3:8080"
    offset = xxhash.xxh64_intdigest(key) % 13
    assert table.hosts[table.table[offset]] is h
    skip = xxhash.xxh64_intdigest(key, 1) % 12 + 1
    assert 1 <= skip <= 12


def test_lookup_is_table_at_hash_mod_m_and_consistent():
    hs = hosts(5)
    lb, _, _ = make_lb(MG, hs)
    table = lb.tables[0]
    for k in _keys(200):
        assert lb.choose_host(Context(k)) is table.hosts[table.table[k % 65537]]


def test_removing_one_of_n_moves_few_keys():
    n = 10
    hs = hosts(n)
    lb, ps, _ = make_lb(MG, hs)
    keys = _keys(20_000)
    before = [lb.choose_host(Context(k)) for k in keys]
    gone = hs[4]
    ps.update([h for h in hs if h is not gone])
    after = [lb.choose_host(Context(k)) for k in keys]
    moved = sum(1 for b, a in zip(before, after, strict=True) if b is not a)
    assert moved / len(keys) <= 1.2 / n
    assert gone not in after


def test_retry_attempt_changes_the_hash():
    hs = hosts(5)
    lb, _, _ = make_lb(MG, hs)
    key = _keys(1)[0]
    first = lb.choose_host(Context(key))
    assert lb.choose_host(Context(key, reject=[first], retries=3)) is not first


def test_empty_priority_set_returns_none():
    lb, _, _ = make_lb(MG, [])
    assert lb.choose_host(Context(1)) is None
