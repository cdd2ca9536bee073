"""One request/response exchange on an HTTP/1 connection (Envoy's ActiveStream).

Owned by the ``ConnectionManager``, it exists from the first byte of its request (so header-
phase timeouts and limits have an owner), applies the connection manager's header rules, picks
the route, runs the filter chain (today the router alone, the last filter) and hands the
response to its codec's encoder. Its timeouts are checked by the connection's single deadline
timer (``check_deadlines``) while it is the stream being answered.

Errors are contained here: a local reply when no response has started, otherwise a reset. An
exception from the filter chain is the proxy's bug (``fail_internal``: 500 and a log line with
the traceback), never the client's protocol error.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from outrider.http import local_reply
from outrider.http.conn_manager_config import ConnectionManagerConfig
from outrider.http.header_rules import mutate_request_headers, mutate_response_headers
from outrider.http.headers import RequestHeaders, ResponseHeaders
from outrider.http.path import merge_slashes, normalize_path, unescape_slashes
from outrider.net.ids import next_stream_id

if TYPE_CHECKING:
    from outrider.http.conn_manager import ConnectionManager

log = logging.getLogger("outrider.http")
_NO_HEADERS = RequestHeaders()  # a stream's headers until they arrive; never mutated


def http_date() -> str:
    """The ``date`` header value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return _date_cache[1]


_date_cache = [0, ""]


