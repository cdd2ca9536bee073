"""Http1ConnPool with real UpstreamConnections and UpstreamRequests over a fake loop and
transports: connection attempts, the pending queue, reuse order, limits and idle timeouts, the
circuit breakers, draining, as Envoy's HTTP/1 pool."""

from __future__ import annotations

import pytest
from pool_helpers import OK_CLOSE, OK_EMPTY, PoolFixture

HI = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
HI_EVENTS = [("headers", 200, False), ("data", b"hi", True)]
OVERFLOW = ("reset", "overflow", "UO", 503)


def test_first_stream_waits_for_a_new_connection_to_the_host():
    p = PoolFixture()
    request = p.request("a")
    assert request.client is None
    assert list(p.pool.pending) == [request]
    [task] = p.loop.tasks
    assert (task.attempt.host, task.attempt.port) == ("10.0.0.5", 8080)
    transport = p.connected(0)
    assert request.client is task.protocol
    assert transport.writes == [b"GET /a HTTP/1.1\r\nhost: h\r\n\r\n"]
    assert list(p.pool.pending) == []
    assert (p.counter("upstream_cx_total"), p.counter("upstream_rq_pending_total"),
            p.gauge("upstream_cx_active")) == (1, 1, 1)


def test_connection_gets_the_pools_buffer_limit():
    p = PoolFixture(buffer_limit=8192)
    p.request()
    assert p.connected(0).limits == (8192, 4096)


def test_response_completes_and_the_connection_goes_idle():
    p = PoolFixture()
    request = p.request("a")
    transport = p.connected(0)
    request.client.data_received(HI)
    assert request.router.events == HI_EVENTS
    assert p.pool.idle == [request.client]
    assert transport.closed is False
    assert p.in_use() == (1, 0, 0)


def test_idle_connection_is_reused_without_connecting():
    p = PoolFixture()
    first = p.request("a")
    p.connected(0)
    first.client.data_received(OK_EMPTY)
    second = p.request("b")
    assert second.client is first.client
    assert len(p.loop.tasks) == 1
    assert first.client.requests_served == 2
    p.loop.run_ready()  # the loop iteration ends: the request goes out
    assert first.client.transport.writes[-1] == b"GET /b HTTP/1.1\r\nhost: h\r\n\r\n"


def test_idle_connections_are_reused_most_recently_used_first():
    p = PoolFixture()
    a, b = p.request("a"), p.request("b")
    p.connected(0)
    p.connected(1)
    b.client.data_received(OK_EMPTY)  # b's connection goes idle first
    a.client.data_received(OK_EMPTY)
    assert p.pool.idle == [b.client, a.client]
    c = p.request("c")
    assert c.client is a.client
    d = p.request("d")
    assert d.client is b.client


def test_each_pending_stream_gets_its_own_connection_attempt():
    p = PoolFixture()
    requests = [p.request(name) for name in "abc"]
    assert len(p.loop.tasks) == 3
    assert p.pool.connecting == 3
    p.connected(1)  # any connection serves the oldest pending stream
    assert requests[0].client is not None
    assert requests[1].client is None


def test_pending_stream_is_served_by_a_released_connection():
    p = PoolFixture()
    a = p.request("a")
    p.connected(0)
    b = p.request("b")  # a is busy: b waits, and a connection attempt starts for it
    assert len(p.loop.tasks) == 2
    a.client.data_received(OK_EMPTY)
    assert b.client is a.client
    p.connected(1)  # the attempt made for b completes: it goes idle
    assert len(p.pool.idle) == 1
    assert p.pool.idle[0] is not a.client


def test_connection_close_response_is_not_reused():
    p = PoolFixture()
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_CLOSE)
    assert a.router.events == [("headers", 200, True)]
    assert transport.closed is True
    p.loop.run_ready()
    assert (p.gauge("upstream_cx_active"), p.counter("upstream_cx_destroy")) == (0, 1)
    b = p.request("b")
    assert b.client is None
    assert len(p.loop.tasks) == 2


