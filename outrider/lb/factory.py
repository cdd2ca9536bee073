"""Build a cluster's load balancer from its config: the one entry point the proxy core uses.

    stats = LbStats(store.scope(f"cluster.{name}"))
    lb = create_load_balancer(cluster, priority_set, rng=random.Random(), clock=time.monotonic,
                              stats=stats, worker_index=worker)
    host = lb.choose_host(router_context)

The balancer registers itself with ``priority_set.on_update`` and rebuilds its schedules, rings
and tables there; call ``priority_set.notify()`` after changing membership or health.
Config errors raise ``UnsupportedLbPolicyError`` (a ``ValueError``) with the offending field.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from envoy.config.cluster.v3 import cluster_pb2

from outrider.lb.base import LbStats, LoadBalancer
from outrider.lb.config import (
    LEAST_REQUEST,
    MAGLEV,
    PEAK_EWMA,
    RANDOM,
    RING_HASH,
    ROUND_ROBIN,
    LbPolicyConfig,
    UnsupportedLbPolicyError,
    lb_config_from_cluster,
)
from outrider.lb.least_request import LeastRequestLoadBalancer
from outrider.lb.maglev import MaglevLoadBalancer
from outrider.lb.peak_ewma import PeakEwmaLoadBalancer
from outrider.lb.random_lb import RandomLoadBalancer
from outrider.lb.ring_hash import RingHashLoadBalancer
from outrider.lb.round_robin import RoundRobinLoadBalancer
from outrider.upstream.host import PrioritySet

__all__ = ["LbStats", "UnsupportedLbPolicyError", "build_load_balancer", "create_load_balancer"]


def create_load_balancer(
    cluster: cluster_pb2.Cluster,
    priority_set: PrioritySet,
    *,
    rng: random.Random,
    clock: Callable[[], float],
    stats: LbStats,
    worker_index: int = 0,
) -> LoadBalancer:
    """The load balancer ``cluster`` asks for, over ``priority_set``.

    ``rng`` and ``clock`` are injected (seconds, monotonic); ``worker_index`` offsets round-robin
    start positions so workers do not march in step. Raises UnsupportedLbPolicyError.
    """
    return build_load_balancer(lb_config_from_cluster(cluster), priority_set, rng=rng,
                               clock=clock, stats=stats, worker_index=worker_index)


def build_load_balancer(
    config: LbPolicyConfig,
    priority_set: PrioritySet,
    *,
    rng: random.Random,
    clock: Callable[[], float],
    stats: LbStats,
    worker_index: int = 0,
) -> LoadBalancer:
    """Like create_load_balancer, from an already parsed LbPolicyConfig."""
    common = config.common
    policy = config.policy
    if policy == ROUND_ROBIN:
        return RoundRobinLoadBalancer(priority_set, rng=rng, clock=clock, stats=stats,
                                      common=common, worker_index=worker_index,
                                      slow_start=config.slow_start)
    if policy == LEAST_REQUEST:
        return LeastRequestLoadBalancer(
            priority_set, rng=rng, clock=clock, stats=stats, common=common,
            worker_index=worker_index, slow_start=config.slow_start,
            choice_count=config.choice_count, active_request_bias=config.active_request_bias,
            full_scan=config.full_scan)
    if policy == RANDOM:
        return RandomLoadBalancer(priority_set, rng=rng, clock=clock, stats=stats,
                                  common=common, worker_index=worker_index)
    if policy == RING_HASH:
        return RingHashLoadBalancer(
            priority_set, rng=rng, clock=clock, stats=stats, common=common,
            use_hostname_for_hashing=config.use_hostname_for_hashing,
            minimum_ring_size=config.minimum_ring_size, maximum_ring_size=config.maximum_ring_size)
    if policy == MAGLEV:
        return MaglevLoadBalancer(
            priority_set, rng=rng, clock=clock, stats=stats, common=common,
            use_hostname_for_hashing=config.use_hostname_for_hashing,
            table_size=config.table_size)
    if policy == PEAK_EWMA:
        return PeakEwmaLoadBalancer(
            priority_set, rng=rng, clock=clock, stats=stats, common=common,
            worker_index=worker_index, decay_time=config.decay_time,
            choice_count=config.choice_count, default_rtt=config.default_rtt,
            latency_ratio_limit=config.latency_ratio_limit)
    raise UnsupportedLbPolicyError(f"unknown load-balancing policy {policy!r}")
