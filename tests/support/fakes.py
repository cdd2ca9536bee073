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
