"""Test doubles shared by the unit tests: a timer handle and a recording upstream request."""

from __future__ import annotations


class FakeTimer:
    """What ``call_later``/``call_at`` return on a fake loop: fires only when the test says."""

    __slots__ = ("when", "callback", "args", "cancelled", "fired")

    def __init__(self, when: float, callback, args) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """The parts of an event loop the proxy uses, run by the test: a clock that moves only in
    ``advance``, timers (``call_later``/``call_at``) and a ready queue (``call_soon``) whose
    callbacks run when the test ends the loop iteration (``run_ready``; ``advance`` does too)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []
        self.ready: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback, *args) -> FakeTimer:
        return self.call_at(self.now + delay, callback, *args)

    def call_at(self, when: float, callback, *args) -> FakeTimer:
        timer = FakeTimer(when, callback, args)
        self.timers.append(timer)
        return timer

    def call_soon(self, callback, *args) -> FakeTimer:
        handle = FakeTimer(self.now, callback, args)
        self.ready.append(handle)
        return handle

    def run_ready(self) -> None:
        while self.ready:
            handle = self.ready.pop(0)
            if not handle.cancelled:
                handle.callback(*handle.args)

    def pending(self) -> list[FakeTimer]:
        """Timers armed and not yet fired or cancelled, soonest first."""
        return sorted((t for t in self.timers if not t.cancelled and not t.fired),
                      key=lambda t: t.when)

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing due timers in deadline order at their own times."""
        target = self.now + seconds
        self.run_ready()
        while True:
            due = [t for t in self.pending() if t.when <= target]
            if not due:
                break
            timer = due[0]
            self.now = max(self.now, timer.when)
            timer.fired = True
            timer.callback(*timer.args)
            self.run_ready()
        self.now = target


class RecordingUpstreamRequest:
    """Stands in for an UpstreamRequest on an upstream connection: records what it is told."""

    def __init__(self, reusable: bool = True, downstream=None) -> None:
        self.reusable = reusable
        self.downstream = downstream
        self.events: list[tuple] = []
        self.response_started = False

    def on_response_headers(self, headers, keep_alive: bool, framing: str) -> None:
        self.response_started = True
        self.events.append(("headers", headers.status, keep_alive, framing))

    def on_response_data(self, data: bytes) -> None:
        self.events.append(("data", data))

    def on_response_complete(self) -> None:
        self.events.append(("complete",))

    def on_reset(self, reason: str) -> None:
        self.events.append(("reset", reason))

    def on_upstream_write_watermark(self, high: bool) -> None:
        self.events.append(("watermark", high))

    def can_reuse_connection(self) -> bool:
        return self.reusable
