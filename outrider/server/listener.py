"""Listeners: accept on a socket and make a ``DownstreamConnection`` per client.

A listener's HTTP config (connection manager settings, routes, router) can be replaced while it
serves (a reload that changes the listener but not its address): ``update`` swaps it, and each
connection takes the new one at its next request, never in the middle of one, so in-flight
requests finish on the config they started on. The socket, its accept queue and the open
connections stay. A listener that goes away drains (``server/drain.py``).
"""

from __future__ import annotations

import functools
import socket

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from outrider.config.durations import uint_value
from outrider.http.conn_manager import HttpStats
from outrider.http.conn_manager_config import ConnectionManagerConfig
from outrider.net.downstream import DownstreamConnection
from outrider.router.router_filter import RouterConfig, RouterFilter
from outrider.server.drain import DrainManager
from outrider.server.sockets import ListenAddress
from outrider.stats.store import StatsStore, StatsStruct

DEFAULT_BUFFER_LIMIT = 1024 * 1024


class ListenerStats(StatsStruct):
    COUNTERS = ("downstream_cx_total", "downstream_cx_destroy")
    GAUGES = ("downstream_cx_active",)


class PerWorkerListenerStats(StatsStruct):
    """``listener.<address>.worker_<i>.*``: which worker accepted what, as Envoy reports."""

    COUNTERS = ("downstream_cx_total",)
    GAUGES = ("downstream_cx_active",)


def listener_hcm(listener: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager:
    """The HTTP connection manager of the listener's (single) filter chain."""
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            hcm = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(hcm):
                return hcm
    raise ValueError(f"listener {listener.name!r} has no http_connection_manager")


def listen_address(listener: listener_pb2.Listener) -> ListenAddress:
    sock = listener.address.socket_address
    return ListenAddress(sock.address, sock.port_value, sock.ipv4_compat)


class ListenerFactory:
    """Everything a connection accepted on one listener shares."""

    def __init__(self, listener: listener_pb2.Listener, cluster_manager, store: StatsStore,
                 loop, worker_index: int = 0) -> None:
        self.name = listener.name
        self.listen_address = listen_address(listener)
        self.address = self.listen_address.address
        self.port = self.listen_address.port
        self.loop = loop
        self.store = store
        self.cluster_manager = cluster_manager
        self.drain = DrainManager(clock=loop.time)
        self.connections: set[DownstreamConnection] = set()
        self.server = None
        self.proto = listener
        self._worker_index = worker_index
        self._configure(listener)
        self.stats: ListenerStats | None = None
        if self.port:  # port 0: named when bound
            self._make_stats()

    def _make_stats(self) -> None:
        """``listener.<address>_<port>.*``, named after the bound port (known at start for a
        listener configured with port 0)."""
        scope = self.store.scope(f"listener.{self.address}_{self.port}")
        self.stats = ListenerStats(scope)
        self.worker_stats = PerWorkerListenerStats(scope.scope(f"worker_{self._worker_index}"))

    def _configure(self, listener: listener_pb2.Listener) -> None:
        """Build the HTTP config new requests use (the swappable part of a listener)."""
        self.buffer_limit = uint_value(listener, "per_connection_buffer_limit_bytes",
                                       DEFAULT_BUFFER_LIMIT)
        hcm_config = ConnectionManagerConfig.from_proto(listener_hcm(listener))
        router_config = RouterConfig(self.cluster_manager, hcm_config.suppress_envoy_headers,
                                     self.loop)
        self.router_factory = functools.partial(RouterFilter, router_config)
        self.http_stats = HttpStats(self.store.scope(f"http.{hcm_config.stat_prefix}"))
        self.hcm_config = hcm_config  # last: a connection compares it to see a new config
        self.proto = listener

    def update(self, listener: listener_pb2.Listener) -> None:
        """A reload changed this listener but not its address: new requests use the new config."""
        self._configure(listener)

    async def start(self, sock: socket.socket) -> None:
        """Accept on ``sock``, owned by the main process (``server/sockets.py``)."""
        # This process's own descriptor for the shared socket: closing it on drain leaves the
        # socket (and its accept queue) to the other holders.
        sock = sock.dup()
        port = sock.getsockname()[1]
        if port != self.port or self.stats is None:
            self.port = port
            self._make_stats()
        self.server = await self.loop.create_server(
            lambda: DownstreamConnection(self), sock=sock, backlog=1024)

    @property
    def bound_address(self) -> str:
        return f"{self.address}:{self.port}"

    def on_connection_open(self, connection: DownstreamConnection) -> None:
        self.connections.add(connection)
        self.stats.downstream_cx_total.inc()
        self.stats.downstream_cx_active.inc()
        self.worker_stats.downstream_cx_total.inc()
        self.worker_stats.downstream_cx_active.inc()

    def on_connection_close(self, connection: DownstreamConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.stats.downstream_cx_active.dec()
            self.stats.downstream_cx_destroy.inc()
            self.worker_stats.downstream_cx_active.dec()

    # -- draining -------------------------------------------------------------------------------

    def start_drain(self, strategy: str, drain_time: float) -> None:
        """Tell keep-alive connections to close after a response, as the strategy spreads it."""
        self.drain.start(strategy, drain_time)

    def stop_listening(self) -> None:
        """Accept no more (this process's descriptor only: see ``start``)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def close_idle_connections(self) -> None:
        """Close the connections that have no request in flight (nothing is lost: none is)."""
        for connection in list(self.connections):
            manager = connection.manager
            if manager is not None and not manager.streams:
                manager.close()

    def close(self) -> None:
        """Stop listening and reset every connection still open."""
        self.stop_listening()
        for connection in list(self.connections):
            connection.close(abort=True)
