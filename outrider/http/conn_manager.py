"""The HTTP connection manager: one per downstream connection, one ``ActiveStream`` per request.

The HTTP/1 codec asks it for a stream at each request's first byte (``new_stream``) and then
delivers the request to that stream. It talks to the transport only through ``connection``
(``write``, ``close``, ``read_disable``, ``write_blocked``, ``remote_ip``, ``remote_address``)
and to time only through ``loop.call_later``. A stream exists from its request's first byte.
HTTP/1 answers in order: a pipelined request waits, its events buffered and the socket
read-disabled, until the stream ahead of it has finished; the next one starts from the event
loop, never from inside the previous one's completion, and at most ``MAX_PIPELINED`` wait:
past that the connection answers those and closes, as the client must then retry the rest.

The filter chain today is the router alone (the last filter, as in Envoy); the Python filter
API slots in between ``ActiveStream.start`` and the router.
"""

from __future__ import annotations

import logging
from collections import deque

from outrider.codec.http1 import CodecError, ResponseEncoder, ServerCodec
from outrider.http.active_stream import ActiveStream
from outrider.stats.store import StatsStruct

log = logging.getLogger("outrider.http")

# Requests a client may queue on one connection behind the one being answered.
MAX_PIPELINED = 64


class _StopParsing(Exception):
    """Raised from a codec callback to stop parsing the rest of a read (pipeline full)."""


