"""HTTP/1 connection pool for one upstream host (per worker), as Envoy's pools work.

A stream asks ``new_stream``; it gets an idle connection at once (most recently used first,
so idle ones age out) or waits in the pending queue while a new connection is made. A freed
connection serves the oldest pending stream before it goes idle. Idle connections close after
the cluster's ``idle_timeout``; a connection closes after ``max_requests_per_connection``.
"""

from __future__ import annotations

import asyncio
from collections import deque

from outrider.net.upstream import UpstreamConnection


class Http1ConnPool:
    def __init__(self, host, settings, stats, loop) -> None:
        self.host = host
        self.settings = settings  # UpstreamSettings: connect_timeout, idle_timeout, ...
        self.buffer_limit = settings.buffer_limit
        self.stats = stats
        self.loop = loop
        self.idle: list[UpstreamConnection] = []
        self.pending: deque = deque()
        self.connecting = 0
        self.clients: set[UpstreamConnection] = set()
        self._idle_timer = None

    def new_stream(self, request) -> None:
        """Attach ``request`` to a connection now or when one is ready (``on_pool_ready``)."""
        idle = self.idle
        while idle:
            client = idle.pop()
            if not client.closed:
                client.assign(request)
                return
        self.pending.append(request)
        self.stats.upstream_rq_pending_total.inc()
        if self.connecting < len(self.pending):
            self._connect()

    def cancel(self, request) -> None:
        """The request no longer wants a connection (downstream reset, timeout)."""
        try:
            self.pending.remove(request)
        except ValueError:
            pass  # already attached or failed; nothing queued to withdraw

    def release(self, client: UpstreamConnection) -> None:
        """A connection finished a response and may serve again."""
        max_requests = self.settings.max_requests_per_connection
        if max_requests and client.requests_served >= max_requests:
            self.stats.upstream_cx_max_requests.inc()
            client.close()
            return
        if self.pending:
            client.assign(self.pending.popleft())
            return
        client.idle_since = self.loop.time()
        self.idle.append(client)
        if self._idle_timer is None and self.settings.idle_timeout:
            self._idle_timer = self.loop.call_later(self.settings.idle_timeout, self._sweep_idle)

    def on_client_closed(self, client: UpstreamConnection) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.stats.upstream_cx_active.dec()
            self.stats.upstream_cx_destroy.inc()
        try:
            self.idle.remove(client)
        except ValueError:
            pass  # it was busy, not idle

    def close_all(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for client in list(self.clients):
            client.close()

    # -- connecting -----------------------------------------------------------------------------

    def _connect(self) -> None:
        self.connecting += 1
        self.stats.upstream_cx_total.inc()
        client = UpstreamConnection(self)
        task = self.loop.create_task(self.loop.create_connection(
            lambda: client, self.host.address, self.host.port))
        timer = self.loop.call_later(self.settings.connect_timeout, task.cancel)
        task.add_done_callback(lambda t: self._on_connect_done(t, client, timer))

    def _on_connect_done(self, task: asyncio.Task, client: UpstreamConnection, timer) -> None:
        timer.cancel()
        self.connecting -= 1
        if task.cancelled() or task.exception() is not None:
            if task.cancelled():
                self.stats.upstream_cx_connect_timeout.inc()
                reason = "connection timeout"
            else:
                reason = "remote connection failure"
            self.stats.upstream_cx_connect_fail.inc()
            self._fail_pending(reason)
            return
        self.clients.add(client)
        self.stats.upstream_cx_active.inc()
        if self.pending:
            client.assign(self.pending.popleft())
        else:
            self.release(client)

    def _fail_pending(self, reason: str) -> None:
        # Streams beyond what the connections still in flight can serve fail now (Envoy purges
        # pending streams when a connection attempt fails).
        while len(self.pending) > self.connecting:
            self.pending.popleft().on_pool_failure(reason, "UF")

    def _sweep_idle(self) -> None:
        """Close connections idle for ``idle_timeout``; re-arm for the next one to expire.

        One timer per pool instead of one per idle period: a connection going idle and busy
        again on every request then costs no timer at all.
        """
        self._idle_timer = None
        timeout = self.settings.idle_timeout
        expiry = self.loop.time() - timeout
        # ``idle`` is most recently used last, so the expired ones are at the front.
        while self.idle and self.idle[0].idle_since <= expiry:
            client = self.idle.pop(0)
            self.stats.upstream_cx_idle_timeout.inc()
            client.close()
        if self.idle:
            self._idle_timer = self.loop.call_later(
                self.idle[0].idle_since - expiry, self._sweep_idle)
