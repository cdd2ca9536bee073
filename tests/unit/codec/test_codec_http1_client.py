"""ClientCodec (one upstream connection: the request encoded, its response parsed, reuse
decided) and the HTTP/1 encoders."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from codec_helpers import (
    ResponseRecorder,
    bytewise,
    parse_requests,
    parse_responses,
    send_request,
)

from outrider.codec.http1 import (
    CONTINUE_100,
    LAST_CHUNK,
    ClientCodec,
    CodecError,
    ResponseEncoder,
    encode_chunk,
    reason_phrase,
    status_line,
)
from outrider.http.headers import RequestHeaders, ResponseHeaders

PROTOCOL_ERROR = ("error", 502, "protocol error")
HI = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
HI_EVENTS = [("headers", 200, [("content-length", "2")], True, "length"), ("data", b"hi"),
             ("complete",)]


def response(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


def exchange(codec: ClientCodec, data: bytes, method: str = "GET") -> None:
    """Send a body-less request on ``codec`` and feed it ``data``."""
    send_request(codec, method)
    codec.feed(data)


# -- framing --------------------------------------------------------------------------------------

def test_content_length_body():
    assert parse_responses(HI) == HI_EVENTS
    assert parse_responses(bytewise(HI)) == HI_EVENTS


def test_chunked_body_is_decoded_and_transfer_encoding_consumed():
    data = response("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert parse_responses(data) == [
        ("headers", 200, [], True, "chunked"), ("data", b"hello world"), ("complete",)]


def test_body_delimited_by_close_never_completes_and_is_not_keep_alive():
    assert parse_responses(response("HTTP/1.1 200 OK\n", b"partial")) == [
        ("headers", 200, [], False, "close"), ("data", b"partial")]


def test_content_length_zero_is_framing_none():
    assert parse_responses(response("HTTP/1.1 200 OK\nContent-Length: 0\n")) == [
        ("headers", 200, [("content-length", "0")], True, "none"), ("complete",)]


@pytest.mark.parametrize(("status", "head"), [
    (204, "HTTP/1.1 204 No Content\n"),
    (304, "HTTP/1.1 304 Not Modified\nContent-Length: 10\n"),
])
def test_204_and_304_have_no_body_whatever_the_headers_say(status, head):
    events = parse_responses(response(head))
    assert [e[0] for e in events] == ["headers", "complete"]
    assert events[0][1] == status
    assert events[0][3:] == (True, "none")


@pytest.mark.parametrize("data", [
    response("HTTP/1.1 200 OK\nContent-Length: 5\nTransfer-Encoding: chunked\n",
             b"5\r\nhello\r\n0\r\n\r\n"),
    b"garbage\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    response("HTTP/1.1 200 OK\nContent-Length: 1x\n"),
], ids=["length and chunked", "garbage", "bad status", "bad length"])
def test_malformed_responses_are_a_protocol_error(data):
    assert parse_responses(data) == [PROTOCOL_ERROR]


@pytest.mark.parametrize("value", ["gzip", "gzip, chunked", "identity"])
def test_transfer_encoding_other_than_chunked_is_a_protocol_error(value):
    """llhttp would read such a body until the close and the proxy re-frame it; Envoy refuses
    it (502) and so does Outrider, before any event."""
    data = response(f"HTTP/1.1 200 OK\nTransfer-Encoding: {value}\n", b"0\r\n\r\n")
    assert parse_responses(data) == [PROTOCOL_ERROR]


def test_codec_error_is_a_502_protocol_error():
    codec = ClientCodec(ResponseRecorder())
    send_request(codec)
    with pytest.raises(CodecError) as raised:
        codec.feed(b"garbage\r\n\r\n")
    assert (raised.value.status, raised.value.details) == (502, "protocol error")


# -- keep-alive -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "keep_alive"), [
    ("HTTP/1.1 200 OK\nContent-Length: 2\n", True),
    ("HTTP/1.1 200 OK\nConnection: close\nContent-Length: 2\n", False),
    ("HTTP/1.0 200 OK\nContent-Length: 2\n", False),
    ("HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 2\n", True),
])
def test_keep_alive_flag(head, keep_alive):
    assert parse_responses(response(head, b"hi"))[0][3] is keep_alive


# -- interim responses ----------------------------------------------------------------------------

@pytest.mark.parametrize("interim", [
    "HTTP/1.1 100 Continue\n", "HTTP/1.1 103 Early Hints\nLink: </s.css>; rel=preload\n"])
def test_1xx_responses_are_skipped(interim):
    data = response(interim) + HI
    assert parse_responses(data) == HI_EVENTS
    assert parse_responses(bytewise(data)) == HI_EVENTS


INJECTED_RESPONSE = b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("head", [
    f"HTTP/1.1 150 X\nContent-Length: {len(INJECTED_RESPONSE)}\n",
    "HTTP/1.1 100 Continue\nContent-Length: 2\n",
    "HTTP/1.1 199 X\nTransfer-Encoding: chunked\n",
], ids=["150 with a length", "100 with a length", "199 chunked"])
def test_an_interim_response_announcing_a_body_is_a_protocol_error(head):
    """A 1xx has no body; llhttp reads one after 104-199, which relayed would land inside the
    final response (Envoy: 502)."""
    data = response(head, INJECTED_RESPONSE) + HI
    for pieces in (data, bytewise(data)):
        events = parse_responses(pieces)
        assert events == [PROTOCOL_ERROR], events


def test_an_interim_response_with_length_0_is_skipped():
    assert parse_responses(response("HTTP/1.1 100 Continue\nContent-Length: 0\n") + HI) == \
        HI_EVENTS


def test_body_bytes_parsed_before_an_error_are_relayed_however_the_reads_are_cut():
    """The codec holds a read's last body bytes back to hand them over with the response's end;
    an error later in the same read must not swallow them, or what the client got before the
    reset would depend on how the upstream's bytes were cut into reads."""
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\n"
    expected = [("headers", 200, [], True, "chunked"), ("data", b"abc"), PROTOCOL_ERROR]
    assert parse_responses(data) == expected
    assert parse_responses(bytewise(data)) == expected


