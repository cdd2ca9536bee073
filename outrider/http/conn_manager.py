"""The HTTP connection manager: one per downstream connection, one ``ActiveStream`` per request.

Driven by the HTTP/1 codec's callbacks; talks to the transport only through ``connection``
(``write``, ``close``, ``read_disable``, ``remote_ip``, ``remote_address``) and to time only
through ``loop.call_later``. HTTP/1 answers in order: a pipelined request waits, its events
buffered and the socket read-disabled, until the stream ahead of it has finished.

The filter chain today is the router alone (the last filter, as in Envoy); the Python filter
API slots in between ``ActiveStream.start`` and the router.
"""

from __future__ import annotations

from collections import deque

from outrider.codec.http1 import CodecError, ServerCodec
from outrider.http import local_reply
from outrider.http.active_stream import ActiveStream
from outrider.http.conn_manager_config import ConnectionManagerConfig
from outrider.http.headers import RequestHeaders
from outrider.stats.store import StatsStruct


class HttpStats(StatsStruct):
    """``http.<stat_prefix>.*``, Envoy's names."""

    COUNTERS = (
        "downstream_cx_total", "downstream_cx_protocol_error", "downstream_cx_idle_timeout",
        "downstream_rq_total", "downstream_rq_http1_total", "downstream_rq_1xx",
        "downstream_rq_2xx", "downstream_rq_3xx", "downstream_rq_4xx", "downstream_rq_5xx",
        "downstream_rq_timeout", "downstream_rq_idle_timeout", "downstream_rq_header_timeout",
        "no_route", "no_cluster", "rq_redirect", "rq_direct_response",
    )
    GAUGES = ("downstream_cx_active", "downstream_rq_active")

    # Per-request bookkeeping touches the counters' values directly: a method call per
    # counter would be most of the cost of counting.

    def on_request_start(self) -> None:
        self.downstream_rq_total.value += 1
        self.downstream_rq_http1_total.value += 1
        self.downstream_rq_active.value += 1

    def count_response(self, status: int) -> None:
        self._by_class[status // 100 if 100 <= status < 600 else 1].value += 1

    def __init__(self, scope) -> None:
        super().__init__(scope)
        self._by_class = (self.downstream_rq_1xx, self.downstream_rq_1xx, self.downstream_rq_2xx,
                          self.downstream_rq_3xx, self.downstream_rq_4xx, self.downstream_rq_5xx)


class ConnectionManager:
    """Codec callbacks for one downstream HTTP/1 connection."""

    def __init__(self, config: ConnectionManagerConfig, router_factory, connection, loop,
                 stats: HttpStats) -> None:
        # global
        self.config = config
        self.router_factory = router_factory
        self.connection = connection
        self.loop = loop
        self.stats = stats
        # per connection
        self.codec = ServerCodec(self, config.max_request_headers_kb, config.max_headers_count,
                                 config.allow_absolute_url)
        self.streams: deque[ActiveStream] = deque()  # head is the one being answered
        self.decoding: ActiveStream | None = None  # the one whose request is being read
        self.closed = False
        self.draining = False  # answers get connection: close (set by drain, a later release)
        self._codec_failed = False
        self._pipeline_paused = False
        self._idle_timer = None
        self._idle_since = 0.0
        self._headers_timer = None
        self._deadline_timer = None
        self._deadline_at = 0.0
        stats.downstream_cx_total.inc()
        stats.downstream_cx_active.inc()
        self._arm_idle_timer()

    # -- transport events (called by net.downstream) -------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self._codec_failed or self.closed:
            return
        if self._headers_timer is None and self.decoding is None and self.config.request_headers_timeout:
            self._headers_timer = self.loop.call_later(
                self.config.request_headers_timeout, self._on_headers_timeout)
        try:
            self.codec.feed(data)
        except CodecError as error:
            self._on_codec_error(error)

    def on_connection_lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stats.downstream_cx_active.dec()
        self._cancel_timers()
        for stream in self.streams:
            stream.on_downstream_reset()
        self.streams.clear()
        self.decoding = None

    def on_write_watermark(self, high: bool) -> None:
        """The downstream socket's send buffer crossed its high (or back under its low) mark."""
        if self.streams:
            self.streams[0].on_downstream_watermark(high)

    # -- codec callbacks ------------------------------------------------------------------------

    def on_request_headers(self, headers: RequestHeaders, version: str, keep_alive: bool,
                           framing: str) -> None:
        if self.closed:
            return  # a reply earlier in this read closed the connection; the rest is moot
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None
        stream = ActiveStream(self, headers, version, keep_alive, framing)
        codec = self.codec
        stream.upgrade = codec.upgrade
        stream.expect_continue = codec.expect_continue
        self.decoding = stream
        self.streams.append(stream)
        if len(self.streams) == 1:
            stream.start()
        elif not self._pipeline_paused:
            self._pipeline_paused = True
            self.connection.read_disable(True)

    def on_request_data(self, data: bytes) -> None:
        if self.decoding is not None:
            self.decoding.on_request_data(data)

    def on_request_complete(self) -> None:
        stream = self.decoding
        if stream is None:
            return  # the connection closed while this request was being read
        stream.on_request_complete()
        if stream.response_complete:
            self.decoding = None

    # -- stream lifecycle -------------------------------------------------------------------------

    def on_stream_done(self, stream: ActiveStream) -> None:
        """Called once the stream's response has been written completely."""
        self.streams.popleft()
        if self.decoding is stream and stream.request_complete:
            self.decoding = None
        if stream.close_connection:
            self.close()
            return
        if self.streams:
            self.streams[0].start()
        if len(self.streams) <= 1 and self._pipeline_paused:
            self._pipeline_paused = False
            self.connection.read_disable(False)
        if not self.streams:
            self._idle_since = self.loop.time()

    def close(self, abort: bool = False) -> None:
        """Close the connection: after the pending writes, or at once to signal a reset."""
        if not self.closed:
            self.connection.close(abort)
            self.on_connection_lost()

    # -- errors and timers ------------------------------------------------------------------------

    def _on_codec_error(self, error: CodecError) -> None:
        """Malformed input: answer it in turn (after any response still owed), then close."""
        self.stats.downstream_cx_protocol_error.inc()
        self._codec_failed = True  # nothing after this point in the byte stream can be trusted
        stream = self.decoding
        if stream is None or stream.request_complete:
            # The error is in a new message (a bad request line or headers): a bare stream.
            stream = ActiveStream(self, RequestHeaders(), "1.1", False, "none")
            self.streams.append(stream)
        if stream.response_started:
            self.close(abort=True)  # mid-response: a reset is the only signal left
            return
        stream.codec_error = error
        if stream is self.streams[0]:
            stream.answer_codec_error()

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
        busy = self.streams or self.decoding or self.codec.in_message
        remaining = timeout if busy else self._idle_since + timeout - self.loop.time()
        if remaining > 0:
            self._idle_timer = self.loop.call_later(remaining, self._check_idle, timeout)
            return
        self.stats.downstream_cx_idle_timeout.inc()
        self.close()

    def schedule_deadline(self, when: float) -> None:
        """Make sure the deadline timer fires by ``when``.

        One timer serves every stream timeout of the connection (stream idle, route timeout).
        It is moved only when a deadline earlier than the armed one appears; when it fires it
        checks the streams and re-arms for the next deadline. So a request normally arms and
        cancels no timer at all.
        """
        timer = self._deadline_timer
        if timer is None or when < self._deadline_at:
            if timer is not None:
                timer.cancel()
            self._deadline_at = when
            self._deadline_timer = self.loop.call_at(when, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        now = self.loop.time()
        for stream in list(self.streams):
            if self.closed:
                return
            stream.check_deadlines(now)
        upcoming = [d for d in (s.next_deadline() for s in self.streams) if d is not None]
        if upcoming and not self.closed:
            self.schedule_deadline(min(upcoming))

    def _on_headers_timeout(self) -> None:
        self._headers_timer = None
        self.stats.downstream_rq_header_timeout.inc()
        if self.streams:
            self.close()
            return
        stream = ActiveStream(self, RequestHeaders(), "1.1", False, "none")
        self.streams.append(stream)
        stream.send_local_reply(408, local_reply.REQUEST_HEADER_TIMEOUT, "request_header_timeout",
                                close=True)

    def _cancel_timers(self) -> None:
        for timer in (self._idle_timer, self._headers_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._headers_timer = self._deadline_timer = None


