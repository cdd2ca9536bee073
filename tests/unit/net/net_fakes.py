"""Fakes for the I/O shell tests: a recording transport and a stand-in connection manager.
Imported by name (``from net_fakes import ...``); unique across the test tree."""

from __future__ import annotations


class RecordingTransport:
    def __init__(self, peer=("198.51.100.9", 51000), sock=("192.0.2.1", 10000)) -> None:
        self.extra = {"peername": peer, "sockname": sock}
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.calls: list[str] = []
        self.limits = None

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.limits = (high, low)

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def writelines(self, chunks) -> None:
        assert not self.closed, "write after close"
        self.calls.append("writelines")
        self.writes.append(b"".join(chunks))

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closed = self.aborted = True

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


class FakeManager:
    """Stands in for the ConnectionManager: replays a script of writes for each read."""

    def __init__(self, connection, script=None) -> None:
        self.connection = connection
        self.script = script or (lambda data: None)
        self.events: list[tuple] = []

    def on_data(self, data: bytes) -> None:
        self.events.append(("data", data))
        self.script(data)

    def on_connection_lost(self) -> None:
        self.events.append(("lost",))

    def on_write_watermark(self, high: bool) -> None:
        self.events.append(("watermark", high))

    def close(self, abort: bool = False) -> None:
        self.events.append(("close", abort))
        self.connection.close(abort)
