"""A worker process: one ``Worker`` on its own uvloop, driven by the main process.

Started by ``server/supervisor.py`` as ``python -m outrider.server.worker_process``. It dies
with the main process, whatever kills that one (``PR_SET_PDEATHSIG``, and the message channel
closing as a second signal), so a worker is never left behind serving a stale config.

Messages from the main process, in order (one at a time: a membership update that follows a
reload applies to the reloaded clusters):
  start   {bootstrap, addresses, snapshots, drain}  → "ready" (its pid)
  update  a MembershipUpdate or HealthUpdate
  reload  {bootstrap, addresses, snapshots}          → "reloaded"
  drain   {strategy, drain_time, stop_listening, close_idle}: the process exits when its last
          connection closes, or at the end of the drain time
  stats   request id                                 → "stats" (id, report): its counters
          and gauges, and per host its requests in flight, successes and errors
The listening sockets named by ``addresses`` arrive on the fd channel just before.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import logging
import os
import signal
import socket
import sys

from envoy.config.bootstrap.v3 import bootstrap_pb2

from outrider.server.ipc import Channel, receive_fds
from outrider.server.worker import Worker
from outrider.stats.store import StatsStore

log = logging.getLogger("outrider")

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Be killed when the parent exits (Linux); exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("worker: prctl(PR_SET_PDEATHSIG) failed: %s",
                    os.strerror(ctypes.get_errno()))
    if os.getppid() != parent_pid:
        os._exit(1)


class WorkerProcess:
    def __init__(self, index: int, ipc_fd: int, fd_channel_fd: int) -> None:
        self.index = index
        self.ipc = socket.socket(fileno=ipc_fd)
        self.fd_channel = socket.socket(fileno=fd_channel_fd)
        self.stats = StatsStore()
        self.worker: Worker | None = None
        self.channel: Channel | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._done = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            # The main process decides: a Ctrl-C reaches the whole process group.
            loop.add_signal_handler(sig, lambda: None)
        # The main process's "stop now" (a drain goes through the channel instead).
        loop.add_signal_handler(signal.SIGTERM, self._done.set)
        self.channel = Channel(self._on_message, self._on_closed)
        await self.channel.open(loop, self.ipc)
        consumer = loop.create_task(self._consume())
        await self._done.wait()
        consumer.cancel()
        if self.worker is not None:
            self.worker.close()

    def _on_message(self, kind: str, payload) -> None:
        if kind == "stats":  # answered at once, even while a reload is being applied
            self.channel.send("stats", (payload, self._report()))
        else:
            self._inbox.put_nowait((kind, payload))

    def _report(self) -> dict:
        """Its stats and the outcomes of its requests per host, in one batch."""
        report = self.stats.snapshot()
        report["hosts"] = self.worker.host_outcomes() if self.worker is not None else {}
        return report

    def _on_closed(self) -> None:
        log.info("worker %d: main process gone; exiting", self.index)
        self._done.set()

    async def _consume(self) -> None:
        while True:
            kind, payload = await self._inbox.get()
            try:
                await self._handle(kind, payload)
            except Exception:  # noqa: BLE001 - a bad message must not leave a silent worker
                log.exception("worker %d: failed to handle %r; exiting", self.index, kind)
                self._done.set()
                return

    async def _handle(self, kind: str, payload) -> None:
        if kind == "update":
            self.worker.apply_update(payload)
        elif kind == "start":
            await self._start(payload)
        elif kind == "reload":
            sockets = self._receive_sockets(payload["addresses"])
            await self.worker.apply(_bootstrap(payload["bootstrap"]), sockets,
                                    payload["snapshots"])
            _close_all(sockets)
            self.channel.send("reloaded", self.index)
        elif kind == "drain":
            self._drain(**payload)
        else:
            log.error("worker %d: unknown message %r", self.index, kind)

    async def _start(self, payload: dict) -> None:
        loop = asyncio.get_running_loop()
        sockets = self._receive_sockets(payload["addresses"])
        self.worker = Worker(loop, self.stats, self.index, discovery=False)
        self.worker.drain_strategy, self.worker.drain_time = payload["drain"]
        await self.worker.start(_bootstrap(payload["bootstrap"]), sockets,
                                payload["snapshots"])
        _close_all(sockets)  # the listeners accept on their own duplicates
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        self.channel.send("ready", os.getpid())

    def _receive_sockets(self, addresses: list) -> dict:
        socks = receive_fds(self.fd_channel, len(addresses))
        return dict(zip(addresses, socks, strict=True))

    def _drain(self, strategy: str, drain_time: float, stop_listening: bool,
               close_idle: bool) -> None:
        self.worker.start_drain(strategy, drain_time, stop_listening, close_idle)
        loop = asyncio.get_running_loop()
        loop.create_task(self._exit_when_drained(loop.time() + drain_time))

    async def _exit_when_drained(self, deadline: float) -> None:
        await self.worker.finish_drain(deadline)
        self.channel.send("final_stats", self._report())  # what it counted stays counted
        await asyncio.sleep(0)  # let the transport write it before the process exits
        self._done.set()


def _bootstrap(data: bytes) -> bootstrap_pb2.Bootstrap:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.ParseFromString(data)
    return bootstrap


def _close_all(sockets: dict) -> None:
    for sock in sockets.values():
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outrider-worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ipc-fd", type=int, required=True)
    parser.add_argument("--fd-channel", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--log-level", type=int, default=logging.INFO)
    parser.add_argument("--log-format", required=True)
    parser.add_argument("--log-path")
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)

    import uvloop

    from outrider.server import log_format
    from outrider.server.memory import tune_malloc

    log_format.configure(args.log_level, args.log_format, args.log_path)
    tune_malloc()
    uvloop.run(WorkerProcess(args.index, args.ipc_fd, args.fd_channel).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
