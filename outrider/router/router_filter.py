"""The router: the last HTTP filter. Picks the cluster and host, forwards, relays the answer.

It doubles as the load balancer's context (hash key, host predicate) and as the formatter
context for ``%UPSTREAM_REMOTE_ADDRESS%``-style header values, as Envoy's router does.
"""

from __future__ import annotations

import logging
import random

from outrider.http import local_reply
from outrider.router.upstream_request import UpstreamRequest

log = logging.getLogger("outrider.router")


class RouterConfig:
    """Per-listener router settings and collaborators, shared by every stream."""

    __slots__ = ("cluster_manager", "suppress_envoy_headers", "rng", "loop")

    def __init__(self, cluster_manager, suppress_envoy_headers: bool, loop,
                 rng: random.Random | None = None) -> None:
        self.cluster_manager = cluster_manager
        self.suppress_envoy_headers = suppress_envoy_headers
        self.rng = rng or random.Random()
        self.loop = loop


class RouterFilter:
    __slots__ = ("config", "stream", "route", "cluster", "host", "upstream", "request_headers",
                 "deadline", "_hash_key", "upstream_remote_address", "_set_cookies",
                 "weighted_cluster")

    def __init__(self, config: RouterConfig, stream) -> None:
        self.config = config
        self.stream = stream
        self.route = None
        self.cluster = None
        self.host = None
        self.upstream: UpstreamRequest | None = None
        self.request_headers = None
        self.upstream_remote_address = "-"
        self.deadline: float | None = None  # the route timeout, checked by the connection
        self.weighted_cluster = None
        self._hash_key = None
        self._set_cookies: list[str] | None = None

    # -- formatter context ----------------------------------------------------------------------

    @property
    def downstream_remote_address(self) -> str:
        return self.stream.cm.connection.remote_address

    @property
    def downstream_local_address(self) -> str:
        return self.stream.cm.connection.local_address

    @property
    def protocol(self) -> str:
        return "HTTP/" + self.stream.version

    @property
    def start_time(self) -> float:
        return self.stream.start_time

    # -- load balancer context ------------------------------------------------------------------

    def compute_hash_key(self) -> int | None:
        return self._hash_key

    def should_select_another_host(self, host) -> bool:
        return False

    # Re-picks a balancer may make when should_select_another_host refuses a host: none until
    # retry host predicates exist (Envoy's router has none either without a retry policy).
    host_selection_retry_max_attempts = 0

    # -- decoder filter -------------------------------------------------------------------------

    def decode_headers(self, headers, end_stream: bool) -> None:
        stream = self.stream
        stats = stream.cm.stats
        self.request_headers = headers
        self.route = route = stream.route
        if route is None:
            stats.no_route.inc()
            stream.response_flags = "NR"
            stream.send_local_reply(404, "", "route_not_found")
            return
        kind = route.kind
        if kind == "direct_response":
            stats.rq_direct_response.inc()
            self._local_reply(route.direct_status, route.direct_body, "direct_response")
            return
        if kind == "redirect":
            stats.rq_redirect.inc()
            self._local_reply(route.redirect_status, b"", "redirect",
                              (("location", route.redirect_location(headers)),))
            return
        if kind == "non_forwarding":
            stats.no_route.inc()
            stream.response_flags = "NR"
            stream.send_local_reply(404, "", "route_not_found")
            return
        config = self.config
        if route.weighted_clusters is not None:
            # The chosen weighted cluster also carries its own header mutations and rewrites.
            self.weighted_cluster = picked = route.pick_weighted_cluster(
                headers, config.rng.getrandbits(63))
            cluster_name = picked.cluster_name(headers) if picked is not None else None
        else:
            cluster_name = route.pick_cluster(headers, 0)
        cluster = config.cluster_manager.get(cluster_name) if cluster_name else None
        if cluster is None:
            stats.no_cluster.inc()
            stream.response_flags = "NC"
            stream.send_local_reply(route.cluster_not_found_response_code, "", "cluster_not_found")
            return
        self.cluster = cluster
        hash_policy = route.compiled_hash_policy
        if hash_policy is not None:
            connection = stream.cm.connection
            # Remote + local address: Envoy derives generated cookie values from these.
            self._hash_key = hash_policy.compute(
                headers, connection.remote_ip, self._add_cookie,
                connection.remote_address + connection.local_address)
        host = cluster.lb.choose_host(self)
        if host is None:
            cluster.stats.upstream_cx_none_healthy.inc()
            stream.response_flags = "UH"
            stream.send_local_reply(503, local_reply.NO_HEALTHY_UPSTREAM, "no_healthy_upstream")
            return
        self.host = host
        self.upstream_remote_address = host.address_string
        # Envoy's order: header mutations see the request as it came, then the rewrites.
        if route.mutates_request:
            route.finalize_request_headers(headers, self, self.weighted_cluster)
        if route.rewrites_request:
            route.rewrite_request(headers, weighted_cluster=self.weighted_cluster,
                                  insert_envoy_headers=not config.suppress_envoy_headers,
                                  host=host)
        timeout = route.timeout
        if timeout and not config.suppress_envoy_headers:
            value = route.timeout_ms_header
            if stream.internal:
                headers.set("x-envoy-expected-rq-timeout-ms", value)
            else:  # the header rules stripped any the client sent
                headers.add("x-envoy-expected-rq-timeout-ms", value)
        self.upstream = UpstreamRequest(self, cluster, host, route.priority)
        self.upstream.start(end_stream)
        if end_stream:
            self._on_request_done()

    def decode_data(self, data: bytes, end_stream: bool) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.send_data(data, end_stream)
            if end_stream:
                self._on_request_done()

    def on_downstream_reset(self) -> None:
        """The downstream went away (or the stream was aborted): drop the upstream attempt."""
        self._cancel_timer()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.reset()

    def on_downstream_watermark(self, high: bool) -> None:
        if self.upstream is not None:
            self.upstream.read_disable(high)

    def _add_cookie(self, set_cookie_value: str) -> None:
        # A hash policy generated a sticky cookie; the client gets it with the response.
        if self._set_cookies is None:
            self._set_cookies = []
        self._set_cookies.append(set_cookie_value)

    # -- upstream events (from UpstreamRequest) -------------------------------------------------

    def on_upstream_headers(self, headers, end_stream: bool, service_time_ms: int) -> None:
        stream = self.stream
        self.cluster.stats.count_response(headers.status)
        if not self.config.suppress_envoy_headers:
            headers.set("x-envoy-upstream-service-time", str(service_time_ms))
        if self._set_cookies is not None:
            for value in self._set_cookies:
                headers.add("set-cookie", value)
        if self.route.mutates_response:
            self.route.finalize_response_headers(headers, self, self.weighted_cluster)
        if end_stream:
            self._finish()
        stream.encode_headers(headers, end_stream)

    def on_upstream_data(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self._finish()
        self.stream.encode_data(data, end_stream)

    def on_upstream_reset(self, reason: str, flag: str, status: int = 503) -> None:
        """The upstream attempt failed: before the response a local reply, after it a reset."""
        self._cancel_timer()
        self.upstream = None
        stream = self.stream
        log.debug("[C%d][S%d] upstream reset: %s (%s), host %s", stream.cm.connection.id,
                  stream.id, reason, flag, self.upstream_remote_address)
        stream.response_flags = flag
        if stream.response_started:
            stream.cm.close(abort=True)
            return
        extra = ()
        if flag == "UO" and not self.config.suppress_envoy_headers:
            extra = (("x-envoy-overloaded", "true"),)  # a circuit breaker refused it (Envoy)
        stream.send_local_reply(status, local_reply.reset_before_headers(reason), reason,
                                extra_headers=extra)

    # -- timeouts -------------------------------------------------------------------------------

    def _on_request_done(self) -> None:
        # The route timeout runs from the end of the request to the end of the response.
        timeout = self.route.timeout
        if timeout and self.upstream is not None:
            self.deadline = deadline = self.config.loop.time() + timeout
            self.stream.cm.schedule_deadline(deadline)

    def on_deadline(self) -> None:
        """The route timeout passed: 504 before the response started, a reset after."""
        self.deadline = None
        self.cluster.stats.upstream_rq_timeout.inc()
        log.debug("[C%d][S%d] upstream request timeout (%g s), host %s",
                  self.stream.cm.connection.id, self.stream.id, self.route.timeout,
                  self.upstream_remote_address)
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.reset()
        stream = self.stream
        stream.response_flags = "UT"
        if stream.response_started:
            stream.cm.close(abort=True)
            return
        stream.send_local_reply(504, local_reply.UPSTREAM_TIMEOUT, "upstream_response_timeout")

    def _finish(self) -> None:
        self.deadline = None  # _cancel_timer, inline: once per request
        self.upstream = None

    def _cancel_timer(self) -> None:
        self.deadline = None

    def _local_reply(self, status: int, body: bytes, details: str, extra=()) -> None:
        headers = local_reply.local_reply_headers(status, body)
        for name, value in extra:
            headers.add(name, value)
        self.route.finalize_response_headers(headers, self)
        stream = self.stream
        stream.encode_headers(headers, not body or stream.head_request)
        if body and not stream.head_request:
            stream.encode_data(body, True)
