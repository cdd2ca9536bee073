"""Shared helpers for load-balancer tests (imported by name; unique across the test tree)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format

import outrider.lb.config  # noqa: F401 - registers the contrib PeakEwma message for ParseDict
from outrider.lb.base import LbStats
from outrider.lb.factory import create_load_balancer
from outrider.stats.store import StatsStore
from outrider.upstream.host import Host, PrioritySet
from outrider.upstream.membership import HEALTHY, HealthFlag

# Chi-square critical values at p = 0.001 by degrees of freedom (precomputed, so no scipy).
CHI2_CRITICAL_0_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 9: 27.877,
                       19: 43.820}


def chi_square(observed: Iterable[int], expected: Iterable[float]) -> float:
    """Pearson's statistic Σ (o - e)² / e."""
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))


class ManualClock:
    """A clock tests advance by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Context:
    """A router stand-in: fixed hash key, optional host rejection."""

    def __init__(self, hash_key: int | None = None, reject: Iterable[Host] = (),
                 retries: int = 0) -> None:
        self.hash_key = hash_key
        self.reject = set(reject)
        self.host_selection_retry_max_attempts = retries
        self.asked: list[Host] = []

    def compute_hash_key(self) -> int | None:
        return self.hash_key

    def should_select_another_host(self, host: Host) -> bool:
        self.asked.append(host)
        return host in self.reject


def hosts(n: int, *, weights: Iterable[int] | None = None, priority: int = 0,
          prefix: str = "10.0.0", created_at: float = -1e9) -> list[Host]:
    ws = list(weights) if weights is not None else [1] * n
    return [Host(f"{prefix}.{i + 1}", 80, weight=ws[i], priority=priority, created_at=created_at)
            for i in range(n)]


def set_healthy(host: Host, healthy: bool) -> None:
    """Mark ``host`` (un)healthy through its health flags, the one way health gets in (a cluster
    does it when it applies a HealthUpdate); call the PrioritySet's ``notify()`` after."""
    host.set_health_flags(HEALTHY if healthy else HealthFlag.FAILED_ACTIVE_HC)


def new_stats() -> LbStats:
    return LbStats(StatsStore().scope("cluster.test"))


def cluster(config: dict | None = None) -> cluster_pb2.Cluster:
    """A Cluster proto from a JSON-ish dict (name filled in)."""
    data = {"name": "test", **(config or {})}
    return json_format.ParseDict(data, cluster_pb2.Cluster())


def make_lb(config: dict | None, host_list: list[Host], *, seed: int = 1,
            clock: ManualClock | None = None, stats: LbStats | None = None,
            worker_index: int = 0):
    """(lb, priority_set, stats) built through the public factory."""
    ps = PrioritySet.from_hosts(host_list)
    stats = stats or new_stats()
    lb = create_load_balancer(cluster(config), ps, rng=random.Random(seed),
                              clock=clock or ManualClock(), stats=stats,
                              worker_index=worker_index)
    return lb, ps, stats


def spread(lb, n: int, context=None) -> Counter:
    """How many of n picks each host got."""
    return Counter(lb.choose_host(context) for _ in range(n))
