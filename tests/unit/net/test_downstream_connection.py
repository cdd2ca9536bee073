"""DownstreamConnection, the asyncio Protocol in front of the connection manager: addresses,
writes coalesced per loop iteration, close versus abort, and the counted read_disable (Envoy's
readDisable)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from net_fakes import FakeManager, RecordingTransport

from outrider.net import downstream as downstream_module
from outrider.net.downstream import DownstreamConnection
from outrider.net.flush import FLUSH_NOW_BYTES
from tests.support.fakes import ManualLoop


@pytest.fixture
def conn(monkeypatch):
    """A DownstreamConnection whose ConnectionManager is a FakeManager."""
    created = []

    def fake_manager(listener, connection, loop):
        manager = FakeManager(connection)
        created.append(manager)
        return manager

    monkeypatch.setattr(downstream_module, "ConnectionManager", fake_manager)
    factory = SimpleNamespace(buffer_limit=1000, hcm_config=None, router_factory=None,
                              loop=ManualLoop(), http_stats=None, opened=[], closed=[])
    factory.on_connection_open = factory.opened.append
    factory.on_connection_close = factory.closed.append
    connection = DownstreamConnection(factory)
    transport = RecordingTransport()
    connection.connection_made(transport)
    return connection, transport, created[0], factory


def test_connection_made_records_addresses_and_limits(conn):
    connection, transport, _, factory = conn
    assert (connection.remote_ip, connection.remote_address, connection.local_address) == (
        "198.51.100.9", "198.51.100.9:51000", "192.0.2.1:10000")
    assert transport.limits == (1000, 500)
    assert factory.opened == [connection]


def test_writes_during_a_read_leave_in_one_send_when_the_iteration_ends(conn):
    connection, transport, manager, factory = conn
    manager.script = lambda data: [connection.write(part) for part in (b"a", b"b", b"c")]
    connection.data_received(b"x")
    assert transport.writes == []
    factory.loop.run_ready()
    assert transport.writes == [b"abc"]


def test_a_single_write_is_sent_as_is(conn):
    connection, transport, manager, factory = conn
    manager.script = lambda data: connection.write(b"only")
    connection.data_received(b"x")
    factory.loop.run_ready()
    assert transport.writes == [b"only"]


def test_nothing_is_sent_for_a_read_without_writes(conn):
    connection, transport, _, factory = conn
    connection.data_received(b"x")
    factory.loop.run_ready()
    assert transport.writes == []
    assert factory.loop.ready == []  # no flush was even scheduled


def test_writes_outside_a_read_are_coalesced_too(conn):
    connection, transport, _, factory = conn
    connection.write(b"a")
    connection.write(b"")  # nothing to send, nothing recorded
    connection.write(b"b")
    assert len(factory.loop.ready) == 1
    factory.loop.run_ready()
    assert transport.writes == [b"ab"]
    connection.write(b"c")  # the next iteration starts a new batch
    factory.loop.run_ready()
    assert transport.writes == [b"ab", b"c"]


def test_large_writes_go_out_at_once_behind_what_was_collected(conn):
    connection, transport, _, factory = conn
    body = b"x" * FLUSH_NOW_BYTES
    connection.write(b"head")
    connection.write(body)
    assert transport.writes == [b"head" + body]
    assert transport.calls == ["writelines"]  # no copy of the large body
    factory.loop.run_ready()  # the scheduled flush finds nothing left
    assert transport.writes == [b"head" + body]


def test_close_sends_what_was_written_first(conn):
    connection, transport, manager, factory = conn

    def script(data):
        connection.write(b"reply")
        connection.close()

    manager.script = script
    connection.data_received(b"x")
    assert transport.writes == [b"reply"]
    assert transport.calls == ["close"]
    factory.loop.run_ready()
    assert transport.writes == [b"reply"]


def test_abort_and_writes_after_close_are_dropped(conn):
    connection, transport, _, _ = conn
    connection.close(abort=True)
    connection.close()
    connection.write(b"late")
    assert transport.calls == ["abort"]
    assert transport.writes == []


def test_read_disable_is_counted(conn):
    connection, transport, _, _ = conn
    connection.read_disable(True)
    connection.read_disable(True)
    connection.read_disable(False)
    assert transport.calls == ["pause"]
    connection.read_disable(False)
    assert transport.calls == ["pause", "resume"]
    connection.read_disable(False)  # unbalanced enable: ignored
    assert transport.calls == ["pause", "resume"]
    connection.read_disable(True)
    assert transport.calls == ["pause", "resume", "pause"]


def test_read_disable_after_close_does_not_touch_the_transport(conn):
    connection, transport, _, _ = conn
    connection.read_disable(True)
    connection.close()
    connection.read_disable(False)
    assert transport.calls == ["pause", "close"]


def test_write_watermarks_reach_the_manager(conn):
    connection, _, manager, _ = conn
    connection.pause_writing()
    connection.resume_writing()
    assert manager.events == [("watermark", True), ("watermark", False)]


def test_connection_lost_reaches_the_manager_and_listener(conn):
    connection, _, manager, factory = conn
    connection.connection_lost(None)
    assert manager.events == [("lost",)]
    assert factory.closed == [connection]
    assert connection.eof_received() is False
