"""A scripted, possibly hostile, upstream HTTP/1.1 server on 127.0.0.1 port 0, in its own thread.

``HostileUpstream(script)`` answers each request with the steps ``script(request)`` returns, in
order: ``bytes`` are written as one ``write``, a ``float`` pauses that many seconds, a callable
is called (e.g. ``event.set`` to tell the test a write happened), ``CLOSE`` closes the connection
and ``HANG`` stops answering on it (later requests are still recorded). Requests on a connection
are answered one after another, so a script can send exactly the bytes a bug needs: extra bytes
after a response, a response shaped for a request not yet sent, an endless header...

Every request is recorded in ``upstream.requests`` as a ``Seen(connection, method, path)``, with
connections numbered from 1 in accept order, so a test can tell which requests shared one
upstream connection. ``connections`` counts accepted connections, ``open_connections`` the ones
still open, ``peak_open`` the most open at once and ``closed`` holds the numbers of the closed
ones. ``wait_for(predicate)`` blocks until the
predicate (called on the upstream) holds, woken by every accept, request and close.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from tests.support.loop_server import LoopServer

CLOSE = "close"
HANG = "hang"

Step = bytes | float | str | Callable[[], object]


@dataclass(frozen=True)
class Seen:
    connection: int  # 1 for the first accepted connection, 2 for the next...
    method: str
    path: str


def answer(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    """A complete content-length response."""
    return (b"HTTP/1.1 %s\r\ncontent-length: %d\r\n%s\r\n" % (status.encode(), len(body), extra)
            + body)


def default_script(request: Seen) -> list[Step]:
    """Answer with a body naming the request and the connection it arrived on."""
    return [answer(f"{request.method} {request.path} on connection {request.connection}"
                   .encode())]


class _Connection(asyncio.Protocol):
    def __init__(self, upstream: HostileUpstream) -> None:
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.number = 0
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[Seen] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.url = b""

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.upstream._live.add(self)
        self.worker = asyncio.get_running_loop().create_task(self._answer_in_order())
        with self.upstream._changed:
            self.upstream.connections += 1
            self.number = self.upstream.connections
            self.upstream.open_connections += 1
            self.upstream.peak_open = max(self.upstream.peak_open,
                                          self.upstream.open_connections)
            self.upstream._changed.notify_all()

    def connection_lost(self, exc) -> None:
        self.worker.cancel()
        self.upstream._live.discard(self)
        with self.upstream._changed:
            self.upstream.open_connections -= 1
            self.upstream.closed.add(self.number)
            self.upstream._changed.notify_all()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        seen = Seen(self.number, self.parser.get_method().decode(), self.url.decode("latin-1"))
        with self.upstream._changed:
            self.upstream.requests.append(seen)
            self.upstream._changed.notify_all()
        self.queue.put_nowait(seen)

    async def _answer_in_order(self) -> None:
        while True:
            request = await self.queue.get()
            for step in self.upstream.script(request):
                if self.transport.is_closing():
                    return
                if isinstance(step, bytes):
                    self.transport.write(step)
                elif isinstance(step, float):
                    await asyncio.sleep(step)
                elif step == CLOSE:
                    self.transport.close()
                    return
                elif step == HANG:
                    return
                else:
                    step()


class HostileUpstream(LoopServer):
    """Start with ``HostileUpstream(script).start()``; ``.port``; ``.stop()``. ``script`` may be
    replaced between requests (it is read for every request)."""

    def __init__(self, script: Callable[[Seen], list[Step]] = default_script) -> None:
        self.script = script
        self.requests: list[Seen] = []
        self.connections = 0
        self.open_connections = 0
        self.peak_open = 0
        self.closed: set[int] = set()
        self._changed = threading.Condition()
        self._live: set[_Connection] = set()
        super().__init__()

    backlog = 4096  # the circuit-breaker test opens a couple of thousand at once

    def protocol(self) -> _Connection:
        return _Connection(self)

    def seen(self, path: str) -> Seen:
        """The last recorded request for ``path`` (IndexError if none arrived)."""
        with self._changed:
            return [request for request in self.requests if request.path == path][-1]

    def wait_for(self, predicate: Callable[[HostileUpstream], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    async def _close_connections(self) -> None:
        for _ in range(20):  # bounded: a peer may still be connecting as the server closes
            await asyncio.sleep(0.01)  # connections accepted just before join ``_live``
            live = list(self._live)
            if not live:
                break
            for connection in live:
                connection.transport.abort()
                connection.worker.cancel()
            await asyncio.gather(*(c.worker for c in live), return_exceptions=True)

    def stop(self) -> None:
        super().stop()
        self._loop.close()
