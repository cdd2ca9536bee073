"""Micro-benchmark (not a test): choose_host cost per policy, and ring/table build time.

    /tmp/venv/bin/python bench/lb_cost.py [--calls N]

Hosts are 10.x.y.z:80 with weight 1 (and a mixed-weight variant for round robin and least
request, which then use the EDF path). The context carries a random hash key so RING_HASH and
MAGLEV measure their lookup, not the random fallback.
"""

from __future__ import annotations

import argparse
import random
import time

from outrider.lb.base import LbStats
from outrider.lb.config import (
    LEAST_REQUEST,
    MAGLEV,
    PEAK_EWMA,
    RANDOM,
    RING_HASH,
    ROUND_ROBIN,
    LbPolicyConfig,
)
from outrider.lb.factory import build_load_balancer
from outrider.stats.store import StatsStore
from outrider.upstream.host import Host, PrioritySet


class _Context:
    __slots__ = ("key",)
    host_selection_retry_max_attempts = 0

    def __init__(self) -> None:
        self.key = 0

    def compute_hash_key(self) -> int:
        return self.key

    def should_select_another_host(self, host: Host) -> bool:
        return False


def _hosts(n: int, weighted: bool) -> list[Host]:
    return [Host(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 80,
                 weight=(1 + i % 3) if weighted else 1) for i in range(n)]


def _bench(policy: str, n: int, calls: int, weighted: bool = False) -> tuple[float, float]:
    rng = random.Random(42)
    ps = PrioritySet()
    ps.update(_hosts(n, weighted))
    stats = LbStats(StatsStore().scope("cluster.bench"))
    t0 = time.perf_counter()
    lb = build_load_balancer(LbPolicyConfig(policy), ps, rng=rng, clock=time.monotonic,
                             stats=stats)
    build = time.perf_counter() - t0
    if policy == PEAK_EWMA:
        for h in ps.all_hosts:
            lb.on_request_complete(h, rng.uniform(0.001, 0.01), True)
    ctx = _Context()
    keys = [rng.getrandbits(64) for _ in range(1024)]
    choose = lb.choose_host
    t0 = time.perf_counter()
    for i in range(calls):
        ctx.key = keys[i & 1023]
        choose(ctx)
    per_call = (time.perf_counter() - t0) / calls
    return build, per_call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    rows = [
        (ROUND_ROBIN, False), (ROUND_ROBIN, True), (LEAST_REQUEST, False), (LEAST_REQUEST, True),
        (RANDOM, False), (RING_HASH, False), (MAGLEV, False), (PEAK_EWMA, False),
    ]
    print(f"{'policy':<22}{'hosts':>7}{'build ms':>11}{'choose_host ns':>16}")
    for policy, weighted in rows:
        for n in (10, 1_000, 10_000):
            build, per_call = _bench(policy, n, args.calls, weighted)
            name = policy + (" (weighted)" if weighted else "")
            print(f"{name:<22}{n:>7}{build * 1e3:>11.1f}{per_call * 1e9:>16.0f}")


if __name__ == "__main__":
    main()