class HttpStats(StatsStruct):
    """``http.<stat_prefix>.*``, Envoy's names."""

    COUNTERS = (
        "downstream_cx_total", "downstream_cx_protocol_error", "downstream_cx_idle_timeout",
        "downstream_rq_total", "downstream_rq_http1_total", "downstream_rq_1xx",
        "downstream_rq_2xx", "downstream_rq_3xx", "downstream_rq_4xx", "downstream_rq_5xx",
        "downstream_rq_timeout", "downstream_rq_idle_timeout", "downstream_rq_header_timeout",
        "no_route", "no_cluster", "rq_redirect", "rq_direct_response",
        "downstream_rq_failed_path_normalization", "downstream_rq_redirected_with_normalized_path",
        # Outrider's own: requests answered 500 (or reset) because the proxy's code raised.
        "downstream_rq_internal_error",
    )
    GAUGES = ("downstream_cx_active", "downstream_rq_active")

    # Per-request bookkeeping (ActiveStream) touches the counters' values directly: a method
    # call per counter would be most of the cost of counting.

    def count_response(self, status: int) -> None:
        self._by_class[status // 100 if 100 <= status < 600 else 1].value += 1

    def __init__(self, scope) -> None:
        super().__init__(scope)
        self._by_class = (self.downstream_rq_1xx, self.downstream_rq_1xx, self.downstream_rq_2xx,
                          self.downstream_rq_3xx, self.downstream_rq_4xx, self.downstream_rq_5xx)


class ConnectionManager:
    """Codec callbacks for one downstream HTTP/1 connection."""

    def __init__(self, listener, connection, loop) -> None:
        # global: the listener's config when the connection opened; a reload may replace it,
        # and the connection takes the new one at its next request (``new_stream``)
        self.listener = listener
        config = self.config = listener.hcm_config
        self.router_factory = listener.router_factory
        stats = self.stats = listener.http_stats
        self.drain = listener.drain  # says when a response should close the connection
        self.connection = connection
        self.loop = loop
        # The connection's own gauge is counted down where it was counted up, whatever the
        # config says by then.
        self._cx_stats = stats
        # Per-request debug lines, decided once per connection: a disabled level costs the
        # hot path one attribute test, not a logging call.
        self.debug = log.isEnabledFor(logging.DEBUG)
        # per connection
        self.codec = ServerCodec(self, connection, config.max_request_headers_kb,
                                 config.max_headers_count, config.allow_absolute_url,
                                 config.accept_http_10)
        self.streams: deque[ActiveStream] = deque()  # head is the one being answered
        self.closed = False
        # Nothing more is parsed: after malformed input, an internal error, or a full pipeline.
        self._input_closed = False
        self._pipeline_paused = False
        self._idle_timer = None
        self._idle_since = 0.0
        self._deadline_timer = None
        self._deadline_at = 0.0
        stats.downstream_cx_total.inc()
        stats.downstream_cx_active.inc()
        self._arm_idle_timer()

    # -- transport events (called by net.downstream) -------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self._input_closed or self.closed:
            return
        try:
            self.codec.feed(data)
        except CodecError as error:
            self._on_codec_error(error)
        except _StopParsing:
            pass  # the pipeline is full: what was parsed is answered, then the connection closes
        except Exception:  # noqa: BLE001 - the proxy's own bug, logged by fail_internal
            stream = self.codec.decoder or (self.streams[0] if self.streams else None)
            if stream is None:
                log.exception("internal error on connection %s", self.connection.remote_address)
                self.close(abort=True)
            else:
                stream.fail_internal()

    def on_connection_lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cx_stats.downstream_cx_active.dec()
        self._cancel_timers()
        self.codec.abandon()  # this may run inside a codec callback: the rest of the read is not
        for stream in self.streams:
            stream.on_downstream_reset()
        self.streams.clear()

    def on_write_watermark(self, high: bool) -> None:
        """The downstream socket's send buffer crossed its high (or back under its low) mark.

        The state itself stays on the connection (``connection.write_blocked``), where an
        upstream request that starts later reads it."""
        if self.streams:
            self.streams[0].on_downstream_watermark(high)

    def stop_reading(self) -> None:
        """Parse nothing more from this connection (the streams already read are answered)."""
        if not self._input_closed:
            self._input_closed = True
            self.connection.read_disable(True)

    # -- codec callbacks ------------------------------------------------------------------------

    def new_stream(self, encoder) -> ActiveStream:
        """A request's first byte: its stream, which decodes the rest of it (the codec calls
        the stream directly from here on)."""
        streams = self.streams
        if self.closed or (streams and len(streams) > MAX_PIPELINED):
            # A reply earlier in this read closed the connection, or the pipeline is full:
            # nothing after this point is read.
            self.stop_reading()
            raise _StopParsing
        if not streams:
            if self.config is not self.listener.hcm_config:
                self._take_current_config()
            stream = ActiveStream(self, encoder)
            streams.append(stream)
            stream.activate()
            return stream
        stream = ActiveStream(self, encoder)
        streams.append(stream)  # pipelined: it waits for the ones ahead of it
        if not self._pipeline_paused:
            self._pipeline_paused = True
            self.connection.read_disable(True)
        return stream

    def _take_current_config(self) -> None:
        """A reload replaced the listener's config: the requests not started yet use it (a
        request in flight finishes on the one it started on; the connection's codec limits
        and idle timeout stay those it opened with). As Envoy's HTTP/1 codec, which reads a
        pipelined request only once the one before it is done, routes it on the config of
        that moment."""
        listener = self.listener
        old_stats = self.stats
        self.config = listener.hcm_config
        self.router_factory = listener.router_factory
        self.stats = listener.http_stats
        if self.streams and self.stats is not old_stats:
            # Queued requests were counted active when their first byte came: move them.
            queued = len(self.streams)
            old_stats.downstream_rq_active.value -= queued
            self.stats.downstream_rq_active.value += queued

    # -- stream lifecycle -------------------------------------------------------------------------

    def on_stream_done(self, stream: ActiveStream) -> None:
        """Called once the stream's response has been written completely."""
        streams = self.streams
        streams.popleft()
        if stream.close_connection or (self._input_closed and not streams):
            self.close()
            return
        if streams:
            # From the loop, not from here: a stream answered at once (a local reply) would
            # otherwise start the next inside this call, one stack frame per queued request.
            self.loop.call_soon(self._activate_head)
        else:
            self._idle_since = self.loop.time()
        if len(streams) <= 1 and self._pipeline_paused:
            self._pipeline_paused = False
            self.connection.read_disable(False)

    def _activate_head(self) -> None:
        if not self.closed and self.streams:
            if self.config is not self.listener.hcm_config:
                self._take_current_config()
            self.streams[0].activate()

    def close(self, abort: bool = False) -> None:
        """Close the connection: after the pending writes, or at once to signal a reset."""
        if not self.closed:
            self.connection.close(abort)
            self.on_connection_lost()

    # -- errors and timers ------------------------------------------------------------------------

    def _on_codec_error(self, error: CodecError) -> None:
        """Malformed input: answer it in turn (after any response still owed), then close."""
        self.stats.downstream_cx_protocol_error.inc()
        if self.closed:
            return  # a reply earlier in this read closed the connection: nobody to answer
        self.stop_reading()  # nothing after this point in the byte stream can be trusted
        stream = self.codec.decoder
        if stream is None:
            # The error is before any message began (cannot happen with llhttp, which begins a
            # message at its first byte, but a stream must own the answer).
            stream = ActiveStream(self, ResponseEncoder(self.connection))
            self.streams.append(stream)
        if stream.response_started:
            self.close(abort=True)  # mid-response: a reset is the only signal left
            return
        stream.fail_local(error.status, error.body, error.details, "DPE")

    def _arm_idle_timer(self) -> None:
        # One timer for the connection's life; it re-arms itself for whatever remains, so
        # requests never pay for a timer (Envoy's idle_timeout: no active stream for so long).
        timeout = self.config.idle_timeout
        if timeout:
            self._idle_since = self.loop.time()
            self._idle_timer = self.loop.call_later(timeout, self._check_idle, timeout)

    def _check_idle(self, timeout: float) -> None:
        self._idle_timer = None
        if self.closed:
            return
        remaining = timeout if self.streams else self._idle_since + timeout - self.loop.time()
        if remaining > 0:
            self._idle_timer = self.loop.call_later(remaining, self._check_idle, timeout)
            return
        self.stats.downstream_cx_idle_timeout.inc()
        self.close()

    def schedule_deadline(self, when: float) -> None:
        """Make sure the deadline timer fires by ``when``.

        One timer serves every stream timeout of the connection (headers, request, stream
        idle, route timeout). It is moved only when a deadline earlier than the armed one
        appears; when it fires it checks the stream being answered and re-arms for the next
        deadline. So a request normally arms and cancels no timer at all.
        """
        timer = self._deadline_timer
        if timer is None or when < self._deadline_at:
            if timer is not None:
                timer.cancel()
            self._deadline_at = when
            self._deadline_timer = self.loop.call_at(when, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        if self.closed or not self.streams:
            return
        # Only the stream being answered runs timers: the ones queued behind it wait their turn.
        self.streams[0].check_deadlines(self.loop.time())
        if not self.closed and self.streams:
            upcoming = self.streams[0].next_deadline()
            if upcoming is not None:
                self.schedule_deadline(upcoming)

    def _cancel_timers(self) -> None:
        for timer in (self._idle_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._deadline_timer = None
