"""The cluster manager: every cluster by name, membership discovery, and applying its events.

Discovery (``discovery=True``, the default: one process, or the main process of several) keeps a
``ClusterMembership`` per cluster, the authoritative membership, and turns every change into an
event passed to ``self.publish``. ``publish`` is a plain attribute, ``self.apply`` by default, so a
single process applies its own events in place; the main process of ``--concurrency N`` sets it to
a function that applies locally (its admin reads its clusters) and sends the event to every
worker, and sends ``snapshots()`` to a worker that starts. A worker (``discovery=False``) resolves
nothing: its DNS clusters start empty and change only through ``apply(update)``. STATIC clusters
build their membership from config on both sides (``static_membership``), so a worker serves them
before any update; later events (health) reach them like any other cluster's.

DNS: every ``dns_refresh_rate``, STRICT_DNS resolves each endpoint's name and makes every returned
address a host (Envoy's strict DNS); LOGICAL_DNS resolves its one endpoint and gives the first
address of the answer to its one host, whose new connections then go there (Envoy's logical
DNS). A failed resolution keeps the last good membership or address.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable

from outrider.stats.store import StatsStore
from outrider.upstream.cluster import (
    Cluster,
    ClusterSettings,
    host_state_for,
    static_membership,
)
from outrider.upstream.membership import (
    ClusterMembership,
    ClusterUpdate,
    HostState,
    MembershipUpdate,
)

log = logging.getLogger("outrider.upstream")
_DNS_TYPES = ("STRICT_DNS", "LOGICAL_DNS")


class ClusterManager:
    def __init__(self, settings: list[ClusterSettings], store: StatsStore, loop,
                 rng: random.Random | None = None, worker_index: int = 0, *,
                 discovery: bool = True, serving: bool = True) -> None:
        self.loop = loop
        self.store = store
        self.rng = rng
        self.worker_index = worker_index
        self.discovery = discovery
        self.serving = serving  # False: the main process of several, which serves nothing
        self.clusters: dict[str, Cluster] = {s.name: self._new_cluster(s) for s in settings}
        # The authoritative memberships (discovery side only).
        self.memberships: dict[str, ClusterMembership] = {}
        if discovery:
            self.memberships = {s.name: _membership_for(s) for s in settings}
        # Where discovery's events go: applied here by default; see the module docstring.
        self.publish: Callable[[ClusterUpdate], None] = self.apply
        self._dns_tasks: dict[str, asyncio.Task] = {}

    def _new_cluster(self, settings: ClusterSettings) -> Cluster:
        return Cluster(settings, self.store.scope(f"cluster.{settings.name}"), self.loop,
                       self.rng, self.worker_index, serving=self.serving)

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    def apply(self, update: ClusterUpdate) -> None:
        """Apply a membership event to the cluster it names; an unknown cluster (removed by a
        reload since, say) is ignored."""
        cluster = self.clusters.get(update.cluster)
        if cluster is None:
            log.debug("update for unknown cluster %s ignored", update.cluster)
            return
        cluster.apply(update)

    def snapshots(self) -> list[MembershipUpdate]:
        """Every cluster's current membership, as initial updates (for a worker that starts).
        Discovery side only."""
        if not self.discovery:
            raise RuntimeError("snapshots() needs the discovery side (discovery=True)")
        return [membership.snapshot() for membership in self.memberships.values()]

    async def start(self) -> None:
        """Resolve DNS clusters once (Envoy's cluster warming), then keep refreshing them.
        Without discovery there is nothing to start: updates arrive through ``apply``."""
        if not self.discovery:
            return
        await self._warm(list(self.clusters.values()), self.memberships)
        self._start_refreshing(list(self.clusters.values()))

    async def _warm(self, clusters: list[Cluster],
                    memberships: dict[str, ClusterMembership]) -> None:
        """First resolution of DNS clusters into their ``memberships``, applied to them
        directly (nobody else knows them yet: a reload sends their snapshots with the new
        config)."""
        dns = [c for c in clusters if c.settings.type in _DNS_TYPES]
        updates = await asyncio.gather(*(self._resolve(c, memberships[c.name]) for c in dns))
        for cluster, update in zip(dns, updates, strict=True):
            if update is not None:
                cluster.apply(update)

    def _start_refreshing(self, clusters: list[Cluster]) -> None:
        for cluster in clusters:
            if cluster.settings.type in _DNS_TYPES:
                task = self._dns_tasks.pop(cluster.name, None)
                if task is not None:
                    task.cancel()
                self._dns_tasks[cluster.name] = self.loop.create_task(
                    self._refresh_loop(cluster))

    async def reconfigure(self, settings: list[ClusterSettings]) -> None:
        """A reload: clusters whose config is unchanged stay as they are (pools, balancer
        state, membership, health); new and changed ones are built, DNS ones resolved before
        they serve when this side does discovery; removed and replaced ones drain (requests
        in flight finish on them, none new arrive)."""
        clusters: dict[str, Cluster] = {}
        fresh: list[Cluster] = []
        for s in settings:
            old = self.clusters.get(s.name)
            if old is not None and old.settings.proto == s.proto:
                clusters[s.name] = old
            else:
                clusters[s.name] = cluster = self._new_cluster(s)
                fresh.append(cluster)
        if self.discovery:
            # Warmed before anything can see them: until the swap below, a worker that starts
            # gets the old config and the old memberships, which agree.
            memberships = {c.name: _membership_for(c.settings) for c in fresh}
            await self._warm(fresh, memberships)
            self.memberships.update(memberships)
            self._start_refreshing(fresh)
        retired = [c for name, c in self.clusters.items() if clusters.get(name) is not c]
        self.clusters = clusters
        for name in [n for n in self.memberships if n not in clusters]:
            del self.memberships[name]
            task = self._dns_tasks.pop(name, None)
            if task is not None:
                task.cancel()
        for cluster in retired:
            cluster.drain()

    def shutdown(self) -> None:
        for task in self._dns_tasks.values():
            task.cancel()
        for cluster in self.clusters.values():
            cluster.close()

    async def _refresh_loop(self, cluster: Cluster) -> None:
        while True:
            await asyncio.sleep(cluster.settings.dns_refresh_rate)
            update = await self._resolve(cluster)
            if update is not None:
                self.publish(update)

    async def _resolve(self, cluster: Cluster,
                       membership: ClusterMembership | None = None) -> ClusterUpdate | None:
        """Resolve the cluster's names; the change to its membership, if any."""
        cluster.stats.update_attempt.inc()
        if membership is None:
            membership = self.memberships[cluster.name]
        states: list[HostState] = []
        family = cluster.settings.dns_lookup_family
        logical = cluster.settings.type == "LOGICAL_DNS"
        logical_address = ""
        try:
            for e in cluster.settings.endpoints:
                infos = await self.loop.getaddrinfo(e.address, e.port, type=socket.SOCK_STREAM)
                if logical:
                    first = first_address(infos, family)
                    if first is None:
                        raise OSError(f"no {family} address for {e.address}")
                    logical_address = first
                else:
                    states.extend(host_state_for(e, address, resolved=True)
                                  for address in select_addresses(infos, family))
        except OSError as exc:
            cluster.stats.update_failure.inc()
            log.warning("cluster %s: DNS resolution failed: %s", cluster.name, exc)
            return None
        cluster.stats.update_success.inc()
        # The first hosts of an empty cluster are its warm membership: no slow start.
        first_run = not membership.hosts
        update: ClusterUpdate | None
        if not logical:
            update = membership.replace(states, initial=first_run)
        elif first_run:
            endpoint = cluster.settings.endpoints[0]
            update = membership.replace(
                [host_state_for(endpoint, logical_address, resolved=True)], initial=True)
        else:
            update = membership.set_logical_address(logical_address)
        return update


def _membership_for(settings: ClusterSettings) -> ClusterMembership:
    return static_membership(settings) if settings.type == "STATIC" else ClusterMembership(
        settings.name)


def kept_addresses(infos: list, family: str) -> list[str]:
    """The addresses Envoy's ``dns_lookup_family`` keeps from a getaddrinfo answer, in the
    answer's order (repeats included).

    V4_ONLY / V6_ONLY keep one family; AUTO prefers IPv6 and falls back to IPv4,
    V4_PREFERRED the reverse; ALL keeps both.
    """
    if family == "ALL":
        return [i[4][0] for i in infos if i[0] in (socket.AF_INET, socket.AF_INET6)]
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    if family == "V4_ONLY":
        return v4
    if family == "V6_ONLY":
        return v6
    if family == "AUTO":
        return v6 or v4
    return v4 or v6  # V4_PREFERRED


def first_address(infos: list, family: str) -> str | None:
    """The address a LOGICAL_DNS cluster uses: the first one ``kept_addresses`` keeps, in the
    answer's order; None if none."""
    kept = kept_addresses(infos, family)
    return kept[0] if kept else None


def select_addresses(infos: list, family: str) -> list[str]:
    """A STRICT_DNS cluster's hosts: the addresses ``kept_addresses`` keeps, once each, sorted
    (IPv4 first), so an answer in another order is not a change of membership."""
    return sorted(set(kept_addresses(infos, family)), key=lambda address: (":" in address, address))