@pytest.mark.parametrize("status", ["000", "099"])
def test_a_status_below_100_is_a_protocol_error(status):
    injected = b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n"
    data = response(f"HTTP/1.1 {status} X\nContent-Length: {len(injected)}\n", injected) + HI
    events = parse_responses(data)
    assert ("data", injected) not in events
    assert events == [PROTOCOL_ERROR]


@pytest.mark.parametrize("tail", [b"", b"\x00\x01", HI])
def test_unsolicited_101_is_a_protocol_error(tail):
    """Outrider sends no upgrades upstream: a 101 is refused, whatever follows it."""
    data = response("HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n"
                    "Connection: upgrade\n") + tail
    assert parse_responses(data) == [PROTOCOL_ERROR]
    assert parse_responses(bytewise(data))[-1] == PROTOCOL_ERROR


# -- HEAD -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "keep_alive"), [
    ("HTTP/1.1 200 OK\nContent-Length: 5\n", True),
    ("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", True),
    ("HTTP/1.1 200 OK\nConnection: close\n", False),
])
def test_head_response_completes_with_its_headers(head, keep_alive):
    events = parse_responses(response(head), head=True)
    assert [e[0] for e in events] == ["headers", "complete"]
    assert events[0][3:] == (keep_alive, "none")


def test_head_response_keeps_content_length_header():
    events = parse_responses(response("HTTP/1.1 200 OK\nContent-Length: 5\n"), head=True)
    assert events[0][2] == [("content-length", "5")]


