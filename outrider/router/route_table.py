"""The compiled route table: ``RouteConfiguration`` protobuf in, plain objects out.

``RouteTable.from_proto`` compiles once (raising ``RouteConfigError`` where Envoy would reject
the config); ``RouteTable.route(headers)`` then picks the virtual host by ``:authority`` and
returns the first matching ``RouteEntry`` or None (404, flag NR) without touching protobuf.

Envoy semantics kept here (Envoy 1.40, ``source/common/router/config_impl.cc``):

* Virtual hosts: exact domain, then the longest suffix wildcard (``*.foo.com``, ``*-bar.foo.com``),
  then the longest prefix wildcard (``foo.*``), then ``*``. A wildcard matches at least one
  character. The authority is lowercased; its port is **not** stripped (``foo.com:8080`` does
  not match ``foo.com``) unless the config sets ``ignore_port_in_host_matching``, or the table
  is built with ``strip_port_fallback=True`` (then a miss with the port retries without it,
  before ``*``).
* Routes: in order, first match wins. ``prefix``, ``path``, ``safe_regex`` and
  ``path_separated_prefix`` all see the path **without** query string and fragment (Envoy's
  PathMatcher strips them), so ``prefix: /a?x`` never matches. Headers, query parameters,
  ``grpc``, ``runtime_fraction`` (default value, against the caller's random value),
  ``connect_matcher`` and ``tls_context`` (no client certificates here) are ANDed. Routes
  needing ``dynamic_metadata``/``filter_state``/``path_match_policy`` never match.
* ``require_tls`` answers with a 301 to ``https://`` (kind ``redirect``), judged on
  ``x-forwarded-proto`` (falling back to ``:scheme``).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from outrider.http.path import path_without_query
from outrider.router.header_mutation import HeaderMutation
from outrider.router.matchers import (
    PathMatcher,
    RouteConfigError,
    ascii_lower,
    compile_regex,
    compile_route_match,
    compile_substitution,
)

__all__ = ["RouteConfigError", "RouteEntry", "RouteTable", "VirtualHost", "WeightedCluster"]

DEFAULT_ROUTE_TIMEOUT = 15.0
_REDIRECT_CODES = (301, 302, 303, 307, 308)  # RedirectResponseCode enum order
_CLUSTER_NOT_FOUND_CODES = (503, 404, 500)
_MAX_WEIGHT_SUM = 2**32 - 1


def _ms(duration: Any) -> int:
    return duration.seconds * 1000 + duration.nanos // 1_000_000


def _port_start(host: str) -> int:
    """Index of the ``:`` before the port, or -1 (Envoy's getPortStart; IPv6-aware)."""
    colon = host.rfind(":")
    if colon < 0:
        return -1
    bracket = host.rfind("]")
    return colon if bracket < 0 or bracket < colon else -1


def _routing_path(path: str, ignore_path_parameters: bool) -> str:
    """What path matchers see: no query, no fragment and, if asked, no ``;`` parameters."""
    path = path_without_query(path)
    if ignore_path_parameters:
        semicolon = path.find(";")
        if semicolon >= 0:
            return path[:semicolon]
    return path


def _request_scheme(headers: Any) -> str:
    return headers.get("x-forwarded-proto") or headers.scheme


class WeightedCluster:
    """One ``weighted_clusters.clusters`` entry; ``cluster_name(headers)`` resolves it."""

    __slots__ = ("cluster_header", "host_rewrite_literal", "name", "proto", "request_mutation",
                 "response_mutation", "typed_per_filter_config", "weight")

    def __init__(self, proto: Any, where: str) -> None:
        if bool(proto.name) == bool(proto.cluster_header):
            raise RouteConfigError(f"{where}: weighted cluster needs exactly one of name or "
                                   "cluster_header")
        self.proto = proto
        self.name: str = proto.name
        self.cluster_header: str = proto.cluster_header.lower()
        self.weight: int = proto.weight.value
        where = f"{where}: weighted cluster {proto.name or proto.cluster_header!r}"
        self.request_mutation = HeaderMutation.from_protos(
            proto.request_headers_to_add, proto.request_headers_to_remove, where)
        self.response_mutation = HeaderMutation.from_protos(
            proto.response_headers_to_add, proto.response_headers_to_remove, where)
        self.host_rewrite_literal: str = proto.host_rewrite_literal
        self.typed_per_filter_config: dict[str, Any] = dict(proto.typed_per_filter_config)

    def cluster_name(self, headers: Any) -> str | None:
        if self.name:
            return self.name
        return headers.get(self.cluster_header) or None

    def __repr__(self) -> str:
        return f"WeightedCluster({self.name or self.cluster_header!r}, {self.weight})"


class RouteEntry:
    """A compiled route. ``kind`` is ``route``, ``redirect``, ``direct_response`` or
    ``non_forwarding`` (``non_forwarding_action``/``filter_action``: the router answers 404).

    Raw protos kept for other modules: ``route_proto``, ``action_proto`` (the RouteAction or
    None), ``hash_policy``, ``retry_policy_proto`` / ``hedge_policy_proto`` (route's, else the
    virtual host's), ``request_mirror_policies`` (route's, else vhost's, else the config's),
    ``upgrade_configs``; ``typed_per_filter_config`` is merged, most specific level winning.
    """

    def __init__(self, name: str, virtual_host: VirtualHost, kind: str) -> None:
        self.name = name
        self.virtual_host = virtual_host
        self.kind = kind
        self.route_proto: Any = None
        self.action_proto: Any = None
        self.cluster_name: str | None = None
        self.cluster_header: str | None = None
        self.weighted_clusters: tuple[WeightedCluster, ...] | None = None
        self.random_value_header: str | None = None
        self.total_weight = 0
        self._weight_ends: list[int] = []
        self.cluster_not_found_response_code = 503
        self.timeout: float | None = None
        self.timeout_ms_header = ""
        self.idle_timeout: float | None = None
        self.prefix_rewrite = ""
        self._regex_rewrite: tuple[Any, str] | None = None
        self.host_rewrite_literal = ""
        self.host_rewrite_header: str | None = None
        self._host_rewrite_regex: tuple[Any, str] | None = None
        self.auto_host_rewrite = False
        self.append_x_forwarded_host = False
        self.direct_status = 0
        self.direct_body = b""
        self.redirect_status = 0
        self._redirect: _Redirect | None = None
        self.adds_location = False
        self.hash_policy: list[Any] = []
        self.compiled_hash_policy: Any = None  # outrider.router.hash_policy.HashPolicy
        self.retry_policy_proto: Any = None
        self.hedge_policy_proto: Any = None
        self.request_mirror_policies: list[Any] = []
        self.upgrade_configs: list[Any] = []
        self.typed_per_filter_config: dict[str, Any] = {}
        self.per_request_buffer_limit_bytes: int | None = None
        self.priority = 0  # RoutingPriority: which circuit breakers and pools (0 DEFAULT, 1 HIGH)
        self._path: PathMatcher = PathMatcher("prefix", "")
        self._conditions: Callable[[Any, int], bool] | None = None
        self._request_mutations: tuple[HeaderMutation, ...] = ()
        self._response_mutations: tuple[HeaderMutation, ...] = ()
        self.mutates_request = False
        self.mutates_response = False
        self.rewrites_request = False  # any host or path rewrite: the router skips the call

    # --- matching ---------------------------------------------------------------------------

    def matches(self, headers: Any, random_value: int = 0) -> bool:
        """Whether this route alone matches ``headers`` (the table uses a faster inline loop)."""
        path = _routing_path(headers.path, self.virtual_host._ignore_path_parameters)
        if not self._path.match(path):
            return False
        return self._conditions is None or self._conditions(headers, random_value)

    # --- upstream cluster ---------------------------------------------------------------------

    def pick_weighted_cluster(self, headers: Any, random_value: int) -> WeightedCluster | None:
        """The weighted cluster for this request: ``value % total_weight`` over the cumulative
        weights. ``value`` is the ``header_name`` header (when it is one unsigned integer) or
        ``random_value``. None when this route has no weighted clusters."""
        if self.weighted_clusters is None:
            return None
        value = random_value
        if self.random_value_header is not None:
            values = headers.get_all(self.random_value_header)
            if len(values) == 1 and values[0].isdigit() and values[0].isascii():
                value = int(values[0])
        index = bisect_right(self._weight_ends, value % self.total_weight)
        return self.weighted_clusters[index]

    def pick_cluster(self, headers: Any, random_value: int) -> str | None:
        """The upstream cluster name, or None. None for a ``cluster_header`` that is absent or
        empty (Envoy then answers ``cluster_not_found_response_code``, 503 by default, flag
        NC), for non-``route`` kinds and for unsupported cluster specifier plugins."""
        if self.cluster_name:
            return self.cluster_name
        if self.cluster_header is not None:
            return headers.get(self.cluster_header) or None
        picked = self.pick_weighted_cluster(headers, random_value)
        return None if picked is None else picked.cluster_name(headers)

    # --- request/response finalization --------------------------------------------------------

    def rewrite_request(self, headers: Any, *, weighted_cluster: WeightedCluster | None = None,
                        insert_envoy_headers: bool = True, host: Any = None) -> None:
        """Apply host and path rewrites to a request on a ``route`` entry (no-op otherwise).

        Call after ``finalize_request_headers`` (Envoy's order). Host: the weighted cluster's
        ``host_rewrite_literal``, then the route's ``host_rewrite_literal`` / ``_header`` /
        ``_path_regex`` / ``auto_host_rewrite`` (the chosen ``host``'s hostname, when it has
        one), which wins; a route-level rewrite keeps the old value in
        ``x-envoy-original-host`` and, with ``append_x_forwarded_host``, appends it to
        ``x-forwarded-host``. An empty new host rewrites nothing.
        Path: ``prefix_rewrite`` replaces the matched prefix (the whole path for ``path`` and
        ``safe_regex`` routes), ``regex_rewrite`` substitutes every match in the path; the query
        is kept and the old ``:path`` goes to ``x-envoy-original-path``. ``insert_envoy_headers``
        False is Envoy's ``suppress_envoy_headers``.
        """
        if self.kind != "route":
            return
        if weighted_cluster is not None and weighted_cluster.host_rewrite_literal:
            headers.authority = weighted_cluster.host_rewrite_literal
        hostname: str | None = None
        if self.host_rewrite_literal:
            hostname = self.host_rewrite_literal
        elif self.host_rewrite_header is not None:
            hostname = headers.get(self.host_rewrite_header)
        elif self._host_rewrite_regex is not None:
            pattern, template = self._host_rewrite_regex
            hostname = pattern.sub(template, path_without_query(headers.path))
        elif self.auto_host_rewrite and host is not None:
            hostname = host.hostname
        if hostname:
            self._update_authority(headers, hostname, insert_envoy_headers)
        new_path = self._rewritten_path(headers.path, self.prefix_rewrite, self._regex_rewrite)
        if new_path is not None:
            if insert_envoy_headers:
                headers.set("x-envoy-original-path", headers.path)
            headers.path = new_path

    def _update_authority(self, headers: Any, hostname: str, keep_old: bool) -> None:
        # Envoy's Utility::updateAuthority: x-envoy-original-host first, then x-forwarded-host.
        old = headers.authority
        if old and keep_old:
            headers.set("x-envoy-original-host", old)
        if old and self.append_x_forwarded_host:
            xfh = headers.get("x-forwarded-host")
            if not xfh:
                headers.set("x-forwarded-host", old)
            elif xfh.rsplit(",", 1)[-1].strip() != old:  # idempotent, as Envoy
                headers.set("x-forwarded-host", f"{xfh},{old}")
        headers.authority = hostname

    def _rewritten_path(self, path: str, prefix: str,
                        regex: tuple[Any, str] | None) -> str | None:
        """``path`` after a prefix or regex rewrite, or None when neither is configured."""
        if prefix:
            if self._path.kind in ("prefix", "path", "path_separated_prefix"):
                matched = len(self._path.value)
            else:
                matched = len(path_without_query(path))
            return prefix + path[matched:]
        if regex is not None:
            just_path = path_without_query(path)
            pattern, template = regex
            return pattern.sub(template, just_path) + path[len(just_path) :]
        return None

    def finalize_request_headers(self, headers: Any, fmt_ctx: Any,
                                 weighted_cluster: WeightedCluster | None = None) -> None:
        """Apply request header mutations: the weighted cluster's, then route, virtual host and
        route configuration (reversed when ``most_specific_header_mutations_wins``)."""
        if weighted_cluster is not None and weighted_cluster.request_mutation is not None:
            weighted_cluster.request_mutation.evaluate(headers, fmt_ctx, headers)
        for mutation in self._request_mutations:
            mutation.evaluate(headers, fmt_ctx, headers)

    def finalize_response_headers(self, headers: Any, fmt_ctx: Any,
                                  weighted_cluster: WeightedCluster | None = None) -> None:
        """Apply response header mutations in the same order as the request side.
        ``%REQ(...)%`` reads ``fmt_ctx.request_headers``."""
        request_headers = getattr(fmt_ctx, "request_headers", None)
        if weighted_cluster is not None and weighted_cluster.response_mutation is not None:
            weighted_cluster.response_mutation.evaluate(headers, fmt_ctx, request_headers, headers)
        for mutation in self._response_mutations:
            mutation.evaluate(headers, fmt_ctx, request_headers, headers)

    # --- local replies ------------------------------------------------------------------------

    def redirect_location(self, headers: Any) -> str:
        """The ``location`` for a redirect (or a 201/3xx direct response: the request URL), per
        Envoy's Utility::newUri. The request is not modified."""
        redirect = self._redirect
        if redirect is None:
            redirect = _NO_REDIRECT
        elif redirect is _SSL_REDIRECT:  # require_tls: host and path as they are
            return f"https://{headers.authority}{headers.path}"
        scheme = redirect.scheme or ("https" if redirect.https else headers.scheme)
        port = redirect.port
        host = redirect.host or _process_request_host(headers, scheme, port)
        path = headers.path
        if redirect.path:
            if redirect.path_has_query:
                path = redirect.path
            else:
                query = path.find("?")
                path = redirect.path + path[query:] if query >= 0 else redirect.path
        else:
            rewritten = self._rewritten_path(path, redirect.prefix_rewrite, redirect.regex_rewrite)
            if rewritten is not None:
                path = rewritten
        if not path.startswith("/"):
            path = "/" + path
        if redirect.strip_query and not redirect.path_has_query:
            query = path.find("?")
            if query >= 0:
                path = path[:query]
        return f"{scheme}://{host}{port}{path}"

    def __repr__(self) -> str:
        return f"RouteEntry({self.name!r}, {self.kind}, {self._path!r})"


class _Redirect:
    __slots__ = ("host", "https", "path", "path_has_query", "port", "prefix_rewrite",
                 "regex_rewrite", "scheme", "strip_query")

    def __init__(self, proto: Any = None, where: str = "") -> None:
        self.scheme = proto.scheme_redirect if proto is not None else ""  # verbatim, as Envoy
        self.https = proto is not None and proto.https_redirect
        self.host = proto.host_redirect if proto is not None else ""
        self.port = f":{proto.port_redirect}" if proto is not None and proto.port_redirect else ""
        self.path = proto.path_redirect if proto is not None else ""
        self.path_has_query = "?" in self.path
        # An empty string (not None) so that RouteEntry._rewritten_path sees "no rewrite".
        self.prefix_rewrite = proto.prefix_rewrite if proto is not None else ""
        self.regex_rewrite = None
        if proto is not None and proto.HasField("regex_rewrite"):
            self.regex_rewrite = _compile_rewrite(proto.regex_rewrite, f"{where}: redirect")
        self.strip_query = proto is not None and proto.strip_query


_NO_REDIRECT = _Redirect()
_SSL_REDIRECT = _Redirect()
_SSL_REDIRECT.https = True


def _process_request_host(headers: Any, new_scheme: str, new_port: str) -> str:
    """The request's host for a redirect, dropping its port when a new port is set or when the
    scheme changes away from its default port (Envoy's processRequestHost)."""
    host = headers.authority
    if not host:
        return host
    if host[0] == "[":
        end = host.rfind("]:")
        end = end + 1 if end >= 0 else -1
    else:
        end = host.rfind(":")
    if end >= 0:
        request_port = host[end:]
        proto = _request_scheme(headers)
        remove = bool(new_port)
        if new_scheme != proto:
            remove = remove or (proto == "https" and request_port == ":443") or (
                proto == "http" and request_port == ":80")
        if remove:
            return host[:end]
    return host


def _compile_rewrite(msg: Any, where: str) -> tuple[Any, str]:
    """A ``RegexMatchAndSubstitute`` as (compiled pattern, re.sub template)."""
    pattern = compile_regex(msg.pattern.regex, where)
    return pattern, compile_substitution(pattern, msg.substitution, where)


class VirtualHost:
    """A compiled virtual host: ``routes`` in order plus its own settings (raw ``proto`` kept)."""

    def __init__(self, proto: Any, table: RouteTable) -> None:
        where = f"virtual host {proto.name!r}"
        if proto.HasField("matcher") and len(proto.routes):
            raise RouteConfigError(f"{where}: cannot set both matcher and routes")
        self.proto = proto
        self.name: str = proto.name
        self.domains: tuple[str, ...] = tuple(proto.domains)
        self.require_tls = ("NONE", "EXTERNAL_ONLY", "ALL")[proto.require_tls]
        self.request_mutation = HeaderMutation.from_protos(
            proto.request_headers_to_add, proto.request_headers_to_remove, where)
        self.response_mutation = HeaderMutation.from_protos(
            proto.response_headers_to_add, proto.response_headers_to_remove, where)
        self.retry_policy_proto = proto.retry_policy if proto.HasField("retry_policy") else None
        self.hedge_policy_proto = proto.hedge_policy if proto.HasField("hedge_policy") else None
        self.typed_per_filter_config = {**table.typed_per_filter_config,
                                        **dict(proto.typed_per_filter_config)}
        self.include_request_attempt_count: bool = proto.include_request_attempt_count
        self.include_attempt_count_in_response: bool = proto.include_attempt_count_in_response
        self._ignore_path_parameters = table.ignore_path_parameters_in_path_matching
        self.ssl_redirect = RouteEntry("", self, "redirect")
        self.ssl_redirect.redirect_status = 301
        self.ssl_redirect.adds_location = True
        self.ssl_redirect._redirect = _SSL_REDIRECT
        self.routes: tuple[RouteEntry, ...] = tuple(
            _compile_route(route, self, table, f"{where} route {route.name or i!r}")
            for i, route in enumerate(proto.routes))

    def route(self, headers: Any, random_value: int = 0) -> RouteEntry | None:
        """The first route matching ``headers``, the TLS redirect, or None."""
        if self.require_tls != "NONE" and _request_scheme(headers) != "https" and (
                self.require_tls == "ALL" or headers.get("x-envoy-internal") != "true"):
            return self.ssl_redirect
        path = _routing_path(headers.path, self._ignore_path_parameters)
        for entry in self.routes:
            if entry._path.match(path) and (
                    entry._conditions is None or entry._conditions(headers, random_value)):
                return entry
        return None

    def __repr__(self) -> str:
        return f"VirtualHost({self.name!r}, {list(self.domains)})"


def _direct_body(action: Any, limit: int, where: str) -> bytes:
    body = action.body
    source = body.WhichOneof("specifier")
    if source is None:
        data = b""
    elif source == "inline_string":
        data = body.inline_string.encode("utf-8")
    elif source == "inline_bytes":
        data = body.inline_bytes
    elif source == "filename":
        try:
            with open(body.filename, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise RouteConfigError(f"{where}: response body file: {exc}") from None
    else:
        value = os.environ.get(body.environment_variable)
        if value is None:
            raise RouteConfigError(f"{where}: environment variable "
                                   f"{body.environment_variable!r} is not set")
        data = value.encode("utf-8")
    if len(data) > limit:
        raise RouteConfigError(f"{where}: response body size is {len(data)} bytes; maximum is "
                               f"{limit}")
    return data


def _compile_route(proto: Any, vhost: VirtualHost, table: RouteTable, where: str) -> RouteEntry:
    action_kind = proto.WhichOneof("action")
    if action_kind is None:
        raise RouteConfigError(f"{where}: route has no action")
    kind = {"filter_action": "non_forwarding", "non_forwarding_action": "non_forwarding"}.get(
        action_kind, action_kind)
    entry = RouteEntry(proto.name, vhost, kind)
    entry.route_proto = proto
    entry._path, entry._conditions = compile_route_match(proto.match, where)

    route_level = (
        HeaderMutation.from_protos(proto.request_headers_to_add, proto.request_headers_to_remove,
                                   where),
        HeaderMutation.from_protos(proto.response_headers_to_add,
                                   proto.response_headers_to_remove, where))
    request_levels = [route_level[0], vhost.request_mutation, table.request_mutation]
    response_levels = [route_level[1], vhost.response_mutation, table.response_mutation]
    if table.most_specific_header_mutations_wins:
        request_levels.reverse()
        response_levels.reverse()
    entry._request_mutations = tuple(m for m in request_levels if m is not None)
    entry._response_mutations = tuple(m for m in response_levels if m is not None)

    entry.typed_per_filter_config = {**vhost.typed_per_filter_config,
                                     **dict(proto.typed_per_filter_config)}
    if proto.HasField("per_request_buffer_limit_bytes"):
        entry.per_request_buffer_limit_bytes = proto.per_request_buffer_limit_bytes.value
    elif vhost.proto.HasField("per_request_buffer_limit_bytes"):
        entry.per_request_buffer_limit_bytes = vhost.proto.per_request_buffer_limit_bytes.value

    if kind == "route":
        _compile_route_action(entry, proto.route, vhost, table, where)
    elif kind == "redirect":
        entry._redirect = _Redirect(proto.redirect, where)
        entry.redirect_status = _REDIRECT_CODES[proto.redirect.response_code]
        entry.adds_location = True
    elif kind == "direct_response":
        status = proto.direct_response.status
        if not 200 <= status < 600:
            raise RouteConfigError(f"{where}: direct_response status {status} is not in "
                                   "[200, 600)")
        entry.direct_status = status
        entry.direct_body = _direct_body(proto.direct_response, table.max_direct_response_body,
                                         where)
        entry.adds_location = status == 201 or 300 <= status < 400
    # Flags the router checks per request, so a route without mutations costs no call (set
    # once the action is compiled: a weighted cluster may carry the only mutations).
    weighted = entry.weighted_clusters or ()
    entry.mutates_request = bool(entry._request_mutations) or any(
        w.request_mutation is not None for w in weighted)
    entry.mutates_response = bool(entry._response_mutations) or any(
        w.response_mutation is not None for w in weighted)
    return entry


def _compile_route_action(entry: RouteEntry, action: Any, vhost: VirtualHost, table: RouteTable,
                          where: str) -> None:
    entry.action_proto = action
    specifier = action.WhichOneof("cluster_specifier")
    if specifier == "cluster":
        entry.cluster_name = action.cluster
    elif specifier == "cluster_header":
        entry.cluster_header = action.cluster_header.lower()
    elif specifier == "weighted_clusters":
        weighted = action.weighted_clusters
        clusters = tuple(WeightedCluster(c, where) for c in weighted.clusters)
        ends, total = [], 0
        for cluster in clusters:
            total += cluster.weight
            ends.append(total)
        if total == 0:
            raise RouteConfigError(
                f"{where}: sum of weights in the weighted_cluster must be greater than 0")
        if total > _MAX_WEIGHT_SUM:
            raise RouteConfigError(f"{where}: the sum of weights of all weighted clusters "
                                   f"exceeds {_MAX_WEIGHT_SUM}")
        entry.weighted_clusters, entry.total_weight, entry._weight_ends = clusters, total, ends
        if weighted.header_name:
            entry.random_value_header = weighted.header_name.lower()
    entry.cluster_not_found_response_code = _CLUSTER_NOT_FOUND_CODES[
        action.cluster_not_found_response_code]
    entry.priority = action.priority

    timeout = _ms(action.timeout) / 1000 if action.HasField("timeout") else DEFAULT_ROUTE_TIMEOUT
    entry.timeout = timeout or None
    # x-envoy-expected-rq-timeout-ms, formatted once rather than per request.
    entry.timeout_ms_header = str(int(timeout * 1000)) if timeout else ""
    if action.HasField("idle_timeout"):
        entry.idle_timeout = _ms(action.idle_timeout) / 1000  # 0.0: disabled

    rewrites = sum((bool(action.prefix_rewrite), action.HasField("regex_rewrite"),
                    action.HasField("path_rewrite_policy")))
    if rewrites > 1:
        raise RouteConfigError(
            f"{where}: specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy")
    entry.prefix_rewrite = action.prefix_rewrite
    if action.HasField("regex_rewrite"):
        entry._regex_rewrite = _compile_rewrite(action.regex_rewrite, where)
    host_rewrite = action.WhichOneof("host_rewrite_specifier")
    if host_rewrite == "host_rewrite_literal":
        entry.host_rewrite_literal = action.host_rewrite_literal
    elif host_rewrite == "host_rewrite_header":
        entry.host_rewrite_header = action.host_rewrite_header.lower()
    elif host_rewrite == "host_rewrite_path_regex":
        entry._host_rewrite_regex = _compile_rewrite(action.host_rewrite_path_regex, where)
    elif host_rewrite == "auto_host_rewrite":
        entry.auto_host_rewrite = action.auto_host_rewrite.value
    entry.append_x_forwarded_host = action.append_x_forwarded_host
    entry.rewrites_request = bool(
        entry.prefix_rewrite or entry._regex_rewrite or entry.host_rewrite_literal
        or entry.host_rewrite_header or entry._host_rewrite_regex or entry.auto_host_rewrite
        or any(w.host_rewrite_literal for w in entry.weighted_clusters or ()))

    entry.hash_policy = list(action.hash_policy)
    if entry.hash_policy:
        from outrider.router.hash_policy import compile_hash_policy  # its own module's concern

        try:
            entry.compiled_hash_policy = compile_hash_policy(entry.hash_policy)
        except ValueError as exc:
            raise RouteConfigError(f"{where}: hash_policy: {exc}") from None
    entry.upgrade_configs = list(action.upgrade_configs)
    entry.retry_policy_proto = (action.retry_policy if action.HasField("retry_policy")
                                else vhost.retry_policy_proto)
    entry.hedge_policy_proto = (action.hedge_policy if action.HasField("hedge_policy")
                                else vhost.hedge_policy_proto)
    entry.request_mirror_policies = (list(action.request_mirror_policies)
                                     or list(vhost.proto.request_mirror_policies)
                                     or list(table.proto.request_mirror_policies))


class RouteTable:
    """A compiled ``RouteConfiguration``. Build with ``from_proto``; query with ``route``."""

    def __init__(self, proto: Any, strip_port_fallback: bool = False) -> None:
        where = f"route configuration {proto.name!r}"
        self.proto = proto
        self.name: str = proto.name
        self.ignore_port_in_host_matching: bool = proto.ignore_port_in_host_matching
        self.ignore_path_parameters_in_path_matching: bool = (
            proto.ignore_path_parameters_in_path_matching)
        self.most_specific_header_mutations_wins: bool = proto.most_specific_header_mutations_wins
        self.internal_only_headers = tuple(h.lower() for h in proto.internal_only_headers)
        self.max_direct_response_body = (proto.max_direct_response_body_size_bytes.value
                                         if proto.HasField("max_direct_response_body_size_bytes")
                                         else 4096)
        self.request_mutation = HeaderMutation.from_protos(
            proto.request_headers_to_add, proto.request_headers_to_remove, where)
        self.response_mutation = HeaderMutation.from_protos(
            proto.response_headers_to_add, proto.response_headers_to_remove, where)
        self.typed_per_filter_config: dict[str, Any] = dict(proto.typed_per_filter_config)
        self.strip_port_fallback = strip_port_fallback

        self.virtual_hosts = tuple(VirtualHost(v, self) for v in proto.virtual_hosts)
        self._exact: dict[str, VirtualHost] = {}
        suffixes: dict[int, dict[str, VirtualHost]] = {}
        prefixes: dict[int, dict[str, VirtualHost]] = {}
        self._default: VirtualHost | None = None
        for vhost in self.virtual_hosts:
            for domain in vhost.domains:
                domain = ascii_lower(domain)
                if domain == "*":
                    if self._default is not None:
                        raise RouteConfigError(f"{where}: only a single wildcard domain is "
                                               f"permitted (virtual host {vhost.name!r})")
                    self._default = vhost
                    continue
                if domain.startswith("*"):
                    bucket, key = suffixes.setdefault(len(domain) - 1, {}), domain[1:]
                elif domain.endswith("*"):
                    bucket, key = prefixes.setdefault(len(domain) - 1, {}), domain[:-1]
                else:
                    bucket, key = self._exact, domain
                if key in bucket:
                    raise RouteConfigError(
                        f"{where}: only unique values for domains are permitted; duplicate "
                        f"domain {domain!r} in virtual hosts {bucket[key].name!r} and "
                        f"{vhost.name!r}")
                bucket[key] = vhost
        # Longest wildcard first, as Envoy's std::map<length, ..., std::greater>.
        self._suffixes = sorted(suffixes.items(), reverse=True)
        self._prefixes = sorted(prefixes.items(), reverse=True)
        self._only_default = not (self._exact or self._suffixes or self._prefixes)

    @classmethod
    def from_proto(cls, config: Any, *, strip_port_fallback: bool = False) -> RouteTable:
        """Compile ``envoy.config.route.v3.RouteConfiguration``; RouteConfigError if invalid.

        ``strip_port_fallback``: when the authority has a port and no domain matches it, try
        again without the port before the ``*`` virtual host (not Envoy's behaviour).
        """
        return cls(config, strip_port_fallback)

    def _match_domain(self, host: str) -> VirtualHost | None:
        vhost = self._exact.get(host)
        if vhost is not None:
            return vhost
        size = len(host)
        for length, bucket in self._suffixes:
            if length < size and (vhost := bucket.get(host[size - length :])) is not None:
                return vhost
        for length, bucket in self._prefixes:
            if length < size and (vhost := bucket.get(host[:length])) is not None:
                return vhost
        return None

    def find_virtual_host(self, authority: str) -> VirtualHost | None:
        """The virtual host for an ``:authority`` (see the module docstring), or None."""
        if self._only_default:
            return self._default
        host = ascii_lower(authority)
        port = _port_start(host)
        if self.ignore_port_in_host_matching and port >= 0:
            host, port = host[:port], -1
        vhost = self._match_domain(host)
        if vhost is None and port >= 0 and self.strip_port_fallback:
            vhost = self._match_domain(host[:port])
        return vhost if vhost is not None else self._default

    def route(self, headers: Any, random_value: int = 0) -> RouteEntry | None:
        """The matching route for a request, or None (no virtual host or no route: 404 NR).
        ``random_value`` drives ``runtime_fraction`` matches, as Envoy's stream random value."""
        vhost = self.find_virtual_host(headers.authority)
        if vhost is None:
            return None
        return vhost.route(headers, random_value)

    def __repr__(self) -> str:
        return f"RouteTable({self.name!r}, {len(self.virtual_hosts)} virtual hosts)"
