"""HTTP/1.1 codec over httptools (llhttp): bytes in, events out; headers in, bytes out.

No asyncio here. ``ServerCodec`` parses requests from a client and calls its ``callbacks``
(the connection manager); ``ClientCodec`` parses responses from an upstream. Encoding is a set
of pure functions returning ``bytes``; the caller batches writes.

Protocol errors become ``CodecError`` carrying the status and body Envoy answers with, so the
caller sends the right local reply without guessing (h11's ``error_status_hint``).
"""

from __future__ import annotations

import re
from http import HTTPStatus

import httptools

from outrider.http.headers import RequestHeaders, ResponseHeaders


class CodecError(Exception):
    """A request the codec refuses; answer ``status`` with ``body`` and close the connection."""

    def __init__(self, status: int, body: str, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.body = body
        self.details = details


def _bad_request(details: str, body: str = "Bad Request") -> CodecError:
    return CodecError(400, body, details)


# Hop-by-hop headers (RFC 9110 §7.6.1) and those Envoy strips on every hop.
HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
    "trailer", "proxy-authenticate",
))

# Headers the codecs consume: framing and connection management, which end at this hop
# (the connection manager strips any that a filter adds later). ``upgrade`` stays in the map
# so the connection manager can refuse or ignore the upgrade.
_CONNECTION_LEVEL = HOP_BY_HOP - {"upgrade"}
_REQUEST_SPECIAL = _CONNECTION_LEVEL | {"host", "content-length", "expect", "upgrade"}
_RESPONSE_SPECIAL = _CONNECTION_LEVEL | {"content-length"}
# Connection tokens that are options, not header names to drop.
_CONNECTION_OPTIONS = frozenset(("close", "keep-alive", "upgrade"))
_COMMON_CONNECTION_VALUES = frozenset(("keep-alive", "close", "Keep-Alive", "Close", "upgrade",
                                       "Upgrade"))


def _named_by_connection(value: str, named: set | None) -> set | None:
    """Add the header names a Connection header lists (RFC 9110 §7.6.1) to ``named``."""
    if value in _COMMON_CONNECTION_VALUES:
        return named
    for token in value.split(","):
        token = token.strip().lower()
        if token and token not in _CONNECTION_OPTIONS:
            if named is None:
                named = set()
            named.add(token)
    return named


# Header names as they arrive (any case) -> lowercased str. Names repeat from request to request,
# so most lookups hit and skip a decode and a lower() (two allocations) per header. Bounded: a
# client inventing names cannot grow it past the limit; those are converted every time.
_NAMES: dict[bytes, str] = {}
_NAMES_LIMIT = 4096


def _header_name(raw: bytes) -> str:
    name = _NAMES.get(raw)
    if name is None:
        name = raw.decode("latin-1").lower()
        if len(_NAMES) < _NAMES_LIMIT:
            _NAMES[raw] = name
    return name


_REASONS = {s.value: s.phrase for s in HTTPStatus}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


# Precomputed status lines: one dict lookup per response instead of string formatting.
_STATUS_LINES = {
    status: f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1") for status, phrase in _REASONS.items()
}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("latin-1")
    return line


