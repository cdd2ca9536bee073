"""Compiled matchers: strings, paths, headers and query parameters (Envoy's semantics).

Each matcher is built once from its protobuf message and then answers ``match``/``matches``
per request without touching protobuf. Regexes are Envoy's RE2 ``safe_regex``: they are
translated to Python ``re`` at compile time (``\\z``, ``(?<name>``, ``\\Q..\\E``, POSIX classes),
RE2-only-rejects (backreferences, lookaround) are refused, and they always match the **whole**
input (``fullmatch``), as RE2's FullMatch does in Envoy.

Case folding is ASCII-only, like absl's ``AsciiStrToLower``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "HeaderMatcher",
    "PathMatcher",
    "QueryParameterMatcher",
    "RouteConfigError",
    "StringMatcher",
    "ascii_lower",
    "compile_regex",
    "compile_route_match",
    "compile_substitution",
    "header_value",
    "is_grpc_request",
    "parse_query",
]


class RouteConfigError(ValueError):
    """A route configuration Envoy would reject; the message names the virtual host / route."""


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def ascii_lower(value: str) -> str:
    """Lowercase A-Z only (absl::AsciiStrToLower); other characters are left alone."""
    return value.lower() if value.isascii() else value.translate(_ASCII_LOWER)


# --- RE2 -> Python re -------------------------------------------------------------------------

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}


def _translate_re2(pattern: str) -> str:
    """Rewrite the RE2 constructs Python spells differently; refuse the ones RE2 rejects."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q":  # \Q...\E quotes a literal run
                stop = pattern.find("\\E", i + 2)
                stop = n if stop < 0 else stop
                literal = pattern[i + 2 : stop]
                out.append("".join("\\" + c if not c.isalnum() else c for c in literal))
                i = stop + 2
                continue
            if nxt == "z" and not in_class:
                out.append("\\Z")
            elif nxt in "123456789" and not in_class:
                raise ValueError("backreferences are not supported by RE2")
            else:
                out.append(ch + nxt)
            i += 2
            continue
        if in_class:
            if ch == "[" and pattern.startswith("[:", i):
                stop = pattern.find(":]", i + 2)
                name = pattern[i + 2 : stop] if stop > 0 else ""
                if name not in _POSIX_CLASSES:
                    raise ValueError(f"unsupported character class [:{name}:]")
                out.append(_POSIX_CLASSES[name])
                i = stop + 2
                continue
            if ch == "]":
                in_class = False
                out.append(ch)
            elif ch in "[&~|":
                out.append("\\" + ch)  # literal in RE2; Python warns about set operations
            else:
                out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            if i < n and pattern[i] == "]":  # a leading ']' is a literal
                out.append("\\]")
                i += 1
            continue
        if ch == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2 : i + 4]
            if rest[:1] in ("=", "!") or rest in ("<=", "<!"):
                raise ValueError("lookaround is not supported by RE2")
            if rest[:2] == "P=":
                raise ValueError("backreferences are not supported by RE2")
            if rest[:1] == "<":  # (?<name>...) is RE2's other spelling of (?P<name>...)
                out.append("(?P<")
                i += 3
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def compile_regex(pattern: str, where: str = "") -> re.Pattern[str]:
    """Compile an Envoy ``safe_regex`` (RE2 syntax) into a Python pattern, ASCII semantics."""
    try:
        return re.compile(_translate_re2(pattern), re.ASCII)
    except (re.error, ValueError) as exc:
        raise RouteConfigError(f"{where}: invalid regex {pattern!r}: {exc}") from None


