"""UpstreamConnection, the asyncio Protocol of one upstream HTTP/1 connection: response events
to its request, reuse or close at the end, resets, flow control.

The objects are the real ones (Cluster, Http1ConnPool, UpstreamConnection, UpstreamRequest)
over a loop whose connection attempts succeed at the end of the loop iteration; only the router
(``RecordingRouter``) and the transport are stand-ins. Reuse is seen where it happens: the
connection back in the pool's ``idle`` list, or aborted and out of the pool.
"""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from net_fakes import RecordingTransport

from outrider.http.headers import RequestHeaders
from outrider.router.upstream_request import UpstreamRequest
from outrider.stats.store import StatsStore
from outrider.upstream.cluster import Cluster, ClusterSettings, Endpoint, UpstreamSettings
from tests.support.fakes import ManualLoop, RecordingRouter

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
ABC = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
# The body's last bytes come with the end when they arrive in the read that ends the response.
ABC_EVENTS = [("headers", 200, False), ("data", b"abc", True)]


class ConnectedTask:
    """A connection attempt that succeeded (what the pool's task reports): the protocol has its
    transport, and the pool hears of it when the loop iteration ends."""

    def __init__(self, loop: ConnectingLoop, protocol) -> None:
        self.loop = loop
        self.transport = RecordingTransport()
        protocol.connection_made(self.transport)

    def add_done_callback(self, callback) -> None:
        self.loop.call_soon(callback, self)

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def exception(self):
        return None


class ConnectingLoop(ManualLoop):
    """A ManualLoop whose connection attempts succeed (``create_connection``/``create_task``)."""

    def create_connection(self, factory, host: str, port: int):
        return factory

    def create_task(self, factory) -> ConnectedTask:
        return ConnectedTask(self, factory())


class Upstream:
    """Cluster ``c`` (one host) and its pool over a ConnectingLoop."""

    def __init__(self, **upstream) -> None:
        self.loop = ConnectingLoop()
        self.store = StatsStore()
        settings = ClusterSettings(
            name="c", type="STATIC",
            endpoints=[Endpoint("10.0.0.5", 8080, weight=1, priority=0,
                                locality=("", "", ""), locality_weight=0)],
            upstream=UpstreamSettings(**upstream), dns_refresh_rate=5.0,
            dns_lookup_family="AUTO", proto=cluster_pb2.Cluster(name="c"))
        self.cluster = Cluster(settings, self.store.scope("cluster.c"), self.loop)
        [self.host] = self.cluster.priority_set.all_hosts
        self.pool = self.cluster.pool_for(self.host)

    def begin(self, method: str = "GET", path: str = "/", headers=(), end_stream: bool = True,
              router_class=RecordingRouter) -> UpstreamRequest:
        """Start a request as the router does: on an idle connection at once, else it waits
        for the connection being made for it until the loop iteration ends."""
        router = router_class(self.loop, RequestHeaders(method, path, "h", items=list(headers)))
        request = UpstreamRequest(router, self.cluster, self.host)
        request.start(end_stream)
        return request

    def start(self, *args, **kwargs) -> UpstreamRequest:
        """``begin``, then end the loop iteration: the request is on a connection and its head
        has gone out."""
        request = self.begin(*args, **kwargs)
        self.loop.run_ready()
        return request

    def reusable(self, client) -> bool:
        """The connection is back in the pool and not closed."""
        return client in self.pool.idle and not client.closed

    def discarded(self, client) -> bool:
        """The connection is closed (aborted: never reused) and out of the pool."""
        return (client.closed and client.transport.aborted and client not in self.pool.idle
                and client not in self.pool.clients)


@pytest.fixture
def up() -> Upstream:
    return Upstream(buffer_limit=4096)


def test_connection_made_sets_the_buffer_limits(up):
    request = up.start()
    assert request.client.transport.limits == (4096, 2048)


