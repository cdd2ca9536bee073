"""UpstreamConnection, the asyncio Protocol of one upstream HTTP/1 connection: response events
to its request, reuse or close at the end, resets, flow control."""

from __future__ import annotations

import pytest
from net_fakes import FakePool, RecordingTransport, Request

from outrider.net.upstream import UpstreamConnection


@pytest.fixture
def up():
    pool = FakePool(buffer_limit=4096)
    client = UpstreamConnection(pool)
    transport = RecordingTransport()
    client.connection_made(transport)
    return client, transport, pool


def test_connection_made_sets_the_buffer_limits(up):
    _, transport, _ = up
    assert transport.limits == (4096, 2048)


def test_assign_counts_and_tells_the_request(up):
    client, _, _ = up
    request = Request()
    client.assign(request)
    assert (client.request, client.requests_served, request.events) == (request, 1, [("ready",)])


def test_response_is_relayed_and_the_connection_released(up):
    client, transport, pool = up
    request = Request()
    client.assign(request)
    client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert request.events[1:] == [("headers", 200, True, "length"), ("data", b"abc"),
                                  ("complete",)]
    assert (pool.released, client.request, transport.closed) == ([client], None, False)


def test_response_is_relayed_across_reads(up):
    client, _, pool = up
    request = Request()
    client.assign(request)
    client.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    assert pool.released == []
    client.data_received(b"c\r\n0\r\n\r\n")
    assert request.events[1:] == [("headers", 200, True, "chunked"), ("data", b"ab"),
                                  ("data", b"c"), ("complete",)]
    assert pool.released == [client]


@pytest.mark.parametrize(("response", "reusable"), [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
])
def test_not_released_when_either_side_cannot_reuse(up, response, reusable):
    client, transport, pool = up
    client.assign(Request(reusable=reusable))
    client.data_received(response)
    assert pool.released == []
    assert transport.calls == ["abort"]


def test_body_delimited_by_close_completes_on_connection_lost(up):
    client, _, pool = up
    request = Request()
    client.assign(request)
    client.data_received(b"HTTP/1.1 200 OK\r\n\r\nsome body")
    client.connection_lost(None)
    assert request.events[1:] == [("headers", 200, False, "close"), ("data", b"some body"),
                                  ("complete",)]
    assert pool.closed == [client]


def test_connection_lost_before_the_response_resets(up):
    client, _, pool = up
    request = Request()
    client.assign(request)
    client.connection_lost(ConnectionResetError())
    assert request.events[1:] == [("reset", "connection termination")]
    assert pool.closed == [client]


def test_connection_lost_mid_length_body_resets(up):
    client, _, _ = up
    request = Request()
    client.assign(request)
    client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
    client.connection_lost(None)
    assert request.events[-1] == ("reset", "connection termination")


def test_garbage_is_a_protocol_error_and_aborts(up):
    client, transport, pool = up
    request = Request()
    client.assign(request)
    client.data_received(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert request.events[1:] == [("reset", "protocol error")]
    assert transport.calls == ["abort"]
    assert pool.released == []


def test_request_bytes_go_out_when_the_loop_iteration_ends(up):
    client, transport, pool = up
    client.assign(Request())
    client.write(b"GET / HTTP/1.1\r\n")
    client.write(b"host: h\r\n\r\n")
    assert transport.writes == []
    pool.loop.run_ready()
    assert transport.writes == [b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"]


def test_read_disable_is_idempotent_and_lifted_when_the_response_ends(up):
    client, transport, _ = up
    client.assign(Request())
    client.read_disable(True)
    client.read_disable(True)
    assert transport.calls == ["pause"]
    client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert transport.calls == ["pause", "resume"]


def test_write_watermarks_reach_the_request(up):
    client, _, _ = up
    request = Request()
    client.assign(request)
    client.pause_writing()
    client.resume_writing()
    assert request.events[1:] == [("watermark", True), ("watermark", False)]


def test_close_aborts_once_and_drops_unsent_and_later_writes(up):
    client, transport, pool = up
    client.assign(Request())
    client.write(b"GET / HTTP/1.1\r\n")  # abandoned with the request
    client.close()
    client.close()
    client.write(b"late")
    pool.loop.run_ready()
    assert transport.calls == ["abort"]
    assert transport.writes == []
    assert client.request is None


def test_head_response_then_a_fresh_codec_for_the_next_request(up):
    client, _, pool = up
    head = Request()
    client.assign(head)
    client.codec.expect_head_response()
    client.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert head.events[1:] == [("headers", 200, True, "none"), ("complete",)]
    codec = client.codec
    following = Request()
    client.assign(following)
    assert client.codec is not codec
    client.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert following.events[1:] == [("headers", 204, True, "none"), ("complete",)]
    assert pool.released == [client, client]
