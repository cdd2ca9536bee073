"""Raw-socket HTTP/1.1 client helpers for tests: send exact bytes, parse what comes back."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field

import httptools


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def echo(self) -> Echo:
        """The request the origin's /echo saw, from this response's JSON body."""
        return Echo(json.loads(self.body))


class Echo:
    """What an origin's /echo reports: ``origin``, ``method``, ``path``, ``body_length`` and the
    forwarded headers, as ``header_list`` (in order) and ``header(name)`` / ``header_all``."""

    def __init__(self, data: dict) -> None:
        self.origin: str = data["origin"]
        self.method: str = data["method"]
        self.path: str = data["path"]
        self.body_length: int = data["body_length"]
        self.header_list: list[tuple[str, str]] = [(k, v) for k, v in data["headers"]]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k == name]

    def names(self) -> set[str]:
        return {k for k, _ in self.header_list}


class _Collector:
    def __init__(self) -> None:
        self.responses: list[Response] = []

    def on_message_begin(self) -> None:
        self.responses.append(Response())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.responses[-1].headers.append((name.decode().lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.responses[-1].body += body

    def on_message_complete(self) -> None:
        self.responses[-1].complete = True


class RawClient:
    """One TCP connection; ``send`` exact bytes, ``read_responses(n)`` parses n answers."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.closed_by_peer = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_until(self, marker: bytes) -> bytes:
        """Read until ``marker`` arrives; return and consume everything up to and including it."""
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed_by_peer = True
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_until_close(self) -> bytes:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                self.closed_by_peer = True
                break
            if not chunk:
                self.closed_by_peer = True
                break
            self.buffer += chunk
        return self.buffer

    def read_responses(self, count: int) -> list[Response]:
        """Read until ``count`` complete responses arrived (or the peer closed)."""
        while True:
            responses = _parse_status(self.buffer)
            if len([r for r in responses if r.complete]) >= count:
                return responses
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                self.closed_by_peer = True
                return responses
            if not chunk:
                self.closed_by_peer = True
                return _parse_status(self.buffer)
            self.buffer += chunk

    def exchange(self, raw: bytes, require_complete: bool = False) -> Response:
        """Send ``raw`` and read exactly one response, leaving the connection ready for more."""
        self.send(raw)
        responses = self.read_responses(1)
        assert responses, f"no response; got {self.buffer!r}"
        if require_complete:
            assert responses[0].complete, f"no complete response; got {self.buffer!r}"
        self.buffer = b""
        return responses[0]

    def is_closed(self, timeout: float = 2.0) -> bool:
        """True if the peer closes (EOF or reset) within ``timeout`` with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def _parse_status(data: bytes) -> list[Response]:
    responses = []
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        pass  # incomplete or broken input: report what parsed
    # httptools exposes only the latest status code; recover each from its status line.
    # Each response's status line starts right after the previous response's body.
    offset = 0
    for response in collector.responses:
        start = data.find(b"HTTP/1.", offset)
        response.status = int(data[start + 9:start + 12])
        offset = start + 12 + len(response.body)
        responses.append(response)
    return responses


def build(method: str = "GET", path: str = "/echo", host: str | None = "example.com",
          headers: list[tuple[str, str]] | tuple = (), body: bytes = b"",
          version: str = "HTTP/1.1") -> bytes:
    """A request's exact bytes; a body gets a content-length unless ``headers`` frame it."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    names = {name.lower() for name, _ in headers}
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request(port: int, raw: bytes, timeout: float = 5.0) -> tuple[Response | None, bool]:
    """Send one request on a fresh connection; return the response and whether it closed."""
    client = RawClient(port, timeout)
    try:
        client.send(raw)
        responses = client.read_responses(1)
        closed = client.closed_by_peer or client.is_closed(1.5)
        return (responses[0] if responses else None), closed
    finally:
        client.close()
