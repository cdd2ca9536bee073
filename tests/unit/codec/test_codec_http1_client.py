"""ClientCodec (responses from an upstream) and the HTTP/1 encoders."""

from __future__ import annotations

import httptools
import pytest
from codec_helpers import ResponseRecorder, bytewise, parse_responses

from outrider.codec.http1 import (
    CONTINUE_100,
    LAST_CHUNK,
    ClientCodec,
    encode_chunk,
    encode_request_head,
    encode_response_head,
    reason_phrase,
    status_line,
)
from outrider.http.headers import RequestHeaders, ResponseHeaders


def response(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


# -- framing --------------------------------------------------------------------------------------

def test_content_length_body():
    assert parse_responses(response("HTTP/1.1 200 OK\nContent-Length: 5\n", b"hello")) == [
        ("headers", 200, [("content-length", "5")], True, "length"),
        ("data", b"hello"),
        ("complete",),
    ]


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


def test_content_length_with_transfer_encoding_is_a_parser_error():
    data = response("HTTP/1.1 200 OK\nContent-Length: 5\nTransfer-Encoding: chunked\n",
                    b"5\r\nhello\r\n0\r\n\r\n")
    with pytest.raises(httptools.HttpParserError):
        parse_responses(data)


def test_garbage_is_a_parser_error():
    with pytest.raises(httptools.HttpParserError):
        parse_responses(b"garbage\r\n\r\n")


# -- keep-alive -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "keep_alive"), [
    ("HTTP/1.1 200 OK\nContent-Length: 2\n", True),
    ("HTTP/1.1 200 OK\nConnection: close\nContent-Length: 2\n", False),
    ("HTTP/1.0 200 OK\nContent-Length: 2\n", False),
    ("HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 2\n", True),
])
def test_keep_alive_flag(head, keep_alive):
    assert parse_responses(response(head, b"hi"))[0][3] is keep_alive


# -- interim responses ------------------------------------------------------------------------------

@pytest.mark.parametrize("interim", [
    "HTTP/1.1 100 Continue\n", "HTTP/1.1 103 Early Hints\nLink: </s.css>; rel=preload\n"])
def test_1xx_responses_are_skipped(interim):
    data = response(interim) + response("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi")
    expected = [("headers", 200, [("content-length", "2")], True, "length"), ("data", b"hi"),
                ("complete",)]
    assert parse_responses(data) == expected
    assert parse_responses(bytewise(data)) == expected


# -- HEAD -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "keep_alive"), [
    ("HTTP/1.1 200 OK\nContent-Length: 5\n", True),
    ("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", True),
    ("HTTP/1.1 200 OK\nConnection: close\n", False),
])
def test_head_response_completes_with_its_headers(head, keep_alive):
    recorder = ResponseRecorder()
    codec = ClientCodec(recorder)
    codec.expect_head_response()
    codec.feed(response(head))
    assert [e[0] for e in recorder.events] == ["headers", "complete"]
    assert recorder.events[0][3:] == (keep_alive, "none")
    assert codec.needs_reset is True


def test_head_response_keeps_content_length_header():
    events = parse_responses(response("HTTP/1.1 200 OK\nContent-Length: 5\n"), head=True)
    assert events[0][2] == [("content-length", "5")]


def test_bytes_after_a_head_response_are_a_parser_error():
    codec = ClientCodec(ResponseRecorder())
    codec.expect_head_response()
    codec.feed(response("HTTP/1.1 200 OK\nContent-Length: 5\n"))
    with pytest.raises(httptools.HttpParserError):
        codec.feed(b"hello")


def test_a_fresh_codec_does_not_need_reset():
    assert ClientCodec(ResponseRecorder()).needs_reset is False


# -- headers ------------------------------------------------------------------------------------------

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


def test_pipelined_responses_in_one_feed():
    data = (response("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi")
            + response("HTTP/1.1 201 Created\nContent-Length: 0\n"))
    expected = [
        ("headers", 200, [("content-length", "2")], True, "length"), ("data", b"hi"),
        ("complete",),
        ("headers", 201, [("content-length", "0")], True, "none"), ("complete",),
    ]
    assert parse_responses(data) == expected
    for cut in range(1, len(data)):
        assert parse_responses([data[:cut], data[cut:]]) == expected, cut


def test_unsolicited_101_raises_only_parser_errors():
    data = response("HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: upgrade\n")
    try:
        parse_responses(data + b"\x00\x01")
    except httptools.HttpParserError:
        pass


# -- encoders ---------------------------------------------------------------------------------------

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


def test_encode_request_head_is_origin_form_with_host_first():
    headers = RequestHeaders("POST", "/p?q=1", "example.com", "https",
                             [("x-a", "1"), ("content-length", "3")])
    assert encode_request_head(headers, chunked=False) == (
        b"POST /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n")


def test_encode_request_head_chunked():
    headers = RequestHeaders("PUT", "/", "h", items=[("x-a", "1")])
    assert encode_request_head(headers, chunked=True) == (
        b"PUT / HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n")


def test_encode_request_head_keeps_latin_1_bytes():
    headers = RequestHeaders("GET", "/", "h", items=[("x-a", "caf\xe9")])
    assert encode_request_head(headers, False).endswith(b"x-a: caf\xe9\r\n\r\n")


@pytest.mark.parametrize(("chunked", "close", "tail"), [
    (False, False, b""),
    (True, False, b"transfer-encoding: chunked\r\n"),
    (False, True, b"connection: close\r\n"),
    (True, True, b"transfer-encoding: chunked\r\nconnection: close\r\n"),
])
def test_encode_response_head(chunked, close, tail):
    headers = ResponseHeaders(404, [("content-type", "text/plain"), ("x-a", "1")])
    assert encode_response_head(headers, chunked, close) == (
        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nx-a: 1\r\n" + tail + b"\r\n")


def test_encoded_request_round_trips_through_the_server_codec():
    from codec_helpers import parse_requests

    headers = RequestHeaders("POST", "/r", "h:1", items=[("x-a", "1"), ("x-a", "2")])
    data = encode_request_head(headers, chunked=True) + encode_chunk(b"abc") + LAST_CHUNK
    assert parse_requests(data) == [
        ("headers", "POST", "/r", "h:1", "http", [("x-a", "1"), ("x-a", "2")], "1.1", True,
         "chunked"),
        ("data", b"abc"),
        ("complete",),
    ]


def test_encoded_response_round_trips_through_the_client_codec():
    headers = ResponseHeaders(200, [("x-a", "1")])
    data = encode_response_head(headers, chunked=True, close=False) + encode_chunk(b"abc") \
        + LAST_CHUNK
    assert parse_responses(data) == [
        ("headers", 200, [("x-a", "1")], True, "chunked"), ("data", b"abc"), ("complete",)]
