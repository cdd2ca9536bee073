"""Property tests for the HTTP/1 codecs (hypothesis, bounded to keep the suite fast).

- A valid request stream (or a series of request/response exchanges) gives the same events
  however its bytes are split into reads, and those events are the ones the generated messages
  describe.
- Arbitrary bytes, and valid streams with random damage, make ``feed`` raise nothing but
  ``CodecError``; the events before it follow the message grammar; and a refused stream is
  refused the same way however it is split.
- A valid message after junk is never delivered once the codec has refused the junk.
"""

from __future__ import annotations

import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outrider.codec.http1 import ClientCodec, CodecError, ServerCodec
from outrider.http.headers import RequestHeaders
from tests.support.reads import split

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- recording callbacks -------------------------------------------------------------------------

class Requests:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def new_stream(self, encoder=None) -> Requests:
        self.events.append(("begin",))
        return self

    def on_request_headers(self, headers, version, keep_alive, framing, upgrade=None,
                           expect_continue=False) -> None:
        self.events.append(("headers", headers.method, headers.path, headers.authority,
                            list(headers.items()), version, keep_alive, framing))

    def on_request_data(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", bytes(data)))

    def on_request_complete(self) -> None:
        self.events.append(("complete",))


class Responses:
    """The ClientCodec's connection: records the response events (the request bytes it is
    given to write are dropped)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def write(self, data: bytes) -> None:
        pass

    def on_response_headers(self, headers, keep_alive, framing) -> None:
        self.events.append(("headers", headers.status, list(headers.items()), keep_alive,
                            framing))

    def on_response_data(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", bytes(data)))

    def on_response_complete(self, data: bytes) -> None:
        if data:
            self.on_response_data(data)
        self.events.append(("complete",))


def server_events(pieces: list[bytes]) -> list[tuple]:
    """Feed the reads to a ServerCodec until it refuses one, as the connection does; any
    exception other than CodecError escapes (and fails the test)."""
    recorder = Requests()
    codec = ServerCodec(recorder)
    try:
        for piece in pieces:
            codec.feed(piece)
    except CodecError as error:
        recorder.events.append(("error", error.status, error.body))
    return recorder.events


def client_events(exchanges: list[tuple[str, list[bytes]]]) -> list[tuple]:
    """On one ClientCodec, per exchange ``(method, reads)``: send the request, feed the reads.
    Stops at the first refusal, as the connection does (CodecError is recorded as
    ``("error",)``; any other exception escapes), or when the codec cannot carry the next
    request (recorded as ``("no reuse", reason)``)."""
    recorder = Responses()
    codec = ClientCodec(recorder)
    try:
        for method, pieces in exchanges:
            refusal = codec.reuse_refusal()
            if refusal is not None:
                recorder.events.append(("no reuse", refusal))
                break
            codec.encode_headers(RequestHeaders(method, "/", "example.com"), True, recorder)
            for piece in pieces:
                codec.feed(piece)
    except CodecError as error:
        assert (error.status, error.details) == (502, "protocol error")
        recorder.events.append(("error",))
    return recorder.events


# The order events may come in: per message, begin (requests), headers, data, complete; a
# stream may stop anywhere (more bytes to come) and a refusal ends it.
_REQUEST_GRAMMAR = re.compile(r"(BHD?C)*(B(HD?)?)?E?")
_RESPONSE_GRAMMAR = re.compile(r"(HD?C?)?E?")
_LETTERS = {"begin": "B", "headers": "H", "data": "D", "complete": "C", "error": "E"}


def assert_request_grammar(events: list[tuple]) -> None:
    kinds = "".join(_LETTERS[e[0]] for e in events)
    assert _REQUEST_GRAMMAR.fullmatch(kinds), events


def assert_one_response_at_most(events: list[tuple]) -> None:
    """One request was sent: at most one response comes of it, then only a refusal."""
    kinds = "".join(_LETTERS[e[0]] for e in events)
    assert _RESPONSE_GRAMMAR.fullmatch(kinds), events


# -- generated messages ----------------------------------------------------------------------------

# Names stay clear of the ones the codec treats specially (host, framing, connection, te, ...).
names = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=10).map(
    lambda s: "x-" + s)
values = st.from_regex(r"\A([!-~]([ -~]{0,16}[!-~])?)?\Z")
header_lists = st.lists(st.tuples(names, values), max_size=6)
paths = st.text(string.ascii_letters + string.digits + "/-._~%?=&", max_size=24).map(
    lambda s: "/" + s)
bodies = st.binary(min_size=0, max_size=64)


@st.composite
def requests(draw) -> tuple[bytes, list[tuple]]:
    """One request's bytes, with the events the codec must report for it."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    path = draw(paths)
    headers = draw(header_lists)
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    casing = draw(st.sampled_from([str.lower, str.title, str.upper]))
    lines = [f"{method} {path} HTTP/1.1", "Host: example.com"]
    lines += [f"{casing(n)}: {v}" for n, v in headers]
    items = list(headers)
    body = b""
    wire_body = b""
    if framing == "length":
        body = draw(bodies)
        lines.append(f"Content-Length: {len(body)}")
        items.append(("content-length", str(len(body))))
        wire_body = body
    elif framing == "chunked":
        chunks = draw(st.lists(st.binary(min_size=1, max_size=24), max_size=4))
        body = b"".join(chunks)
        lines.append("Transfer-Encoding: chunked")
        for chunk in chunks:
            extension = draw(st.sampled_from([b"", b";ext=1", b" "]))
            wire_body += b"%x%b\r\n%b\r\n" % (len(chunk), extension, chunk)
        wire_body += b"0\r\n\r\n"
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + wire_body
    reported = "length" if framing == "length" and body else (
        "chunked" if framing == "chunked" else "none")
    events = [("begin",), ("headers", method, path, "example.com", items, "1.1", True, reported)]
    if body:
        events.append(("data", body))
    events.append(("complete",))
    return data, events


request_streams = st.lists(requests(), min_size=1, max_size=4)
cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@st.composite
def responses(draw) -> tuple[str, bytes, list[tuple]]:
    """One exchange: the request's method (GET or HEAD), the response's bytes (a 100 Continue
    may come first), and the events the codec must report for it. A HEAD answer announces the
    body the GET would have had and carries none."""
    method = draw(st.sampled_from(["GET", "GET", "HEAD"]))
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500, 503]))
    headers = draw(header_lists)
    framing = draw(st.sampled_from(["length", "chunked"]))
    interim = draw(st.sampled_from([b"", b"HTTP/1.1 100 Continue\r\n\r\n"]))
    lines = [f"HTTP/1.1 {status} Whatever"] + [f"{n}: {v}" for n, v in headers]
    items = list(headers)
    no_body = status in (204, 304)
    body = b"" if no_body else draw(bodies)
    wire = b""
    if framing == "length" and status != 204:
        lines.append(f"Content-Length: {len(body)}")
        items.append(("content-length", str(len(body))))
        wire = body
    elif framing == "chunked" and not no_body:
        lines.append("Transfer-Encoding: chunked")
        wire = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    if method == "HEAD":
        wire = body = b""
        reported = "none"
    else:
        reported = "none" if no_body or (framing == "length" and not body) else framing
    events = [("headers", status, items, True, reported)]
    if body:
        events.append(("data", body))
    events.append(("complete",))
    return method, interim + ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + wire, events


