"""Demo upstream servers: tiny HTTP/1.1 origins that say who they are.

``python demo/upstream.py 10001 10002 10003`` serves one origin per port. Each answers any
request with JSON naming itself, the path and the headers it received. Query parameters:
``status=N`` (response status), ``sleep=S`` (delay seconds), ``size=N`` (an N-byte body instead).
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs

import httptools


class Origin(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self.url)
        query = parse_qs((url.query or b"").decode())
        status = int(query.get("status", ["200"])[0])
        delay = float(query.get("sleep", ["0"])[0])
        if "size" in query:
            body = b"x" * int(query["size"][0])
            content_type = "application/octet-stream"
        else:
            body = json.dumps({
                "upstream": self.name, "method": self.parser.get_method().decode(),
                "path": self.url.decode("latin-1"), "headers": dict(self.headers),
            }, indent=1).encode() + b"\n"
            content_type = "application/json"
        head = (f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(body)}\r\nx-upstream: {self.name}\r\n\r\n").encode()
        if delay:
            asyncio.get_running_loop().call_later(delay, self._write, head + body)
        else:
            self._write(head + body)

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


async def serve(ports: list[int], host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    for port in ports:
        await loop.create_server(lambda p=port: Origin(f"upstream-{p}"), host, port,
                                 reuse_address=True)
    print(f"demo upstreams on {', '.join(f'{host}:{p}' for p in ports)}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(serve([int(p) for p in sys.argv[1:]] or [10001, 10002, 10003]))
    except KeyboardInterrupt:
        sys.exit(0)  # Ctrl-C in `make run` reaches the whole process group: a normal stop
