"""The downstream side of the I/O shell: one asyncio Protocol per client connection.

It feeds bytes to the connection manager and gives it ``write``, ``close`` and a counted
``read_disable`` (pipelining and flow control may both hold reading off, as Envoy's
readDisable counts). The send buffer's watermarks are the listener's
``per_connection_buffer_limit_bytes``: above the high mark the upstream read pauses.
"""

from __future__ import annotations

import asyncio
import logging

from outrider.http.conn_manager import ConnectionManager

log = logging.getLogger("outrider.net")


class DownstreamConnection(asyncio.Protocol):
    __slots__ = ("factory", "transport", "manager", "remote_ip", "remote_address",
                 "local_address", "closed",
                 "_read_disabled", "_corked")

    def __init__(self, factory) -> None:
        self.factory = factory  # ListenerFactory: config, router factory, stats, loop
        self.transport = None
        self.manager: ConnectionManager | None = None
        self.remote_ip = ""
        self.remote_address = ""
        self.local_address = ""
        self.closed = False
        self._read_disabled = 0
        self._corked: list[bytes] | None = None

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
        self.manager = ConnectionManager(factory.hcm_config, factory.router_factory, self,
                                         factory.loop, factory.http_stats)

    def data_received(self, data: bytes) -> None:
        # Pipelined requests answered locally in this read go out in one send.
        self._corked = []
        try:
            self.manager.on_data(data)
        except Exception:  # a bug must cost one connection, not the worker's consistency
            log.exception("internal error on downstream connection %s", self.remote_address)
            self.manager.close(abort=True)
        self.uncork()

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.factory.on_connection_close(self)
        if self.manager is not None:
            self.manager.on_connection_lost()

    def pause_writing(self) -> None:
        self.manager.on_write_watermark(True)

    def resume_writing(self) -> None:
        self.manager.on_write_watermark(False)

    # -- for the connection manager -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        elif not self.closed:
            self.transport.write(data)

    def cork(self) -> None:
        """Collect writes until ``uncork``: a response head and body parsed from one upstream
        read leave in one send (one syscall, one TCP segment)."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and not self.closed:
            self.transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def close(self, abort: bool = False) -> None:
        """Close after flushing what is buffered, or at once (``abort``) to signal a reset."""
        if not self.closed:
            if self._corked:
                self.uncork()
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
