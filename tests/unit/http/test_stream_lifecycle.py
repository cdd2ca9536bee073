"""Hardening of the downstream stream's life (issue 7), through the real connection manager:
a stream exists from its request's first byte, pipelined streams start from the loop and are
capped, and an exception in the proxy's own code is a 500 (or a reset), never a 400."""

from __future__ import annotations

import logging

import pytest
from hcm_helpers import DATE, Downstream, FakeRouter, local_reply

from outrider.http import active_stream
from outrider.http.conn_manager import MAX_PIPELINED

GET = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch):
    monkeypatch.setattr(active_stream, "http_date", lambda: DATE)


# -- the stream exists from the first byte (bug 4, slowloris) -----------------------------------

def test_unfinished_headers_get_408_at_the_stream_idle_timeout():
    d = Downstream(stream_idle_timeout=5.0)
    d.feed(b"GET / HTTP/1.1\r\nHo")
    assert d.gauge("downstream_rq_active") == 1
    d.loop.advance(4.9)
    assert d.transport.take() == b""
    d.loop.advance(0.2)
    assert d.transport.take() == local_reply("408 Request Timeout", b"stream timeout", close=True)
    assert d.transport.closed is True
    assert (d.counter("downstream_rq_idle_timeout"), d.gauge("downstream_rq_active")) == (1, 0)


def test_request_timeout_runs_from_the_first_byte():
    d = Downstream(request_timeout=3.0, stream_idle_timeout=None)
    d.feed(b"GET / HTTP/1.1\r\n")
    for _ in range(5):  # trickling bytes keep no timer from firing but this one
        d.loop.advance(0.5)
        d.feed(b"X-A: b\r\n")
    d.loop.advance(0.6)
    assert d.transport.take() == local_reply("408 Request Timeout", b"request timeout", close=True)
    assert d.counter("downstream_rq_timeout") == 1


def test_a_connection_with_an_unfinished_request_is_not_idle():
    d = Downstream(idle_timeout=2.0, stream_idle_timeout=10.0)
    d.feed(b"GET / HTTP/1.1\r\n")
    d.loop.advance(5.0)
    assert d.counter("downstream_cx_idle_timeout") == 0
    assert d.transport.closed is False


def test_queued_streams_run_no_timers_until_their_turn():
    d = Downstream(stream_idle_timeout=5.0)
    d.feed(GET + GET)
    d.loop.advance(4.0)
    d.routers[0].respond(200)
    d.loop.advance(4.0)  # 8 s since the second request arrived, 4 s since its turn came
    assert d.counter("downstream_rq_idle_timeout") == 0
    d.loop.advance(1.1)
    assert d.counter("downstream_rq_idle_timeout") == 1


# -- pipelining (bug 6) ---------------------------------------------------------------------------

def slow_then_immediate(d: Downstream) -> None:
    """The first request waits for the test to answer it; every later one is answered at once
    (a direct response), which is what made completions recurse."""
    def factory(stream):
        router = FakeRouter(stream, answer=200 if d.routers else None)
        d.routers.append(router)
        return router

    d.manager.router_factory = factory


def test_queued_requests_are_capped_and_answered_without_recursion():
    d = Downstream()
    slow_then_immediate(d)
    d.feed(GET * 400)
    assert len(d.manager.streams) == MAX_PIPELINED + 1
    assert d.transport.reading is False
    d.routers[0].respond(200)
    for _ in range(MAX_PIPELINED):
        d.loop.run_ready()
    out = d.transport.take()
    # The slow one and the queued ones are answered in order, then the connection closes: the
    # client resends the rest, which never reached a router.
    assert out.count(b"HTTP/1.1 200 OK") == MAX_PIPELINED + 1 == len(d.routers)
    assert d.transport.closed is True
    assert d.gauge("downstream_rq_active") == 0


def test_a_pipeline_within_the_cap_is_answered_completely_and_stays_open():
    d = Downstream()
    slow_then_immediate(d)
    d.feed(GET * MAX_PIPELINED)
    d.routers[0].respond(200)
    d.loop.advance(0.1)
    assert d.transport.take().count(b"HTTP/1.1 200 OK") == MAX_PIPELINED
    assert d.transport.closed is False
    assert d.transport.reading is True


def test_the_next_stream_starts_from_the_loop_not_from_the_completion():
    d = Downstream()
    slow_then_immediate(d)
    d.feed(GET * 3)
    d.routers[0].respond(200)
    assert len(d.routers) == 1
    d.loop.run_ready()
    assert len(d.routers) == 3  # one loop callback each, no nesting


# -- internal errors (bug 7) ---------------------------------------------------------------------

class FailingRouter(FakeRouter):
    def decode_headers(self, headers, end_stream: bool) -> None:
        raise RuntimeError("bug in a filter")


def test_an_exception_in_the_filter_chain_is_a_logged_500(caplog):
    d = Downstream()
    d.manager.router_factory = FailingRouter
    with caplog.at_level(logging.ERROR, logger="outrider.http"):
        out = d.feed(GET)
    assert out == local_reply("500 Internal Server Error", close=True)
    assert d.transport.closed is True
    assert "internal error serving GET /a" in caplog.text
    assert "RuntimeError: bug in a filter" in caplog.text
    assert (d.counter("downstream_rq_internal_error"), d.counter("downstream_cx_protocol_error"),
            d.counter("downstream_rq_5xx"), d.gauge("downstream_rq_active")) == (1, 0, 1, 0)


def test_an_exception_in_routing_is_a_500_not_a_400(caplog):
    d = Downstream()

    def broken_route(headers, random_value=0):
        raise KeyError("route table bug")

    d.route_table.route = broken_route
    out = d.feed(GET)
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert d.counter("downstream_cx_protocol_error") == 0
    assert "KeyError" in caplog.text


def test_an_exception_after_the_response_started_resets_the_connection(caplog):
    class FailingBody(FakeRouter):
        def decode_data(self, data, end_stream):
            raise ValueError("bug while forwarding the body")

    d = Downstream()
    d.manager.router_factory = lambda stream: d.routers.append(FailingBody(stream)) \
        or d.routers[-1]
    d.feed(b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\n")
    d.routers[0].respond(200, b"early", end=False)
    d.feed(b"0123456789")
    assert d.transport.aborted is True
    assert "ValueError: bug while forwarding the body" in caplog.text
    assert (d.counter("downstream_rq_internal_error"), d.gauge("downstream_rq_active")) == (1, 0)


def test_an_exception_in_a_timer_is_contained(caplog):
    d = Downstream(stream_idle_timeout=1.0)
    d.feed(GET)

    def broken_deadline():
        raise RuntimeError("bug in a timeout")

    d.routers[0].on_deadline = broken_deadline
    d.routers[0].deadline = d.loop.time() + 0.5
    d.manager.schedule_deadline(d.routers[0].deadline)
    d.loop.advance(0.6)
    assert d.transport.take() == local_reply("500 Internal Server Error", close=True)
    assert d.counter("downstream_rq_internal_error") == 1


def test_nothing_after_a_closing_answer_in_the_same_read_reaches_a_router():
    # A refused upgrade is answered 403 with close while the codec goes on with the read.
    d = Downstream(answer=200)
    out = d.feed(b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: upgrade\r\n"
                 b"Upgrade: websocket\r\n\r\n" + GET)
    assert out.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"200 OK" not in out
    assert d.routers == []
    assert d.transport.closed is True
    assert d.gauge("downstream_rq_active") == 0
