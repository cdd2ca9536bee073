"""HTTP/1.1 codec over httptools (llhttp): bytes in, events out; headers in, bytes out.

No asyncio here. ``ServerCodec`` parses requests from a client: at each one's first byte it
asks its ``callbacks`` (the connection manager) for a new stream, handing it the
``ResponseEncoder`` its answer goes out through, and delivers the rest of the request to that
stream. ``ClientCodec`` is one upstream connection's codec: it encodes the request, delivers
the response to the request's decoder, and alone says whether the connection may carry another
request (``reuse_refusal``). Framing (body or not, length, chunks, close) comes from
``framing``.

Rules both directions keep:
- A peer's protocol error is a ``CodecError`` carrying the status and body Envoy answers with
  (h11's ``error_status_hint``). Anything else raised from a callback is the proxy's own bug
  and propagates unchanged, so it is never mistaken for (or counted as) the peer's fault.
- The head of a message (start line and headers) is bounded where bytes are fed, before
  httptools buffers an unfinished header: ``max_request_headers_kb`` / ``max_response_headers_kb``.
- A response byte nobody asked for (after a complete response, after a HEAD answer's headers,
  on an idle connection) is a protocol error: such a connection is never reused.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import httptools

from outrider.codec.framing import (
    CHUNKED,
    CLOSE,
    NONE,
    encoded_request_framing,
    encoded_response_framing,
    parsed_request_framing,
    parsed_response_framing,
)
from outrider.http.headers import RequestHeaders, ResponseHeaders


class CodecError(Exception):
    """Input the codec refuses; answer ``status`` with ``body`` and close the connection.

    From ``ClientCodec`` the status is the one the client gets (502) and ``details`` the reset
    reason (``protocol error``).
    """

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


# An accepted HTTP/1.0 request is answered in HTTP/1.0, as Envoy does with accept_http_10.
_STATUS_LINES_10 = {status: b"HTTP/1.0" + line[8:] for status, line in _STATUS_LINES.items()}


def status_line(status: int, version: str = "1.1") -> bytes:
    line = (_STATUS_LINES_10 if version == "1.0" else _STATUS_LINES).get(status)
    if line is None:
        line = f"HTTP/{version} {status} {reason_phrase(status)}\r\n".encode("latin-1")
    return line


_HEADERS_TOO_LARGE = ("Request Header Fields Too Large", "http1.headers_too_large")


class _Http1Parser:
    """What both codecs share: the llhttp parser, the state of the bound on a message's head,
    and the sorting of errors raised in callbacks.

    httptools hands over a header only once its value ends, buffering it until then, so a bound
    checked in ``on_header`` alone lets one endless header grow without limit: each codec also
    counts the head where bytes are fed (see their ``feed``).
    """

    __slots__ = ("_parser", "_in_head", "_head_bytes", "_unfinished", "_max_head_bytes",
                 "_limit_error")

    def _init_bound(self, max_head_bytes: int) -> None:
        self._max_head_bytes = max_head_bytes
        self._in_head = False  # between a message's first byte and the end of its headers
        self._head_bytes = 0
        self._unfinished = 0
        self._limit_error: CodecError | None = None

    @staticmethod
    def _callback_failure(exc: httptools.HttpParserCallbackError) -> BaseException:
        # httptools chains what a callback raised as the context: a CodecError is the input's
        # fault; anything else is ours and goes up unchanged (never a "callback failed" 400).
        return exc.__context__ or exc

    def _fail(self, error: CodecError):
        # Raising inside a callback makes httptools abort parsing; feed() re-raises this error.
        self._limit_error = error
        raise error



class ServerCodec(_Http1Parser):
    """Parses HTTP/1.x requests.

    At each request's first byte ``callbacks.new_stream(encoder)`` is given the
    ``ResponseEncoder`` that will write its answer to ``writer`` and returns the request's
    decoder (Envoy's ``newStream(response_encoder)`` returning a ``RequestDecoder``). The
    decoder then receives, in order: ``on_request_headers(headers, version, keep_alive,
    framing, upgrade, expect_continue)`` (framing from ``framing``: "none", "length" or
    "chunked"; ``upgrade`` the Upgrade header's value, which stays in the map, or None;
    ``expect_continue`` whether it asked for 100-continue, whose header does not stay: the
    proxy answers it, as Envoy does); ``on_request_data(data)``; ``on_request_complete()``.
    ``feed`` raises ``CodecError`` for malformed input; the connection is unusable afterwards.
    """

    __slots__ = (
        "callbacks", "writer", "decoder", "_url", "_headers", "_max_headers_count",
        "_allow_absolute_url", "_encoder", "_progress", "_upgrade", "_expect_continue",
        "_accept_http_10",
    )

    def __init__(self, callbacks, writer=None, max_request_headers_kb: int = 60,
                 max_headers_count: int = 100, allow_absolute_url: bool = True,
                 accept_http_10: bool = False):
        self.callbacks = callbacks
        self.writer = writer
        # Whether HTTP/1.0 requests are served (else answered 426): an accepted one is
        # answered in HTTP/1.0.
        self._accept_http_10 = accept_http_10
        # The decoder of the request being read: from its first byte to its end, or until
        # ``abandon``. Nothing is delivered while it is None.
        self.decoder = None
        self._encoder: ResponseEncoder | None = None
        self._progress = False  # whether this read completed a piece of the head
        self._allow_absolute_url = allow_absolute_url
        self._max_headers_count = max_headers_count
        self._init_bound(max_request_headers_kb * 1024)
        self._parser = self._new_parser()
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._upgrade: str | None = None
        self._expect_continue = False

    def abandon(self) -> None:
        """Deliver nothing more of the request being read (its connection closed, possibly
        from inside one of the decoder's own callbacks, with the rest of a read unparsed)."""
        self.decoder = None

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # Envoy accepts whitespace after a chunk size (`5 \r\n`); everything else stays strict.
        parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)
        return parser

    def feed(self, data: bytes) -> None:
        """Parse request bytes; raise CodecError for malformed input (431 for a head over
        ``max_request_headers_kb``, however it is cut into reads)."""
        while data:
            self._progress = False
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                raise self._callback_failure(exc) from None
            except httptools.HttpParserUpgrade as upgrade:
                # llhttp stops after an Upgrade/CONNECT request; the caller decided what to do
                # with it in on_request_headers. Parse any pipelined bytes with a fresh parser.
                offset = upgrade.args[0] if upgrade.args else len(data)
                self._parser = self._new_parser()
                data = data[offset:]
            except httptools.HttpParserError as exc:
                raise self._codec_error(exc) from None
            else:
                if self._in_head and self._head_left_open(len(data)):
                    raise self._head_too_large()
                return

    def _head_too_large(self) -> CodecError:
        return CodecError(431, *_HEADERS_TOO_LARGE)

    def _head_left_open(self, size: int) -> bool:
        """A read of ``size`` bytes ended inside a request's head: whether the head is now over
        the bound. Completed fields are counted exactly by the callbacks; a read that completed
        none is all part of the open field, and one that did counts that field's start as
        nothing (the read may hold earlier pipelined requests), so the bound holds to within
        one read."""
        self._unfinished = 0 if self._progress else self._unfinished + size
        return self._head_bytes + self._unfinished > self._max_head_bytes

    def _codec_error(self, exc: httptools.HttpParserError) -> CodecError:
        """The CodecError for a parser failure: the limit we raised, or llhttp's complaint."""
        if self._limit_error is not None:
            return self._limit_error
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
        self._url = b""
        self._headers = []
        self._upgrade = None
        self._expect_continue = False
        self._in_head = self._progress = True
        self._head_bytes = self._unfinished = 0
        self._encoder = encoder = ResponseEncoder(self.writer)
        self.decoder = self.callbacks.new_stream(encoder)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._progress = True
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head_bytes:
            self._fail(self._head_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        # The byte limit also bounds the header count, which on_headers_complete checks.
        self._progress = True
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_head_bytes:
            self._fail(self._head_too_large())
        self._headers.append((_NAMES.get(name) or _header_name(name), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_head = False
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
        content_length = None
        chunked = False
        items = []
        named = None
        for name, value in self._headers:
            if name not in _REQUEST_SPECIAL:
                items.append((name, value))
            elif name == "host":
                if authority is not None:
                    # RFC 9112 §3.2; Envoy merges them as "a,b" but that invites confusion.
                    self._fail_past_url(version, _bad_request("http1.duplicate_host"))
                authority = value
            elif name == "content-length":
                content_length = value
                items.append((name, value))
            elif name == "transfer-encoding":
                if value.lower() != "chunked":
                    self._fail(CodecError(501, "Not Implemented",
                                          "http1.invalid_transfer_encoding"))
                chunked = True
            elif name == "connection":
                named = _named_by_connection(value, named)
            elif name == "upgrade":
                # Repeated: one list, as Envoy sees it ("h2c,h2c" is not an h2c upgrade).
                self._upgrade = value if self._upgrade is None else f"{self._upgrade},{value}"
                items.append((name, value))
            elif name == "expect":
                if value.lower() == "100-continue":
                    self._expect_continue = True
                else:
                    items.append((name, value))
            elif name == "te" and "trailers" in value.lower():
                items.append(("te", "trailers"))  # Envoy forwards only this TE value
            # other connection-level headers (keep-alive, ...) end at this hop
        if named:
            if "host" in named:
                authority = None  # named as hop-by-hop: stripped, the request has none (Envoy)
            items = [kv for kv in items if kv[0] not in named]
        scheme = "http"
        if url[:1] != "/":
            if (url[:7].lower() == "http://" or url[:8].lower() == "https://") \
                    and self._allow_absolute_url:
                # Absolute form: the URI's authority replaces Host (RFC 9112 §3.2.2).
                scheme, _, rest = url.partition("://")
                scheme = scheme.lower()
                # The authority ends at the first "/", "?" or "#" (RFC 3986 §3.2); an empty
                # path is "/" ("http://a?q" asks for "/?q").
                end = _AUTHORITY_END(rest)
                authority, url = (rest, "/") if end is None else (
                    rest[:end.start()], rest[end.start():])
                if url[:1] != "/":
                    url = "/" + url
                if _URI_AUTHORITY(authority) is None:  # empty, or a port that is not one
                    self._fail(_bad_request("http1.invalid_url"))
            elif not (method == "OPTIONS" and url == "*") and method != "CONNECT":
                self._fail(_bad_request("http1.invalid_url"))
        if authority is None:
            # No Host: default_host_for_http_10 or a 400, from the connection manager (after a
            # 100 Continue, as Envoy answers it), as is a fragment in the path.
            authority = ""
        elif not authority:
            # Deliberately stricter than Envoy, which forwards "host: " (nginx answers 400 too):
            # an empty Host names no virtual host and no origin.
            self._fail_past_url(version, CodecError(400, "", "http1.empty_host"))
        elif not _valid_authority(authority):
            self._fail_past_url(version, _bad_request("http1.invalid_host"))
        framing = parsed_request_framing(content_length, chunked)
        if framing != NONE and parser.should_upgrade():
            # httptools makes llhttp skip the body of an Upgrade or CONNECT request (the rest is
            # "another protocol"), so its body would be parsed as the next request: smuggling.
            # Refused (Envoy forwards such a request, body and all, when it ignores the upgrade).
            self._fail_past_url(version, _bad_request("http1.upgrade_with_body"))
        encoder = self._encoder
        encoder.request_method = method
        encoder.version = version
        if version == "1.0":
            self._check_http10_accepted()
            encoder.http10 = True
        decoder = self.decoder
        if decoder is not None:
            decoder.on_request_headers(RequestHeaders(method, url, authority, scheme, items),
                                       version, parser.should_keep_alive(), framing,
                                       self._upgrade, self._expect_continue)

    def _check_http10_accepted(self) -> None:
        # Envoy's codec refuses HTTP/1.0 unless accept_http_10 (a protocol error), once the URL
        # is parsed and before it checks the Host: its 426 is checked last here, on the common
        # path, and first by every failure after the URL (_fail_past_url).
        if not self._accept_http_10:
            self._fail(CodecError(426, "Upgrade Required", "http1.0_disallowed"))

    def _fail_past_url(self, version: str, error: CodecError):
        """Refuse with ``error`` a request whose URL parsed, unless it is a refused HTTP/1.0
        one (426 first, as Envoy)."""
        if version != "1.1":
            self._check_http10_accepted()
        self._fail(error)

    def on_body(self, body: bytes) -> None:
        decoder = self.decoder
        if decoder is not None:
            decoder.on_request_data(body)

    def on_message_complete(self) -> None:
        decoder, self.decoder = self.decoder, None
        if decoder is not None:
            decoder.on_request_complete()


# Characters that cannot appear in a Host (RFC 3986 reg-name, IP literal and port).
_INVALID_AUTHORITY = re.compile(r'[\x00-\x20\x7f/?#@\\"<>{}|^`]').search
_AUTHORITY_END = re.compile(r"[/?#]").search


def _valid_authority(authority: str) -> bool:
    return _INVALID_AUTHORITY(authority) is None


# An absolute-form URI's authority: a non-empty host (or [IPv6 literal]) and at most one port.
_URI_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\[\]:]+)(?::[0-9]*)?\Z").match


class ResponseEncoder:
    """Writes one response to a client: head, body and end, framed by ``framing``.

    Made by the codec at the request's first byte; the codec fills in the request's method and
    version when its headers are parsed (until then, an answer is framed as for an HTTP/1.1
    GET). ``encode_headers`` returns whether the connection must close after this response
    (asked for by ``close``, or forced because the body ends with the connection).
    """

    __slots__ = ("connection", "request_method", "version", "chunked", "body_allowed", "http10")

    def __init__(self, connection) -> None:
        self.connection = connection
        self.request_method = "GET"
        self.version = "1.1"
        self.chunked = False
        self.body_allowed = True
        # Answering an accepted HTTP/1.0 request: an HTTP/1.0 status line, and keep-alive only
        # for a response with a content-length, said so explicitly (Envoy's HCM and codec).
        self.http10 = False

    def encode_100_continue(self) -> None:
        self.connection.write(CONTINUE_100)

    def encode_headers(self, headers: ResponseHeaders, end_stream: bool, has_length: bool,
                       close: bool) -> bool:
        framing = encoded_response_framing(self.request_method, headers.status, has_length,
                                           end_stream, self.version)
        if framing == CHUNKED:
            self.chunked = True
        elif framing == CLOSE:
            close = True
        elif framing == NONE:
            self.body_allowed = False
        elif not has_length:
            headers.add("content-length", "0")  # a body-less answer that could have had one
        parts = [f"{name}: {value}\r\n" for name, value in headers.items()]
        if self.chunked:
            parts.append("transfer-encoding: chunked\r\n")
        if self.http10:
            # An HTTP/1.0 client cannot be sent chunks, so an answer without a content-length
            # ends with the connection; otherwise a keep-alive request is told it stays open
            # (Envoy).
            close = close or not has_length
            parts.append("connection: close\r\n" if close else "connection: keep-alive\r\n")
            line = status_line(headers.status, "1.0")
        else:
            if close:
                parts.append("connection: close\r\n")
            line = _STATUS_LINES.get(headers.status) or status_line(headers.status)
        parts.append("\r\n")
        self.connection.write(line + "".join(parts).encode("latin-1"))
        return close

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        if not self.body_allowed:
            return  # a HEAD, 1xx, 204 or 304 answer: whatever body came along is dropped
        if self.chunked:
            if data:
                self.connection.write(encode_chunk(data) + LAST_CHUNK if end_stream
                                      else encode_chunk(data))
            elif end_stream:
                self.connection.write(LAST_CHUNK)
        elif data:
            self.connection.write(data)


class ClientCodec(_Http1Parser):
    """One upstream connection's HTTP/1.1 codec: encodes requests, parses their responses.

    ``connection`` takes the request bytes (``write``). Each request names the decoder of its
    response (``encode_headers``), which receives ``on_response_headers(headers, keep_alive,
    framing)`` (framing "none", "length", "chunked" or "close") and ``on_response_data(data)``;
    the response's end goes to ``connection.on_response_complete(data)``, which frees the
    connection before it tells the request (Envoy's pool wraps the decoder for the same
    purpose). The body's last bytes parsed in the read that ends the response come with its
    end, as Envoy's codec hands them over with ``end_stream``: one event instead of two.
    Interim 1xx responses other than 101 are dropped. ``feed`` raises ``CodecError`` (502,
    ``protocol error``) on anything but the response to the request in flight.
    """

    __slots__ = ("connection", "decoder", "framing", "_headers", "_awaiting", "_parser_stale",
                 "_stale_may_end", "_method", "_keep_alive", "_request_complete", "_interim",
                 "_chunked_request", "_read_size", "_held")

    def __init__(self, connection, max_response_headers_kb: int = 60) -> None:
        self.connection = connection
        # The request in flight's response decoder; None once it gives up on the response
        # (whose remaining bytes are still parsed, to be refused if they are not a response).
        self.decoder = None
        self.framing = NONE  # of the response being read (or last read)
        self._init_bound(max_response_headers_kb * 1024)
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[str, str]] = []
        # A response is owed: from the request's head until the response's end. Outside of
        # that, every byte from the upstream is a protocol error.
        self._awaiting = False
        # llhttp is inside a HEAD answer's body that we know is not there; the next request
        # gets a fresh parser.
        self._parser_stale = False
        self._stale_may_end = False  # llhttp itself sees no body there (content-length 0, 304)
        self._method = ""
        self._keep_alive = True
        self._request_complete = True
        self._chunked_request = False
        self._interim = False
        self._read_size = 0
        # Body bytes parsed in this read and not delivered yet: given with the response's end
        # if it comes in the same read, else at the read's end. One chunk at most.
        self._held: bytes | None = None

    # -- encoding the request -------------------------------------------------------------------

    def encode_headers(self, headers: RequestHeaders, end_stream: bool, decoder) -> None:
        """Send a request's head (and end it if ``end_stream``); a response is now expected,
        for ``decoder``."""
        self.decoder = decoder
        if self._parser_stale:
            self._parser_stale = False
            self._parser = httptools.HttpResponseParser(self)
        self._awaiting = True
        self._method = headers.method
        self._request_complete = end_stream
        # Whether a content-length frames the body matters only when a body follows.
        chunked = not end_stream and encoded_request_framing(
            headers.get("content-length") is not None, end_stream) == CHUNKED
        self._chunked_request = chunked
        # The request line and headers, origin-form, ``host`` from ``:authority``.
        request_line = f"{headers.method} {headers.path} HTTP/1.1\r\nhost: {headers.authority}\r\n"
        parts = [f"{name}: {value}\r\n" for name, value in headers.items()]
        parts.insert(0, request_line)
        if chunked:
            parts.append("transfer-encoding: chunked\r\n")
        parts.append("\r\n")
        self.connection.write("".join(parts).encode("latin-1"))

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        if self._chunked_request:
            if data:
                data = encode_chunk(data) + LAST_CHUNK if end_stream else encode_chunk(data)
            elif end_stream:
                data = LAST_CHUNK
        if end_stream:
            self._request_complete = True
        if data:
            self.connection.write(data)

    def reuse_refusal(self) -> str | None:
        """Why the connection cannot carry another request now, or None if it can.

        Decided from the parser's state and the request side: the request fully sent, its
        response fully read, keep-alive on both ends, no byte past the response's end (one
        makes ``feed`` raise, and the connection is closed before it is asked this).
        """
        if self._awaiting:
            return "response incomplete"
        if not self._request_complete:
            return "request incomplete"
        if not self._keep_alive:
            return "connection close"
        return None

    # -- parsing the response -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse response bytes; raise CodecError for anything but the response owed (a head
        over ``max_response_headers_kb`` too, however it is cut into reads)."""
        if not self._awaiting:
            if not data.strip(b"\r\n"):
                # Empty lines: llhttp skips them between messages without a callback, so they
                # cannot be told apart when they follow a response in the same read; ignored
                # in a later read too, so the outcome never depends on how reads are cut.
                return
            raise CodecError(502, "", "protocol error")  # nothing asked for: framing is lost
        self._read_size = len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            error = self._callback_failure(exc)
            if isinstance(error, CodecError):
                self._release_held()
            raise error from None
        except httptools.HttpParserUpgrade:
            # A 101 nobody asked for (Outrider sends no upgrades upstream).
            self._release_held()
            raise CodecError(502, "", "protocol error") from None
        except httptools.HttpParserError:
            self._release_held()
            raise CodecError(502, "", "protocol error") from None
        if self._held is not None:
            self._release_held()
        if self._in_head:
            # The read ended inside the head. A response starts at its read's first byte
            # (nothing is pipelined upstream), so such reads are all head: counted whole, they
            # bound an unfinished header exactly (on_headers_complete checks the last read).
            self._unfinished += len(data)
            if self._unfinished > self._max_head_bytes:
                raise CodecError(502, "", "protocol error")

    def _release_held(self) -> None:
        """Deliver the body bytes held back in this read: it ended without the response's end
        (or before an error, so what was relayed does not depend on how reads are cut)."""
        held, self._held = self._held, None
        if held is not None and self.decoder is not None:
            self.decoder.on_response_data(held)

    def on_message_begin(self) -> None:
        if not self._awaiting:
            self._fail(CodecError(502, "", "protocol error"))  # a response after the response
        self._headers = []
        self._in_head = True
        self._unfinished = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((_NAMES.get(name) or _header_name(name), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        # The earlier reads of the head plus all of this one bound the head from above; only
        # when that is over the limit are the completed fields counted one by one.
        if self._unfinished + self._read_size > self._max_head_bytes and sum(
                len(name) + len(value) + 4 for name, value in self._headers
        ) + self._unfinished > self._max_head_bytes:
            self._fail(CodecError(502, "", "protocol error"))
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            if status < 100 or status == 101:
                # 101: an upgrade nobody asked for. Under 100: no such status, and llhttp would
                # read a body after it that no headers event announced.
                self._fail(CodecError(502, "", "protocol error"))
            for name, value in self._headers:
                if name == "transfer-encoding" or (name == "content-length" and value != "0"):
                    # An interim response has no body (RFC 9110 §15.2), but llhttp reads one
                    # for a 1xx other than 100, 102 and 103: relayed, it would land inside the
                    # final response. Envoy refuses it (502).
                    self._fail(CodecError(502, "", "protocol error"))
            self._interim = True
            return
        content_length = None
        chunked = False
        items = []
        named = None
        for name, value in self._headers:
            if name not in _RESPONSE_SPECIAL:
                items.append((name, value))
            elif name == "content-length":
                content_length = value
                items.append((name, value))
            elif name == "transfer-encoding":
                if chunked or value.lower() != "chunked":
                    # Another coding: llhttp would read the body until close and we would
                    # re-frame it. Twice: ambiguous. Envoy refuses both (502).
                    self._fail(CodecError(502, "", "protocol error"))
                chunked = True
            elif name == "connection":
                named = _named_by_connection(value, named)
            # other connection-level headers (keep-alive, te, ...) end at this hop
        if status == 204 and (chunked or content_length not in (None, "0")):
            # A 204 announcing a body: relayed, its content-length could make a client wait for
            # bytes that never come (or take the next response's). Envoy refuses it (502).
            self._fail(CodecError(502, "", "protocol error"))
        if named:
            items = [kv for kv in items if kv[0] not in named]
        self.framing = framing = parsed_response_framing(self._method, status, content_length,
                                                         chunked)
        self._keep_alive = keep_alive = parser.should_keep_alive() and framing != CLOSE
        decoder = self.decoder
        if decoder is not None:
            decoder.on_response_headers(ResponseHeaders(status, items), keep_alive, framing)
        if framing == NONE and self._method == "HEAD":
            # llhttp cannot be told that a HEAD answer has no body: the response ends here, and
            # a byte llhttp takes for its body is one nobody asked for.
            self._awaiting = False
            self._parser_stale = True
            self._stale_may_end = content_length == "0" or status == 204 or status == 304
            self.connection.on_response_complete(b"")

    def on_body(self, body: bytes) -> None:
        if not self._awaiting:
            self._fail(CodecError(502, "", "protocol error"))  # a body the HEAD answer has not
        held, self._held = self._held, body
        if held is not None:
            decoder = self.decoder
            if decoder is not None:
                decoder.on_response_data(held)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._parser_stale:
            if not self._stale_may_end:  # llhttp consumed a body (an empty chunked one)
                self._fail(CodecError(502, "", "protocol error"))
            self._parser_stale = False  # the HEAD answer's end, as llhttp counted it
            return
        self._awaiting = False
        held = self._held
        if held is None:
            self.connection.on_response_complete(b"")
        else:
            self._held = None
            self.connection.on_response_complete(held)


# -- encoding ---------------------------------------------------------------------------------

def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
