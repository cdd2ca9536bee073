"""A route's ``hash_policy`` list compiled into one object: request → 64-bit hash key or None.

Follows Envoy's ``Http::HashPolicyImpl``:

* ``header``: every value of the header (after the optional ``regex_rewrite``), sorted, hashed
  with chained XXH64 seeds (``seed = XXH64(v, seed)``, starting at 0). ``:authority``/``host``
  and ``:path`` are readable like any header.
* ``cookie``: XXH64 of the cookie's value (surrounding double quotes stripped). When the cookie
  is absent and ``ttl`` is set, a value is generated — Envoy's: 16 lowercase hex digits of
  XXH64(connection key), the connection key being remote address + local address as Envoy
  prints them (``"10.0.0.7:51234127.0.0.1:10000"``) — and ``add_cookie`` is called with the full
  ``Set-Cookie`` value (:func:`make_set_cookie_value`): ``name="v"; Max-Age=N; Path=/p; HttpOnly``.
* ``connection_properties.source_ip``: XXH64 of the downstream IP string.
* ``query_parameter``: XXH64 of the first value of the parameter (not URL-decoded, as Envoy).
* ``filter_state``: rejected at compile time (Outrider has no filter state objects).
* Keys combine as ``hash = rotl64(hash, 1) ^ new``; a ``terminal`` policy that has produced a
  key stops the evaluation. No policy yielding a key → None (the balancer then picks at random).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import xxhash
from envoy.config.route.v3 import route_components_pb2

from outrider.http.headers import RequestHeaders

HashPolicyProto = route_components_pb2.RouteAction.HashPolicy
AddCookie = Callable[[str], None]

_MASK64 = (1 << 64) - 1
_xxh64 = xxhash.xxh64_intdigest


class UnsupportedHashPolicyError(ValueError):
    """A hash_policy entry Outrider cannot evaluate (``filter_state``, or an empty entry)."""


def make_set_cookie_value(
    name: str,
    value: str,
    path: str = "",
    max_age: int = 0,
    httponly: bool = True,
    attributes: Iterable[tuple[str, str]] = (),
) -> str:
    """The ``Set-Cookie`` header value Envoy emits (``Utility::makeSetCookieValue``).

    ``name="value"``, then ``; Max-Age=N`` when max_age > 0, ``; Path=p`` when path is set, each
    attribute as ``; name=value`` (or ``; name`` when its value is empty), then ``; HttpOnly``.
    """
    parts = [f'{name}="{value}"']
    if max_age:
        parts.append(f"Max-Age={max_age}")
    if path:
        parts.append(f"Path={path}")
    for attr_name, attr_value in attributes:
        parts.append(f"{attr_name}={attr_value}" if attr_value else attr_name)
    if httponly:
        parts.append("HttpOnly")
    return "; ".join(parts)


def generated_cookie_value(connection_key: str) -> str:
    """Envoy's generated sticky-cookie value: XXH64 of the connection key as 16 hex digits."""
    return f"{_xxh64(connection_key.encode('latin-1')):016x}"


def parse_cookie_value(headers: RequestHeaders, name: str) -> str:
    """The value of cookie ``name`` in the request's ``cookie`` headers, or "" (Envoy's
    ``parseCookieValue``: first match wins, surrounding double quotes stripped)."""
    for header_value in headers.get_all("cookie"):
        for token in header_value.split(";"):
            if not token:
                continue
            eq = token.find("=")
            if eq < 0:
                continue
            if token[:eq].lstrip(" ") == name:
                value = token[eq + 1:]
                if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                    value = value[1:-1]
                return value
    return ""


def query_parameter_value(path: str, name: str) -> str | None:
    """The first raw value of query parameter ``name`` in ``path``; "" for a bare ``?name``."""
    q = path.find("?")
    if q < 0:
        return None
    query = path[q + 1:]
    fragment = query.find("#")
    if fragment >= 0:
        query = query[:fragment]
    for pair in query.split("&"):
        if not pair:
            continue
        eq = pair.find("=")
        key, value = (pair, "") if eq < 0 else (pair[:eq], pair[eq + 1:])
        if key == name:
            return value
    return None


def _re2_substitution(substitution: str) -> str:
    # RE2 writes group references as \1 .. \9 and \0 (whole match); Python needs \g<n>.
    return re.sub(r"\\(\d)", r"\\g<\1>", substitution)


# -- one method per policy kind; each returns its key or None ------------------------------------


class _Method:
    __slots__ = ("terminal",)

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal

    def evaluate(self, headers: RequestHeaders, downstream_ip: str, add_cookie: AddCookie | None,
                 connection_key: str | None) -> int | None:  # pragma: no cover
        raise NotImplementedError


class _HeaderMethod(_Method):
    __slots__ = ("name", "pattern", "substitution")

    def __init__(self, terminal: bool, name: str, pattern: re.Pattern[str] | None,
                 substitution: str) -> None:
        super().__init__(terminal)
        self.name = name
        self.pattern = pattern
        self.substitution = substitution

    def evaluate(self, headers, downstream_ip, add_cookie, connection_key):
        name = self.name
        if name[0] == ":" or name == "host":
            value = headers.get(name)
            values = [value] if value is not None else []
        else:
            values = headers.get_all(name)
        if not values:
            return None
        if self.pattern is not None:
            values = [self.pattern.sub(self.substitution, v) for v in values]
        if len(values) == 1:
            return _xxh64(values[0].encode("latin-1"))
        seed = 0
        for value in sorted(values):
            seed = _xxh64(value.encode("latin-1"), seed)
        return seed


