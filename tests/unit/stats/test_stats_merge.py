"""Stats across workers: the main process adds up the workers' snapshots."""

from __future__ import annotations

from outrider.stats.store import StatsStore, StatsStruct


class Membership(StatsStruct):
    COUNTERS = ("upstream_rq_total",)
    GAUGES = ("upstream_rq_active",)
    SHARED_GAUGES = ("membership_total",)


def _worker(requests: int, active: int, members: int) -> dict:
    store = StatsStore()
    stats = Membership(store.scope("cluster.a"))
    stats.upstream_rq_total.inc(requests)
    stats.upstream_rq_active.set(active)
    stats.membership_total.set(members)
    store.counter(f"cluster.a.upstream_rq_{200 + requests}").inc()  # made by one worker only
    return store.snapshot()


def test_counters_and_gauges_are_summed_and_shared_gauges_come_from_the_main_process():
    main = StatsStore()
    stats = Membership(main.scope("cluster.a"))
    stats.membership_total.set(3)
    main.counter("server.worker_restarts").inc()
    merged = main.merged([_worker(5, 1, 3), _worker(7, 2, 3)])
    assert merged["counters"]["cluster.a.upstream_rq_total"] == 12
    assert merged["counters"]["cluster.a.upstream_rq_205"] == 1
    assert merged["counters"]["cluster.a.upstream_rq_207"] == 1
    assert merged["counters"]["server.worker_restarts"] == 1
    assert merged["gauges"]["cluster.a.upstream_rq_active"] == 3
    assert merged["gauges"]["cluster.a.membership_total"] == 3  # not 9


def test_a_worker_does_not_report_shared_gauges():
    snapshot = _worker(1, 0, 3)
    assert "cluster.a.membership_total" not in snapshot["gauges"]
    assert snapshot["gauges"]["cluster.a.upstream_rq_active"] == 0
