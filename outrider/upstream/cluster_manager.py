"""The cluster manager: every cluster by name, and DNS re-resolution.

Every ``dns_refresh_rate``, STRICT_DNS resolves each endpoint's name and makes every returned
address a host (Envoy's strict DNS); LOGICAL_DNS resolves its one endpoint and gives the first
address of the answer to its one host, whose new connections then go there (Envoy's logical
DNS). A failed resolution keeps the last good membership or address.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket

from outrider.stats.store import StatsStore
from outrider.upstream.cluster import Cluster, ClusterSettings, host_for
from outrider.upstream.host import Host

log = logging.getLogger("outrider.upstream")
_DNS_TYPES = ("STRICT_DNS", "LOGICAL_DNS")


class ClusterManager:
    def __init__(self, settings: list[ClusterSettings], store: StatsStore, loop,
                 rng: random.Random | None = None, worker_index: int = 0) -> None:
        self.loop = loop
        self.clusters: dict[str, Cluster] = {
            s.name: Cluster(s, store.scope(f"cluster.{s.name}"), loop, rng, worker_index)
            for s in settings
        }
        self._dns_tasks: list[asyncio.Task] = []

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    async def start(self) -> None:
        """Resolve DNS clusters once (Envoy's cluster warming), then keep refreshing them."""
        dns = [c for c in self.clusters.values() if c.settings.type in _DNS_TYPES]
        await asyncio.gather(*(self._resolve(c) for c in dns))
        self._dns_tasks = [self.loop.create_task(self._refresh_loop(c)) for c in dns]

    def shutdown(self) -> None:
        for task in self._dns_tasks:
            task.cancel()
        for cluster in self.clusters.values():
            cluster.close()

    async def _refresh_loop(self, cluster: Cluster) -> None:
        while True:
            await asyncio.sleep(cluster.settings.dns_refresh_rate)
            await self._resolve(cluster)

    async def _resolve(self, cluster: Cluster) -> None:
        cluster.stats.update_attempt.inc()
        hosts: list[Host] = []
        family = cluster.settings.dns_lookup_family
        first_run = not cluster.priority_set.all_hosts
        logical = cluster.settings.type == "LOGICAL_DNS"
        logical_address = None
        try:
            for e in cluster.settings.endpoints:
                infos = await self.loop.getaddrinfo(e.address, e.port, type=socket.SOCK_STREAM)
                if logical:
                    logical_address = first_address(infos, family)
                    if logical_address is None:
                        raise OSError(f"no {family} address for {e.address}")
                else:
                    hosts.extend(host_for(e, address, resolved=True)
                                 for address in select_addresses(infos, family))
        except OSError as exc:
            cluster.stats.update_failure.inc()
            log.warning("cluster %s: DNS resolution failed: %s", cluster.name, exc)
            return
        cluster.stats.update_success.inc()
        if logical:
            cluster.set_logical_address(cluster.settings.endpoints[0], logical_address)
        else:
            cluster.set_hosts(hosts, initial=first_run)


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
