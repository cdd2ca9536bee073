"""A worker: the listeners and clusters that serve traffic on one event loop.

With ``--concurrency 1`` the server runs one worker in its own process; with N, each worker
process runs one (``server/worker_process.py``). A worker accepts on the sockets it is given,
owns its connection pools and load balancers, and is reconfigured in place by ``apply`` (a
reload) and by membership and health events from whoever runs discovery.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from envoy.config.bootstrap.v3 import bootstrap_pb2

from outrider.server.listener import ListenerFactory, listen_address
from outrider.server.sockets import ListenAddress
from outrider.stats.store import StatsStore
from outrider.upstream.cluster import ClusterSettings
from outrider.upstream.cluster_manager import ClusterManager

log = logging.getLogger("outrider")

DRAIN_POLL = 0.05
# After the drain time, requests still in flight get this long to finish (their responses
# close their connections) before the worker closes what is left.
IN_FLIGHT_GRACE = 1.0


class Worker:
    def __init__(self, loop, stats: StatsStore, index: int = 0, discovery: bool = True) -> None:
        self.loop = loop
        self.stats = stats
        self.index = index
        self.discovery = discovery
        self.cluster_manager: ClusterManager | None = None
        self.listeners: dict[str, ListenerFactory] = {}
        # Listeners a reload removed or moved: they drain until their connections are gone.
        self.retired: list[ListenerFactory] = []
        self.draining = False  # a drain began: no listener starts any more
        self.drain_strategy = "gradual"
        self.drain_time = 600.0

    async def start(self, bootstrap: bootstrap_pb2.Bootstrap,
                    sockets: dict[ListenAddress, socket.socket], snapshots=()) -> None:
        """Clusters first (DNS clusters warm with their first resolution, or take the main
        process's ``snapshots``), then listeners."""
        resources = bootstrap.static_resources
        self.cluster_manager = ClusterManager(
            [ClusterSettings.from_proto(c) for c in resources.clusters], self.stats, self.loop,
            worker_index=self.index, discovery=self.discovery)
        await self.cluster_manager.start()
        for update in snapshots:
            self.cluster_manager.apply(update)
        for listener in resources.listeners:
            await self._add_listener(listener, sockets)

    async def _add_listener(self, listener, sockets: dict[ListenAddress, socket.socket]) -> None:
        sock = sockets.get(listen_address(listener))
        if sock is None or sock.fileno() == -1 or self.draining:
            # The main process owns every listening socket; none (closed by a drain that began
            # meanwhile) means this listener is not to be served.
            log.warning("worker %d: listener '%s' not started: %s", self.index, listener.name,
                        "draining" if self.draining else "no socket")
            return
        factory = ListenerFactory(listener, self.cluster_manager, self.stats, self.loop,
                                  self.index)
        await factory.start(sock)
        self.listeners[listener.name] = factory
        log.debug("worker %d: listener '%s' on %s", self.index, listener.name,
                  factory.bound_address)

    async def apply(self, bootstrap: bootstrap_pb2.Bootstrap,
                    sockets: dict[ListenAddress, socket.socket], snapshots=()) -> None:
        """A reload: clusters first (so new routes find them), then listeners.

        Unchanged clusters keep their pools, balancer and health state; a changed or removed
        cluster serves its requests in flight and drains. A listener whose address stays keeps
        its socket and connections and takes the new config; one removed or moved drains.
        """
        resources = bootstrap.static_resources
        await self.cluster_manager.reconfigure(
            [ClusterSettings.from_proto(c) for c in resources.clusters])
        for update in snapshots:  # the new clusters' members, before a route can reach them
            self.cluster_manager.apply(update)
        wanted = {listener.name: listener for listener in resources.listeners}
        for name, factory in list(self.listeners.items()):
            new = wanted.get(name)
            if new is not None and listen_address(new) == factory.listen_address:
                if new != factory.proto:
                    factory.update(new)
                continue
            del self.listeners[name]
            self._retire(factory)
        for name, listener in wanted.items():
            if name not in self.listeners:
                await self._add_listener(listener, sockets)

    def _retire(self, factory: ListenerFactory) -> None:
        factory.stop_listening()
        factory.start_drain(self.drain_strategy, self.drain_time)
        self.retired.append(factory)
        self.loop.call_later(self.drain_time, self._end_retired_drain, factory)

    def _end_retired_drain(self, factory: ListenerFactory) -> None:
        if factory in self.retired:
            self.retired.remove(factory)
            factory.close()

    def host_outcomes(self) -> dict:
        """{cluster: {host key: (active, successes, errors)}}: what this worker saw."""
        return {name: cluster.host_outcomes()
                for name, cluster in self.cluster_manager.clusters.items()}

    def apply_update(self, update) -> None:
        """A membership or health event from discovery (the main process)."""
        self.cluster_manager.apply(update)

    # -- draining and shutdown ------------------------------------------------------------------

    def all_listeners(self) -> list[ListenerFactory]:
        return [*self.listeners.values(), *self.retired]

    def start_drain(self, strategy: str, drain_time: float, stop_listening: bool,
                    close_idle: bool) -> None:
        """Drain every listener; ``stop_listening`` now, or else at the end of the drain time
        (Envoy's graceful ``/drain_listeners``)."""
        self.draining = True
        for factory in self.all_listeners():
            factory.start_drain(strategy, drain_time)
        if stop_listening:
            self.stop_listening()
        else:
            self.loop.call_later(drain_time, self.stop_listening)
        if close_idle:
            self.close_idle_connections()

    @property
    def listening(self) -> bool:
        return any(factory.server is not None for factory in self.all_listeners())

    def stop_listening(self) -> None:
        for factory in self.all_listeners():
            factory.stop_listening()

    def close_idle_connections(self) -> None:
        for factory in self.all_listeners():
            factory.close_idle_connections()

    async def finish_drain(self, deadline: float) -> None:
        """Wait until every connection has closed (while draining, each closes after a
        response) or the drain time is over; then stop listening, close idle connections and
        give requests in flight a short grace. The caller closes whatever is left."""
        loop = self.loop
        while (self.listening or self.connection_count) and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        self.stop_listening()
        grace_end = loop.time() + IN_FLIGHT_GRACE
        while self.connection_count and loop.time() < grace_end:
            self.close_idle_connections()
            await asyncio.sleep(DRAIN_POLL)

    @property
    def connection_count(self) -> int:
        return sum(len(factory.connections) for factory in self.all_listeners())

    def close(self) -> None:
        for factory in self.all_listeners():
            factory.close()
        self.retired.clear()
        if self.cluster_manager is not None:
            self.cluster_manager.shutdown()