@pytest.mark.parametrize("reads", [
    [response("HTTP/1.1 200 OK\nContent-Length: 5\n", b"hello")],
    [response("HTTP/1.1 200 OK\nContent-Length: 5\n"), b"hello"],
    [response("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"5\r\nhello\r\n0\r\n\r\n")],
    [response("HTTP/1.1 200 OK\nConnection: close\n", b"hello")],
], ids=["length, same read", "length, later read", "chunked", "close-delimited"])
def test_a_body_on_a_head_answer_is_a_protocol_error(reads):
    events = parse_responses(reads, head=True)
    assert [e[0] for e in events] == ["headers", "complete", "error"]
    assert events[-1] == PROTOCOL_ERROR


def test_the_response_after_a_head_answer_is_parsed_from_its_first_byte():
    """llhttp still waits for the 5 bytes the HEAD answer announced; the next request gets a
    fresh parser, so the next response is not taken for them."""
    recorder = ResponseRecorder()
    codec = ClientCodec(recorder)
    exchange(codec, response("HTTP/1.1 200 OK\nContent-Length: 5\n"), "HEAD")
    assert codec.reuse_refusal() is None
    recorder.events.clear()
    exchange(codec, HI)
    assert recorder.events == HI_EVENTS


# -- bytes nobody asked for -----------------------------------------------------------------------

def test_bytes_on_a_codec_that_sent_no_request_are_a_protocol_error():
    codec = ClientCodec(ResponseRecorder())
    with pytest.raises(CodecError):
        codec.feed(HI)


def test_a_second_response_is_refused_however_the_reads_cut_it():
    """Upstream HTTP/1 is not pipelined: a response after the response, in the same read or a
    later one, is a protocol error and none of its events are delivered."""
    data = HI + response("HTTP/1.1 201 Created\nContent-Length: 0\n")
    expected = [*HI_EVENTS, PROTOCOL_ERROR]
    assert parse_responses(data) == expected
    for cut in range(1, len(data)):
        assert parse_responses([data[:cut], data[cut:]]) == expected, cut


@pytest.mark.parametrize("tail", [b"\r\n", b"\n", b"\r", b"\r\n\r\n"])
def test_empty_lines_after_a_response_are_ignored_however_the_reads_cut_them(tail):
    """llhttp skips CR/LF between messages without a callback, so they cannot be seen in the
    response's own read; the codec ignores them in a later read too (the outcome must not
    depend on the cut), and they can never become part of another response."""
    assert parse_responses([HI + tail]) == HI_EVENTS
    assert parse_responses([HI, tail]) == HI_EVENTS


@pytest.mark.parametrize("tail", [b"\r\nX", b" ", b"\r\nHTTP/1.1 200 OK\r\n"])
def test_anything_but_empty_lines_after_a_response_is_refused(tail):
    assert parse_responses([HI + tail]) == [*HI_EVENTS, PROTOCOL_ERROR]
    assert parse_responses([HI, tail]) == [*HI_EVENTS, PROTOCOL_ERROR]


# -- reuse_refusal: whether the connection can carry another request ------------------------------

def test_a_fresh_codec_can_carry_a_request():
    assert ClientCodec(ResponseRecorder()).reuse_refusal() is None


@pytest.mark.parametrize(("reads", "refusal"), [
    ([], "response incomplete"),  # the request went out, nothing came back yet
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"], "response incomplete"),
    ([b"HTTP/1.1 100 Continue\r\n\r\n"], "response incomplete"),
    ([b"HTTP/1.1 200 OK\r\n\r\nbody until close"], "response incomplete"),
    ([HI], None),
    ([response("HTTP/1.1 200 OK\nConnection: close\nContent-Length: 2\n", b"hi")],
     "connection close"),
    ([response("HTTP/1.0 200 OK\nContent-Length: 2\n", b"hi")], "connection close"),
    ([response("HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 2\n", b"hi")], None),
], ids=["no response", "mid-body", "interim only", "close-delimited", "complete",
        "connection close", "HTTP/1.0", "HTTP/1.0 keep-alive"])
def test_reuse_refusal(reads, refusal):
    codec = ClientCodec(ResponseRecorder())
    send_request(codec)
    for data in reads:
        codec.feed(data)
    assert codec.reuse_refusal() == refusal


def test_reuse_refused_until_the_request_body_is_all_sent():
    codec = ClientCodec(ResponseRecorder())
    codec.encode_headers(RequestHeaders("POST", "/", "h", items=[("content-length", "4")]),
                         False, codec.connection)
    codec.encode_data(b"ab", False)
    codec.feed(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
    assert codec.reuse_refusal() == "request incomplete"
    codec.encode_data(b"cd", True)
    assert codec.reuse_refusal() is None


# -- the response head bound (max_response_headers_kb) --------------------------------------------

def test_endless_header_value_is_refused_after_max_response_headers_kb():
    """httptools hands a header over only once its value ends; the codec counts what it feeds,
    so one endless value is refused near the limit instead of being buffered forever."""
    recorder = ResponseRecorder()
    codec = ClientCodec(recorder)
    send_request(codec)
    codec.feed(b"HTTP/1.1 200 OK\r\nx-endless: ")
    fed = 0
    with pytest.raises(CodecError):
        while fed < 200 * 1024:
            codec.feed(b"a" * 1024)
            fed += 1024
    assert 59 * 1024 <= fed <= 61 * 1024
    assert recorder.events == []


@pytest.mark.parametrize(("limit", "refused"), [(1, True), (2, False)])
def test_max_response_headers_kb_is_the_codecs_option(limit, refused):
    data = response(f"HTTP/1.1 200 OK\nx-a: {'a' * 1500}\nContent-Length: 0\n")
    recorder = ResponseRecorder()
    codec = ClientCodec(recorder, max_response_headers_kb=limit)
    send_request(codec)
    with pytest.raises(CodecError) if refused else nullcontext():
        for i in range(0, len(data), 100):
            codec.feed(data[i:i + 100])
    assert [e[0] for e in recorder.events] == ([] if refused else ["headers", "complete"])


def test_a_59_kb_header_passes_whatever_the_reads():
    value = "v" * (59 * 1024)
    data = response(f"HTTP/1.1 200 OK\nx-big: {value}\nContent-Length: 0\n")
    expected = [("headers", 200, [("x-big", value), ("content-length", "0")], True, "none"),
                ("complete",)]
    assert parse_responses(data) == expected
    assert parse_responses([data[i:i + 1000] for i in range(0, len(data), 1000)]) == expected


def test_many_headers_count_toward_the_bound_together():
    lines = "".join(f"x-h{i}: {'v' * 1000}\n" for i in range(62))
    data = response("HTTP/1.1 200 OK\n" + lines)
    assert parse_responses([data[i:i + 1000] for i in range(0, len(data), 1000)]) == [
        PROTOCOL_ERROR]


def test_a_response_head_over_the_bound_in_one_read_is_refused():
    lines = "".join(f"x-h{i}: {'v' * 1000}\n" for i in range(62))
    assert parse_responses(response("HTTP/1.1 200 OK\n" + lines)) == [PROTOCOL_ERROR]


# -- headers --------------------------------------------------------------------------------------

def test_connection_level_response_headers_are_consumed_and_upgrade_kept():
    data = response("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nKeep-Alive: timeout=5\n"
                    "Trailer: x\nTE: t\nProxy-Connection: y\nUpgrade: h2\nX-Kept: 1\n",
                    b"0\r\n\r\n")
    assert parse_responses(data)[0][2] == [("upgrade", "h2"), ("x-kept", "1")]


def test_connection_named_response_headers_are_dropped():
    data = response("HTTP/1.1 200 OK\nConnection: x-foo, keep-alive\nX-Foo: 1\nX-Bar: 2\n"
                    "Content-Length: 0\n")
    assert parse_responses(data)[0][2:] == (
        [("x-bar", "2"), ("content-length", "0")], True, "none")


# -- encoding the request -------------------------------------------------------------------------

def sent_by(headers: RequestHeaders, end_stream: bool, *body: tuple[bytes, bool]) -> bytes:
    """What a ClientCodec writes for a request: its head, then each (data, end_stream)."""
    recorder = ResponseRecorder()
    codec = ClientCodec(recorder)
    codec.encode_headers(headers, end_stream, recorder)
    for data, end in body:
        codec.encode_data(data, end)
    return recorder.sent


def test_the_request_head_is_origin_form_with_host_first():
    headers = RequestHeaders("POST", "/p?q=1", "example.com", "https",
                             [("x-a", "1"), ("content-length", "3")])
    assert sent_by(headers, False) == (
        b"POST /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n")


def test_a_chunked_request_head_ends_with_transfer_encoding():
    headers = RequestHeaders("PUT", "/", "h", items=[("x-a", "1")])
    assert sent_by(headers, False) == (
        b"PUT / HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n")


def test_the_request_head_keeps_latin_1_bytes():
    headers = RequestHeaders("GET", "/", "h", items=[("x-a", "caf\xe9")])
    assert sent_by(headers, True).endswith(b"x-a: caf\xe9\r\n\r\n")


def test_a_request_that_ends_with_its_headers_has_no_body_framing():
    assert sent_by(RequestHeaders("GET", "/", "h"), True) == b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"


def test_a_request_with_content_length_sends_its_body_as_is():
    headers = RequestHeaders("POST", "/", "h", items=[("content-length", "5")])
    assert sent_by(headers, False, (b"he", False), (b"llo", True)) == (
        b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nhello")


def test_a_request_without_length_and_a_body_to_come_is_chunked():
    headers = RequestHeaders("POST", "/", "h", items=[("x-a", "1")])
    assert sent_by(headers, False, (b"abc", False), (b"", False), (b"de", True)) == (
        b"POST / HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")


def test_a_chunked_request_ended_by_empty_data_gets_the_last_chunk():
    headers = RequestHeaders("POST", "/", "h")
    assert sent_by(headers, False, (b"abc", False), (b"", True)).endswith(
        b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


@pytest.mark.parametrize(("items", "end_stream", "body", "framing"), [
    ([], True, [], "none"),
    ([("content-length", "3")], False, [(b"abc", True)], "length"),
    ([], False, [(b"ab", False), (b"c", True)], "chunked"),
])
def test_encoded_requests_round_trip_through_the_server_codec(items, end_stream, body, framing):
    headers = RequestHeaders("POST", "/r", "h:1", items=[("x-a", "1"), ("x-a", "2"), *items])
    data = sent_by(headers, end_stream, *body)
    expected = [("headers", "POST", "/r", "h:1", "http", [("x-a", "1"), ("x-a", "2"), *items],
                 "1.1", True, framing)]
    if body:
        expected.append(("data", b"abc"))
    expected.append(("complete",))
    assert parse_requests(data) == expected


# -- other encoders -------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "line"), [
    (200, b"HTTP/1.1 200 OK\r\n"),
    (204, b"HTTP/1.1 204 No Content\r\n"),
    (404, b"HTTP/1.1 404 Not Found\r\n"),
    (408, b"HTTP/1.1 408 Request Timeout\r\n"),
    (426, b"HTTP/1.1 426 Upgrade Required\r\n"),
    (431, b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
    (503, b"HTTP/1.1 503 Service Unavailable\r\n"),
    (504, b"HTTP/1.1 504 Gateway Timeout\r\n"),
    (599, b"HTTP/1.1 599 Unknown\r\n"),
])
def test_status_line(status, line):
    assert status_line(status) == line


def test_status_lines_are_precomputed():
    assert status_line(200) is status_line(200)
    assert reason_phrase(502) == "Bad Gateway"
    assert reason_phrase(299) == "Unknown"


def test_encode_chunk():
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"
    assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(("chunked", "close", "tail"), [
    (False, False, b""),
    (True, False, b"transfer-encoding: chunked\r\n"),
    (False, True, b"connection: close\r\n"),
    (True, True, b"transfer-encoding: chunked\r\nconnection: close\r\n"),
])
def test_the_response_head(chunked, close, tail):
    headers = ResponseHeaders(404, [("content-type", "text/plain"), ("x-a", "1")])
    written = ResponseRecorder()
    # Chunked when no length frames a body still to come (HTTP/1.1).
    assert ResponseEncoder(written).encode_headers(headers, False, not chunked, close) == close
    assert written.sent == (
        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nx-a: 1\r\n" + tail + b"\r\n")


def test_an_encoded_response_round_trips_through_the_client_codec():
    written = ResponseRecorder()
    encoder = ResponseEncoder(written)
    encoder.encode_headers(ResponseHeaders(200, [("x-a", "1")]), False, False, False)
    encoder.encode_data(b"abc", True)
    assert parse_responses(written.sent) == [
        ("headers", 200, [("x-a", "1")], True, "chunked"), ("data", b"abc"), ("complete",)]


# -- found by the differential fuzzer (tests/fuzz/smuggling_cases.py) -----------------------------

@pytest.mark.parametrize("head", [
    "HTTP/1.1 204 No Content\nContent-Length: 5\n",
    "HTTP/1.1 204 No Content\nTransfer-Encoding: chunked\n",
    "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n",
])
def test_responses_envoy_refuses_are_protocol_errors(head):
    assert parse_responses(response(head)) == [PROTOCOL_ERROR]


def test_a_204_with_content_length_zero_passes():
    assert parse_responses(response("HTTP/1.1 204 No Content\nContent-Length: 0\n"))[-1] == (
        "complete",)
