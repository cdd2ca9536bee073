"""The server instance: builds the runtime from a Bootstrap and runs it on one event loop.

Startup follows Envoy's order: clusters first (STRICT_DNS clusters warm with their first
resolution), then listeners, then the admin listener; SIGTERM and SIGINT stop it, as does
``POST /quitquitquit``. SIGHUP and SIGUSR1 are logged and ignored until they get their meanings
(config reload, log reopening): their default action would kill the process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from envoy.config.bootstrap.v3 import bootstrap_pb2

from outrider.server.admin import AdminServer
from outrider.server.listener import ListenerFactory
from outrider.stats.store import StatsStore
from outrider.upstream.cluster import ClusterSettings
from outrider.upstream.cluster_manager import ClusterManager

log = logging.getLogger("outrider")


class StartupError(Exception):
    """The server cannot start (a listener cannot bind); the message names what and why."""


# Signals that stop the server, and those that must not kill it: why each is ignored for now.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_IGNORED_SIGNALS = {
    signal.SIGHUP: "config reload on SIGHUP is not implemented yet",
    signal.SIGUSR1: "log reopening on SIGUSR1 is not implemented yet",
}


class Server:
    def __init__(self, bootstrap: bootstrap_pb2.Bootstrap, options: dict | None = None) -> None:
        self.bootstrap = bootstrap
        self.options = options or {}
        self.state = "PRE_INITIALIZING"
        self.stats = StatsStore()
        self.cluster_manager: ClusterManager | None = None
        self.listeners: list[ListenerFactory] = []
        self.admin: AdminServer | None = None
        self._stopped: asyncio.Event | None = None

    def options_summary(self) -> dict:
        return dict(self.options)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        resources = self.bootstrap.static_resources
        log.info("loading %d cluster(s)", len(resources.clusters))
        self.cluster_manager = ClusterManager(
            [ClusterSettings.from_proto(c) for c in resources.clusters], self.stats, loop)
        await self.cluster_manager.start()
        log.info("all clusters initialized")
        log.info("loading %d listener(s)", len(resources.listeners))
        for listener in resources.listeners:
            factory = ListenerFactory(listener, self.cluster_manager, self.stats, loop)
            try:
                await factory.start()
            except OSError as error:
                raise StartupError(f"cannot bind listener '{listener.name or '-'}' to "
                                   f"{factory.bound_address}: {error.strerror or error}") from error
            self.listeners.append(factory)
            log.info("listener '%s' listening on %s", listener.name or "-", factory.bound_address)
        if self.bootstrap.HasField("admin"):
            sock = self.bootstrap.admin.address.socket_address
            self.admin = AdminServer(self, sock.address or "127.0.0.1", sock.port_value)
            try:
                await self.admin.start(loop)
            except OSError as error:
                raise StartupError(f"cannot bind the admin listener to {self.admin.address}:"
                                   f"{self.admin.port}: {error.strerror or error}") from error
            log.info("admin address: %s:%d", self.admin.address, self.admin.port)
            path = self.options.get("admin_address_path")
            if path:
                with open(path, "w") as f:
                    f.write(f"{self.admin.address}:{self.admin.port}\n")
        # The config and the protobuf modules are hundreds of thousands of long-lived objects:
        # move them out of the cyclic GC's sight, or every full collection walks them all and
        # shows up as tail latency.
        gc.collect()
        gc.freeze()
        # The data path frees its objects by reference counting (no cycles per request), so
        # the young generation can wait longer between collections.
        gc.set_threshold(20_000, 20, 20)
        self.state = "LIVE"
        self._handle_signals(loop)
        log.info("starting main dispatch loop")

    def _handle_signals(self, loop) -> None:
        handlers = {sig: self._on_stop_signal for sig in _STOP_SIGNALS}
        handlers.update((sig, self._on_ignored_signal) for sig in _IGNORED_SIGNALS)
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler, sig)
            except (NotImplementedError, RuntimeError):
                log.debug("no signal handler for %s in this thread", sig.name)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.warning("caught %s", sig.name)
        self.stop()

    def _on_ignored_signal(self, sig: signal.Signals) -> None:
        log.warning("caught %s: ignored (%s)", sig.name, _IGNORED_SIGNALS[sig])

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def shutdown(self) -> None:
        log.info("shutting down server instance")
        self.state = "DRAINING"
        for factory in self.listeners:
            factory.close()
        if self.admin is not None:
            self.admin.close()
        if self.cluster_manager is not None:
            self.cluster_manager.shutdown()

    async def serve(self) -> None:
        await self.start()
        try:
            await self.wait_stopped()
        finally:
            self.shutdown()
