"""The main process's side of the workers: start them, feed them, restart them, ask them.

Two implementations of one interface, so the server reads the same with any concurrency:
``InProcessWorkers`` is the single worker of ``--concurrency 1``, called directly (no IPC, no
copy); ``WorkerProcesses`` runs N worker processes (``server/worker_process.py``), each on its
own sockets (``server/sockets.py``), and talks to them over ``server/ipc.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import time

from outrider.server.ipc import Channel, channel_pair, send_fds
from outrider.server.sockets import ListenerSockets
from outrider.server.worker import IN_FLIGHT_GRACE, Worker

log = logging.getLogger("outrider")

READY_TIMEOUT = 30.0
STATS_TIMEOUT = 2.0
STATS_FLUSH_INTERVAL = 5.0
RELOAD_TIMEOUT = 10.0
# A worker that dies within this long of its start is restarted after a pause, not at once:
# a crash at startup must not become a fork loop.
CRASH_LOOP_WINDOW = 2.0
CRASH_LOOP_PAUSE = 1.0


class InProcessWorkers:
    """``--concurrency 1``: the server's own loop serves; its cluster manager does discovery."""

    def __init__(self, loop, stats, sockets: ListenerSockets, drain: tuple[str, float]) -> None:
        self.worker = Worker(loop, stats, 0, discovery=True)
        self.worker.drain_strategy, self.worker.drain_time = drain
        self.sockets = sockets

    @property
    def cluster_manager(self):
        return self.worker.cluster_manager

    @property
    def pids(self) -> list[int]:
        return [os.getpid()]

    async def start(self, bootstrap, discovery=None) -> None:
        await self.worker.start(bootstrap, self.sockets.for_worker(0))

    async def apply(self, bootstrap, discovery=None) -> None:
        await self.worker.apply(bootstrap, self.sockets.for_worker(0))

    def publish(self, update) -> None:
        pass  # the worker's own cluster manager made it and applied it

    def start_drain(self, strategy: str, drain_time: float, stop_listening: bool,
                    close_idle: bool) -> None:
        self.worker.start_drain(strategy, drain_time, stop_listening, close_idle)

    async def collect_stats(self) -> list[dict]:
        return []  # the worker counts into the server's own store

    def host_outcomes(self) -> dict:
        return self.worker.host_outcomes()

    async def wait_exited(self, deadline: float) -> None:
        await self.worker.finish_drain(deadline)

    async def close(self) -> None:
        self.worker.close()


