"""Listeners: bind a socket and make a ``DownstreamConnection`` per accepted client."""

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
from outrider.stats.store import StatsStore, StatsStruct

DEFAULT_BUFFER_LIMIT = 1024 * 1024


class ListenerStats(StatsStruct):
    COUNTERS = ("downstream_cx_total", "downstream_cx_destroy")
    GAUGES = ("downstream_cx_active",)


def listener_hcm(listener: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager:
    """The HTTP connection manager of the listener's (single) filter chain."""
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            hcm = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(hcm):
                return hcm
    raise ValueError(f"listener {listener.name!r} has no http_connection_manager")


class ListenerFactory:
    """Everything a connection accepted on one listener shares."""

    def __init__(self, listener: listener_pb2.Listener, cluster_manager, store: StatsStore,
                 loop) -> None:
        sock = listener.address.socket_address
        self.name = listener.name
        self.address = sock.address
        self.port = sock.port_value
        self.ipv4_compat = sock.ipv4_compat
        self.loop = loop
        self.buffer_limit = uint_value(listener, "per_connection_buffer_limit_bytes",
                                       DEFAULT_BUFFER_LIMIT)
        self.hcm_config = ConnectionManagerConfig.from_proto(listener_hcm(listener))
        router_config = RouterConfig(cluster_manager, self.hcm_config.suppress_envoy_headers, loop)
        self.router_factory = functools.partial(RouterFilter, router_config)
        self.http_stats = HttpStats(store.scope(f"http.{self.hcm_config.stat_prefix}"))
        self.stats = ListenerStats(store.scope(f"listener.{self.address}_{self.port}"))
        self.connections: set[DownstreamConnection] = set()
        self.server = None

    async def start(self) -> None:
        self.server = await self.loop.create_server(
            lambda: DownstreamConnection(self), sock=self._bind(), backlog=1024)
        if self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]

    def _bind(self) -> socket.socket:
        """The listening socket: SO_REUSEPORT (workers share the port later), and for an IPv6
        address with ``ipv4_compat`` a dual-stack socket that also accepts IPv4 clients."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if self.ipv4_compat else 1)
            sock.bind((self.address, self.port))
        except OSError:
            sock.close()
            raise
        return sock

    @property
    def bound_address(self) -> str:
        return f"{self.address}:{self.port}"

    def on_connection_open(self, connection: DownstreamConnection) -> None:
        self.connections.add(connection)
        self.stats.downstream_cx_total.inc()
        self.stats.downstream_cx_active.inc()

    def on_connection_close(self, connection: DownstreamConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.stats.downstream_cx_active.dec()
            self.stats.downstream_cx_destroy.inc()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.close(abort=True)
