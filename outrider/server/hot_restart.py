"""Binary upgrade without dropping connections: a new Outrider takes over the listening sockets.

Envoy's hot restart, the nginx way. The running process listens on an abstract Unix socket
named after its pid, and answers only a process of its own user (SO_PEERCRED). A new process started with ``--hot-restart-from PID`` (or by SIGUSR2,
which starts one with the same command line) connects, receives every listening socket
(SCM_RIGHTS) and the admin socket, starts its workers on them and says READY; only then does
the old process stop accepting and drain. The sockets are the same kernel objects throughout,
so no connection waiting in an accept queue is lost. If the new process fails before READY, the
old one keeps serving as if nothing happened.

Exchange on the socket: successor → ``HELLO``; old → a JSON header (hot restart epoch,
listening addresses with their socket counts, whether the admin socket follows) with the
descriptors attached; successor → ``READY`` once it serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field

from outrider.server.sockets import ListenAddress

log = logging.getLogger("outrider")

HELLO = b"HELLO\n"
READY = b"READY\n"
CONNECT_TIMEOUT = 10.0
MAX_HEADER = 1024 * 1024
MAX_FDS = 4096


def socket_name(pid: int) -> str:
    return f"\0outrider.hot_restart.{pid}"


@dataclass
class InheritedSockets:
    """What a new process received from the one it replaces."""

    epoch: int
    listeners: dict[ListenAddress, list[socket.socket]] = field(default_factory=dict)
    admin: socket.socket | None = None
    channel: socket.socket | None = None

    def finish(self) -> None:
        """Tell the old process we serve: it drains and exits."""
        if self.channel is not None:
            try:
                self.channel.sendall(READY)
            except OSError as error:
                log.warning("hot restart: could not tell the old process we serve: %s", error)
            self.channel.close()
            self.channel = None


class HotRestartError(Exception):
    pass


def take_over(pid: int) -> InheritedSockets:
    """Fetch the listening sockets of the Outrider whose main process is ``pid`` (blocking:
    this runs once, at startup, before anything is served)."""
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    channel.settimeout(CONNECT_TIMEOUT)
    try:
        channel.connect(socket_name(pid))
        channel.sendall(HELLO)
        data, fds, _flags, _addr = socket.recv_fds(channel, MAX_HEADER, MAX_FDS)
    except OSError as error:
        channel.close()
        from outrider.server.instance import StartupError

        raise StartupError(f"--hot-restart-from {pid}: no Outrider to take over from "
                           f"({error.strerror or error})") from error
    header = json.loads(data)
    socks = iter(socket.socket(fileno=fd) for fd in fds)
    inherited = InheritedSockets(epoch=header["epoch"], channel=channel)
    for address, port, ipv4_compat, count in header["listeners"]:
        where = ListenAddress(address, port, ipv4_compat)
        inherited.listeners[where] = [next(socks) for _ in range(count)]
    if header["admin"]:
        inherited.admin = next(socks)
    channel.settimeout(None)
    return inherited


class HandoffServer:
    """The running process's side: hands its sockets to a successor that asks."""

    def __init__(self, server) -> None:
        self.server = server  # outrider.server.instance.Server
        self.sock: socket.socket | None = None
        self._task: asyncio.Task | None = None

    def start(self, loop) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(socket_name(os.getpid()))
        except OSError as error:
            sock.close()
            log.warning("hot restart: cannot listen for a successor: %s", error)
            return
        sock.listen(4)
        sock.setblocking(False)
        self.sock = sock
        self._task = loop.create_task(self._serve(loop))

    async def _serve(self, loop) -> None:
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            try:
                await self._hand_over(loop, conn)
            except OSError as error:
                log.warning("hot restart: handover failed: %s; still serving", error)
            finally:
                conn.close()

    async def _hand_over(self, loop, conn: socket.socket) -> None:
        pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != os.getuid():
            # An abstract socket has no file permissions: anyone in the network namespace can
            # connect. Only our own user may take the listening sockets.
            log.warning("hot restart: refused a successor run by uid %d (pid %d)", uid, pid)
            return
        conn.setblocking(False)
        hello = await asyncio.wait_for(loop.sock_recv(conn, len(HELLO)), CONNECT_TIMEOUT)
        if hello != HELLO:
            log.warning("hot restart: unexpected greeting %r", hello)
            return
        server = self.server
        listeners, fds = [], []
        for where, socks in server.sockets.by_address.items():
            listeners.append([where.address, where.port, where.ipv4_compat, len(socks)])
            fds += [s.fileno() for s in socks]
        admin = server.admin.socket if server.admin is not None else None
        if admin is not None:
            fds.append(admin.fileno())
        header = json.dumps({"epoch": server.hot_restart_epoch, "listeners": listeners,
                             "admin": admin is not None}).encode()
        conn.setblocking(True)
        socket.send_fds(conn, [header], fds)
        conn.setblocking(False)
        log.warning("hot restart: sockets handed to a new process; waiting until it serves")
        reply = await loop.sock_recv(conn, len(READY))
        if reply != READY:
            log.error("hot restart: the new process failed before serving; still serving")
            return
        if server.admin is not None:
            server.admin.close()  # the successor answers on the same admin socket now
        server.handed_over()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Successor:
    """A new Outrider started by SIGUSR2 with this one's command line."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.pid = process.pid

    @classmethod
    def spawn(cls, argv: list[str], old_pid: int) -> Successor:
        args = _without_option(argv, "--hot-restart-from")
        cmd = [sys.executable, "-m", "outrider", *args, "--hot-restart-from", str(old_pid)]
        log.warning("hot restart: starting %s", " ".join(cmd))
        return cls(subprocess.Popen(cmd))

    def running(self) -> bool:
        return self.process.poll() is None


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out
