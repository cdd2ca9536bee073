"""Fakes for the connection manager playbooks: a manual clock, a recording transport, a fake
router and route table, and ``Downstream``, one DownstreamConnection wired to all of them.

Imported by name (``from hcm_helpers import ...``); the name is unique across the test tree.
"""

from __future__ import annotations

from types import SimpleNamespace

from outrider.http.conn_manager import HttpStats
from outrider.http.conn_manager_config import ConnectionManagerConfig
from outrider.http.headers import ResponseHeaders
from outrider.net.downstream import DownstreamConnection
from outrider.server.drain import DrainManager
from outrider.stats.store import StatsStore
from tests.support.fakes import ManualLoop

DATE = "Thu, 01 Jan 2026 00:00:00 GMT"  # tests patch active_stream.http_date to this


class FakeTransport:
    """Records what the protocol does to its transport. ``before_take`` (the fake loop's
    ``run_ready``) ends the loop iteration, sending coalesced writes, before ``take`` looks."""

    def __init__(self, peer=("203.0.113.7", 40000), sock=("192.0.2.1", 10000)) -> None:
        self.extra = {"peername": peer, "sockname": sock}
        self.writes: list[bytes] = []
        self.writes_after_close: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.pause_calls = 0
        self.resume_calls = 0
        self.limits = None
        self.before_take = None
        self._taken = 0

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.limits = (high, low)

    def write(self, data: bytes) -> None:
        (self.writes_after_close if self.closed else self.writes).append(bytes(data))

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True
        self.aborted = True

    def pause_reading(self) -> None:
        self.pause_calls += 1
        self.reading = False

    def resume_reading(self) -> None:
        self.resume_calls += 1
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def take(self) -> bytes:
        """Everything written since the last ``take``."""
        if self.before_take is not None:
            self.before_take()
        data = b"".join(self.writes[self._taken:])
        self._taken = len(self.writes)
        return data


class FakeRoute:
    def __init__(self, idle_timeout: float | None = None, response_headers=()) -> None:
        self.idle_timeout = idle_timeout
        self.response_headers = tuple(response_headers)

    def finalize_response_headers(self, headers, fmt_ctx, weighted_cluster=None) -> None:
        for name, value in self.response_headers:
            headers.add(name, value)


class FakeRouteTable:
    """Routes every authority except ``unrouted`` to ``route``."""

    def __init__(self, route: FakeRoute | None = None) -> None:
        self.route_entry = route or FakeRoute()
        self.seen: list = []

    def route(self, headers, random_value: int = 0):
        self.seen.append(headers)
        return None if headers.authority == "unrouted" else self.route_entry


class FakeRouter:
    """The last filter: records what it is given; the test answers through ``respond``.

    With ``answer`` set (a status), it answers every request as soon as its headers arrive,
    as a direct-response route would.
    """

    def __init__(self, stream, answer: int | None = None) -> None:
        self.stream = stream
        self.events: list[tuple] = []
        self.deadline: float | None = None
        self.weighted_cluster = None
        self.request_headers = None
        self.answer = answer

    def decode_headers(self, headers, end_stream: bool) -> None:
        self.request_headers = headers
        self.events.append(("headers", headers.method, headers.path, end_stream))
        if self.answer is not None:
            self.respond(self.answer, headers.path.encode())

    def decode_data(self, data: bytes, end_stream: bool) -> None:
        self.events.append(("data", data, end_stream))

    def on_downstream_reset(self) -> None:
        self.events.append(("reset",))

    def on_downstream_watermark(self, high: bool) -> None:
        self.events.append(("watermark", high))

    def on_deadline(self) -> None:
        # What the real router does before the response: a 504 local reply.
        self.events.append(("deadline",))
        self.deadline = None
        self.stream.send_local_reply(504, "upstream request timeout", "upstream_response_timeout")

    def respond(self, status: int = 200, body: bytes = b"", headers=(), end: bool = True,
                content_length: bool = True) -> None:
        """Send a response as the upstream gave it (with its own ``date``)."""
        items = list(headers)
        if content_length:
            items.append(("content-length", str(len(body))))
        items.append(("date", DATE))
        self.stream.encode_headers(ResponseHeaders(status, items), end and not body)
        if body:
            self.stream.encode_data(body, end)


class Downstream:
    """One downstream connection (DownstreamConnection + ConnectionManager) over fakes."""

    def __init__(self, route: FakeRoute | None = None, buffer_limit: int = 1024 * 1024,
                 peer=("203.0.113.7", 40000), answer: int | None = None, **config) -> None:
        self.answer = answer
        self.loop = ManualLoop()
        self.store = StatsStore()
        self.stats = HttpStats(self.store.scope("http.test"))
        self.route_table = FakeRouteTable(route)
        self.config = ConnectionManagerConfig(stat_prefix="test", route_table=self.route_table,
                                              **config)
        self.routers: list[FakeRouter] = []
        self.opened: list = []
        self.closed: list = []
        factory = SimpleNamespace(
            buffer_limit=buffer_limit, hcm_config=self.config, router_factory=self._new_router,
            loop=self.loop, http_stats=self.stats, drain=DrainManager(clock=self.loop.time),
            on_connection_open=self.opened.append,
            on_connection_close=self.closed.append)
        self.connection = DownstreamConnection(factory)
        self.transport = FakeTransport(peer=peer)
        self.transport.before_take = self.loop.run_ready
        self.connection.connection_made(self.transport)
        self.manager = self.connection.manager

    def _new_router(self, stream) -> FakeRouter:
        router = FakeRouter(stream, self.answer)
        self.routers.append(router)
        return router

    def feed(self, data: bytes) -> bytes:
        """Deliver bytes as one read; return what the proxy wrote in response."""
        self.connection.data_received(data)
        return self.transport.take()

    def lose(self) -> None:
        """The transport reports the connection gone (as asyncio does after close/abort)."""
        self.connection.connection_lost(None)

    def counter(self, name: str) -> int:
        return self.store.counter("http.test." + name).value

    def gauge(self, name: str) -> int:
        return self.store.gauge("http.test." + name).value


def local_reply(status_line: str, body: bytes = b"", close: bool = False,
                extra: bytes = b"") -> bytes:
    """The exact bytes of a local reply as the connection manager encodes it (``extra``:
    header lines the route adds, after content-length)."""
    head = f"HTTP/1.1 {status_line}\r\n".encode()
    if body:
        head += b"content-type: text/plain\r\n"
    head += b"content-length: %d\r\n" % len(body) + extra
    head += b"server: outrider\r\ndate: " + DATE.encode() + b"\r\n"
    if close:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body


def upstream_reply(status_line: str, body: bytes = b"", close: bool = False,
                   extra: bytes = b"") -> bytes:
    """The exact bytes of a response ``FakeRouter.respond`` sent, after the header rules."""
    head = f"HTTP/1.1 {status_line}\r\n".encode() + extra
    head += b"content-length: %d\r\ndate: " % len(body) + DATE.encode() + b"\r\n"
    head += b"server: outrider\r\n"
    if close:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body