class ServerCodec:
    """Parses HTTP/1.x requests.

    ``callbacks`` receives, per request, in order:
    ``on_request_headers(headers, version, keep_alive, body_framing)``, where body_framing is
    "none", "length" or "chunked"; ``on_request_data(data)``; ``on_request_complete()``.
    ``feed`` raises ``CodecError`` for malformed input; the connection is unusable afterwards.
    """

    __slots__ = (
        "callbacks", "_parser", "_url", "_headers", "_header_bytes", "_max_header_bytes",
        "_max_headers_count", "_limit_error", "_in_message", "_allow_absolute_url",
        "upgrade", "expect_continue",
    )

    def __init__(self, callbacks, max_request_headers_kb: int = 60, max_headers_count: int = 100,
                 allow_absolute_url: bool = True):
        self.callbacks = callbacks
        self._allow_absolute_url = allow_absolute_url
        self._max_header_bytes = max_request_headers_kb * 1024
        self._max_headers_count = max_headers_count
        self._parser = self._new_parser()
        self._reset()

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # Envoy accepts whitespace after a chunk size (`5 \r\n`); everything else stays strict.
        parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)
        return parser

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._limit_error: CodecError | None = None
        self._in_message = False
        # Of the request whose headers were just delivered: its Upgrade header value (the
        # header stays in the map) and whether it asked for 100-continue (that one does not:
        # the proxy answers it, as Envoy does).
        self.upgrade: str | None = None
        self.expect_continue = False

    @property
    def in_message(self) -> bool:
        """True between the first byte of a request and its end (for idle/close decisions)."""
        return self._in_message

    def feed(self, data: bytes) -> None:
        while data:
            try:
                self._parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as upgrade:
                # llhttp stops after an Upgrade/CONNECT request; the caller decided what to do
                # with it in on_request_headers. Parse any pipelined bytes with a fresh parser.
                offset = upgrade.args[0] if upgrade.args else len(data)
                self._parser = self._new_parser()
                data = data[offset:]
            except httptools.HttpParserError as exc:
                raise self._codec_error(exc) from None

    def _codec_error(self, exc: httptools.HttpParserError) -> CodecError:
        """The CodecError for a parser failure: the limit we raised, or llhttp's complaint."""
        if self._limit_error is not None:
            return self._limit_error
        if isinstance(exc, httptools.HttpParserCallbackError):
            return _bad_request("callback failed")
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            return _bad_request("http1.codec_error: invalid method")
        if isinstance(exc, httptools.HttpParserInvalidURLError):
            return _bad_request("http1.codec_error: invalid url")
        text = str(exc)
        if "HTTP version" in text:
            return CodecError(426, "Upgrade Required", "http1.codec_error: " + text)
        if "Transfer-Encoding" in text and "Content-Length" not in text:
            return CodecError(501, "Not Implemented", "http1.invalid_transfer_encoding")
        return _bad_request("http1.codec_error: " + text)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self._max_header_bytes:
            self._fail(CodecError(431, "Request Header Fields Too Large", "http1.headers_too_large"))

    def on_header(self, name: bytes, value: bytes) -> None:
        # The byte limit also bounds the header count, which on_headers_complete checks.
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._max_header_bytes:
            self._fail(CodecError(431, "Request Header Fields Too Large", "http1.headers_too_large"))
        self._headers.append((_NAMES.get(name) or _header_name(name), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._fail(CodecError(426, "Upgrade Required", "http1.invalid_version"))
        if len(self._headers) > self._max_headers_count:
            self._fail(CodecError(431, "Request Header Fields Too Large",
                                  "http1.too_many_headers"))
        method = parser.get_method().decode("latin-1")
        url = self._url.decode("latin-1")
        authority = None
        framing = "none"
        items = []
        named = None
        for name, value in self._headers:
            if name not in _REQUEST_SPECIAL:
                items.append((name, value))
            elif name == "host":
                if authority is not None:
                    # RFC 9112 §3.2; Envoy merges them as "a,b" but that invites confusion.
                    self._fail(_bad_request("http1.duplicate_host"))
                authority = value
            elif name == "content-length":
                if value != "0":
                    framing = "length"
                items.append((name, value))
            elif name == "transfer-encoding":
                if value.lower() != "chunked":
                    self._fail(CodecError(501, "Not Implemented",
                                          "http1.invalid_transfer_encoding"))
                framing = "chunked"
            elif name == "connection":
                named = _named_by_connection(value, named)
            elif name == "upgrade":
                self.upgrade = value
                items.append((name, value))
            elif name == "expect":
                if value.lower() == "100-continue":
                    self.expect_continue = True
                else:
                    items.append((name, value))
            elif name == "te" and "trailers" in value.lower():
                items.append(("te", "trailers"))  # Envoy forwards only this TE value
            # other connection-level headers (keep-alive, ...) end at this hop
        if named:
            items = [kv for kv in items if kv[0] not in named]
        scheme = "http"
        if url[:1] != "/":
            if (url[:7].lower() == "http://" or url[:8].lower() == "https://") \
                    and self._allow_absolute_url:
                # Absolute form: the URI's authority replaces Host (RFC 9112 §3.2.2).
                scheme, _, rest = url.partition("://")
                scheme = scheme.lower()
                slash = rest.find("/")
                authority, url = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
            elif not (method == "OPTIONS" and url == "*") and method != "CONNECT":
                self._fail(_bad_request("http1.invalid_url"))
        if "#" in url:
            self._fail(CodecError(400, "", "http1.invalid_url"))
        if authority is None:
            if version == "1.1":
                self._fail(CodecError(400, "", "http1.missing_host"))
            authority = ""
        elif not _valid_authority(authority):
            self._fail(_bad_request("http1.invalid_host"))
        headers = RequestHeaders(method, url, authority, scheme, items)
        self.callbacks.on_request_headers(
            headers, version, parser.should_keep_alive(), framing)

    def on_body(self, body: bytes) -> None:
        self.callbacks.on_request_data(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self.callbacks.on_request_complete()

    def _fail(self, error: CodecError):
        # Raising inside a callback makes httptools abort parsing; feed() re-raises this error.
        self._limit_error = error
        raise error


# Characters that cannot appear in a Host (RFC 3986 reg-name, IP literal and port).
_INVALID_AUTHORITY = re.compile(r'[\x00-\x20\x7f/@\\"<>{}|^`]').search


def _valid_authority(authority: str) -> bool:
    return _INVALID_AUTHORITY(authority) is None


class ClientCodec:
    """Parses HTTP/1.1 responses from an upstream.

    ``callbacks`` receives ``on_response_headers(headers, keep_alive, framing)`` (framing:
    "none", "length", "chunked" or "close" for a body delimited by connection close),
    ``on_response_data(data)``, ``on_response_complete()``. Interim 1xx responses other than
    101 are dropped. ``expect_head_response()`` before a HEAD request: the body is then absent
    whatever the headers say. ``feed`` raises ``httptools.HttpParserError`` on garbage.
    """

    __slots__ = ("callbacks", "_parser", "_headers", "_head", "_skip", "_done_early", "in_message")

    def __init__(self, callbacks) -> None:
        self.callbacks = callbacks
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[str, str]] = []
        self._head = False
        self._skip = False
        self._done_early = False
        # True between a response's first byte and its end: bytes past a response's end in the
        # same read show up here.
        self.in_message = False

    def expect_head_response(self) -> None:
        self._head = True

    @property
    def needs_reset(self) -> bool:
        """True after a HEAD response: llhttp's state is off, the next response needs a new codec."""
        return self._head

    def feed(self, data: bytes) -> None:
        if self._done_early:
            # Bytes after a HEAD response: the upstream broke framing.
            raise httptools.HttpParserError("data after HEAD response")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # A 101 nobody asked for (Outrider sends no upgrades upstream): a protocol error.
            raise httptools.HttpParserError("unexpected upgrade response") from None

    def on_message_begin(self) -> None:
        self._headers = []
        self.in_message = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((_NAMES.get(name) or _header_name(name), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._skip = True
            return
        framing = "close"
        items = []
        named = None
        for name, value in self._headers:
            if name not in _RESPONSE_SPECIAL:
                items.append((name, value))
            elif name == "content-length":
                if framing != "chunked":
                    framing = "length" if value != "0" else "none"
                items.append((name, value))
            elif name == "transfer-encoding":
                framing = "chunked"
            elif name == "connection":
                named = _named_by_connection(value, named)
            # other connection-level headers (keep-alive, te, ...) end at this hop
        if named:
            items = [kv for kv in items if kv[0] not in named]
        if self._head or status in (204, 304):
            framing = "none"
        keep_alive = parser.should_keep_alive() and framing != "close"
        self.callbacks.on_response_headers(ResponseHeaders(status, items), keep_alive, framing)
        if self._head:
            # llhttp cannot be told to skip the body of a HEAD response; finish here.
            self._done_early = True
            self.in_message = False
            self.callbacks.on_response_complete()

    def on_body(self, body: bytes) -> None:
        if not self._done_early:
            self.callbacks.on_response_data(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self._skip:
            self._skip = False
            return
        if not self._done_early:
            self.callbacks.on_response_complete()


# -- encoding ---------------------------------------------------------------------------------

def encode_request_head(headers: RequestHeaders, chunked: bool) -> bytes:
    """The request line and headers, origin-form, ``host`` from ``:authority``."""
    parts = [f"{name}: {value}\r\n" for name, value in headers.items()]
    parts.insert(0, f"{headers.method} {headers.path} HTTP/1.1\r\nhost: {headers.authority}\r\n")
    if chunked:
        parts.append("transfer-encoding: chunked\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def encode_response_head(headers: ResponseHeaders, chunked: bool, close: bool) -> bytes:
    parts = [f"{name}: {value}\r\n" for name, value in headers.items()]
    if chunked:
        parts.append("transfer-encoding: chunked\r\n")
    if close:
        parts.append("connection: close\r\n")
    parts.append("\r\n")
    return status_line(headers.status) + "".join(parts).encode("latin-1")


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