class ActiveStream:
    """One request/response exchange: header rules, routing, and the response's encoder."""

    __slots__ = (
        "_id", "cm", "request_headers", "version", "keep_alive", "framing", "router", "activated",
        "started",
        "headers_complete", "request_complete", "response_started", "response_complete",
        "close_connection", "encoder", "head_request", "deferred", "start_time",
        "response_flags", "internal", "route", "end_decoded", "local_error", "upgrade",
        "expect_continue", "response_status", "_active", "_idle_timeout", "_last_activity",
        "_headers_deadline", "_request_deadline",
    )

    def __init__(self, cm: ConnectionManager, encoder) -> None:
        self._id = 0  # for log lines: drawn when first logged (a draw costs the hot path)
        self.cm = cm
        self.encoder = encoder  # the codec's, for this stream's response
        self.request_headers = _NO_HEADERS  # until the codec delivers them
        self.version = "1.1"
        self.keep_alive = False
        self.framing = "none"
        self.router = None
        # Its turn has come (``activate``): only then may it start, so that the stream ahead is
        # done and its own timers run. Started at most once, by whichever of ``activate`` and
        # ``on_request_headers`` comes second.
        self.activated = False
        self.started = False
        self.headers_complete = False
        self.request_complete = False
        self.response_started = False
        self.response_complete = False
        self.close_connection = False
        self.head_request = False
        self.deferred: list | None = None  # request body bytes buffered while pipelined
        self.start_time = time.time()
        self.response_flags = "-"
        self.internal = False
        self.route = None
        self.end_decoded = False
        # (status, body, details, flag) of an error to answer once this stream's turn comes.
        self.local_error: tuple | None = None
        self.upgrade: str | None = None
        self.expect_continue = False
        self.response_status = 0
        self._idle_timeout: float | None = None
        self._last_activity = 0.0
        self._headers_deadline: float | None = None
        self._request_deadline: float | None = None
        # Counted in downstream_rq_active from the first byte until the response ends or the
        # stream is reset, exactly once either way.
        self._active = True
        stats = cm.stats
        stats.downstream_rq_total.value += 1
        stats.downstream_rq_http1_total.value += 1
        stats.downstream_rq_active.value += 1

    @property
    def id(self) -> int:
        """The stream's id in log lines (``[S17]``), unique in the process."""
        if not self._id:
            self._id = next_stream_id()
        return self._id

    # -- decoding -------------------------------------------------------------------------------

    def activate(self) -> None:
        """Its turn to be answered (at its first byte, or when the stream ahead finished): the
        header-phase and request timeouts run from now, as Envoy parses one request at a time."""
        if self.activated:
            return
        self.activated = True
        cm = self.cm
        config = cm.config
        now = cm.loop.time()
        self._last_activity = now
        deadline = None
        if config.stream_idle_timeout:
            self._idle_timeout = config.stream_idle_timeout
            deadline = now + config.stream_idle_timeout
        if config.request_headers_timeout and not self.headers_complete:
            self._headers_deadline = now + config.request_headers_timeout
            deadline = min(deadline or self._headers_deadline, self._headers_deadline)
        if config.request_timeout and not self.request_complete:
            self._request_deadline = now + config.request_timeout
            deadline = min(deadline or self._request_deadline, self._request_deadline)
        if deadline is not None:
            cm.schedule_deadline(deadline)
        if self.local_error is not None:
            self._answer_local_error()
        elif self.headers_complete:
            self.start()

    def on_request_headers(self, headers: RequestHeaders, version: str, keep_alive: bool,
                           framing: str, upgrade: str | None, expect_continue: bool) -> None:
        """The request's headers are complete (from the codec): processed now if it is this
        stream's turn, else when ``activate`` says it is."""
        self.request_headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.close_connection = self.close_connection or not keep_alive
        self.framing = framing
        self.head_request = headers.method == "HEAD"
        self.upgrade = upgrade
        self.expect_continue = expect_continue
        self.headers_complete = True
        self._headers_deadline = None
        cm = self.cm
        self._last_activity = cm.loop.time()
        if self.activated and not self.response_complete:
            self.start()  # its turn came while its head was being read

    def start(self) -> None:
        """Begin processing: header rules, route, then the filter chain (the router)."""
        self.started = True
        try:
            cm = self.cm
            config = cm.config
            headers = self.request_headers
            # Envoy's order: its codec's checks (the header-name policy among them; an HTTP/1.0
            # request without accept_http_10 is refused by ours), then 100 Continue, then the
            # Host and path checks.
            if config.checks_header_names and not self._check_header_names(headers, config):
                return
            if self.expect_continue and self.version == "1.1" and not self.request_complete:
                self.encoder.encode_100_continue()  # Envoy answers 100 Continue itself
                cm.stats.downstream_rq_1xx.inc()  # and counts it, as well as the final status
            if not headers.authority and not self._default_host(headers, config):
                return
            if "#" in headers.path:
                self._reject_path()  # a fragment is the client's own business, never sent
                return
            if config.normalizes_paths and not self._normalize_path(headers, config):
                return
            upgrade = self.upgrade  # the header rules strip the header as hop-by-hop
            self.internal = mutate_request_headers(headers, cm.connection.remote_ip, config.header_rules)
            self.route = config.route_table.route(headers)
            if (upgrade is not None or headers.method == "CONNECT") and not self._check_upgrade(
                    headers.method, upgrade):
                return
            route = self.route
            if route is not None and route.idle_timeout is not None:
                self._idle_timeout = route.idle_timeout
                if route.idle_timeout:
                    cm.schedule_deadline(self._last_activity + route.idle_timeout)
            self.router = router = cm.router_factory(self)
            deferred, self.deferred = self.deferred, None
            # A request without a body ends with its headers, as Envoy's codec reports it.
            self.end_decoded = self.framing == "none" or (self.request_complete and not deferred)
            router.decode_headers(headers, self.end_decoded)
            if deferred:
                for data in deferred:
                    if self.router is None or self.response_complete:
                        return
                    self.router.decode_data(data, False)
            if self.request_complete and not self.end_decoded:
                self._decode_end()
        except Exception:  # noqa: BLE001 - logged with its traceback by fail_internal
            self.fail_internal()

    def fail_local(self, status: int, body: str, details: str, flag: str) -> None:
        """Answer this stream with an error once it is its turn (now, if it is)."""
        self.local_error = (status, body, details, flag)
        if self.cm.streams and self.cm.streams[0] is self:
            self._answer_local_error()

    def fail_internal(self) -> None:
        """The proxy's own code raised while serving this stream (call from the ``except``
        block: the traceback is logged). 500 if no response started, else a reset; either
        way the connection closes, as what ran half-way cannot be trusted."""
        cm = self.cm
        log.exception("internal error serving %s %s", self.request_headers.method,
                      self.request_headers.path)
        cm.stats.downstream_rq_internal_error.inc()
        cm.stop_reading()
        if self.response_complete:
            cm.close(abort=True)
            return
        self._abort_router()
        self.close_connection = True
        if self.response_started:
            cm.close(abort=True)
            return
        self.fail_local(500, "", "internal_error", self.response_flags)

    def _answer_local_error(self) -> None:
        status, body, details, flag = self.local_error
        self._abort_router()
        self.response_flags = flag
        self.send_local_reply(status, body, details, close=True)

    def _decode_end(self) -> None:
        self.end_decoded = True
        if not self.response_complete and self.router is not None:
            self.router.decode_data(b"", True)

    def _check_upgrade(self, method: str, upgrade: str | None) -> bool:
        """CONNECT and Upgrade requests: refused as Envoy refuses them without upgrade_configs
        (an h2c upgrade is ignored and the request served as HTTP/1.1)."""
        if method == "CONNECT":
            self.response_flags = "NR"
            self.send_local_reply(404, "", "route_not_found", close=True)
            return False
        if upgrade is not None and upgrade.lower() != "h2c":
            self.send_local_reply(403, "", "upgrade_failed", close=True)
            return False
        return True

    def _check_header_names(self, headers: RequestHeaders,
                            config: ConnectionManagerConfig) -> bool:
        """headers_with_underscores_action; False if answered."""
        if any("_" in name for name, _ in headers):
            if config.reject_headers_with_underscores:
                self.response_flags = "DPE"
                self.send_local_reply(400, "Bad Request", "unexpected_underscore", close=True)
                return False
            headers.remove_if(lambda name: "_" in name)
        return True

    def _default_host(self, headers: RequestHeaders, config: ConnectionManagerConfig) -> bool:
        """A request without Host: an HTTP/1.0 one takes default_host_for_http_10 if set, any
        other is answered 400 (Envoy's missing_host_header); False if answered."""
        if self.version == "1.0" and config.default_host_for_http_10:
            headers.authority = config.default_host_for_http_10
            return True
        self.response_flags = "DPE"
        self.send_local_reply(400, "", "missing_host_header", close=True)
        return False

    def _normalize_path(self, headers: RequestHeaders, config: ConnectionManagerConfig) -> bool:
        """Path normalization, before routing; False if answered."""
        # Envoy's order (ConnectionManagerUtility::maybeNormalizePath): escaped slashes, then
        # normalize_path, then merge_slashes; a redirect is sent once the path is final.
        redirect = False
        action = config.escaped_slashes_action
        if action != "KEEP_UNCHANGED":
            unescaped = unescape_slashes(headers.path)
            if unescaped is not None:
                if action == "REJECT_REQUEST":
                    self._reject_path()
                    return False
                headers.path = unescaped
                redirect = action == "UNESCAPE_AND_REDIRECT"
        if config.normalize_path or config.merge_slashes:
            path, sep, query = headers.path.partition("?")
            if config.normalize_path:
                normalized = normalize_path(path)
                if normalized is None:
                    self._reject_path()
                    return False
                path = normalized
            if config.merge_slashes:
                path = merge_slashes(path)
            headers.path = path + sep + query
        if redirect:
            if local_reply.is_grpc(headers):
                self._reject_path()  # gRPC clients follow no redirect: Envoy refuses instead
                return False
            # The client asks again for the unescaped path, so every party sees the same one.
            self.cm.stats.downstream_rq_redirected_with_normalized_path.inc()
            self.send_local_reply(307, "", "path_normalization_failed",
                                  extra_headers=(("location", headers.path),))
            return False
        return True

    def _reject_path(self) -> None:
        self.cm.stats.downstream_rq_failed_path_normalization.inc()
        self.response_flags = "DPE"
        # A gRPC client gets the refusal as a grpc-status (Envoy does so for every local reply;
        # Outrider, so far, for this one).
        self.send_local_reply(400, "", "path_normalization_failed", close=True,
                              grpc=local_reply.is_grpc(self.request_headers))

    def on_request_data(self, data: bytes) -> None:
        self._last_activity = self.cm.loop.time()
        if self.response_complete:
            return
        if not self.started:
            self.deferred = self.deferred or []
            self.deferred.append(data)
        elif self.router is not None:
            self.router.decode_data(data, False)

    def on_request_complete(self) -> None:
        self.request_complete = True
        self._request_deadline = None
        if self.started and not self.end_decoded:
            self._decode_end()

    def on_downstream_reset(self) -> None:
        if self.cm.debug and not self.response_complete:
            log.debug("[C%d][S%d] stream reset: the connection closed before the response "
                      "ended", self.cm.connection.id, self.id)
        self._cancel_timers()
        self._end_active()
        if not self.response_complete and self.response_flags == "-":
            self.response_flags = "DC"
        if self.router is not None:
            self.router.on_downstream_reset()
            self.router = None

    def on_downstream_watermark(self, high: bool) -> None:
        if self.router is not None:
            self.router.on_downstream_watermark(high)

    # -- encoding (called by the router) --------------------------------------------------------

    def encode_headers(self, headers: ResponseHeaders, end_stream: bool, close: bool = False) -> None:
        """Send the response head; ``close`` asks to close the connection afterwards."""
        cm = self.cm
        self._last_activity = cm.loop.time()
        self.response_started = True
        self.response_status = headers.status
        has_date, has_length = mutate_response_headers(headers, cm.config.header_rules)
        if cm.config.always_set_request_id_in_response:
            request_id = self.request_headers.get("x-request-id")
            if request_id is not None:
                headers.set_default("x-request-id", request_id)
        if not has_date:
            headers.add("date", http_date())
        drain = cm.drain
        if (close or (drain.draining and drain.drain_close())
                or (not self.request_complete and self.framing != "none")):
            # A response that starts before its request body has arrived ends the connection
            # (Envoy: HTTP/1 cannot find the next request's start once it stops reading one).
            self.close_connection = True
        self.close_connection = self.encoder.encode_headers(
            headers, end_stream, has_length, self.close_connection)
        if end_stream:
            self._complete()

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        self.encoder.encode_data(data, end_stream)
        if end_stream:
            self._complete()  # no timer outlives the stream: no activity to note
        else:
            self._last_activity = self.cm.loop.time()

    def send_local_reply(self, status: int, body: str, details: str, close: bool = False,
                         extra_headers: tuple = (), grpc: bool = False) -> None:
        """Answer from the proxy itself (Envoy's sendLocalReply); ``grpc``: as a gRPC status
        (HTTP 200, no body)."""
        if self.response_started:
            # Too late for a clean reply: the only honest signal left is a reset.
            self.close_connection = True
            self.cm.close(abort=True)
            return
        if grpc:
            payload = b""
            headers = local_reply.grpc_reply_headers(status)
        else:
            payload = body.encode()
            headers = local_reply.local_reply_headers(status, payload)
        for name, value in extra_headers:
            headers.add(name, value)
        route = self.route
        if route is not None:
            # Once a route is chosen, its response headers go on the proxy's own answers too.
            router = self.router
            if router is not None:
                route.finalize_response_headers(headers, router, router.weighted_cluster)
            else:
                route.finalize_response_headers(headers, self)
        self.encode_headers(headers, not payload or self.head_request, close=close)
        if payload and not self.head_request:
            self.encode_data(payload, True)

    # -- formatter context (header values such as %DOWNSTREAM_REMOTE_ADDRESS%) ------------------

    @property
    def downstream_remote_address(self) -> str:
        return self.cm.connection.remote_address

    @property
    def downstream_local_address(self) -> str:
        return self.cm.connection.local_address

    @property
    def protocol(self) -> str:
        return "HTTP/" + self.version

    # -- internals ------------------------------------------------------------------------------

    def _complete(self) -> None:
        self.response_complete = True
        self._cancel_timers()
        cm = self.cm
        if cm.debug:
            self._log_done()
        # Break the stream <-> router cycle so reference counting frees both at once; leaving
        # it to the cyclic GC costs a collection every few hundred requests.
        self.router = None
        if self._active:
            self._active = False
            cm.stats.downstream_rq_active.value -= 1
        cm.stats.count_response(self.response_status)
        cm.on_stream_done(self)

    def _log_done(self) -> None:
        """The request's debug line: what was asked, what was answered, by whom, how fast."""
        headers = self.request_headers
        log.debug("[C%d][S%d] %s %s (host %s) -> %d, flags %s, upstream %s, %.3f ms",
                  self.cm.connection.id, self.id, headers.method, headers.path,
                  headers.authority or "-", self.response_status, self.response_flags,
                  self.router.upstream_remote_address if self.router is not None else "-",
                  (time.time() - self.start_time) * 1000)

    def _end_active(self) -> None:
        if self._active:
            self._active = False
            self.cm.stats.downstream_rq_active.value -= 1

    def next_deadline(self) -> float | None:
        """The earliest time one of this stream's timeouts could fire (None: none armed)."""
        if self.response_complete:
            return None
        candidates = [d for d in (self._headers_deadline, self._request_deadline,
                                  self.router.deadline if self.router is not None else None)
                      if d is not None]
        if self._idle_timeout:
            candidates.append(self._last_activity + self._idle_timeout)
        return min(candidates) if candidates else None

    def check_deadlines(self, now: float) -> None:
        """Fire whichever timeout has passed (called from the connection's deadline timer)."""
        if self.response_complete:
            return
        try:
            router = self.router
            if self._headers_deadline is not None and now >= self._headers_deadline:
                self._on_headers_timeout()
            elif self._request_deadline is not None and now >= self._request_deadline:
                self._on_request_timeout()
            elif router is not None and router.deadline is not None and now >= router.deadline:
                router.on_deadline()
            elif self._idle_timeout and now >= self._last_activity + self._idle_timeout:
                self._on_stream_idle_timeout()
        except Exception:  # noqa: BLE001 - logged with its traceback by fail_internal
            self.fail_internal()

    def _on_headers_timeout(self) -> None:
        self._headers_deadline = None
        self.cm.stats.downstream_rq_header_timeout.inc()
        self.send_local_reply(408, local_reply.REQUEST_HEADER_TIMEOUT, "request_header_timeout",
                              close=True)

    def _on_stream_idle_timeout(self) -> None:
        self._idle_timeout = None
        self.cm.stats.downstream_rq_idle_timeout.inc()
        self.response_flags = "SI"
        self._abort_router()
        # 408 while the request is still arriving, 504 once it is all in (Envoy).
        status = 504 if self.request_complete else 408
        self.send_local_reply(status, local_reply.STREAM_TIMEOUT, "stream_idle_timeout", close=True)

    def _on_request_timeout(self) -> None:
        self._request_deadline = None
        self.cm.stats.downstream_rq_timeout.inc()
        self._abort_router()
        self.send_local_reply(408, local_reply.REQUEST_TIMEOUT, "request_overall_timeout",
                              close=True)

    def _abort_router(self) -> None:
        if self.router is not None:
            self.router.on_downstream_reset()
            self.router = None

    def _cancel_timers(self) -> None:
        self._idle_timeout = None
        self._headers_deadline = None
        self._request_deadline = None
