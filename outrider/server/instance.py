"""The server: the main process. It owns the config, discovery, the listening sockets, the
admin server and the workers, and runs the process's life: start, reload, drain, upgrade, exit.

Startup follows Envoy's order: clusters first (DNS clusters warm with their first resolution),
then listeners, then the admin listener. With ``--concurrency 1`` the server's own loop is the
one worker (``supervisor.InProcessWorkers``); with N it supervises N worker processes
(``supervisor.WorkerProcesses``) and keeps a cluster manager of its own that does discovery
and pushes membership to them. Which process owns which state: docs/operations.md.

Signals: SIGTERM and SIGINT drain and exit (a second one exits at once); SIGHUP reloads the
config; SIGUSR2 starts a new Outrider that takes over the listeners (``server/hot_restart.py``);
SIGUSR1 (log reopening) is logged and ignored until access logs exist.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from dataclasses import dataclass, field

from envoy.config.bootstrap.v3 import bootstrap_pb2

from outrider.config.checked import ConfigOptions, load_checked
from outrider.server import hot_restart
from outrider.server.admin import AdminServer
from outrider.server.config_diff import diff
from outrider.server.drain import IMMEDIATE
from outrider.server.listener import listen_address
from outrider.server.sockets import ListenAddress, ListenerSockets, bind_listening_socket
from outrider.server.supervisor import InProcessWorkers, WorkerProcesses
from outrider.stats.store import StatsStore
from outrider.upstream.cluster import ClusterSettings
from outrider.upstream.cluster_manager import ClusterManager

log = logging.getLogger("outrider")


class StartupError(Exception):
    """The server cannot start (a listener cannot bind); the message names what and why."""


class _Abandoned(Exception):
    """A reload given up half way (the server began to drain): the process is leaving."""


@dataclass
class ServerOptions:
    config_path: str = ""
    concurrency: int = 1
    drain_time: float = 600.0
    drain_strategy: str = "gradual"
    parent_shutdown_time: float = 900.0
    config_options: ConfigOptions = field(default_factory=ConfigOptions)
    admin_address_path: str | None = None
    watch_config: bool = False
    hot_restart_from: int | None = None
    hot_restart_enabled: bool = True
    base_id: int = 0
    argv: list[str] = field(default_factory=list)  # to start the same command on SIGUSR2
    worker_log_args: list[str] = field(default_factory=list)


@dataclass
class ReloadRecord:
    """The last reload attempt, for the admin page."""

    ok: bool
    summary: str
    errors: list[str] = field(default_factory=list)


class Server:
    def __init__(self, bootstrap: bootstrap_pb2.Bootstrap,
                 options: ServerOptions | None = None) -> None:
        self.bootstrap = bootstrap
        self.options = options or ServerOptions()
        self.state = "PRE_INITIALIZING"
        self.stats = StatsStore()
        self.sockets = ListenerSockets(self.options.concurrency)
        self.workers: InProcessWorkers | WorkerProcesses | None = None
        self.cluster_manager: ClusterManager | None = None
        self.admin: AdminServer | None = None
        self.last_reload: ReloadRecord | None = None
        self.hot_restart_epoch = 0
        self._stopped: asyncio.Event | None = None
        self._draining = False  # the listeners drain (no reload from here on)
        self._exiting = False  # ... and the process exits when they are done
        self._stop_requested = False  # a stop signal came; the next one exits at once
        self._started = False
        self._reload_lock: asyncio.Lock | None = None
        self._watcher = None
        self._successor: hot_restart.Successor | None = None
        self._handoff: hot_restart.HandoffServer | None = None
        counters = ("worker_restarts", "config_reload_total", "config_reload_failed")
        self.server_stats = {n: self.stats.counter(f"server.{n}") for n in counters}
        self.stats.gauge("server.concurrency", shared=True).set(self.options.concurrency)

    @property
    def concurrency(self) -> int:
        return self.options.concurrency

    def options_summary(self) -> dict:
        o = self.options
        return {"config_path": o.config_path, "concurrency": o.concurrency,
                "drain_time_s": o.drain_time, "drain_strategy": o.drain_strategy,
                "hot_restart_epoch": self.hot_restart_epoch}

    # -- startup --------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        # Before anything slow (DNS, workers): a SIGHUP's default action would kill us.
        self._handle_signals(loop)
        inherited = None
        if self.options.hot_restart_from:
            inherited = hot_restart.take_over(self.options.hot_restart_from,
                                              self.options.base_id)
            self.hot_restart_epoch = inherited.epoch + 1
            try:
                for where, socks in inherited.listeners.items():
                    self.sockets.adopt(where, socks)
            except OSError as error:
                raise StartupError(f"cannot use the inherited sockets: "
                                   f"{error.strerror or error}") from error
            log.warning("hot restart: took over %d listening address(es) from pid %d (epoch %d)",
                     len(inherited.listeners), self.options.hot_restart_from,
                     self.hot_restart_epoch)
        self.stats.gauge("server.hot_restart_epoch", shared=True).set(self.hot_restart_epoch)
        resources = self.bootstrap.static_resources
        self._bind_listeners(resources.listeners)
        # Inherited sockets for addresses this config does not have any more.
        self.sockets.retain({where for _, where in self._listener_addresses(resources.listeners)})
        drain = (self.options.drain_strategy, self.options.drain_time)
        log.info("loading %d cluster(s)", len(resources.clusters))
        if self.concurrency == 1:
            self.workers = InProcessWorkers(loop, self.stats, self.sockets, drain)
            await self.workers.start(self.bootstrap)
            self.cluster_manager = self.workers.cluster_manager
        else:
            self.cluster_manager = ClusterManager(
                [ClusterSettings.from_proto(c) for c in resources.clusters], self.stats, loop,
                discovery=True, serving=False)
            await self.cluster_manager.start()
            self.workers = WorkerProcesses(loop, self.concurrency, self.stats, self.sockets,
                                           drain, self.options.worker_log_args)
            self._publish_to_workers()
            try:
                await self.workers.start(self.bootstrap, self.cluster_manager)
            except (RuntimeError, ConnectionError) as error:
                raise StartupError(f"workers failed to start: {error}") from error
        log.info("all clusters initialized")
        for factory_name, where in self._listener_addresses(resources.listeners):
            log.info("listener '%s' listening on %s", factory_name,
                     self._bound(where))
        if self.bootstrap.HasField("admin"):
            await self._start_admin(loop, inherited)
        if inherited is not None:
            inherited.finish()  # the old process drains from here on
        # The config and the protobuf modules are hundreds of thousands of long-lived objects:
        # move them out of the cyclic GC's sight, or every full collection walks them all and
        # shows up as tail latency.
        gc.collect()
        gc.freeze()
        # The data path frees its objects by reference counting (no cycles per request), so
        # the young generation can wait longer between collections.
        gc.set_threshold(20_000, 20, 20)
        self.state = "LIVE"
        self._started = True
        if self.options.hot_restart_enabled:
            self._handoff = hot_restart.HandoffServer(self, self.options.base_id)
            self._handoff.start(loop)
        if self.options.watch_config and self.options.config_path:
            self._start_watcher()
        log.info("starting main dispatch loop (%d worker%s)", self.concurrency,
                 "" if self.concurrency == 1 else "s")
        if self._stop_requested:  # a SIGTERM or SIGINT came while starting
            self.stop()

    def _publish_to_workers(self) -> None:
        """Discovery in the main process: apply each membership event here (for /clusters) and
        send it to every worker."""
        manager = self.cluster_manager
        local = manager.publish

        def publish(update) -> None:
            local(update)
            self.workers.publish(update)

        manager.publish = publish

    @staticmethod
    def _listener_addresses(listeners) -> list[tuple[str, ListenAddress]]:
        return [(listener.name or "-", listen_address(listener)) for listener in listeners]

    def _bound(self, where: ListenAddress) -> str:
        socks = self.sockets.by_address.get(where)
        port = socks[0].getsockname()[1] if socks else where.port
        return f"{where.address}:{port}"

    def _bind_listeners(self, listeners) -> None:
        for name, where in self._listener_addresses(listeners):
            try:
                self.sockets.ensure(where)
            except OSError as error:
                raise StartupError(f"cannot bind listener '{name}' to {where}: "
                                   f"{error.strerror or error}") from error

    async def _start_admin(self, loop, inherited) -> None:
        sock_address = self.bootstrap.admin.address.socket_address
        where = ListenAddress(sock_address.address or "127.0.0.1", sock_address.port_value)
        sock = inherited.admin if inherited is not None else None
        if sock is not None and not _bound_to(sock, where):
            sock.close()  # the new config moved the admin listener
            sock = None
        if sock is None:
            try:
                sock = bind_listening_socket(where)
            except OSError as error:
                raise StartupError(f"cannot bind the admin listener to {where}: "
                                   f"{error.strerror or error}") from error
        self.admin = AdminServer(self, where.address)
        await self.admin.start(loop, sock)
        log.info("admin address: %s:%d", self.admin.address, self.admin.port)
        path = self.options.admin_address_path
        if path:
            with open(path, "w") as f:
                f.write(f"{self.admin.address}:{self.admin.port}\n")

    # -- signals ---------------------------------------------------------------------------------

    def _handle_signals(self, loop) -> None:
        handlers = {signal.SIGTERM: self._on_stop_signal, signal.SIGINT: self._on_stop_signal,
                    signal.SIGHUP: self._on_sighup, signal.SIGUSR1: self._on_sigusr1,
                    signal.SIGUSR2: self._on_sigusr2}
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler, sig)
            except (NotImplementedError, RuntimeError):
                log.debug("no signal handler for %s in this thread", sig.name)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.warning("caught %s", sig.name)
        if self._stop_requested:
            log.warning("second %s: exiting without waiting for the drain", sig.name)
            self._stopped.set()
            return
        self._stop_requested = True
        if not self._started:
            log.warning("still starting: draining once started (again to exit at once)")
        elif self._exiting:  # draining already (a handover, say): hurry it up
            log.warning("already draining: closing every connection after its response "
                        "(again to exit at once)")
            self.workers.start_drain(IMMEDIATE, self.options.drain_time, stop_listening=True,
                                     close_idle=True)
        else:
            self.stop()

    def _on_sighup(self, sig: signal.Signals) -> None:
        if not self._started or self._draining:
            log.warning("caught %s: ignored while %s", sig.name,
                        "draining" if self._draining else "starting")
            return
        log.warning("caught %s: reloading the config", sig.name)
        asyncio.get_running_loop().create_task(self.reload("SIGHUP"))

    def _on_sigusr1(self, sig: signal.Signals) -> None:
        log.warning("caught %s: ignored (log reopening comes with access logs)", sig.name)

    def _on_sigusr2(self, sig: signal.Signals) -> None:
        if not self.options.hot_restart_enabled:
            log.warning("caught %s: ignored (--disable-hot-restart)", sig.name)
            return
        log.warning("caught %s: starting a new Outrider to take over", sig.name)
        self.start_successor()

    # -- reload ------------------------------------------------------------------------------

    def _start_watcher(self) -> None:
        from outrider.server.config_watch import ConfigWatcher

        async def on_change(_content: bytes) -> None:
            await self.reload("config file changed")

        self._watcher = ConfigWatcher(self.options.config_path, on_change)
        with open(self.options.config_path, "rb") as f:
            self._watcher.mark_loaded(f.read())
        self._watcher.start()

    async def reload(self, reason: str) -> bool:
        """Re-read the config file, check it as ``--mode validate`` does, and apply it if valid.

        An invalid config is logged with the same errors, counted, shown on the admin page,
        and the running config keeps serving. Returns whether the new config was applied.
        """
        async with self._reload_lock:
            if self._draining:
                return False
            loaded, issues = load_checked(self.options.config_path,
                                          self.options.config_options)
            for issue in issues:
                (log.error if issue.severity == "error" else log.warning)("reload: %s", issue)
            if loaded is None:
                self.server_stats["config_reload_failed"].inc()
                errors = [str(i) for i in issues if i.severity == "error"]
                self.last_reload = ReloadRecord(False, f"rejected ({reason})", errors)
                log.error("reload (%s): configuration '%s' is invalid: %d error(s); the "
                          "running configuration keeps serving", reason,
                          self.options.config_path, len(errors))
                return False
            new = loaded.bootstrap
            changes = diff(self.bootstrap, new)
            try:
                await self._apply(new)
                if self._draining:  # a drain began while it resolved DNS or reached workers
                    raise _Abandoned("a drain began meanwhile")
            except (OSError, ValueError, _Abandoned) as error:
                self.server_stats["config_reload_failed"].inc()
                self.last_reload = ReloadRecord(False, f"not applied ({reason})", [str(error)])
                log.error("reload (%s): cannot apply: %s; the running configuration keeps "
                          "serving", reason, error)
                return False
            self.bootstrap = new
            self.server_stats["config_reload_total"].inc()
            self.last_reload = ReloadRecord(True, f"{changes.summary()} ({reason})")
            log.warning("reload (%s): applied: %s", reason, changes.summary())
            return True

    async def _apply(self, new: bootstrap_pb2.Bootstrap) -> None:
        listeners = new.static_resources.listeners
        wanted = {where for _name, where in self._listener_addresses(listeners)}
        added = [w for w in wanted if w not in self.sockets.by_address]
        try:
            for where in added:
                self.sockets.ensure(where)
        except OSError as error:
            for where in added:  # leave the sockets as they were
                for sock in self.sockets.by_address.pop(where, []):
                    sock.close()
            raise OSError(f"cannot bind {where}: {error.strerror or error}") from error
        if self.concurrency > 1:
            await self.cluster_manager.reconfigure(
                [ClusterSettings.from_proto(c) for c in new.static_resources.clusters])
        await self.workers.apply(new, self.cluster_manager)
        self.sockets.retain(wanted)

    # -- drain and shutdown -----------------------------------------------------------------------

    def stop(self) -> None:
        """Drain and exit (SIGTERM, SIGINT, /quitquitquit)."""
        if self._stopped is not None and not self._exiting:
            self._exiting = self._draining = True
            asyncio.get_running_loop().create_task(self.drain_and_exit())

    async def drain_and_exit(self, handover: bool = False) -> None:
        """Stop accepting, let requests in flight finish within the drain time, exit.

        Shutdown (SIGTERM, SIGINT, /quitquitquit): every connection closes after its response
        in flight, and idle ones close at once, whatever ``--drain-strategy`` says: with the
        listeners closed, a connection kept open could only carry requests that this process,
        going away, would then cut. A handover (binary upgrade) drains as the strategy says:
        the successor accepts the clients that reconnect, and spreading them over the drain
        time is what ``gradual`` is for. Idle connections are left be then (the client may be
        sending its next request right now): they get their answer and, in time, the close.
        """
        loop = asyncio.get_running_loop()
        self._exiting = self._draining = True
        self.state = "DRAINING"
        strategy = self.options.drain_strategy if handover else IMMEDIATE
        drain_time = self.options.drain_time
        log.warning("draining: %s over %.0fs", strategy, drain_time)
        self.workers.start_drain(strategy, drain_time, stop_listening=True,
                                 close_idle=not handover)
        # The workers closed their descriptors; closing ours closes the sockets (a successor
        # holds its own), so a client connecting now is refused, not queued and then reset.
        self.sockets.close()
        await self.workers.wait_exited(loop.time() + drain_time)
        self._stopped.set()

    def drain_listeners(self, graceful: bool) -> None:
        """``POST /drain_listeners``: as Envoy, the listeners drain and stop, and the process
        stays up (with its admin) until told to exit. ``graceful``: they keep accepting for
        the drain time first, connections closing as the strategy spreads it."""
        if self._draining:
            return
        self._draining = True
        self.state = "DRAINING"
        self.workers.start_drain(self.options.drain_strategy, self.options.drain_time,
                                 stop_listening=not graceful, close_idle=False)
        if graceful:
            asyncio.get_running_loop().call_later(self.options.drain_time, self.sockets.close)
        else:
            self.sockets.close()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def shutdown(self) -> None:
        log.info("shutting down server instance")
        self.state = "DRAINING"
        if self._watcher is not None:
            self._watcher.stop()
        if self._handoff is not None:
            self._handoff.close()
        if self.admin is not None:
            self.admin.close()
        if self.workers is not None:
            await self.workers.close()
        if self.concurrency > 1 and self.cluster_manager is not None:
            self.cluster_manager.shutdown()
        self.sockets.close()

    async def serve(self) -> None:
        try:
            await self.start()
            await self.wait_stopped()
        finally:
            await self.shutdown()

    # -- binary upgrade ---------------------------------------------------------------------------

    def start_successor(self) -> None:
        """SIGUSR2: start a new Outrider with the same command line; it takes the listening
        sockets, and once it serves, this one drains and exits. If it fails to start, this
        one keeps serving."""
        if self._exiting:
            log.warning("not starting a successor: this process is draining")
            return
        if self._successor is not None and self._successor.running():
            log.warning("an upgrade is already under way (pid %d)", self._successor.pid)
            return
        self._successor = successor = hot_restart.Successor.spawn(self.options.argv,
                                                                  os.getpid())
        asyncio.get_running_loop().create_task(self._watch_successor(successor))

    async def _watch_successor(self, successor: hot_restart.Successor) -> None:
        # Polled, not waited for in a thread: this process must be free to exit while the
        # successor lives on.
        while (code := successor.process.poll()) is None:
            await asyncio.sleep(0.2)
        if not self._exiting:
            log.error("hot restart: the new process (pid %d) exited with %s before serving; "
                      "still serving", successor.pid, code)

    def handed_over(self) -> None:
        """The successor serves: drain and exit (the sockets stay open in the successor)."""
        log.warning("hot restart: the new process serves; draining")
        self._exiting = self._draining = True
        if self._handoff is not None:
            self._handoff.close()  # one successor per generation
            self._handoff = None
        if self._watcher is not None:
            self._watcher.stop()  # the new process reloads from here on
            self._watcher = None
        loop = asyncio.get_running_loop()
        loop.create_task(self.drain_and_exit(handover=True))
        loop.call_later(self.options.parent_shutdown_time, self._stopped.set)


def _bound_to(sock, where: ListenAddress) -> bool:
    """Whether ``sock`` listens where the config says (port 0: any port)."""
    address, port = sock.getsockname()[:2]
    return address == where.address and (where.port == 0 or port == where.port)
