"""Messages between the main process and its workers.

Two Unix socket pairs per worker: ``Channel`` carries messages, length-prefixed pickles of
plain tuples and frozen dataclasses (both ends are the same Outrider, so pickle is safe here
and keeps the messages typed); listening sockets travel on the second pair with SCM_RIGHTS,
sent before the message that names them, so they are there when it is read. A message is
``(kind, payload)``; the kinds are listed in ``server/supervisor.py`` and
``server/worker_process.py``.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("outrider")

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 256 * 1024 * 1024  # a config and its membership; anything bigger is a bug
MAX_FDS_PER_MESSAGE = 250  # Linux takes at most 253 descriptors per message (SCM_MAX_FD)
FD_TIMEOUT = 5.0


def channel_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def send_fds(sock: socket.socket, fds: list[int]) -> None:
    """Send descriptors on the fd pair (blocking: the peer's buffer takes a few bytes)."""
    for start in range(0, len(fds), MAX_FDS_PER_MESSAGE):
        batch = fds[start:start + MAX_FDS_PER_MESSAGE]
        socket.send_fds(sock, [struct.pack("!I", len(batch))], batch)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes from a blocking socket (ConnectionError if it closes)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def receive_fds(sock: socket.socket, count: int) -> list[socket.socket]:
    """Receive ``count`` listening sockets sent by ``send_fds`` (they were sent before the
    message announcing them, so they are waiting)."""
    sock.settimeout(FD_TIMEOUT)
    received: list[int] = []
    while len(received) < count:
        data, fds, _flags, _addr = socket.recv_fds(sock, 4, MAX_FDS_PER_MESSAGE)
        if not data:
            raise ConnectionError("fd channel closed")
        received += fds
    return [socket.socket(fileno=fd) for fd in received]


class Channel(asyncio.Protocol):
    """One end of a message channel; ``on_message(kind, payload)`` per message received,
    ``on_closed()`` once when the peer is gone."""

    def __init__(self, on_message: Callable[[str, object], None],
                 on_closed: Callable[[], None]) -> None:
        self.on_message = on_message
        self.on_closed = on_closed
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self.closed = False

    async def open(self, loop, sock: socket.socket) -> None:
        """Start exchanging on ``sock``. Messages may arrive before this returns: whoever
        handles them must already hold this channel (to answer them)."""
        await loop.create_unix_connection(lambda: self, sock=sock)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if size > MAX_MESSAGE:
                log.error("ipc: message of %d bytes refused; closing the channel", size)
                self.close()
                return
            if len(buffer) < _HEADER.size + size:
                return
            payload = bytes(buffer[_HEADER.size:_HEADER.size + size])
            del buffer[:_HEADER.size + size]
            kind, body = pickle.loads(payload)
            self.on_message(kind, body)

    def connection_lost(self, exc) -> None:
        if not self.closed:
            self.closed = True
            self.on_closed()

    def send(self, kind: str, payload: object = None) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        self.transport.write(_HEADER.pack(len(data)) + data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