def compile_substitution(pattern: re.Pattern[str], substitution: str, where: str = "") -> str:
    """Translate an RE2 rewrite string (``\\0``-``\\9``, ``\\\\``) to a ``re.sub`` template.

    Like RE2's CheckRewriteString, a group number above the pattern's group count or any other
    backslash escape is a config error.
    """
    out: list[str] = []
    i, n = 0, len(substitution)
    while i < n:
        ch = substitution[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = substitution[i + 1] if i + 1 < n else ""
        if nxt.isdigit() and nxt.isascii():
            group = int(nxt)
            if group > pattern.groups:
                raise RouteConfigError(
                    f"{where}: substitution {substitution!r} refers to group \\{group} but the "
                    f"pattern has {pattern.groups}")
            out.append(f"\\g<{group}>")
        elif nxt == "\\":
            out.append("\\\\")
        else:
            raise RouteConfigError(f"{where}: invalid rewrite escape in {substitution!r}")
        i += 2
    return "".join(out)


# --- strings ----------------------------------------------------------------------------------


class StringMatcher:
    """``envoy.type.matcher.v3.StringMatcher``: exact / prefix / suffix / contains / safe_regex.

    ``ignore_case`` applies to all but ``safe_regex`` (as in Envoy). ``match(value)`` is the
    whole contract; build with ``from_proto`` or ``StringMatcher(kind, pattern, ignore_case)``.
    """

    __slots__ = ("ignore_case", "kind", "match", "pattern")

    def __init__(self, kind: str, pattern: str, ignore_case: bool = False,
                 where: str = "") -> None:
        self.kind = kind
        self.pattern = pattern
        self.ignore_case = ignore_case and kind != "safe_regex"
        self.match: Callable[[str], bool] = self._build(where)

    def _build(self, where: str) -> Callable[[str], bool]:
        kind, pattern = self.kind, self.pattern
        if kind == "safe_regex":
            fullmatch = compile_regex(pattern, where).fullmatch
            return lambda value: fullmatch(value) is not None
        if not self.ignore_case:
            if kind == "exact":
                return pattern.__eq__
            if kind == "prefix":
                return lambda value: value.startswith(pattern)
            if kind == "suffix":
                return lambda value: value.endswith(pattern)
            if kind == "contains":
                return lambda value: pattern in value
        else:
            low, size = ascii_lower(pattern), len(pattern)
            if kind == "exact":
                return lambda value: len(value) == size and ascii_lower(value) == low
            if kind == "prefix":
                return lambda value: ascii_lower(value[:size]) == low
            if kind == "suffix":
                return lambda value: len(value) >= size and ascii_lower(
                    value[len(value) - size :]) == low
            if kind == "contains":
                return lambda value: low in ascii_lower(value)
        raise RouteConfigError(f"{where}: unsupported string matcher {kind!r}")

    @classmethod
    def from_proto(cls, msg: Any, where: str = "") -> StringMatcher:
        """Build from ``envoy.type.matcher.v3.StringMatcher``; ``custom`` is unsupported."""
        kind = msg.WhichOneof("match_pattern")
        if kind is None:
            raise RouteConfigError(f"{where}: string matcher has no match_pattern")
        if kind == "safe_regex":
            return cls(kind, msg.safe_regex.regex, False, where)
        if kind not in ("exact", "prefix", "suffix", "contains"):
            raise RouteConfigError(f"{where}: unsupported string matcher {kind!r}")
        return cls(kind, getattr(msg, kind), msg.ignore_case, where)

    def __repr__(self) -> str:
        suffix = ", ignore_case" if self.ignore_case else ""
        return f"StringMatcher({self.kind}={self.pattern!r}{suffix})"


# --- headers ----------------------------------------------------------------------------------


def header_value(headers: Any, name: str) -> str | None:
    """All values of ``name`` joined with ``,`` (Envoy's getAllOfHeaderAsString), or None.

    Pseudo-headers and ``host`` come from the header map's attributes via ``get``.
    """
    if name[0] == ":" or name == "host":
        return headers.get(name)
    found: str | None = None
    extra: list[str] | None = None
    for key, value in headers.items():
        if key == name:
            if found is None:
                found = value
            elif extra is None:
                extra = [found, value]
            else:
                extra.append(value)
    return found if extra is None else ",".join(extra)


_INT64 = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII).fullmatch


