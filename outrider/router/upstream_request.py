"""One attempt to forward a request to one upstream host (Envoy's UpstreamRequest).

It waits for a pooled connection, writes the request head and body (buffering body bytes that
arrive before the connection is ready, bounded by the cluster's buffer limit), and relays the
response events to the router. Retries, later, create a new UpstreamRequest per attempt.
"""

from __future__ import annotations


class UpstreamRequest:
    __slots__ = (
        "router", "downstream", "cluster", "host", "pool", "client", "request_done", "buffer",
        "buffered_bytes", "response_started", "response_done", "start_time", "rtt", "success",
        "_holding_downstream", "_read_disabled",
    )

    def __init__(self, router, cluster, host, priority: int = 0) -> None:
        self.router = router
        self.downstream = router.stream.cm.connection
        self.cluster = cluster
        self.host = host
        self.pool = cluster.pool_for(host, priority)  # the route's (circuit breakers, pool)
        self.client = None
        self.request_done = False
        self.buffer: list[bytes] = []  # body bytes that came before the connection
        self.buffered_bytes = 0
        self.response_started = False
        self.response_done = False
        self.start_time = 0.0
        # For the load balancer's latency feedback: time to response headers, and whether the
        # attempt succeeded (a reset, timeout or 5xx does not).
        self.rtt: float | None = None
        self.success = False
        self._holding_downstream = False  # whether we hold the client's reading off
        # Downstream flow control: the client's socket may already be backed up by an earlier
        # response on the same connection; that state lives on the connection.
        self._read_disabled = self.downstream.write_blocked

    # -- driven by the router -------------------------------------------------------------------

    def start(self, end_stream: bool) -> None:
        self.request_done = end_stream
        self.start_time = self.router.config.loop.time()
        self.host.active_requests += 1
        self.cluster.on_request_start()
        self.pool.new_stream(self)

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self.request_done = True
        client = self.client
        if client is not None:
            client.codec.encode_data(data, end_stream)
            return
        if data:
            self.buffer.append(data)
            self.buffered_bytes += len(data)
            if self.buffered_bytes > self.cluster.buffer_limit:
                self._hold_downstream(True)

    def reset(self) -> None:
        """Abandon the attempt: the connection (if any) is closed, never reused."""
        self.success = False
        self._finish()
        client, self.client = self.client, None
        if client is not None:
            client.close()
        else:
            self.pool.cancel(self)

    def read_disable(self, disable: bool) -> None:
        """Downstream flow control: stop (or resume) reading the upstream response."""
        self._read_disabled = disable
        if self.client is not None:
            self.client.read_disable(disable)

    # -- from the pool --------------------------------------------------------------------------

    def on_pool_ready(self, client) -> None:
        self.client = client
        codec = client.codec
        buffered = self.buffer
        codec.encode_headers(self.router.request_headers, self.request_done and not buffered,
                             self)
        if buffered:
            self.buffer = []
            self.buffered_bytes = 0
            codec.encode_data(b"".join(buffered), self.request_done)
        self._hold_downstream(False)
        if self._read_disabled:
            client.read_disable(True)

    def on_pool_failure(self, reason: str, flag: str) -> None:
        self._finish()
        self.router.on_upstream_reset(reason, flag)

    # -- the response (headers and data from the codec, the end from the connection) ----------

    def on_response_headers(self, headers, keep_alive: bool, framing: str) -> None:
        self.response_started = True
        end_stream = framing == "none"
        self.rtt = rtt = self.router.config.loop.time() - self.start_time
        self.success = headers.status < 500
        service_ms = int(rtt * 1000)
        if end_stream:
            self._finish()
        self.router.on_upstream_headers(headers, end_stream, service_ms)

    def on_response_data(self, data: bytes) -> None:
        self.router.on_upstream_data(data, False)

    def on_response_complete(self, data: bytes) -> None:
        """The response ended; ``data`` is its last body bytes (maybe none)."""
        if self.response_done:
            return  # headers-only response, already finished
        self._finish()
        self.router.on_upstream_data(data, True)

    def on_upstream_write_watermark(self, high: bool) -> None:
        """The upstream socket is backed up: stop reading the client (or resume)."""
        self._hold_downstream(high)

    def _hold_downstream(self, hold: bool) -> None:
        if hold != self._holding_downstream:
            self._holding_downstream = hold
            self.downstream.read_disable(hold)

    def on_reset(self, reason: str) -> None:
        """The connection died, spoke garbage, or our own code failed on its response."""
        self.success = False
        self._finish()
        self.client = None
        if reason == "protocol error":
            self.router.on_upstream_reset(reason, "UPE", 502)
        elif reason == "internal error":
            self.router.stream.fail_internal()
        else:
            self.router.on_upstream_reset(reason, "UC")

    def _finish(self) -> None:
        if self._holding_downstream:
            self._hold_downstream(False)
        if not self.response_done:
            self.response_done = True
            self.host.active_requests -= 1
            rtt = self.rtt
            if rtt is None:  # failed before any response: charge the time spent
                rtt = self.router.config.loop.time() - self.start_time
            self.cluster.on_request_end(self.host, rtt, self.success)
