"""The upstream side of the I/O shell: one asyncio Protocol per upstream HTTP/1 connection.

It owns a ``ClientCodec`` and serves one request at a time (HTTP/1 upstreams are not pipelined,
as in Envoy). Every byte goes through the codec, which refuses any it did not ask for. When a
response completes, the connection goes back to its pool only once the whole read is parsed and
only if the codec finds nothing against reuse (``ClientCodec.reuse_refusal``).
"""

from __future__ import annotations

import asyncio
import logging

from outrider.codec.framing import CLOSE
from outrider.codec.http1 import ClientCodec, CodecError
from outrider.net.flush import CoalescingWriter, flush_scheduler
from outrider.net.ids import next_connection_id

log = logging.getLogger("outrider.net")


class UpstreamConnection(CoalescingWriter, asyncio.Protocol):
    __slots__ = (
        "id", "pool", "transport", "codec", "request", "requests_served", "closed",
        "idle_since", "_read_disabled", "_release_pending", "_out", "_out_bytes", "_flusher",
    )

    def __init__(self, pool) -> None:
        self.id = next_connection_id()  # for log lines
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.codec = ClientCodec(self, pool.settings.max_response_headers_kb)
        self.request = None
        self.requests_served = 0
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
        try:
            self.codec.feed(data)
        except CodecError as error:
            # Garbage, an oversized head, or bytes nobody asked for (past a response's end, on
            # an idle connection): the framing is lost, so is the connection.
            self._release_pending = False
            self.reset(error.details)
            return
        except Exception:  # noqa: BLE001 - the proxy's own bug: costs this request, logged
            self._release_pending = False
            if self.request is None:
                log.exception("internal error on upstream connection to %s", self.pool.host)
            self.reset("internal error")  # the stream logs it with its traceback
            return
        if self._release_pending:
            self._release_pending = False
            if not self.closed:
                if self.codec.reuse_refusal() is None:
                    self.pool.release(self)
                else:
                    self.close()

    def eof_received(self):
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc) -> None:
        self.closed = True
        request = self._detach()
        if request is not None:
            if self.codec.framing == CLOSE and request.response_started:
                # A body delimited by the connection's close is now complete.
                request.on_response_complete(b"")
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
        self.pool.resources.requests.count += 1
        self.request = request
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
        """Close at once; the request (if any) is the one that asked, so it is not told."""
        if not self.closed:
            self.closed = True
            self._detach()
            self.discard_output()  # the request is abandoned; nothing more goes upstream
            self.transport.abort()
            self.pool.on_client_closed(self)  # out of the pool now, not when the loop reports it

    def reset(self, reason: str) -> None:
        """Close at once and tell the request in flight (if any) why."""
        request = self._detach()
        self.close()
        if request is not None:
            request.on_reset(reason)

    def _detach(self):
        """The request leaves the connection (done or abandoned): it no longer counts toward
        the cluster's ``max_requests``."""
        request, self.request = self.request, None
        if request is not None:
            self.codec.decoder = None  # what is left of its response is parsed, not delivered
            self.pool.resources.requests.count -= 1
        return request

    # -- ClientCodec callback (the response's headers and data go to the request itself) ------

    def on_response_complete(self, data: bytes) -> None:
        """The response ended (``data``: its last body bytes, maybe none)."""
        request = self.request
        if request is None:
            return
        self.request = None  # as _detach, inline: once per request
        self.codec.decoder = None
        self.pool.resources.requests.count -= 1
        # Released (or closed) once the current read is fully parsed (data_received), so
        # bytes past the response's end are seen before the connection can carry another.
        self._release_pending = True
        if self._read_disabled:
            self.read_disable(False)
        request.on_response_complete(data)
