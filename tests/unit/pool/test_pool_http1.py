"""Http1ConnPool with real UpstreamConnections over a fake loop and transports: connection
attempts, the pending queue, reuse order, limits and idle timeouts, as Envoy's HTTP/1 pool."""

from __future__ import annotations

from pool_helpers import OK_CLOSE, OK_EMPTY, PoolFixture


def test_first_stream_waits_for_a_new_connection_to_the_host():
    p = PoolFixture()
    request = p.request("a")
    assert request.events == []
    assert list(p.pool.pending) == [request]
    [task] = p.loop.tasks
    assert (task.attempt.host, task.attempt.port) == ("10.0.0.5", 8080)
    transport = p.connected(0)
    assert request.events == [("ready", request.client)]
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
    request.client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert request.events[1:] == [("headers", 200, True, "length"), ("data", b"hi"),
                                  ("complete",)]
    assert p.pool.idle == [request.client]
    assert transport.closed is False


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


def test_connection_not_reused_when_the_request_did_not_finish():
    p = PoolFixture()
    a = p.request("a", reusable=False)
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    assert transport.aborted is True
    assert p.pool.idle == []


def test_connection_close_response_is_not_reused():
    p = PoolFixture()
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_CLOSE)
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
    assert a.events == [("failure", "remote connection failure", "UF")]
    assert b.events == c.events == []
    assert list(p.pool.pending) == [b, c]
    assert (p.counter("upstream_cx_connect_fail"), p.counter("upstream_cx_connect_timeout")) == (
        1, 0)
    p.loop.tasks[1].fail()
    p.loop.tasks[2].fail()
    assert b.events == c.events == [("failure", "remote connection failure", "UF")]
    assert list(p.pool.pending) == []
    assert p.gauge("upstream_cx_active") == 0


def test_connect_failure_with_nothing_pending_fails_nobody():
    p = PoolFixture()
    a = p.request("a")
    p.pool.cancel(a)
    p.loop.tasks[0].fail()
    assert a.events == []


def test_connect_timeout():
    p = PoolFixture(connect_timeout=0.25)
    a = p.request("a")
    p.loop.advance(0.24)
    assert a.events == []
    p.loop.advance(0.01)
    assert a.events == [("failure", "connection timeout", "UF")]
    assert (p.counter("upstream_cx_connect_timeout"), p.counter("upstream_cx_connect_fail")) == (
        1, 1)


def test_connect_timeout_is_cancelled_by_the_connection():
    p = PoolFixture(connect_timeout=0.25)
    a = p.request("a")
    p.connected(0)
    p.loop.advance(1.0)
    assert a.events == [("ready", a.client)]
    assert p.counter("upstream_cx_connect_timeout") == 0


def test_cancelled_pending_stream_is_not_served():
    p = PoolFixture()
    a, b = p.request("a"), p.request("b")
    p.pool.cancel(a)
    p.connected(0)
    assert a.events == []
    assert b.client is not None
    p.connected(1)  # the second attempt finds nobody waiting
    assert len(p.pool.idle) == 1


def test_cancel_of_an_attached_stream_is_harmless():
    p = PoolFixture()
    a = p.request("a")
    p.connected(0)
    p.pool.cancel(a)
    assert list(p.pool.pending) == []


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
    assert a.events[-1] == ("reset", "connection termination")


def test_close_all_closes_every_connection():
    p = PoolFixture()
    a, _ = p.request("a"), p.request("b")
    ta, tb = p.connected(0), p.connected(1)
    a.client.data_received(OK_EMPTY)
    p.pool.close_all()
    p.loop.run_ready()
    assert (ta.closed, tb.closed) == (True, True)
    assert p.pool.idle == []
    assert p.gauge("upstream_cx_active") == 0
    assert p.loop.pending() == []  # the idle sweep is cancelled too


def test_connection_is_reused_after_a_head_response():
    # A HEAD response leaves llhttp expecting a body; the next request gets a fresh codec.
    p = PoolFixture()
    a = p.request("a", method="HEAD")
    p.connected(0)
    a.client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert a.events[1:] == [("headers", 200, True, "none"), ("complete",)]
    b = p.request("b")
    assert b.client is a.client
    b.client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert b.events[1:] == [("headers", 200, True, "length"), ("data", b"hi"), ("complete",)]


def test_unsolicited_bytes_on_an_idle_connection_close_it():
    p = PoolFixture()
    a = p.request("a")
    transport = p.connected(0)
    a.client.data_received(OK_EMPTY)
    a.client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert transport.closed is True
    assert p.pool.idle == []
