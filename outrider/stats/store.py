"""Counters and gauges, named as Envoy names them.

Stats are resolved once at config time into objects held by the component that bumps them
(``cluster.stats.upstream_rq_total.inc()``): no stat name is formatted per request. The store keeps
every stat by its full name for /stats and, later, Prometheus rendering and worker aggregation.
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
    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

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

    def counter(self, name: str) -> Counter:
        stat = self._counters.get(name)
        if stat is None:
            stat = self._counters[name] = Counter(name)
        return stat

    def gauge(self, name: str) -> Gauge:
        stat = self._gauges.get(name)
        if stat is None:
            stat = self._gauges[name] = Gauge(name)
        return stat

    def scope(self, prefix: str) -> Scope:
        return Scope(self, prefix)

    def counters(self) -> dict[str, Counter]:
        return self._counters

    def gauges(self) -> dict[str, Gauge]:
        return self._gauges


class Scope:
    """A name prefix (``cluster.backend.``) over a store."""

    __slots__ = ("store", "prefix")

    def __init__(self, store: StatsStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."

    def counter(self, name: str) -> Counter:
        return self.store.counter(self.prefix + name)

    def gauge(self, name: str) -> Gauge:
        return self.store.gauge(self.prefix + name)

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

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        for name in self.COUNTERS:
            setattr(self, name, scope.counter(name))
        for name in self.GAUGES:
            setattr(self, name, scope.gauge(name))
