"""Run Outrider inside the test process, on the test's own event loop.

For tests that must reach into the running proxy at a chosen moment (change a cluster's
membership, make a component fail); everything else still goes through real sockets.
"""

from __future__ import annotations

import asyncio
import gc

from outrider.config.loader import load_bootstrap_data
from outrider.server.instance import Server


def run_with_server(config: dict, scenario) -> None:
    """Start a ``Server`` on ``config``, run ``await scenario(server)``, shut it down."""
    server = Server(load_bootstrap_data(config).bootstrap)
    threshold = gc.get_threshold()

    async def main() -> None:
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.shutdown()

    try:
        asyncio.run(main())
    finally:
        # Server.start tunes the collector for a long-lived proxy; give the test process it back.
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def until(predicate, timeout: float = 3.0) -> None:
    """Wait (polling the loop) until ``predicate()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def exchange(port: int, raw: bytes) -> tuple[bytes, asyncio.StreamReader,
                                                    asyncio.StreamWriter]:
    """Send ``raw`` on a new connection; return the response head and the open streams."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    return head, reader, writer
