"""Test doubles shared by the unit tests: a timer handle, a manual loop, and the upstream
request's counterparts (a recording request, and a recording router for the real one)."""

from __future__ import annotations

from types import SimpleNamespace


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


class RecordingDownstream:
    """The client connection behind a RecordingRouter: records the upstream request's flow
    control (``read_disable``); ``write_blocked`` is what the request starts from."""

    def __init__(self, write_blocked: bool = False) -> None:
        self.write_blocked = write_blocked
        self.read_disabled: list[bool] = []

    def read_disable(self, disable: bool) -> None:
        self.read_disabled.append(disable)


class RecordingRouter:
    """Stands in for the RouterFilter of one stream around a real ``UpstreamRequest``
    (``UpstreamRequest(router, cluster, host)``): it holds the request headers, the loop and the
    downstream, and records what the upstream request reports, as the router receives it:
    ``("headers", status, end_stream)``, ``("data", bytes, end_stream)``,
    ``("reset", reason, flag, status)``, ``("internal error",)``."""

    def __init__(self, loop, request_headers, downstream: RecordingDownstream | None = None,
                 ) -> None:
        self.request_headers = request_headers
        self.config = SimpleNamespace(loop=loop)
        self.downstream = downstream or RecordingDownstream()
        self.stream = SimpleNamespace(cm=SimpleNamespace(connection=self.downstream),
                                      fail_internal=self._fail_internal)
        self.events: list[tuple] = []

    def on_upstream_headers(self, headers, end_stream: bool, service_time_ms: int) -> None:
        self.events.append(("headers", headers.status, end_stream))

    def on_upstream_data(self, data: bytes, end_stream: bool) -> None:
        self.events.append(("data", bytes(data), end_stream))

    def on_upstream_reset(self, reason: str, flag: str, status: int = 503) -> None:
        self.events.append(("reset", reason, flag, status))

    def _fail_internal(self) -> None:
        self.events.append(("internal error",))