class HeaderMatcher:
    """``envoy.config.route.v3.HeaderMatcher``; ``matches(headers)`` per Envoy's matchHeaders.

    * Repeated headers are joined with ``,`` before matching.
    * A missing header fails every matcher, even inverted ones, unless
      ``treat_missing_header_as_empty`` (then the value is ``""``). ``present_match`` is the
      exception: it asks exactly "is it there" and ``invert_match`` flips the answer.
    * The legacy ``exact_match: ""`` matches any value, as in Envoy.
    """

    __slots__ = ("_value_match", "invert", "missing_as_empty", "name", "present")

    def __init__(self, name: str, value_match: Callable[[str], bool] | None,
                 present: bool = True, invert: bool = False,
                 missing_as_empty: bool = False) -> None:
        self.name = name.lower()
        self._value_match = value_match  # None: a presence check
        self.present = present
        self.invert = invert
        self.missing_as_empty = missing_as_empty

    @classmethod
    def from_proto(cls, msg: Any, where: str = "") -> HeaderMatcher:
        where = f"{where}: header matcher {msg.name!r}"
        kind = msg.WhichOneof("header_match_specifier")
        present = True
        match: Callable[[str], bool] | None = None
        if kind == "exact_match":
            expected = msg.exact_match
            match = (lambda _v: True) if not expected else expected.__eq__
        elif kind == "safe_regex_match":
            match = StringMatcher("safe_regex", msg.safe_regex_match.regex, where=where).match
        elif kind == "range_match":
            start, end = msg.range_match.start, msg.range_match.end

            def match(value: str) -> bool:
                return _INT64(value) is not None and start <= int(value) < end
        elif kind == "present_match":
            present = msg.present_match
        elif kind in ("prefix_match", "suffix_match", "contains_match"):
            match = StringMatcher(kind[: -len("_match")], getattr(msg, kind), where=where).match
        elif kind == "string_match":
            match = StringMatcher.from_proto(msg.string_match, where).match
        return cls(msg.name, match, present, msg.invert_match, msg.treat_missing_header_as_empty)

    def matches(self, headers: Any) -> bool:
        value = header_value(headers, self.name)
        if self._value_match is None:
            return ((value is not None) == self.present) != self.invert
        if value is None:
            if not self.missing_as_empty:
                return False
            value = ""
        return self._value_match(value) != self.invert

    def __repr__(self) -> str:
        return f"HeaderMatcher({self.name!r}, invert={self.invert})"


# --- query parameters -------------------------------------------------------------------------


def parse_query(path: str) -> dict[str, str]:
    """The first value of each query parameter in ``path``, not percent-decoded.

    As Envoy's parseQueryString: the query starts after the first ``?``, parameters split on
    ``&``, a parameter without ``=`` has the value ``""``.
    """
    q = path.find("?")
    params: dict[str, str] = {}
    if q < 0:
        return params
    for part in path[q + 1 :].split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        params.setdefault(key, value)
    return params


class QueryParameterMatcher:
    """``envoy.config.route.v3.QueryParameterMatcher``: the parameter must be present and, with a
    ``string_match``, its first value must match. Names are case-sensitive."""

    __slots__ = ("_value_match", "name")

    def __init__(self, name: str, value_match: Callable[[str], bool] | None) -> None:
        self.name = name
        self._value_match = value_match

    @classmethod
    def from_proto(cls, msg: Any, where: str = "") -> QueryParameterMatcher:
        if msg.WhichOneof("query_parameter_match_specifier") == "string_match":
            where = f"{where}: query parameter matcher {msg.name!r}"
            return cls(msg.name, StringMatcher.from_proto(msg.string_match, where).match)
        return cls(msg.name, None)

    def matches(self, params: dict[str, str]) -> bool:
        value = params.get(self.name)
        if value is None:
            return False
        return self._value_match is None or self._value_match(value)


# --- paths ------------------------------------------------------------------------------------


class PathMatcher:
    """The path part of a ``RouteMatch``; ``match(path)`` takes the path without the query.

    ``kind`` is one of ``prefix``, ``path``, ``safe_regex``, ``path_separated_prefix``,
    ``connect_matcher`` (always true here; the method is checked by the route) or ``never``
    (a ``path_match_policy`` extension, which is not supported, never matches).
    ``value`` is the configured prefix / path (what a ``prefix_rewrite`` replaces).
    """

    __slots__ = ("case_sensitive", "kind", "match", "value")

    def __init__(self, kind: str, value: str = "", case_sensitive: bool = True,
                 where: str = "") -> None:
        self.kind = kind
        self.value = value
        self.case_sensitive = case_sensitive
        self.match: Callable[[str], bool] = self._build(where)

    def _build(self, where: str) -> Callable[[str], bool]:
        kind, value, size = self.kind, self.value, len(self.value)
        if kind == "prefix":
            return StringMatcher("prefix", value, not self.case_sensitive).match
        if kind == "path":
            return StringMatcher("exact", value, not self.case_sensitive).match
        if kind == "safe_regex":
            return StringMatcher("safe_regex", value, where=where).match
        if kind == "path_separated_prefix":
            starts = StringMatcher("prefix", value, not self.case_sensitive).match
            return lambda path: starts(path) and (len(path) == size or path[size] == "/")
        if kind == "connect_matcher":
            return lambda _path: True
        if kind == "never":
            return lambda _path: False
        raise RouteConfigError(f"{where}: unsupported path specifier {kind!r}")

    def __repr__(self) -> str:
        return f"PathMatcher({self.kind}={self.value!r})"