class WorkerHandle:
    """The main process's view of one worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen | None = None
        self.channel: Channel | None = None
        self.fd_socket = None
        self.pid = 0
        self.started_at = 0.0
        self.ready: asyncio.Future | None = None
        self.reloaded: asyncio.Future | None = None
        self.exited = asyncio.Event()
        # Its values at the last time it reported them: what it counted is kept when it exits.
        self.last_stats: dict | None = None

    @property
    def running(self) -> bool:
        return self.channel is not None and not self.channel.closed


class WorkerProcesses:
    """``--concurrency N`` (N > 1): N worker processes, restarted when one dies."""

    def __init__(self, loop, count: int, stats, sockets: ListenerSockets,
                 drain: tuple[str, float], log_args: list[str]) -> None:
        self.loop = loop
        self.count = count
        self.sockets = sockets
        self.drain = drain
        self.log_args = log_args
        self.handles = [WorkerHandle(i) for i in range(count)]
        self.worker_restarts = stats.counter("server.worker_restarts")
        self._bootstrap: bytes = b""
        self._discovery = None  # the main process's cluster manager: membership snapshots
        self._stopping = False
        self._stats_ids = itertools.count(1)
        self._stats_waiters: dict[int, asyncio.Future] = {}
        # Counters of workers that are gone, so that sums never go backwards (a counter that
        # decreases reads as a reset to Prometheus).
        self._retired_counters: dict[str, int] = {}
        self._retired_hosts: dict = {}
        self._flush_task: asyncio.Task | None = None

    @property
    def pids(self) -> list[int | None]:
        """Each worker's pid, by index; None while one is being restarted (or has exited)."""
        return [h.pid if h.running else None for h in self.handles]

    async def start(self, bootstrap, discovery) -> None:
        self._bootstrap = bootstrap.SerializeToString()
        self._discovery = discovery
        await asyncio.gather(*(self._spawn(h) for h in self.handles))
        self._flush_task = self.loop.create_task(self._flush_stats())

    async def _spawn(self, handle: WorkerHandle) -> None:
        ours, theirs = channel_pair()
        fd_ours, fd_theirs = channel_pair()
        cmd = [sys.executable, "-m", "outrider.server.worker_process",
               "--index", str(handle.index), "--ipc-fd", str(theirs.fileno()),
               "--fd-channel", str(fd_theirs.fileno()), "--parent-pid", str(os.getpid()),
               *self.log_args]
        handle.process = subprocess.Popen(cmd, pass_fds=(theirs.fileno(), fd_theirs.fileno()))
        theirs.close()
        fd_theirs.close()
        handle.pid = handle.process.pid
        handle.started_at = time.monotonic()
        handle.exited.clear()
        handle.last_stats = None
        handle.fd_socket = fd_ours
        handle.ready = self.loop.create_future()
        handle.channel = Channel(lambda kind, payload: self._on_message(handle, kind, payload),
                                 lambda: self._on_exit(handle))
        await handle.channel.open(self.loop, ours)
        try:
            self._send_start(handle)
        except OSError as error:  # it died at once: _reap restarts it
            log.warning("worker %d: could not be started: %s", handle.index, error)
        try:
            await asyncio.wait_for(handle.ready, READY_TIMEOUT)
        except TimeoutError:
            handle.process.kill()
            raise RuntimeError(
                f"worker {handle.index} did not start within {READY_TIMEOUT}s") from None
        log.info("worker %d started (pid %d)", handle.index, handle.pid)

    def _send_start(self, handle: WorkerHandle) -> None:
        addresses, fds = self._sockets_for(handle.index)
        send_fds(handle.fd_socket, fds)
        handle.channel.send("start", {
            "bootstrap": self._bootstrap, "addresses": addresses,
            "snapshots": self._discovery.snapshots(), "drain": self.drain})

    def _sockets_for(self, index: int) -> tuple[list, list[int]]:
        mine = self.sockets.for_worker(index)
        return list(mine), [sock.fileno() for sock in mine.values()]

    def _on_message(self, handle: WorkerHandle, kind: str, payload) -> None:
        if kind == "ready":
            if handle.ready is not None and not handle.ready.done():
                handle.ready.set_result(payload)
        elif kind == "reloaded":
            if handle.reloaded is not None and not handle.reloaded.done():
                handle.reloaded.set_result(None)
        elif kind == "stats":
            request_id, snapshot = payload
            handle.last_stats = snapshot
            waiter = self._stats_waiters.pop(request_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(snapshot)
        elif kind == "final_stats":  # a draining worker's last word before it exits
            handle.last_stats = payload
        else:
            log.error("worker %d sent an unknown message %r", handle.index, kind)

    def _on_exit(self, handle: WorkerHandle) -> None:
        self.loop.create_task(self._reap(handle))

    async def _reap(self, handle: WorkerHandle) -> None:
        process = handle.process
        while (code := process.poll()) is None:  # its channel closed: it is exiting
            await asyncio.sleep(0.01)
        handle.fd_socket.close()
        if handle.last_stats is not None:
            for name, value in handle.last_stats["counters"].items():
                self._retired_counters[name] = self._retired_counters.get(name, 0) + value
            self._retired_hosts = add_host_outcomes(self._retired_hosts,
                                                    handle.last_stats.get("hosts", {}),
                                                    in_flight=False)
            handle.last_stats = None
        for future in (handle.ready, handle.reloaded):
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"worker {handle.index} exited"))
        handle.exited.set()
        if self._stopping:
            log.debug("worker %d exited (%s)", handle.index, code)
            # Nobody accepts on its sockets any more: close ours, so that the kernel stops
            # queueing connections there (the other workers' sockets take them).
            self.sockets.close_slot(handle.index)
            return
        log.warning("worker %d (pid %d) exited unexpectedly with %s; restarting",
                    handle.index, process.pid, code)
        self.worker_restarts.inc()
        if time.monotonic() - handle.started_at < CRASH_LOOP_WINDOW:
            await asyncio.sleep(CRASH_LOOP_PAUSE)
        if self._stopping:  # a drain began during the pause: as if it died draining
            self.sockets.close_slot(handle.index)
        else:
            try:
                await self._spawn(handle)
            except (RuntimeError, ConnectionError, OSError) as error:
                # If it exited, that exit restarts it again (after the crash-loop pause).
                log.error("worker %d: restart failed: %s", handle.index, error)

    # -- what the server asks of the workers ----------------------------------------------------

    def publish(self, update) -> None:
        for handle in self.handles:
            if handle.running:
                handle.channel.send("update", update)
        self._forget_gone_hosts()

    def _forget_gone_hosts(self) -> None:
        """Exited workers' counts of hosts that left their cluster are dropped, as the
        workers' own are (a host added again starts from zero, as with one process)."""
        memberships = self._discovery.memberships
        self._retired_hosts = {
            cluster: {key: counts for key, counts in hosts.items()
                      if cluster in memberships and key in memberships[cluster].hosts}
            for cluster, hosts in self._retired_hosts.items()}

    async def apply(self, bootstrap, discovery) -> None:
        """A reload: every running worker applies it; a worker (re)started from now on starts
        on it. A worker that dies meanwhile does not fail the reload: its successor has it."""
        self._bootstrap = bootstrap.SerializeToString()
        self._forget_gone_hosts()
        waits = []
        for handle in self.handles:
            if not handle.running:
                continue
            handle.reloaded = self.loop.create_future()
            addresses, fds = self._sockets_for(handle.index)
            try:
                send_fds(handle.fd_socket, fds)
            except OSError as error:
                log.warning("reload: worker %d is gone (%s); its successor starts on the new "
                            "config", handle.index, error)
                continue
            handle.channel.send("reload", {"bootstrap": self._bootstrap, "addresses": addresses,
                                           "snapshots": discovery.snapshots()})
            waits.append(handle.reloaded)
        if not waits:
            return
        done, pending = await asyncio.wait(waits, timeout=RELOAD_TIMEOUT)
        for future in done:
            if future.exception() is not None:
                log.warning("reload: a worker exited while applying it (%s); its successor "
                            "starts on the new config", future.exception())
        if pending:
            # A stuck worker must not hold every later reload back; it applies this one
            # when it runs again (its channel delivers in order).
            log.warning("reload: %d worker(s) did not confirm within %ss", len(pending),
                        RELOAD_TIMEOUT)

    def start_drain(self, strategy: str, drain_time: float, stop_listening: bool,
                    close_idle: bool) -> None:
        self._stopping = True
        for handle in self.handles:
            if handle.running:
                handle.channel.send("drain", {"strategy": strategy, "drain_time": drain_time,
                                              "stop_listening": stop_listening,
                                              "close_idle": close_idle})

    async def collect_stats(self) -> list[dict]:
        """Every worker's stats now, plus what exited workers had counted. A worker that does
        not answer in time is represented by its last report."""
        asking = [h for h in self.handles if h.running]
        waits = []
        for handle in asking:
            request_id = next(self._stats_ids)
            waiter = self._stats_waiters[request_id] = self.loop.create_future()
            handle.channel.send("stats", request_id)
            waits.append(waiter)
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=STATS_TIMEOUT)
            if pending:
                log.warning("stats: %d worker(s) did not answer within %ss; using their last "
                            "report", len(pending), STATS_TIMEOUT)
        for request_id in [r for r, w in self._stats_waiters.items() if w in waits]:
            self._stats_waiters.pop(request_id, None)
        snapshots = [h.last_stats for h in self.handles if h.last_stats is not None]
        snapshots.append({"counters": dict(self._retired_counters), "gauges": {}, "shared": {}})
        return snapshots

    def host_outcomes(self) -> dict:
        """Per cluster and host: (in flight, successes, errors) over every worker, from their
        last reports (``collect_stats`` refreshes them)."""
        merged = self._retired_hosts
        for handle in self.handles:
            if handle.last_stats is not None:
                merged = add_host_outcomes(merged, handle.last_stats.get("hosts", {}))
        return merged

    async def _flush_stats(self) -> None:
        """Ask for every worker's values now and then (Envoy flushes its stats every 5 s), so
        that a worker that crashes takes few counts with it."""
        while True:
            await asyncio.sleep(STATS_FLUSH_INTERVAL)
            await self.collect_stats()

    async def wait_exited(self, deadline: float) -> None:
        """Wait for every worker to exit (after a drain), killing those still there at
        ``deadline`` and a grace for requests in flight (they stop by then themselves)."""
        end = deadline + IN_FLIGHT_GRACE + 2.0
        while any(not h.exited.is_set() for h in self.handles if h.process is not None):
            if self.loop.time() >= end:
                for handle in self.handles:
                    if not handle.exited.is_set() and handle.process is not None:
                        log.warning("worker %d did not exit; killing it", handle.index)
                        handle.process.kill()
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop every worker now (no drain): they exit on SIGTERM; SIGKILL after 5 s."""
        self._stopping = True
        if self._flush_task is not None:
            self._flush_task.cancel()
        running = [h.process for h in self.handles
                   if h.process is not None and h.process.poll() is None]
        for process in running:
            process.terminate()
        end = time.monotonic() + 5.0
        while any(p.poll() is None for p in running) and time.monotonic() < end:
            await asyncio.sleep(0.02)
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
        for handle in self.handles:
            if handle.channel is not None:
                handle.channel.close()


def add_host_outcomes(total: dict, report: dict, in_flight: bool = True) -> dict:
    """``total`` plus one worker's per-host ``report`` (a new dict); ``in_flight=False`` for a
    worker that is gone (its requests in flight are not any more)."""
    merged = {cluster: dict(hosts) for cluster, hosts in total.items()}
    for cluster, hosts in report.items():
        into = merged.setdefault(cluster, {})
        for key, (active, success, error) in hosts.items():
            a, s, e = into.get(key, (0, 0, 0))
            into[key] = (a + (active if in_flight else 0), s + success, e + error)
    return merged
