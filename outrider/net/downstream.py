"""The downstream side of the I/O shell: one asyncio Protocol per client connection.

It feeds bytes to the connection manager and gives it ``write`` (coalesced per loop
iteration, ``net.flush``), ``close`` and a counted ``read_disable`` (pipelining and flow control
may both hold reading off, as Envoy's readDisable counts). The send buffer's watermarks are the
listener's ``per_connection_buffer_limit_bytes``: above the high mark the upstream read pauses.
"""

from __future__ import annotations

import asyncio
import logging

from outrider.http.conn_manager import ConnectionManager
from outrider.net.flush import CoalescingWriter, flush_scheduler
from outrider.net.ids import next_connection_id

log = logging.getLogger("outrider.net")


class DownstreamConnection(CoalescingWriter, asyncio.Protocol):
    __slots__ = ("id", "factory", "transport", "manager", "remote_ip", "remote_address",
                 "local_address", "closed", "write_blocked", "_read_disabled", "_out",
                 "_out_bytes", "_flusher")

    def __init__(self, factory) -> None:
        self.id = next_connection_id()  # for log lines
        self.factory = factory  # ListenerFactory: current config, stats, drain, loop
        self.transport = None
        self.manager: ConnectionManager | None = None
        self.remote_ip = ""
        self.remote_address = ""
        self.local_address = ""
        self.closed = False
        # Above the send buffer's high mark (until back under the low one). Kept here, not on
        # a stream: a response that starts later on this connection must see it too.
        self.write_blocked = False
        self._read_disabled = 0
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        self._flusher = flush_scheduler(factory.loop)

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.remote_ip = peer[0]
        self.remote_address = f"{peer[0]}:{peer[1]}"
        local = transport.get_extra_info("sockname") or ("", 0)
        self.local_address = f"{local[0]}:{local[1]}"
        factory = self.factory
        limit = factory.buffer_limit
        transport.set_write_buffer_limits(high=limit, low=limit // 2)
        factory.on_connection_open(self)
        self.manager = ConnectionManager(factory, self, factory.loop)

    def data_received(self, data: bytes) -> None:
        try:
            self.manager.on_data(data)
        except Exception:  # a bug must cost one connection, not the worker's consistency
            log.exception("internal error on downstream connection %s", self.remote_address)
            self.manager.close(abort=True)

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.factory.on_connection_close(self)
        if self.manager is not None:
            self.manager.on_connection_lost()

    def pause_writing(self) -> None:
        self.write_blocked = True
        self.manager.on_write_watermark(True)

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.manager.on_write_watermark(False)

    # -- for the connection manager (``write`` and ``flush``: CoalescingWriter) ----------------

    def close(self, abort: bool = False) -> None:
        """Close after sending what is written, or at once (``abort``) to signal a reset; either
        way what was written before goes out first, as it would have without coalescing."""
        if not self.closed:
            self.flush()
            self.closed = True
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def read_disable(self, disable: bool) -> None:
        if disable:
            self._read_disabled += 1
            if self._read_disabled == 1 and not self.closed:
                self.transport.pause_reading()
        elif self._read_disabled > 0:
            self._read_disabled -= 1
            if self._read_disabled == 0 and not self.closed:
                self.transport.resume_reading()
