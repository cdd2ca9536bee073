"""Counters and gauges, named as Envoy names them.

Stats are resolved once at config time into objects held by the component that bumps them
(``cluster.stats.upstream_rq_total.inc()``): no stat name is formatted per request. The store keeps
every stat by its full name for /stats; with worker processes the main process adds up the
workers' snapshots (``merged``), as Envoy merges its threads' stats. A counter stays a Python int
bumped in place: the hot path pays nothing for the aggregation.
"""

from __future__ import annotations


class Counter:
    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


class Gauge:
    """A value that goes up and down. ``shared``: the same fact in every worker (a cluster's
    membership, decided by the main process), so workers do not report it and the main
    process's own value is the total; other gauges are summed over the workers."""

    __slots__ = ("name", "value", "shared")

    def __init__(self, name: str, shared: bool = False) -> None:
        self.name = name
        self.value = 0
        self.shared = shared

    def inc(self, n: int = 1) -> None:
        self.value += n

    def dec(self, n: int = 1) -> None:
        self.value -= n

    def set(self, value: int) -> None:
        self.value = value


class StatsStore:
    """All stats of the process, by full name."""

    def __init__(self) -> None:
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        # Gauges computed when read rather than on every change, by key (a component that is
        # replaced, by a reload say, replaces its refresher).
        self._refreshers: dict[str, object] = {}

    def counter(self, name: str) -> Counter:
        stat = self._counters.get(name)
        if stat is None:
            stat = self._counters[name] = Counter(name)
        return stat

    def gauge(self, name: str, shared: bool = False) -> Gauge:
        stat = self._gauges.get(name)
        if stat is None:
            stat = self._gauges[name] = Gauge(name, shared)
        return stat

    def scope(self, prefix: str) -> Scope:
        return Scope(self, prefix)

    def counters(self) -> dict[str, Counter]:
        return self._counters

    def gauges(self) -> dict[str, Gauge]:
        self.refresh()
        return self._gauges

    def set_refresher(self, key: str, refresh) -> None:
        """``refresh()`` brings some gauges up to date before the store is read."""
        self._refreshers[key] = refresh

    def drop_refresher(self, key: str, refresh) -> None:
        """Forget ``refresh`` (its component is gone), unless a successor took ``key`` since."""
        if self._refreshers.get(key) == refresh:
            del self._refreshers[key]

    def refresh(self) -> None:
        for refresh in self._refreshers.values():
            refresh()

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A worker's values for the main process to add up (``merge``)."""
        self.refresh()
        gauges = self._gauges.values()
        return {
            "counters": {name: c.value for name, c in self._counters.items()},
            "gauges": {g.name: g.value for g in gauges if not g.shared},
            "shared": {g.name: g.value for g in gauges if g.shared},
        }

    def merged(self, snapshots: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
        """This process's values plus the workers' ``snapshots``: counters and gauges summed;
        a shared gauge as this process has it, or else as the first worker reports it (the
        same fact in each: a balancer's table size)."""
        self.refresh()
        counters = {name: c.value for name, c in self._counters.items()}
        gauges = {name: g.value for name, g in self._gauges.items()}
        for snapshot in snapshots:
            for name, value in snapshot["counters"].items():
                counters[name] = counters.get(name, 0) + value
            for name, value in snapshot["gauges"].items():
                gauges[name] = gauges.get(name, 0) + value
            for name, value in snapshot.get("shared", {}).items():
                gauges.setdefault(name, value)
        return {"counters": counters, "gauges": gauges}


class Scope:
    """A name prefix (``cluster.backend.``) over a store."""

    __slots__ = ("store", "prefix")

    def __init__(self, store: StatsStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."

    def counter(self, name: str) -> Counter:
        return self.store.counter(self.prefix + name)

    def gauge(self, name: str, shared: bool = False) -> Gauge:
        return self.store.gauge(self.prefix + name, shared)

    def scope(self, name: str) -> Scope:
        return Scope(self.store, self.prefix + name)


class StatsStruct:
    """Declares a component's stats once as lists of names; each becomes an attribute.

    >>> class ClusterStats(StatsStruct):
    ...     COUNTERS = ("upstream_rq_total",)
    >>> stats = ClusterStats(StatsStore().scope("cluster.backend"))
    >>> stats.upstream_rq_total.inc()
    """

    COUNTERS: tuple[str, ...] = ()
    GAUGES: tuple[str, ...] = ()
    SHARED_GAUGES: tuple[str, ...] = ()  # the same in every worker (see ``Gauge``)

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        for name in self.COUNTERS:
            setattr(self, name, scope.counter(name))
        for name in self.GAUGES:
            setattr(self, name, scope.gauge(name))
        for name in self.SHARED_GAUGES:
            setattr(self, name, scope.gauge(name, shared=True))
