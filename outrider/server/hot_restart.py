"""Binary upgrade without dropping connections: a new Outrider takes over the listening sockets.

Envoy's hot restart, the nginx way. The running process listens on an abstract Unix socket
named after its pid, and answers only a process of its own user (SO_PEERCRED). A new process started with ``--hot-restart-from PID`` (or by SIGUSR2,
which starts one with the same command line) connects, receives every listening socket
(SCM_RIGHTS) and the admin socket, starts its workers on them and says READY; only then does
the old process stop accepting and drain. The sockets are the same kernel objects throughout,
so no connection waiting in an accept queue is lost. If the new process fails before READY, the
old one keeps serving as if nothing happened.

Exchange on the socket: successor → ``HELLO``; old → a length-prefixed JSON header (hot
restart epoch, listening addresses with their socket counts, whether the admin socket follows),
then the descriptors in batches (``ipc.send_fds``); successor → ``READY`` once it serves. Each
side checks the other's credentials: the old one serves only its own user, the new one takes
sockets only from the very pid it was told to replace.
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

from outrider.server.ipc import receive_fds, recv_exactly, send_fds
from outrider.server.sockets import ListenAddress

log = logging.getLogger("outrider")

HELLO = b"HELLO\n"
READY = b"READY\n"
CONNECT_TIMEOUT = 10.0
READY_TIMEOUT = 300.0  # the new process resolves DNS and starts its workers meanwhile
MAX_HEADER = 1024 * 1024


def socket_name(pid: int, base_id: int) -> str:
    # --base-id keeps apart Outriders whose pids collide (containers of one pod share the
    # network namespace, where abstract names live, but not their pid numbering).
    return f"\0outrider.hot_restart.{base_id}.{pid}"


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


def take_over(pid: int, base_id: int = 0) -> InheritedSockets:
    """Fetch the listening sockets of the Outrider whose main process is ``pid`` (blocking:
    this runs once, at startup, before anything is served). The peer must be that very
    process, run by our own user: anyone can bind an abstract socket name."""
    from outrider.server.instance import StartupError

    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    channel.settimeout(CONNECT_TIMEOUT)
    try:
        channel.connect(socket_name(pid, base_id))
        peer_pid, peer_uid = _peer(channel)
        if (peer_pid, peer_uid) != (pid, os.getuid()):
            raise StartupError(f"--hot-restart-from {pid}: the socket is held by pid {peer_pid} "
                               f"(uid {peer_uid}), not by Outrider's pid {pid} of our user")
        channel.sendall(HELLO)
        (size,) = struct.unpack("!I", recv_exactly(channel, 4))
        if size > MAX_HEADER:
            raise StartupError(f"--hot-restart-from {pid}: a {size}-byte header")
        header = json.loads(recv_exactly(channel, size))
        total = sum(entry[3] for entry in header["listeners"]) + bool(header["admin"])
        socks = iter(receive_fds(channel, total))
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        channel.close()
        raise StartupError(f"--hot-restart-from {pid}: no Outrider to take over from "
                           f"({getattr(error, 'strerror', None) or error})") from error
    inherited = InheritedSockets(epoch=header["epoch"], channel=channel)
    for address, port, ipv4_compat, count in header["listeners"]:
        where = ListenAddress(address, port, ipv4_compat)
        inherited.listeners[where] = [next(socks) for _ in range(count)]
    if header["admin"]:
        inherited.admin = next(socks)
    channel.settimeout(None)
    return inherited


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket."""
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


class HandoffServer:
    """The running process's side: hands its sockets to a successor that asks."""

    def __init__(self, server, base_id: int = 0) -> None:
        self.server = server  # outrider.server.instance.Server
        self.base_id = base_id
        self.sock: socket.socket | None = None
        self._task: asyncio.Task | None = None

    def start(self, loop) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(socket_name(os.getpid(), self.base_id))
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
        pid, uid = _peer(conn)
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
        conn.sendall(struct.pack("!I", len(header)) + header)
        send_fds(conn, fds)
        conn.setblocking(False)
        log.warning("hot restart: sockets handed to pid %d; waiting until it serves", pid)
        try:
            reply = await asyncio.wait_for(loop.sock_recv(conn, len(READY)), READY_TIMEOUT)
        except TimeoutError:
            reply = b""
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
