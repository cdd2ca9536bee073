"""A test server on 127.0.0.1 port 0 with its own event loop in its own thread.

The origins and scripted upstreams of the tests all run this way, so that the test itself (or a
proxy process) can talk to them with blocking sockets. A subclass gives ``protocol()``, one
asyncio Protocol per accepted connection, and may extend ``_close_connections``.
"""

from __future__ import annotations

import asyncio
import threading


class LoopServer:
    backlog = 100

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def protocol(self) -> asyncio.Protocol:
        raise NotImplementedError

    def start(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        return self

    async def _listen(self) -> None:
        self._server = await self._loop.create_server(self.protocol, "127.0.0.1", 0,
                                                      backlog=self.backlog)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_connections(self) -> None:
        """Called in the server's loop as it stops, after the listener closed."""

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._close_connections()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def call_in_loop(self, callback) -> None:
        self._loop.call_soon_threadsafe(callback)