class _CookieMethod(_Method):
    __slots__ = ("attributes", "name", "path", "ttl")

    def __init__(self, terminal: bool, name: str, path: str, ttl: int | None,
                 attributes: tuple[tuple[str, str], ...]) -> None:
        super().__init__(terminal)
        self.name = name
        self.path = path
        self.ttl = ttl
        self.attributes = attributes

    def evaluate(self, headers, downstream_ip, add_cookie, connection_key):
        value = parse_cookie_value(headers, self.name)
        if value:
            return _xxh64(value.encode("latin-1"))
        if self.ttl is None:
            return None
        value = generated_cookie_value(connection_key if connection_key else downstream_ip)
        if add_cookie is not None:
            add_cookie(make_set_cookie_value(self.name, value, self.path, self.ttl, True,
                                             self.attributes))
        return _xxh64(value.encode("latin-1"))


class _SourceIpMethod(_Method):
    __slots__ = ()

    def evaluate(self, headers, downstream_ip, add_cookie, connection_key):
        if not downstream_ip:
            return None
        return _xxh64(downstream_ip.encode("latin-1"))


class _QueryParameterMethod(_Method):
    __slots__ = ("name",)

    def __init__(self, terminal: bool, name: str) -> None:
        super().__init__(terminal)
        self.name = name

    def evaluate(self, headers, downstream_ip, add_cookie, connection_key):
        value = query_parameter_value(headers.path, self.name)
        return None if value is None else _xxh64(value.encode("latin-1"))


class HashPolicy:
    """A compiled ``hash_policy`` list; ``compute`` is called once per request."""

    __slots__ = ("methods",)

    def __init__(self, methods: Sequence[_Method]) -> None:
        self.methods = tuple(methods)

    def compute(
        self,
        headers: RequestHeaders,
        downstream_ip: str,
        add_cookie: AddCookie | None,
        connection_key: str | None = None,
    ) -> int | None:
        """The request's 64-bit hash key, or None when no policy produced one.

        ``add_cookie(set_cookie_value)`` is called when a cookie policy generated a cookie; the
        router must send that value in a ``Set-Cookie`` response header. ``connection_key`` (the
        downstream remote + local address strings, concatenated) makes the generated value match
        Envoy's; without it the downstream IP is used.
        """
        hash_key: int | None = None
        for method in self.methods:
            new = method.evaluate(headers, downstream_ip, add_cookie, connection_key)
            if new is not None:
                if hash_key is None:
                    hash_key = new
                else:
                    hash_key = (((hash_key << 1) | (hash_key >> 63)) & _MASK64) ^ new
            if method.terminal and hash_key is not None:
                break
        return hash_key


def compile_hash_policy(policies: Iterable[HashPolicyProto]) -> HashPolicy | None:
    """Compile ``RouteAction.hash_policy``; None for an empty list.

    Raises UnsupportedHashPolicyError for ``filter_state`` or an entry with no policy set, and
    for a ``regex_rewrite`` whose pattern does not compile.
    """
    methods: list[_Method] = []
    for i, policy in enumerate(policies):
        kind = policy.WhichOneof("policy_specifier")
        terminal = policy.terminal
        where = f"hash_policy[{i}]"
        if kind == "header":
            header = policy.header
            name = header.header_name.lower()
            if not name:
                raise UnsupportedHashPolicyError(f"{where}.header.header_name: must be set")
            pattern: re.Pattern[str] | None = None
            substitution = ""
            if header.HasField("regex_rewrite"):
                try:
                    pattern = re.compile(header.regex_rewrite.pattern.regex)
                except re.error as exc:
                    raise UnsupportedHashPolicyError(
                        f"{where}.header.regex_rewrite.pattern: {exc}") from None
                substitution = _re2_substitution(header.regex_rewrite.substitution)
            methods.append(_HeaderMethod(terminal, name, pattern, substitution))
        elif kind == "cookie":
            cookie = policy.cookie
            if not cookie.name:
                raise UnsupportedHashPolicyError(f"{where}.cookie.name: must be set")
            ttl = int(cookie.ttl.seconds) if cookie.HasField("ttl") else None
            attributes = tuple((a.name, a.value) for a in cookie.attributes)
            methods.append(_CookieMethod(terminal, cookie.name, cookie.path, ttl, attributes))
        elif kind == "connection_properties":
            if policy.connection_properties.source_ip:
                methods.append(_SourceIpMethod(terminal))
        elif kind == "query_parameter":
            if not policy.query_parameter.name:
                raise UnsupportedHashPolicyError(f"{where}.query_parameter.name: must be set")
            methods.append(_QueryParameterMethod(terminal, policy.query_parameter.name))
        elif kind == "filter_state":
            raise UnsupportedHashPolicyError(
                f"{where}.filter_state: not supported (Outrider has no filter state objects)")
        else:
            raise UnsupportedHashPolicyError(f"{where}: no hash policy specifier set")
    return HashPolicy(methods) if methods else None
