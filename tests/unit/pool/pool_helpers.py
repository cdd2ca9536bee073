"""Fakes for the connection pool tests: a loop whose clock, timers and connection attempts the
test drives and a recording transport, under the real objects of the upstream side: a Cluster,
its Http1ConnPool, UpstreamConnections and UpstreamRequests (with a ``RecordingRouter``).

Imported by name (``from pool_helpers import ...``); the name is unique across the test tree.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from outrider.http.headers import RequestHeaders
from outrider.router.upstream_request import UpstreamRequest
from outrider.stats.store import StatsStore
from outrider.upstream.cluster import Cluster, ClusterSettings, Endpoint, UpstreamSettings
from tests.support.fakes import ManualLoop, RecordingRouter

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class FakeTransport:
    def __init__(self, loop: FakeLoop, protocol) -> None:
        self.loop = loop
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.limits = None

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.limits = (high, low)

    def get_extra_info(self, name, default=None):
        return default

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def abort(self) -> None:
        # As asyncio does: connection_lost follows on a later loop iteration.
        if not self.closed:
            self.closed = self.aborted = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    close = abort

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def peer_closes(self) -> None:
        """The upstream closed the connection."""
        if not self.closed:
            self.closed = True
            self.protocol.connection_lost(None)


class ConnectAttempt:
    """What ``loop.create_connection`` returns here; ``create_task`` wraps it in a FakeTask."""

    def __init__(self, factory, host: str, port: int) -> None:
        self.factory = factory
        self.host = host
        self.port = port


class FakeTask:
    def __init__(self, loop: FakeLoop, attempt: ConnectAttempt) -> None:
        self.loop = loop
        self.attempt = attempt
        self.callbacks: list = []
        self._done = False
        self._cancelled = False
        self._exception: BaseException | None = None
        self.protocol = None
        self.transport: FakeTransport | None = None

    def add_done_callback(self, callback) -> None:
        self.callbacks.append(callback)

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def exception(self):
        return self._exception

    def cancel(self) -> bool:
        if self._done:
            return False
        self._cancelled = True
        self._finish()
        return True

    def succeed(self) -> FakeTransport:
        """The TCP handshake completed: make the protocol and its transport."""
        protocol = self.attempt.factory()
        self.protocol = protocol
        self.transport = FakeTransport(self.loop, protocol)
        protocol.connection_made(self.transport)
        self._finish()
        return self.transport

    def fail(self, error: BaseException | None = None) -> None:
        self._exception = error or ConnectionRefusedError(111, "Connection refused")
        self._finish()

    def _finish(self) -> None:
        self._done = True
        for callback in self.callbacks:
            self.loop.call_soon(callback, self)
        self.loop.run_ready()


class FakeLoop(ManualLoop):
    """A manual loop whose connection attempts the test completes."""

    def __init__(self, now: float = 500.0) -> None:
        super().__init__(now)
        self.tasks: list[FakeTask] = []

    def create_connection(self, factory, host: str, port: int) -> ConnectAttempt:
        return ConnectAttempt(factory, host, port)

    def create_task(self, attempt: ConnectAttempt) -> FakeTask:
        task = FakeTask(self, attempt)
        self.tasks.append(task)
        return task


def cluster_settings(**upstream) -> ClusterSettings:
    """A STATIC cluster ``c`` of one host, 10.0.0.5:8080; ``upstream``: UpstreamSettings."""
    return ClusterSettings(
        name="c", type="STATIC",
        endpoints=[Endpoint("10.0.0.5", 8080, weight=1, priority=0, locality=("", "", ""),
                            locality_weight=0)],
        upstream=UpstreamSettings(**upstream), dns_refresh_rate=5.0, dns_lookup_family="AUTO",
        proto=cluster_pb2.Cluster(name="c"))


class PoolFixture:
    """The real Cluster ``c`` over a FakeLoop, its one host and that host's Http1ConnPool.

    ``request`` starts a real UpstreamRequest, as the router does: it asks the pool for a
    connection and, once it has one, encodes its request through the connection's codec. What
    it reports to the router is in ``request.router.events``.
    """

    def __init__(self, **settings) -> None:
        self.loop = FakeLoop()
        self.store = StatsStore()
        self.cluster = Cluster(cluster_settings(**settings), self.store.scope("cluster.c"),
                               self.loop)
        [self.host] = self.cluster.priority_set.all_hosts
        self.resources = self.cluster.resources[0]  # the DEFAULT priority
        self.pool = self.cluster.pool_for(self.host)

    def request(self, name: str = "r", method: str = "GET", headers=(),
                end_stream: bool = True) -> UpstreamRequest:
        """Start ``method /name`` (``end_stream``: the request has no body to follow)."""
        router = RecordingRouter(self.loop, RequestHeaders(method, "/" + name, "h",
                                                           items=list(headers)))
        request = UpstreamRequest(router, self.cluster, self.host)
        request.start(end_stream)
        return request

    def counter(self, name: str) -> int:
        return self.store.counter("cluster.c." + name).value

    def gauge(self, name: str) -> int:
        return self.store.gauge("cluster.c." + name).value

    def connected(self, task_index: int) -> FakeTransport:
        return self.loop.tasks[task_index].succeed()

    def in_use(self) -> tuple[int, int, int]:
        """The circuit breakers' counts: (connections, pending requests, requests)."""
        r = self.resources
        return r.connections.count, r.pending_requests.count, r.requests.count