def test_max_requests_per_connection_closes_after_the_last():
    p = PoolFixture(max_requests_per_connection=2)
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    b = p.request("b")
    assert b.client is a.client
    b.client.data_received(OK_EMPTY)
    assert transport.closed is True
    assert p.pool.idle == []
    assert p.counter("upstream_cx_max_requests") == 1
    c = p.request("c")
    assert c.client is None
    assert len(p.loop.tasks) == 2


def test_max_requests_closing_a_connection_leaves_pending_streams_their_attempt():
    p = PoolFixture(max_requests_per_connection=1)
    a = p.request("a")
    p.connected(0)
    b = p.request("b")
    a.client.data_received(OK_EMPTY)
    assert b.client is None
    p.connected(1)
    assert b.client is not None and b.client is not a.client


def test_connect_failure_fails_streams_beyond_the_attempts_in_flight():
    p = PoolFixture()
    a, b, c = p.request("a"), p.request("b"), p.request("c")
    p.loop.tasks[0].fail()
    failed = [("reset", "remote connection failure", "UF", 503)]
    assert a.router.events == failed
    assert b.router.events == c.router.events == []
    assert list(p.pool.pending) == [b, c]
    assert (p.counter("upstream_cx_connect_fail"), p.counter("upstream_cx_connect_timeout")) == (
        1, 0)
    p.loop.tasks[1].fail()
    p.loop.tasks[2].fail()
    assert b.router.events == c.router.events == failed
    assert list(p.pool.pending) == []
    assert p.gauge("upstream_cx_active") == 0
    assert p.in_use() == (0, 0, 0)


def test_connect_failure_with_nothing_pending_fails_nobody():
    p = PoolFixture()
    a = p.request("a")
    a.reset()  # the router gives up on it (downstream reset, timeout): it leaves the queue
    p.loop.tasks[0].fail()
    assert a.router.events == []


def test_connect_timeout():
    p = PoolFixture(connect_timeout=0.25)
    a = p.request("a")
    p.loop.advance(0.24)
    assert a.router.events == []
    p.loop.advance(0.01)
    assert a.router.events == [("reset", "connection timeout", "UF", 503)]
    assert (p.counter("upstream_cx_connect_timeout"), p.counter("upstream_cx_connect_fail")) == (
        1, 1)


def test_connect_timeout_is_cancelled_by_the_connection():
    p = PoolFixture(connect_timeout=0.25)
    a = p.request("a")
    p.connected(0)
    p.loop.advance(1.0)
    assert a.client is not None and a.router.events == []
    assert p.counter("upstream_cx_connect_timeout") == 0


def test_cancelled_pending_stream_is_not_served():
    p = PoolFixture()
    a, b = p.request("a"), p.request("b")
    a.reset()
    assert p.in_use() == (2, 1, 0)  # two attempts, one stream waiting
    p.connected(0)
    assert a.client is None and a.router.events == []
    assert b.client is not None
    p.connected(1)  # the second attempt finds nobody waiting
    assert len(p.pool.idle) == 1


def test_cancel_of_an_attached_stream_is_harmless():
    p = PoolFixture()
    a = p.request("a")
    p.connected(0)
    p.pool.cancel(a)
    assert list(p.pool.pending) == []
    assert p.in_use() == (1, 0, 1)


def test_idle_timeout_closes_an_idle_connection():
    p = PoolFixture(idle_timeout=10.0)
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    p.loop.advance(9.9)
    assert transport.closed is False
    p.loop.advance(0.1)
    assert transport.closed is True
    assert p.pool.idle == []
    assert (p.counter("upstream_cx_idle_timeout"), p.gauge("upstream_cx_active")) == (1, 0)


def test_idle_timeout_counts_from_the_last_release():
    p = PoolFixture(idle_timeout=10.0)
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    p.loop.advance(8.0)
    b = p.request("b")
    b.client.data_received(OK_EMPTY)
    p.loop.advance(8.0)  # 16 s after the first release, 8 s after the second
    assert transport.closed is False
    p.loop.advance(2.0)
    assert transport.closed is True


