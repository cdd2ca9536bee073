"""Circuit-breaker thresholds from config, per routing priority, and their gauges."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2
from google.protobuf import json_format

from outrider.stats.store import StatsStore
from outrider.upstream.resource_manager import (
    ResourceManager,
    Thresholds,
    thresholds_by_priority,
)


def _breakers(thresholds: list[dict]) -> circuit_breaker_pb2.CircuitBreakers:
    return json_format.ParseDict({"thresholds": thresholds}, circuit_breaker_pb2.CircuitBreakers())


def test_unset_priorities_and_fields_keep_envoys_defaults():
    default, high = thresholds_by_priority(_breakers([{"max_requests": 5}]))
    assert default == Thresholds(max_requests=5)
    assert (default.max_connections, default.max_pending_requests, default.max_retries) == (
        1024, 1024, 3)
    assert high == Thresholds()


def test_each_priority_has_its_own_and_the_last_entry_wins():
    default, high = thresholds_by_priority(_breakers([
        {"priority": "HIGH", "max_connections": 7},
        {"max_pending_requests": 2},
        {"priority": "HIGH", "max_connections": 9, "track_remaining": True},
    ]))
    assert default == Thresholds(max_pending_requests=2)
    assert high == Thresholds(max_connections=9, track_remaining=True)


def test_gauges_are_computed_when_the_stats_are_read():
    store = StatsStore()
    manager = ResourceManager(Thresholds(max_requests=2, track_remaining=True),
                              store.scope("cluster.c.circuit_breakers.default"))
    manager.requests.inc()
    gauges = store.snapshot()["gauges"]
    assert gauges["cluster.c.circuit_breakers.default.rq_open"] == 0
    assert gauges["cluster.c.circuit_breakers.default.remaining_rq"] == 1
    manager.requests.inc()
    gauges = store.snapshot()["gauges"]
    assert gauges["cluster.c.circuit_breakers.default.rq_open"] == 1
    assert gauges["cluster.c.circuit_breakers.default.remaining_rq"] == 0
    assert gauges["cluster.c.circuit_breakers.default.remaining_cx"] == 1024


def test_a_replaced_managers_gauges_follow_the_successor():
    store = StatsStore()
    scope = store.scope("cluster.c.circuit_breakers.default")
    old = ResourceManager(Thresholds(max_requests=1), scope)
    old.requests.inc()
    new = ResourceManager(Thresholds(max_requests=1), scope)  # a reload replaced the cluster
    old.close()  # the old one drains; it must not unregister its successor
    assert store.snapshot()["gauges"]["cluster.c.circuit_breakers.default.rq_open"] == 0
    new.requests.inc()
    assert store.snapshot()["gauges"]["cluster.c.circuit_breakers.default.rq_open"] == 1