exchange_lists = st.lists(responses(), min_size=1, max_size=3)


# -- properties ------------------------------------------------------------------------------------

@FUZZ
@given(request_streams, cut_lists)
def test_request_stream_events_do_not_depend_on_fragmentation(stream, cuts):
    data = b"".join(d for d, _ in stream)
    expected = [e for _, events in stream for e in events]
    assert server_events([data]) == expected
    assert server_events(split(data, cuts)) == expected


@FUZZ
@given(exchange_lists, cut_lists)
def test_response_events_do_not_depend_on_fragmentation(exchanges, cuts):
    """Each response is read after its request was sent, as on a reused connection (after a
    HEAD answer too, whose announced body never comes)."""
    expected = [e for _, _, events in exchanges for e in events]
    assert client_events([(method, [data]) for method, data, _ in exchanges]) == expected
    assert client_events([(method, split(data, cuts)) for method, data, _ in exchanges]) == (
        expected)


def damage(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 replaces, 1 inserts, 2 deletes."""
    buffer = bytearray(data)
    for kind, position, byte in edits:
        if not buffer:
            buffer.append(byte)
            continue
        i = position % len(buffer)
        if kind == 0:
            buffer[i] = byte
        elif kind == 1:
            buffer.insert(i, byte)
        else:
            del buffer[i]
    return bytes(buffer)


edit_lists = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)),
                      min_size=1, max_size=6)

# Junk that is often nearly HTTP: random bytes, pieces of messages strung together, or a valid
# message whole or cut short (so that a complete or unfinished message comes before the valid one).
_PIECES = [b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n",
           b"Host: a\r\n", b"Content-Length: 0\r\n", b"Content-Length: 5\r\n",
           b"Transfer-Encoding: chunked\r\n", b"\r\n", b"0\r\n", b"5\r\n", b"hello", b"GET",
           b"HTTP/1.1", b" ", b":", b"\n", b"\x00"]
_junk = st.one_of(st.binary(min_size=1, max_size=64),
                  st.lists(st.sampled_from(_PIECES), min_size=1, max_size=8).map(b"".join))
prefix_lengths = st.integers(min_value=1, max_value=400)
request_junk = st.one_of(
    _junk, st.tuples(requests(), prefix_lengths).map(lambda t: t[0][0][:t[1]]))
response_junk = st.one_of(
    _junk, st.tuples(responses(), prefix_lengths).map(lambda t: t[0][1][:t[1]]))


@FUZZ
@given(st.binary(max_size=512), cut_lists)
def test_random_bytes_give_ordered_events_or_codec_error(data, cuts):
    whole = server_events([data])  # anything but CodecError escapes and fails the test
    assert_request_grammar(whole)
    assert server_events(split(data, cuts)) == whole


@FUZZ
@given(request_streams, edit_lists, cut_lists)
def test_damaged_request_streams_raise_only_codec_error_whatever_the_reads(stream, edits, cuts):
    data = damage(b"".join(d for d, _ in stream), edits)
    whole = server_events([data])
    assert_request_grammar(whole)
    assert server_events(split(data, cuts)) == whole


VALID_REQUEST = b"GET /after-junk HTTP/1.1\r\nHost: example.com\r\n\r\n"


@FUZZ
@given(request_junk, cut_lists)
def test_a_valid_request_after_refused_junk_is_never_delivered(prefix, cuts):
    data = prefix + VALID_REQUEST
    for pieces in ([data], split(data, cuts)):
        events = server_events(pieces)
        assert_request_grammar(events)
        if events[-1][0] == "error":
            assert not [e for e in events if e[0] == "headers" and e[2] == "/after-junk"]


@FUZZ
@given(st.sampled_from(["GET", "HEAD"]), st.binary(max_size=512), cut_lists)
def test_random_bytes_give_one_response_at_most_or_codec_error_in_the_client_codec(
        method, data, cuts):
    whole = client_events([(method, [data])])  # anything but CodecError escapes
    assert_one_response_at_most(whole)
    split_events = client_events([(method, split(data, cuts))])
    assert_one_response_at_most(split_events)
    assert split_events == whole  # the outcome never depends on how the reads are cut


@FUZZ
@given(responses(), edit_lists, cut_lists)
def test_damaged_responses_raise_only_codec_error_whatever_the_reads(exchange, edits, cuts):
    method, data, _ = exchange
    data = damage(data, edits)
    whole = client_events([(method, [data])])
    assert_one_response_at_most(whole)
    split_events = client_events([(method, split(data, cuts))])
    assert split_events == whole  # the outcome never depends on how the reads are cut


VALID_RESPONSE = b"HTTP/1.1 299 After Junk\r\nContent-Length: 0\r\n\r\n"


@FUZZ
@given(st.sampled_from(["GET", "HEAD"]), response_junk, cut_lists)
def test_a_valid_response_after_refused_junk_is_never_delivered(method, prefix, cuts):
    """Nor after a complete response: one request, one response (the 299 is refused)."""
    data = prefix + VALID_RESPONSE
    for pieces in ([data], split(data, cuts)):
        events = client_events([(method, pieces)])
        assert_one_response_at_most(events)
        if events[-1:] == [("error",)]:
            assert not [e for e in events if e[0] == "headers" and e[1] == 299]