def test_idle_timeout_closes_each_connection_at_its_own_time():
    p = PoolFixture(idle_timeout=10.0)
    a, b = p.request("a"), p.request("b")
    ta, tb = p.connected(0), p.connected(1)
    a.client.data_received(OK_EMPTY)
    p.loop.advance(4.0)
    b.client.data_received(OK_EMPTY)
    p.loop.advance(6.0)
    assert (ta.closed, tb.closed) == (True, False)
    p.loop.advance(4.0)
    assert tb.closed is True
    assert p.counter("upstream_cx_idle_timeout") == 2


def test_no_idle_timeout_when_disabled():
    p = PoolFixture(idle_timeout=None)
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    p.loop.advance(100000.0)
    assert transport.closed is False


def test_idle_connection_closed_by_the_upstream_leaves_the_pool():
    p = PoolFixture()
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    transport.peer_closes()
    assert p.pool.idle == []
    assert (p.gauge("upstream_cx_active"), p.counter("upstream_cx_destroy")) == (0, 1)
    b = p.request("b")
    assert b.client is None  # a new attempt, not the dead connection


def test_busy_connection_lost_resets_its_request():
    p = PoolFixture()
    a = p.request("a")
    transport = p.connected(0)
    transport.peer_closes()
    assert a.router.events == [("reset", "connection termination", "UC", 503)]
    assert p.in_use() == (0, 0, 0)


# -- HEAD -----------------------------------------------------------------------------------------

HEAD_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


def test_head_answer_announcing_a_length_and_followed_by_nothing_is_reused():
    """The answer ends with its headers although it announces 5 bytes, so the connection is
    reused; the next response is parsed from its first byte, not taken as those 5 bytes."""
    p = PoolFixture()
    a = p.request("a", method="HEAD")
    connection = p.connected(0).protocol
    connection.data_received(HEAD_ANSWER)
    assert a.router.events == [("headers", 200, True)]
    assert p.pool.idle == [connection]
    b = p.request("b")
    assert b.client is connection
    connection.data_received(HI)
    assert b.router.events == HI_EVENTS
    assert p.pool.idle == [connection]


@pytest.mark.parametrize("reads", [
    [HEAD_ANSWER + b"hello"],  # the body in the same read as the headers
    [HEAD_ANSWER, b"hello"],  # the body in a later read, once the connection is idle
], ids=["same read", "later read"])
def test_head_answer_followed_by_body_bytes_closes_the_connection(reads):
    """Whenever the body a HEAD answer must not have arrives, the connection closes, leaves
    the pool, and the next request gets a new connection."""
    p = PoolFixture()
    a = p.request("a", method="HEAD")
    transport = p.connected(0)
    for data in reads:
        transport.protocol.data_received(data)
    assert a.router.events == [("headers", 200, True)]  # the HEAD itself was answered
    assert transport.aborted is True
    assert p.pool.idle == []
    b = p.request("b")
    assert b.client is None
    assert len(p.loop.tasks) == 2
    p.loop.run_ready()
    assert (p.gauge("upstream_cx_active"), p.counter("upstream_cx_destroy")) == (0, 1)


# -- circuit breakers (the cluster's ResourceManager) -------------------------------------------

def test_pending_overflow_fails_the_stream_at_once():
    p = PoolFixture()
    p.resources.pending_requests.max = 1
    a = p.request("a")
    b = p.request("b")
    assert a.router.events == []
    assert b.router.events == [OVERFLOW]
    assert list(p.pool.pending) == [a]
    assert len(p.loop.tasks) == 1  # no connection attempt for the refused stream
    assert p.counter("upstream_rq_pending_overflow") == 1
    assert p.in_use() == (1, 1, 0)


def test_requests_overflow_fails_the_stream_and_keeps_the_connection():
    p = PoolFixture()
    p.resources.requests.max = 1
    a, b = p.request("a"), p.request("b")
    p.connected(0)
    assert a.client is not None
    second = p.connected(1).protocol  # ready for b, but one request is the limit
    assert b.router.events == [OVERFLOW]
    assert p.counter("upstream_rq_pending_overflow") == 1
    assert p.pool.idle == [second]  # the connection is kept for the next stream
    a.client.data_received(OK_EMPTY)
    assert p.in_use() == (2, 0, 0)
    c = p.request("c")
    assert c.client is a.client