def test_assign_counts_the_request_and_sends_its_head(up):
    request = up.start()
    client = request.client
    assert (client.request, client.requests_served) == (request, 1)
    assert up.cluster.resources[0].requests.count == 1
    assert client.transport.writes == [b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"]
    client.data_received(OK_EMPTY)
    assert up.cluster.resources[0].requests.count == 0  # the request left the connection


def test_response_is_relayed_and_the_connection_released(up):
    request = up.start()
    client = request.client
    client.data_received(ABC)
    assert request.router.events == ABC_EVENTS
    assert client.request is None
    assert up.reusable(client)


def test_response_is_relayed_across_reads(up):
    request = up.start()
    client = request.client
    client.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    assert not up.reusable(client)
    client.data_received(b"c\r\n0\r\n\r\n")
    assert request.router.events == [("headers", 200, False), ("data", b"ab", False),
                                     ("data", b"c", True)]
    assert up.reusable(client)


def test_connection_lost_before_the_response_resets(up):
    request = up.start()
    client = request.client
    client.connection_lost(ConnectionResetError())
    assert request.router.events == [("reset", "connection termination", "UC", 503)]
    assert client not in up.pool.clients


def test_connection_lost_mid_length_body_resets(up):
    request = up.start()
    request.client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
    request.client.connection_lost(None)
    assert request.router.events == [
        ("headers", 200, False), ("data", b"0123456789", False),
        ("reset", "connection termination", "UC", 503)]


def test_garbage_is_a_protocol_error_and_aborts(up):
    request = up.start()
    client = request.client
    client.data_received(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert request.router.events == [("reset", "protocol error", "UPE", 502)]
    assert up.discarded(client)
    assert up.cluster.resources[0].requests.count == 0


def test_the_clusters_max_response_headers_kb_bounds_the_response_head():
    up = Upstream(max_response_headers_kb=1)
    request = up.start()
    client = request.client
    client.data_received(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 1100)
    assert request.router.events == [("reset", "protocol error", "UPE", 502)]
    assert up.discarded(client)


class FailingRouter(RecordingRouter):
    def on_upstream_headers(self, headers, end_stream: bool, service_time_ms: int) -> None:
        raise RuntimeError("a bug in the proxy")


def test_an_exception_of_the_proxys_own_is_an_internal_error(up):
    """Not the upstream's fault (no protocol error): the stream fails as an internal error and
    the connection, left half-way through a response, is closed."""
    request = up.start(router_class=FailingRouter)
    client = request.client
    client.data_received(ABC)
    assert request.router.events == [("internal error",)]
    assert up.discarded(client)


def test_request_bytes_go_out_when_the_loop_iteration_ends(up):
    first = up.start()
    client = first.client
    client.data_received(OK_EMPTY)
    request = up.begin(path="/b")  # the idle connection takes it at once
    assert request.client is client
    assert client.transport.writes == [b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"]
    up.loop.run_ready()
    assert client.transport.writes[-1] == b"GET /b HTTP/1.1\r\nhost: h\r\n\r\n"


def test_read_disable_is_idempotent_and_lifted_when_the_response_ends(up):
    request = up.start()
    transport = request.client.transport
    request.read_disable(True)
    request.read_disable(True)
    assert [c for c in transport.calls if c in ("pause", "resume")] == ["pause"]
    request.client.data_received(OK_EMPTY)
    assert [c for c in transport.calls if c in ("pause", "resume")] == ["pause", "resume"]


def test_write_watermarks_hold_the_downstream(up):
    request = up.start()
    request.client.pause_writing()
    request.client.resume_writing()
    assert request.router.downstream.read_disabled == [True, False]


def test_close_aborts_once_and_drops_unsent_and_later_writes(up):
    first = up.start()
    client = first.client
    client.data_received(OK_EMPTY)
    request = up.begin(path="/b")  # its head waits for the end of the loop iteration
    request.reset()  # abandoned before it went out
    client.close()
    client.write(b"late")
    up.loop.run_ready()
    assert client.transport.calls.count("abort") == 1
    assert client.transport.writes == [b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"]
    assert client.request is None
    assert up.discarded(client)
    assert request.router.events == []  # it asked: it is not told


# -- reuse: ClientCodec.reuse_refusal decides, the connection obeys ------------------------------

def test_a_complete_keep_alive_exchange_is_reused(up):
    """The control for the tests below: everything in order, the connection serves again."""
    request = up.start(method="POST", headers=[("content-length", "2")], end_stream=False)
    request.send_data(b"hi", True)
    request.client.data_received(ABC)
    assert up.reusable(request.client)
    assert up.start().client is request.client


def test_response_incomplete_when_the_request_gives_up(up):
    """Abandoned mid-body (downstream reset, timeout): the rest of that response must never be
    read as another request's, so the connection closes."""
    request = up.start()
    client = request.client
    client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert client.codec.reuse_refusal() == "response incomplete"
    request.reset()
    assert up.discarded(client)
    assert up.start().client is not client


def test_request_body_not_fully_sent(up):
    """The upstream answers before the request body is all sent (a 413, say): the rest of the
    body cannot follow on a reused connection, nor be told apart from the next request."""
    request = up.start(method="POST", headers=[("content-length", "10")], end_stream=False)
    client = request.client
    request.send_data(b"hello", False)
    client.data_received(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
    assert request.router.events == [("headers", 413, True)]
    assert up.discarded(client)


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
], ids=["connection: close", "HTTP/1.0 without keep-alive"])
def test_the_upstream_does_not_keep_the_connection_alive(up, response):
    request = up.start()
    client = request.client
    client.data_received(response)
    assert request.router.events == ABC_EVENTS
    assert up.discarded(client)


def test_http_1_0_with_keep_alive_is_reused(up):
    request = up.start()
    request.client.data_received(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc")
    assert up.reusable(request.client)


def test_body_delimited_by_close_completes_on_connection_lost(up):
    request = up.start()
    client = request.client
    client.data_received(b"HTTP/1.1 200 OK\r\n\r\nsome body")
    assert not up.reusable(client)
    client.connection_lost(None)
    assert request.router.events == [("headers", 200, False), ("data", b"some body", False),
                                     ("data", b"", True)]
    assert client.closed and client not in up.pool.idle and client not in up.pool.clients


def test_bytes_past_the_responses_end_in_the_same_read(up):
    """One read brings the response and the head of another nobody asked for, while a stream
    waits for a connection. That stream must not get the connection (and with it the smuggled
    response): the connection is judged only once the whole read is parsed, and the codec
    refuses a response that begins when none is owed."""
    request = up.start()
    client = request.client
    waiting = up.begin()  # waits for the connection being made for it
    assert list(up.pool.pending) == [waiting]
    client.data_received(ABC + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    assert request.router.events == ABC_EVENTS
    assert waiting.router.events == []
    assert waiting.client is not client
    assert up.discarded(client)
    up.loop.run_ready()
    assert waiting.client is not None and waiting.client is not client


def test_bytes_on_an_idle_connection(up):
    request = up.start()
    client = request.client
    client.data_received(OK_EMPTY)
    assert up.reusable(client)
    client.data_received(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
    assert up.discarded(client)
    assert request.router.events == [("headers", 200, True)]
    assert up.start().client is not client
