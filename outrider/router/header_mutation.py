"""Header mutations: ``*_headers_to_add`` / ``*_headers_to_remove`` (Envoy's HeaderParser).

One ``HeaderMutation`` is one level (weighted cluster, route, virtual host or route
configuration). ``evaluate`` follows Envoy's ``HeaderParser::evaluateHeaders`` exactly:

1. every ``headers_to_remove`` name is removed;
2. every value is formatted, and each header's ``append_action`` is decided against the map
   as it is **now** (so two adds in one level do not see each other);
3. the overwrites are applied, then the appends.

A value that formats to ``""`` is skipped unless ``keep_empty_value``. The deprecated
``append`` bool maps to APPEND_IF_EXISTS_OR_ADD (true) / OVERWRITE_IF_EXISTS_OR_ADD (false);
setting it together with a non-default ``append_action`` is a config error, as are names
starting with ``:`` or equal to ``host``.

Values may hold Envoy ``%COMMAND%`` formatters, compiled once into parts: see ``_COMMANDS``.
``%%`` is a literal ``%``; any other lone ``%`` or an unknown command is a config error.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outrider.router.matchers import RouteConfigError

__all__ = ["APPEND_ACTIONS", "FormatterContext", "HeaderMutation", "compile_format"]

APPEND_IF_EXISTS_OR_ADD = 0
ADD_IF_ABSENT = 1
OVERWRITE_IF_EXISTS_OR_ADD = 2
OVERWRITE_IF_EXISTS = 3
APPEND_ACTIONS = {
    "APPEND_IF_EXISTS_OR_ADD": APPEND_IF_EXISTS_OR_ADD,
    "ADD_IF_ABSENT": ADD_IF_ABSENT,
    "OVERWRITE_IF_EXISTS_OR_ADD": OVERWRITE_IF_EXISTS_OR_ADD,
    "OVERWRITE_IF_EXISTS": OVERWRITE_IF_EXISTS,
}

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch


@dataclass(slots=True)
class FormatterContext:
    """What formatters may read about the stream. Addresses are ``"ip:port"`` (``"[v6]:port"``).

    Any object with these attribute names works; missing ones format as ``""``.
    ``request_headers`` is needed for ``%REQ(...)%`` in response headers.
    """

    downstream_remote_address: str = ""
    downstream_local_address: str = ""
    upstream_remote_address: str = ""
    protocol: str = "HTTP/1.1"
    start_time: float = 0.0
    request_headers: Any = None
    response_headers: Any = None


# A part is a literal string or a callable (ctx, request_headers, response_headers) -> str.
Part = Callable[[Any, Any, Any], str]


def _host_of(address: str) -> str:
    if address.startswith("["):
        end = address.find("]")
        return address[1:end] if end > 0 else address
    if address.count(":") == 1:
        return address.partition(":")[0]
    return address


def _port_of(address: str) -> str:
    if address.startswith("["):
        end = address.find("]:")
        return address[end + 2 :] if end > 0 else ""
    if address.count(":") == 1:
        return address.partition(":")[2]
    return ""


def _address(attr: str, transform: Callable[[str], str] | None) -> Part:
    if transform is None:
        return lambda ctx, _req, _resp: getattr(ctx, attr, "") or ""
    return lambda ctx, _req, _resp: transform(getattr(ctx, attr, "") or "")


_TIME_DIRECTIVES = re.compile(r"%(%|E([1-9])S|([1-9])?f|s)")
_DEFAULT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%E3SZ"


def format_time(fmt: str, epoch: float) -> str:
    """strftime in UTC plus Envoy's ``%E<n>S`` (seconds with n decimals), ``%<n>f`` (n
    fraction digits, 9 when n is absent) and ``%s`` (epoch seconds)."""
    # A float epoch carries about microsecond precision; finer digits would be noise.
    whole, micros = divmod(round(epoch * 1_000_000), 1_000_000)
    nanos = micros * 1000
    tm = time.gmtime(whole)

    def directive(m: re.Match[str]) -> str:
        token = m.group(1)
        if token == "%":
            return "%%"
        if token == "s":
            return str(whole)
        if m.group(2):
            return f"{tm.tm_sec:02d}.{nanos:09d}"[: 3 + int(m.group(2))]
        return f"{nanos:09d}"[: int(m.group(3) or 9)]

    return time.strftime(_TIME_DIRECTIVES.sub(directive, fmt), tm)


def _start_time(arg: str | None) -> Part:
    fmt = arg or _DEFAULT_TIME_FORMAT
    return lambda ctx, _req, _resp: format_time(fmt, getattr(ctx, "start_time", 0.0) or time.time())


def _header_part(arg: str | None, limit: int | None, response: bool, where: str) -> Part:
    if not arg:
        raise RouteConfigError(f"{where}: %REQ/%RESP need a header name")
    main, _, alt = arg.partition("?")
    main, alt = main.strip().lower(), alt.strip().lower()

    def part(ctx: Any, req: Any, resp: Any) -> str:
        headers = resp if response else req
        if headers is None:
            headers = getattr(ctx, "response_headers" if response else "request_headers", None)
            if headers is None:
                return ""
        value = headers.get(main)
        if value is None and alt:
            value = headers.get(alt)
        if value is None:
            return ""
        return value if limit is None else value[:limit]

    return part


_COMMANDS: dict[str, Callable[[], Part]] = {
    "DOWNSTREAM_REMOTE_ADDRESS": lambda: _address("downstream_remote_address", None),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda: _address("downstream_remote_address",
                                                               _host_of),
    "DOWNSTREAM_REMOTE_PORT": lambda: _address("downstream_remote_address", _port_of),
    "DOWNSTREAM_LOCAL_ADDRESS": lambda: _address("downstream_local_address", None),
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": lambda: _address("downstream_local_address",
                                                              _host_of),
    "DOWNSTREAM_LOCAL_PORT": lambda: _address("downstream_local_address", _port_of),
    "UPSTREAM_REMOTE_ADDRESS": lambda: _address("upstream_remote_address", None),
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda: _address("upstream_remote_address",
                                                             _host_of),
    "UPSTREAM_REMOTE_PORT": lambda: _address("upstream_remote_address", _port_of),
    "UPSTREAM_HOST": lambda: _address("upstream_remote_address", None),
    "PROTOCOL": lambda: _address("protocol", None),
}

_COMMAND = re.compile(r"%([A-Z][A-Z0-9_]*)(?:\(((?:[^)]|\)(?!:[0-9]|%))*)\))?(?::([0-9]+))?%")


def _command(name: str, arg: str | None, limit: int | None, where: str) -> Part:
    if name in ("REQ", "RESP"):
        return _header_part(arg, limit, name == "RESP", where)
    if name == "START_TIME":
        return _start_time(arg)
    if name == "HOSTNAME":
        hostname = socket.gethostname()  # resolved once, as Envoy does
        return lambda _ctx, _req, _resp: hostname
    factory = _COMMANDS.get(name)
    if factory is None or arg is not None:
        raise RouteConfigError(f"{where}: unsupported formatter %{name}%")
    return factory()


def compile_format(value: str, where: str = "") -> tuple[str | Part, ...]:
    """Split a header value into literal strings and formatter callables (adjacent literals
    merged). A value without ``%`` compiles to ``(value,)``."""
    parts: list[str | Part] = []
    literal: list[str] = []
    i = 0
    while True:
        j = value.find("%", i)
        if j < 0:
            literal.append(value[i:])
            break
        literal.append(value[i:j])
        if value.startswith("%%", j):
            literal.append("%")
            i = j + 2
            continue
        m = _COMMAND.match(value, j)
        if m is None:
            raise RouteConfigError(
                f"{where}: invalid header value {value!r}: un-escaped % at position {j}")
        if text := "".join(literal):
            parts.append(text)
        literal = []
        limit = int(m.group(3)) if m.group(3) else None
        parts.append(_command(m.group(1), m.group(2), limit, where))
        i = m.end()
    if (text := "".join(literal)) or not parts:
        parts.append(text)
    return tuple(parts)


class _HeaderToAdd:
    __slots__ = ("action", "constant", "keep_empty", "key", "parts")

    def __init__(self, key: str, parts: tuple[str | Part, ...], action: int,
                 keep_empty: bool) -> None:
        self.key = key
        self.parts = parts
        self.constant = parts[0] if len(parts) == 1 and isinstance(parts[0], str) else None
        self.action = action
        self.keep_empty = keep_empty

    def value(self, ctx: Any, req: Any, resp: Any) -> str:
        if self.constant is not None:
            return self.constant
        return "".join(p if isinstance(p, str) else p(ctx, req, resp) for p in self.parts)


def _check_name(name: str, verb: str, where: str) -> str:
    lowered = name.lower()
    if not lowered or lowered[0] == ":" or lowered == "host":
        raise RouteConfigError(f"{where}: :-prefixed or host headers may not be {verb} ({name!r})")
    if not _HEADER_NAME(lowered):
        raise RouteConfigError(f"{where}: invalid header name {name!r}")
    return lowered


class HeaderMutation:
    """One level of header mutations; build with ``from_protos`` (None when it would be empty)."""

    __slots__ = ("to_add", "to_remove")

    def __init__(self, to_add: tuple[_HeaderToAdd, ...], to_remove: tuple[str, ...]) -> None:
        self.to_add = to_add
        self.to_remove = to_remove

    @classmethod
    def from_protos(cls, headers_to_add: Any, headers_to_remove: Any,
                    where: str = "") -> HeaderMutation | None:
        """From repeated ``envoy.config.core.v3.HeaderValueOption`` and repeated names."""
        to_add = []
        for option in headers_to_add:
            header = option.header
            key = _check_name(header.key, "modified", where)
            action = option.append_action
            if option.HasField("append"):
                if action != APPEND_IF_EXISTS_OR_ADD:
                    raise RouteConfigError(
                        f"{where}: header {key!r}: both append and append_action are set")
                action = (APPEND_IF_EXISTS_OR_ADD if option.append.value
                          else OVERWRITE_IF_EXISTS_OR_ADD)
            raw = header.value if header.value or not header.raw_value else (
                header.raw_value.decode("latin-1"))
            parts = compile_format(raw, f"{where}: header {key!r}")
            to_add.append(_HeaderToAdd(key, parts, action, option.keep_empty_value))
        to_remove = tuple(_check_name(name, "removed", where) for name in headers_to_remove)
        if not to_add and not to_remove:
            return None
        return cls(tuple(to_add), to_remove)

    def evaluate(self, headers: Any, ctx: Any, request_headers: Any = None,
                 response_headers: Any = None) -> None:
        """Apply this level to ``headers`` (a HeaderMap). ``%REQ%``/``%RESP%`` read
        ``request_headers``/``response_headers`` (falling back to the context's)."""
        for name in self.to_remove:
            headers.remove(name)
        if not self.to_add:
            return
        adds: list[tuple[str, str]] = []
        overwrites: list[tuple[str, str]] = []
        for header in self.to_add:
            value = header.value(ctx, request_headers, response_headers)
            if not value and not header.keep_empty:
                continue
            action = header.action
            if action == APPEND_IF_EXISTS_OR_ADD:
                adds.append((header.key, value))
            elif action == ADD_IF_ABSENT:
                if headers.get(header.key) is None:
                    adds.append((header.key, value))
            elif action == OVERWRITE_IF_EXISTS_OR_ADD or headers.get(header.key) is not None:
                overwrites.append((header.key, value))
        for key, value in overwrites:
            headers.set(key, value)
        for key, value in adds:
            headers.add(key, value)

    def __repr__(self) -> str:
        return f"HeaderMutation(add={[h.key for h in self.to_add]}, remove={self.to_remove})"
