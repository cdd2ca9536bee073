"""HTTP/1 connection pool for one upstream host (per worker), as Envoy's pools work.

A stream asks ``new_stream``; it gets an idle connection at once (most recently used first,
so idle ones age out) or waits in the pending queue while a new connection is made. A freed
connection serves the oldest pending stream before it goes idle. Idle connections close after
the cluster's ``idle_timeout``; a connection closes after ``max_requests_per_connection``.

The cluster's circuit breakers (``ResourceManager``) bound it: a stream beyond ``max_requests``
or ``max_pending_requests`` fails at once with ``overflow`` (Envoy's UO), and no connection is
made beyond ``max_connections`` or the host's own ``per_host_thresholds`` limit (the stream
waits for one to free up) unless the host has none.
A pool whose host left the cluster drains: in-flight requests finish, then their connections
close, and idle ones close at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from outrider.net.upstream import UpstreamConnection
from outrider.upstream.resource_manager import ResourceManager

log = logging.getLogger("outrider.pool")


class Http1ConnPool:
    def __init__(self, host, settings, stats, loop, resources: ResourceManager | None = None,
                 max_host_connections: int | None = None) -> None:
        self.host = host
        self.settings = settings  # UpstreamSettings: connect_timeout, idle_timeout, ...
        self.buffer_limit = settings.buffer_limit
        self.stats = stats
        self.loop = loop
        self.resources = resources or ResourceManager()
        # ``per_host_thresholds.max_connections``: this pool is its host's (at one priority).
        self.max_host_connections = max_host_connections
        self.idle: list[UpstreamConnection] = []
        self.pending: deque = deque()
        self.connecting = 0
        self.clients: set[UpstreamConnection] = set()
        self.draining = False
        self._idle_timer = None

    def new_stream(self, request) -> None:
        """Attach ``request`` to a connection now or when one is ready (``on_pool_ready``), or
        fail it at once (``on_pool_failure``) when a circuit breaker is open."""
        idle = self.idle
        while idle:
            client = idle.pop()
            if not client.closed:
                requests = self.resources.requests
                if requests.count < requests.max:  # _attach's check, inline: the common path
                    client.assign(request)
                else:
                    self._attach(client, request)  # it refuses and puts the client back
                return
        resources = self.resources
        if not resources.pending_requests.can_create():
            self._overflow(request)
            return
        resources.pending_requests.inc()
        self.pending.append(request)
        self.stats.upstream_rq_pending_total.inc()
        if self.connecting < len(self.pending):
            self._connect()

    def cancel(self, request) -> None:
        """The request no longer wants a connection (downstream reset, timeout)."""
        try:
            self.pending.remove(request)
        except ValueError:
            return  # already attached or failed; nothing queued to withdraw
        self.resources.pending_requests.dec()

    def release(self, client: UpstreamConnection) -> None:
        """A connection finished a response and may serve again."""
        max_requests = self.settings.max_requests_per_connection
        if max_requests and client.requests_served >= max_requests:
            self.stats.upstream_cx_max_requests.inc()
            client.close()
            return
        if self.pending:
            self._attach(client, self._next_pending())
            return
        if self.draining:
            client.close()
            return
        client.idle_since = self.loop.time()
        self.idle.append(client)
        if self._idle_timer is None and self.settings.idle_timeout:
            self._idle_timer = self.loop.call_later(self.settings.idle_timeout, self._sweep_idle)

    def on_client_closed(self, client: UpstreamConnection) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.resources.connections.dec()
            self.stats.upstream_cx_active.dec()
            self.stats.upstream_cx_destroy.inc()
        try:
            self.idle.remove(client)
        except ValueError:
            pass  # it was busy, not idle
        if self.pending and self.connecting < len(self.pending):
            self._connect()  # a connection slot freed up for a stream still waiting

    def drain(self) -> None:
        """The host left the cluster: no new streams come; let the ones in flight finish."""
        self.draining = True
        for client in list(self.idle):
            client.close()

    def close_all(self) -> None:
        """Shut down: every connection closes now, and the requests on them or waiting for
        one are reset."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for client in list(self.clients):
            client.reset("connection termination")
        while self.pending:
            self._next_pending().on_pool_failure("connection termination", "UC")

    # -- internals ------------------------------------------------------------------------------

    def _attach(self, client: UpstreamConnection, request) -> None:
        requests = self.resources.requests
        if requests.count >= requests.max:
            if not self.draining:
                client.idle_since = self.loop.time()
                self.idle.append(client)
            else:
                client.close()
            self._overflow(request)
            return
        client.assign(request)  # counted in ``requests`` until it detaches

    def _overflow(self, request) -> None:
        self.stats.upstream_rq_pending_overflow.inc()
        request.on_pool_failure("overflow", "UO")

    def _next_pending(self):
        self.resources.pending_requests.dec()
        return self.pending.popleft()

    def _connect(self) -> None:
        connections = self.resources.connections
        host_limit = self.max_host_connections
        if not connections.can_create() or (
                host_limit is not None and len(self.clients) + self.connecting >= host_limit):
            self.stats.upstream_cx_overflow.inc()
            # At the limit, a host with no connection at all still gets one, or its pending
            # streams could never be served (as Envoy does).
            if self.clients or self.connecting:
                return
        connections.inc()
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
            self.resources.connections.dec()
            if task.cancelled():
                self.stats.upstream_cx_connect_timeout.inc()
                reason = "connection timeout"
            else:
                reason = "remote connection failure"
            self.stats.upstream_cx_connect_fail.inc()
            log.debug("[C%d] connection to %s: %s", client.id, self.host.address_string, reason)
            self._fail_pending(reason)
            return
        self.clients.add(client)
        self.stats.upstream_cx_active.inc()
        if self.pending:
            self._attach(client, self._next_pending())
        else:
            self.release(client)

    def _fail_pending(self, reason: str) -> None:
        # Streams beyond what the connections still in flight can serve fail now (Envoy purges
        # pending streams when a connection attempt fails).
        while len(self.pending) > self.connecting:
            self._next_pending().on_pool_failure(reason, "UF")

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
