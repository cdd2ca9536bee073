"""A benchmark origin: N HTTP/1.1 ports, each answering every request after a fixed delay.

    python bench/slow_origin.py --delays-ms 5,5,5,5,5,5,5,5,5,50

Binds one ephemeral port per delay on 127.0.0.1, prints ``{"ports": [...]}`` as one JSON line on
stdout (same order as ``--delays-ms``), then serves until killed. Every request (body-less GET,
keep-alive, pipelining tolerated) gets ``200 ok`` after its port's delay, scheduled with
``loop.call_later`` so thousands of requests wait concurrently at no CPU cost. The delay is a
service time, not a concurrency limit: a port serves any number of requests in parallel.
Timer resolution is about 1 ms (uvloop/libuv), so "5 ms" means 5-6 ms.

``GET /__counts`` on any port answers at once with ``{"counts": [...]}``: requests served per
port so far (the benchmark reads it before and after a run to see each host's share).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import httptools

RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n")
RESPONSE_CLOSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n"
                  b"connection: close\r\n\r\nok\n")
COUNTS_PATH = b"/__counts"


class DelayedOk(asyncio.Protocol):
    """One connection: parse requests, answer each ``delay`` seconds after it completes."""

    def __init__(self, delay: float, index: int, counts: list[int]) -> None:
        self.delay = delay
        self.index = index
        self.counts = counts
        self.url = b""
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending = 0  # answers scheduled but not yet written
        self.closing = False

    # transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # parser callbacks
    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        if self.url == COUNTS_PATH:
            body = json.dumps({"counts": self.counts}).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
            return
        self.counts[self.index] += 1
        self.pending += 1
        self.loop.call_later(self.delay, self._answer, keep_alive)

    # answers: all bodies are identical, so timer order among equal delays does not matter
    def _answer(self, keep_alive: bool) -> None:
        self.pending -= 1
        if self.transport is None or self.closing:
            return
        if keep_alive:
            self.transport.write(RESPONSE)
        else:
            self.closing = True
            self.transport.write(RESPONSE_CLOSE)
            self.transport.close()


async def serve(delays: list[float], host: str) -> None:
    loop = asyncio.get_running_loop()
    counts = [0] * len(delays)
    servers = []
    for index, delay in enumerate(delays):
        servers.append(await loop.create_server(
            lambda d=delay, i=index: DelayedOk(d, i, counts), host, 0, backlog=4096))
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    sys.stdout.write(json.dumps({"ports": ports}) + "\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delays-ms", required=True,
                        help="comma-separated service time of each port, in milliseconds")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    delays = [float(d) / 1000.0 for d in args.delays_ms.split(",") if d.strip()]
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(delays, args.host))
    else:
        uvloop.run(serve(delays, args.host))


if __name__ == "__main__":
    main()