def test_max_connections_makes_a_stream_wait_for_a_busy_connection():
    p = PoolFixture()
    p.resources.connections.max = 1
    a = p.request("a")
    p.connected(0)
    b = p.request("b")
    assert len(p.loop.tasks) == 1  # no second connection
    assert p.counter("upstream_cx_overflow") == 1
    assert b.client is None and b.router.events == []
    a.client.data_received(OK_EMPTY)
    assert b.client is a.client
    assert p.in_use() == (1, 0, 1)


def test_a_freed_connection_slot_serves_a_waiting_stream():
    p = PoolFixture()
    p.resources.connections.max = 1
    a = p.request("a")
    p.connected(0)
    b = p.request("b")
    assert len(p.loop.tasks) == 1
    a.client.data_received(OK_CLOSE)  # the connection closes: its slot is free
    assert len(p.loop.tasks) == 2
    p.connected(1)
    assert b.client is not None and b.client is not a.client
    assert p.in_use() == (1, 0, 1)


def test_a_pool_with_no_connection_connects_even_at_the_limit():
    """The cluster's other hosts hold every connection the limit allows; this host still gets
    one, or its streams could never be served."""
    p = PoolFixture()
    p.resources.connections.max = 1
    p.resources.connections.inc()  # another host's connection
    a = p.request("a")
    assert len(p.loop.tasks) == 1
    p.connected(0)
    assert a.client is not None


def test_connection_attempts_in_flight_count_toward_max_connections():
    p = PoolFixture()
    p.resources.connections.max = 1
    p.request("a")  # its connection attempt takes the one slot
    p.request("b")
    assert len(p.loop.tasks) == 1
    assert p.resources.connections.count == 1


# -- drain (the host left the cluster) and close_all ---------------------------------------------

def test_drain_closes_idle_connections_at_once():
    p = PoolFixture()
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    p.pool.drain()
    assert transport.aborted is True
    assert p.pool.idle == []
    p.loop.run_ready()
    assert (p.gauge("upstream_cx_active"), p.in_use()) == (0, (0, 0, 0))


def test_drain_lets_busy_and_pending_streams_finish_then_closes():
    p = PoolFixture()
    a = p.request("a")
    busy = p.connected(0)
    b = p.request("b")  # waits; an attempt starts for it
    p.pool.drain()
    assert busy.closed is False
    a.client.data_received(OK_EMPTY)
    assert a.router.events == [("headers", 200, True)]
    assert b.client is busy.protocol  # the pending stream is still served
    assert busy.closed is False
    busy.protocol.data_received(HI)
    assert b.router.events == HI_EVENTS
    assert busy.aborted is True  # then the connection closes instead of going idle
    late = p.connected(1)  # the attempt made for b finds nobody waiting
    assert late.aborted is True
    assert p.pool.idle == []
    p.loop.run_ready()
    assert (p.gauge("upstream_cx_active"), p.in_use()) == (0, (0, 0, 0))


def test_close_all_resets_in_flight_requests_and_closes_every_connection():
    p = PoolFixture()
    a, b = p.request("a"), p.request("b")
    ta, tb = p.connected(0), p.connected(1)
    a.client.data_received(OK_EMPTY)
    p.pool.close_all()
    assert a.router.events == [("headers", 200, True)]  # finished before: not told anything
    assert b.router.events == [("reset", "connection termination", "UC", 503)]
    p.loop.run_ready()
    assert (ta.aborted, tb.aborted) == (True, True)
    assert p.pool.idle == []
    assert p.gauge("upstream_cx_active") == 0
    assert p.in_use() == (0, 0, 0)
    assert p.loop.pending() == []  # the idle sweep is cancelled too


def test_per_host_max_connections_makes_streams_share_the_one_connection():
    p = PoolFixture()
    p.pool.max_host_connections = 1
    a, b = p.request("a"), p.request("b")
    assert len(p.loop.tasks) == 1  # one connection, though two streams wait
    assert p.counter("upstream_cx_overflow") == 1
    p.connected(0)
    assert a.client is not None and b.client is None and b.router.events == []
    a.client.data_received(OK_EMPTY)
    assert b.client is a.client
