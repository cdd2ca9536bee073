"""Writes coalesced per loop iteration (``outrider.net.flush``): one scheduled flush per
iteration for all connections, one send per connection, large writes at once."""

from __future__ import annotations

import gc
import weakref

from net_fakes import RecordingTransport

from outrider.net import flush as flush_module
from outrider.net.flush import FLUSH_NOW_BYTES, CoalescingWriter, flush_scheduler
from tests.support.fakes import ManualLoop


class Writer(CoalescingWriter):
    __slots__ = ("transport", "closed", "_out", "_out_bytes", "_flusher")

    def __init__(self, loop) -> None:
        self.transport = RecordingTransport()
        self.closed = False
        self._out = None
        self._out_bytes = 0
        self._flusher = flush_scheduler(loop)


def test_one_scheduler_per_loop():
    first, second = ManualLoop(), ManualLoop()
    assert flush_scheduler(first) is flush_scheduler(first)
    assert flush_scheduler(first) is not flush_scheduler(second)


def test_every_connection_of_the_iteration_is_flushed_by_one_callback():
    loop = ManualLoop()
    a, b = Writer(loop), Writer(loop)
    a.write(b"a1")
    b.write(b"b1")
    a.write(b"a2")
    assert len(loop.ready) == 1
    assert (a.transport.writes, b.transport.writes) == ([], [])
    loop.run_ready()
    assert (a.transport.writes, b.transport.writes) == ([b"a1a2"], [b"b1"])


def test_a_connection_flushed_early_is_not_sent_twice():
    loop = ManualLoop()
    writer = Writer(loop)
    writer.write(b"small")
    writer.write(b"x" * FLUSH_NOW_BYTES)
    writer.write(b"after")  # a new batch, in the same iteration
    loop.run_ready()
    assert writer.transport.writes == [b"small" + b"x" * FLUSH_NOW_BYTES, b"after"]


def test_a_single_large_write_goes_out_at_once_without_scheduling():
    loop = ManualLoop()
    writer = Writer(loop)
    writer.write(b"x" * FLUSH_NOW_BYTES)
    assert writer.transport.writes == [b"x" * FLUSH_NOW_BYTES]
    assert loop.ready == []


def test_nothing_goes_out_for_a_connection_closed_before_the_flush():
    loop = ManualLoop()
    writer = Writer(loop)
    writer.write(b"lost")
    writer.closed = True
    writer.write(b"later")
    loop.run_ready()
    assert writer.transport.writes == []


class BrokenTransport(RecordingTransport):
    def write(self, data: bytes) -> None:
        raise RuntimeError("handle is closed")


def test_a_failing_send_aborts_that_connection_and_the_others_still_go_out(caplog):
    loop = ManualLoop()
    broken, healthy = Writer(loop), Writer(loop)
    broken.transport = BrokenTransport()
    broken.write(b"lost")
    healthy.write(b"b1")
    loop.run_ready()
    assert broken.transport.calls == ["abort"]
    assert healthy.transport.writes == [b"b1"]
    healthy.write(b"b2")  # and its next writes are scheduled as usual
    loop.run_ready()
    assert healthy.transport.writes == [b"b1", b"b2"]
    assert "write failed" in caplog.text


def test_the_scheduler_does_not_keep_its_loop_alive():
    loop = ManualLoop()
    Writer(loop).write(b"x")
    loop.run_ready()
    assert loop in flush_module._schedulers
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
