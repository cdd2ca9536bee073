"""The upstream side of the I/O shell: one asyncio Protocol per upstream HTTP/1 connection.

It owns a ``ClientCodec`` and serves one request at a time (HTTP/1 upstreams are not pipelined,
as in Envoy). When a response completes on a reusable connection it goes back to its pool.
"""

from __future__ import annotations

import asyncio
import logging

import httptools

from outrider.codec.http1 import ClientCodec
from outrider.net.flush import CoalescingWriter, flush_scheduler

log = logging.getLogger("outrider.net")


class UpstreamConnection(CoalescingWriter, asyncio.Protocol):
    __slots__ = (
        "pool", "transport", "codec", "request", "requests_served", "keep_alive", "framing",
        "closed", "idle_since", "_read_disabled", "_release_pending", "_out", "_out_bytes",
        "_flusher",
    )

    def __init__(self, pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.codec = ClientCodec(self)
        self.request = None
        self.requests_served = 0
        self.keep_alive = True
        self.framing = "none"
        self.closed = False
        self.idle_since = 0.0
        self._release_pending = False
        self._read_disabled = False
        self._out: list[bytes] | None = None  # writes of this loop iteration (CoalescingWriter)
        self._out_bytes = 0
        self._flusher = flush_scheduler(pool.loop)

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        limit = self.pool.buffer_limit
        transport.set_write_buffer_limits(high=limit, low=limit // 2)

    def data_received(self, data: bytes) -> None:
        request = self.request
        if request is None:
            # Bytes nobody asked for on an idle connection (a late 408, garbage): its framing
            # can no longer be trusted, so it must not serve another request.
            self.close()
            return
        try:
            self.codec.feed(data)
        except httptools.HttpParserError:
            self._fail("protocol error")
        except Exception:  # a bug must cost one connection, not the worker's consistency
            log.exception("internal error on upstream connection to %s", self.pool.host)
            self._fail("internal error")
        if self._release_pending:
            self._release_pending = False
            if self.codec.in_message or self.closed:
                self.close()  # the upstream sent more than the response: framing is broken
            else:
                self.pool.release(self)

    def eof_received(self):
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc) -> None:
        self.closed = True
        request = self.request
        if request is not None:
            self.request = None
            if self.framing == "close" and request.response_started:
                # A body delimited by the connection's close is now complete.
                request.on_response_complete()
            else:
                request.on_reset("connection termination")
        self.pool.on_client_closed(self)

    def pause_writing(self) -> None:
        if self.request is not None:
            self.request.on_upstream_write_watermark(True)

    def resume_writing(self) -> None:
        if self.request is not None:
            self.request.on_upstream_write_watermark(False)

    # -- used by the pool and the upstream request ---------------------------------------------

    def assign(self, request) -> None:
        self.request = request
        if self.codec.needs_reset:
            self.codec = ClientCodec(self)
        self.requests_served += 1
        request.on_pool_ready(self)

    def read_disable(self, disable: bool) -> None:
        if self._read_disabled != disable and not self.closed:
            self._read_disabled = disable
            if disable:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.request = None
            self.discard_output()  # the request is abandoned; nothing more goes upstream
            self.transport.abort()
            self.pool.on_client_closed(self)  # out of the pool now, not when the loop reports it

    # -- ClientCodec callbacks -----------------------------------------------------------------

    def on_response_headers(self, headers, keep_alive: bool, framing: str) -> None:
        self.keep_alive = keep_alive
        self.framing = framing
        if self.request is not None:
            self.request.on_response_headers(headers, keep_alive, framing)

    def on_response_data(self, data: bytes) -> None:
        if self.request is not None:
            self.request.on_response_data(data)

    def on_response_complete(self) -> None:
        request, self.request = self.request, None
        if request is None:
            return
        reusable = self.keep_alive and request.can_reuse_connection()
        request.on_response_complete()
        if self._read_disabled:
            self.read_disable(False)
        if reusable and not self.closed:
            # Released once the current read is fully parsed (data_received), so bytes after
            # the response's end are seen before the connection can carry another request.
            self._release_pending = True
        else:
            self.close()

    def _fail(self, reason: str) -> None:
        request, self.request = self.request, None
        self.close()
        if request is not None:
            request.on_reset(reason)
