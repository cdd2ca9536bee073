"""A programmable upstream HTTP/1.1 server for tests, on 127.0.0.1 port 0, in its own thread.

Behaviour is chosen per request by the path, so one origin serves many tests:
  /echo...              JSON of method, path, headers and body length (the default)
  /status/N             answer status N
  /sleep/S              answer after S seconds
  /size/N               an N-byte body (content-length)
  /chunked/N            an N-byte body in chunks of 1000 bytes
  /close-delimited/N    an N-byte body ended by closing the connection
  /garbage              non-HTTP bytes
  /truncate             content-length 1000, 10 bytes, then close
  /reset-after-headers  headers (content-length 1000), then RST
  /hang                 never answers
  /head-cl              content-length 5 (and the body unless HEAD)
  /headers?k=v&k2=v2    a 200 with the query's pairs added as response headers (repeatable)
  /stream/N             an N-byte body of ``stream_pattern(N)``, written as fast as the proxy
                        reads it (flow-controlled: it never holds more than 256 KiB itself)
  /slow-sink...         stops reading right after the request headers until
                        ``origin.resume_reading()``; then echoes (body_length tells what arrived)
Every request is recorded in ``origin.requests`` (method, path, headers dict, body bytes).
``origin.connections`` counts accepted connections, ``origin.body_bytes_received`` request body
bytes (also mid-request), ``origin.stream_bytes_sent`` bytes handed to the socket by /stream.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httptools

from tests.support.loop_server import LoopServer

_PATTERN_BLOCK = bytes(range(256)) * 256  # 64 KiB


def stream_pattern(size: int) -> bytes:
    """The exact body ``/stream/N`` sends: a repeating 0..255 byte ramp."""
    whole, rest = divmod(size, len(_PATTERN_BLOCK))
    return _PATTERN_BLOCK * whole + _PATTERN_BLOCK[:rest]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes


class _OriginProtocol(asyncio.Protocol):
    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self._stream_left = 0  # bytes /stream still has to write
        self._can_write = True
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.origin.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._stream_left = 0
        if self in self.origin._sinks:
            self.origin._sinks.remove(self)

    def pause_writing(self) -> None:
        self._can_write = False

    def resume_writing(self) -> None:
        self._can_write = True
        self._pump()

    def _pump(self) -> None:
        # Write /stream's body while the transport accepts it; resume_writing() calls back here.
        while self._stream_left and self._can_write and not self.transport.is_closing():
            piece = min(self._stream_left, len(_PATTERN_BLOCK))
            self.transport.write(_PATTERN_BLOCK[:piece])
            self._stream_left -= piece
            self.origin.stream_bytes_sent += piece

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.url.startswith(b"/slow-sink"):
            self.transport.pause_reading()
            self.origin._sinks.append(self)

    def on_body(self, body: bytes) -> None:
        self.body += body
        self.origin.body_bytes_received += len(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        path = self.url.decode("latin-1")
        record = RecordedRequest(method, path, dict(self.headers), list(self.headers),
                                 bytes(self.body))
        self.origin.requests.append(record)
        if self.origin.delay:
            # A uniformly slow host (for latency-aware balancing tests).
            asyncio.get_running_loop().call_later(
                self.origin.delay, lambda: self.transport.is_closing() or self._respond(record))
        else:
            self._respond(record)

    def _write_response(self, status: int, body: bytes, extra: str = "",
                        content_type: str = "application/json") -> None:
        head = (f"HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(body)}\r\nserver: origin\r\n"
                f"x-origin: {self.origin.name}\r\n{extra}\r\n").encode()
        self.transport.write(head + (b"" if self._head else body))

    def _respond(self, req: RecordedRequest) -> None:
        self._head = req.method == "HEAD"
        parts = req.path.split("?")[0].strip("/").split("/")
        kind = parts[0]
        arg = parts[1] if len(parts) > 1 else ""
        loop = asyncio.get_running_loop()
        t = self.transport
        if kind == "status":
            self._write_response(int(arg), b"status body")
        elif kind == "sleep":
            loop.call_later(float(arg), lambda: t.is_closing() or self._echo(req))
        elif kind == "size":
            self._write_response(200, b"x" * int(arg), content_type="application/octet-stream")
        elif kind == "chunked":
            n = int(arg)
            out = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-origin: "
                   + self.origin.name.encode() + b"\r\n\r\n"]
            while n > 0:
                piece = min(n, 1000)
                out.append(b"%x\r\n%s\r\n" % (piece, b"y" * piece))
                n -= piece
            out.append(b"0\r\n\r\n")
            t.write(b"".join(out))
        elif kind == "close-delimited":
            t.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"z" * int(arg))
            t.close()
        elif kind == "garbage":
            t.write(b"this is not http\r\n\r\n")
        elif kind == "truncate":
            t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
            t.close()
        elif kind == "reset-after-headers":
            t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc")
            sock = t.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            loop.call_later(0.05, t.abort)
        elif kind == "hang":
            pass
        elif kind == "head-cl":
            self._write_response(200, b"hello", content_type="text/plain")
        elif kind == "headers":
            query = req.path.partition("?")[2]
            extra = "".join(f"{k}: {v}\r\n" for k, v in parse_qsl(query, keep_blank_values=True))
            self._write_response(200, b"headers", extra, content_type="text/plain")
        elif kind == "stream":
            n = int(arg)
            t.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                    b"content-length: %d\r\nx-origin: %s\r\n\r\n" % (n, self.origin.name.encode()))
            t.set_write_buffer_limits(high=256 * 1024)
            self._stream_left = n
            self._pump()
        else:
            self._echo(req)

    def _echo(self, req: RecordedRequest) -> None:
        body = json.dumps({"origin": self.origin.name, "method": req.method, "path": req.path,
                           "headers": req.header_list, "body_length": len(req.body)}).encode()
        self._write_response(200, body)


class Origin(LoopServer):
    """Start with ``Origin("a").start()``; ``.port``; ``.stop()``."""

    def __init__(self, name: str = "origin", delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay  # seconds added before every response
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.body_bytes_received = 0
        self.stream_bytes_sent = 0
        self._sinks: list[_OriginProtocol] = []
        super().__init__()

    def protocol(self) -> _OriginProtocol:
        return _OriginProtocol(self)

    def resume_reading(self) -> None:
        """Let every paused /slow-sink connection read its body again."""
        def _resume():
            for protocol in self._sinks:
                protocol.transport.resume_reading()
            self._sinks.clear()
        self._loop.call_soon_threadsafe(_resume)

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]