def is_grpc_request(headers: Any) -> bool:
    """Envoy's isGrpcRequestHeaders: content-type ``application/grpc`` or ``application/grpc+x``
    or ``application/grpc;...``."""
    content_type = headers.get("content-type")
    if content_type is None or not content_type.startswith("application/grpc"):
        return False
    return len(content_type) == 16 or content_type[16] in "+;"


# --- a whole RouteMatch -----------------------------------------------------------------------

_DENOMINATORS = (100, 10_000, 1_000_000)  # FractionalPercent.DenominatorType


def _header_check(matcher: HeaderMatcher) -> Callable[[Any, int], bool]:
    return lambda headers, _random_value: matcher.matches(headers)


def _compile_conditions(match: Any, where: str) -> Callable[[Any, int], bool] | None:
    """Everything in a RouteMatch besides the path, as one predicate (None: always true)."""
    checks: list[Callable[[Any, int], bool]] = []
    if match.WhichOneof("path_specifier") == "connect_matcher":
        checks.append(lambda headers, _r: headers.method == "CONNECT")
    if match.HasField("runtime_fraction"):
        fraction = match.runtime_fraction.default_value
        numerator, denominator = fraction.numerator, _DENOMINATORS[fraction.denominator]
        checks.append(lambda _h, random_value: random_value % denominator < numerator)
    if match.HasField("grpc"):
        checks.append(lambda headers, _r: is_grpc_request(headers))
    checks.extend(_header_check(HeaderMatcher.from_proto(h, where)) for h in match.headers)
    if len(match.query_parameters):
        params = tuple(QueryParameterMatcher.from_proto(q, where) for q in match.query_parameters)

        def query_check(headers: Any, _r: int) -> bool:
            parsed = parse_query(headers.path)
            return all(p.matches(parsed) for p in params)

        checks.append(query_check)
    if match.HasField("tls_context") and (
            (match.tls_context.HasField("presented") and match.tls_context.presented.value)
            or (match.tls_context.HasField("validated") and match.tls_context.validated.value)):
        checks.append(lambda _h, _r: False)  # no client certificates are ever presented
    if len(match.dynamic_metadata) or len(match.filter_state):
        checks.append(lambda _h, _r: False)  # no metadata/filter state to match against
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    bound = tuple(checks)
    return lambda headers, random_value: all(c(headers, random_value) for c in bound)


def _compile_path(match: Any, where: str) -> PathMatcher:
    kind = match.WhichOneof("path_specifier")
    case_sensitive = match.case_sensitive.value if match.HasField("case_sensitive") else True
    if kind in ("prefix", "path", "path_separated_prefix"):
        value = getattr(match, kind)
        if kind == "path_separated_prefix" and (value.endswith("/") or "?" in value
                                                or "#" in value):
            raise RouteConfigError(f"{where}: path_separated_prefix {value!r} must not end in "
                                   "'/' nor hold '?' or '#'")
        return PathMatcher(kind, value, case_sensitive, where)
    if kind == "safe_regex":
        return PathMatcher(kind, match.safe_regex.regex, where=where)
    if kind == "connect_matcher":
        return PathMatcher(kind, where=where)
    if kind == "path_match_policy":
        return PathMatcher("never", where=where)
    raise RouteConfigError(f"{where}: route match has no path specifier")


def compile_route_match(match: Any, where: str = "") -> tuple[
        PathMatcher, Callable[[Any, int], bool] | None]:
    """Compile ``envoy.config.route.v3.RouteMatch``: the path matcher, plus one predicate
    ``(headers, random_value) -> bool`` for everything else (None when there is nothing else).

    ``runtime_fraction`` uses its default value: ``random_value % denominator < numerator``.
    ``tls_context`` asking for a presented/validated certificate, ``dynamic_metadata`` and
    ``filter_state`` never match (none of them exist here).
    """
    return _compile_path(match, where), _compile_conditions(match, where)
