"""ServerCodec: request bytes in, events out; malformed requests become CodecError carrying
the status and body Envoy answers with (shared/reference/reliability.md, tables 1-46)."""

from __future__ import annotations

import pytest
from codec_helpers import RequestRecorder, bytewise, parse_requests

from outrider.codec.http1 import CodecError, ServerCodec

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"
POST_LENGTH = (b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n"
               b"Content-Type: text/plain\r\n\r\nhello world")
POST_CHUNKED = (b"POST /chunks HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
PIPELINE = GET + POST_LENGTH + POST_CHUNKED

GET_EVENTS = [
    ("headers", "GET", "/index.html?q=1", "example.com", "http", [("user-agent", "t")], "1.1",
     True, "none"),
    ("complete",),
]
POST_LENGTH_EVENTS = [
    ("headers", "POST", "/upload", "example.com", "http",
     [("content-length", "11"), ("content-type", "text/plain")], "1.1", True, "length"),
    ("data", b"hello world"),
    ("complete",),
]
POST_CHUNKED_EVENTS = [
    ("headers", "POST", "/chunks", "example.com", "http", [], "1.1", True, "chunked"),
    ("data", b"hello world"),
    ("complete",),
]


def request(head: str, body: bytes = b"") -> bytes:
    """A request from its head written with \\n line ends (they become CRLF)."""
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


def error_of(data: bytes, **options) -> tuple:
    events = parse_requests(data, **options)
    assert events[-1][0] == "error", events
    return events[-1][1:]


# -- well-formed requests ---------------------------------------------------------------------

def test_get_without_body_ends_with_its_headers():
    assert parse_requests(GET) == GET_EVENTS


def test_post_with_content_length():
    assert parse_requests(POST_LENGTH) == POST_LENGTH_EVENTS


def test_post_chunked_delivers_the_decoded_body_and_drops_transfer_encoding():
    assert parse_requests(POST_CHUNKED) == POST_CHUNKED_EVENTS


def test_content_length_zero_is_framing_none_but_the_header_stays():
    events = parse_requests(request("POST / HTTP/1.1\nHost: a\nContent-Length: 0\n"))
    assert events == [
        ("headers", "POST", "/", "a", "http", [("content-length", "0")], "1.1", True, "none"),
        ("complete",),
    ]


def test_chunk_extensions_and_whitespace_after_chunk_size_are_accepted():
    # reliability.md #11 and #12: Envoy accepts "5 " and "5;foo=bar".
    body = b"5 \r\nhello\r\n3;foo=bar\r\nabc\r\n0\r\n\r\n"
    events = parse_requests(request("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                    body))
    assert events[1:] == [("data", b"helloabc"), ("complete",)]


def test_transfer_encoding_chunked_is_case_insensitive():
    events = parse_requests(request("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: Chunked\n",
                                    b"0\r\n\r\n"))
    assert events[0][-1] == "chunked"


def test_header_names_are_lowercased_values_kept_and_repeats_kept_in_order():
    events = parse_requests(request("GET / HTTP/1.1\nHost: a\nX-Multi: One\nx-multi: Two\n"
                                    "Cookie: A=1\n"))
    assert events[0][5] == [("x-multi", "One"), ("x-multi", "Two"), ("cookie", "A=1")]


def test_keep_alive_flag():
    assert parse_requests(request("GET / HTTP/1.1\nHost: a\nConnection: close\n"))[0][7] is False
    assert parse_requests(request("GET / HTTP/1.1\nHost: a\n"))[0][7] is True
    assert parse_requests(request("GET / HTTP/1.0\n"), accept_http_10=True)[0][6:8] == (
        "1.0", False)
    assert parse_requests(request("GET / HTTP/1.0\nConnection: keep-alive\n"),
                          accept_http_10=True)[0][6:8] == ("1.0", True)


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_request_without_host_has_an_empty_authority(version):
    # The connection manager answers it (default_host_for_http_10 or 400), after any 100
    # Continue, as Envoy does.
    keep_alive = version == "1.1"
    assert parse_requests(request(f"GET / HTTP/{version}\n"), accept_http_10=True) == [
        ("headers", "GET", "/", "", "http", [], version, keep_alive, "none"), ("complete",)]


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_empty_host_is_400(version):
    # reliability.md #42: Envoy forwards an empty Host; Outrider refuses it on purpose, as nginx
    # does (docs/compatibility.md, deliberate differences).
    assert parse_requests(request(f"GET / HTTP/{version}\nHost: \n"), accept_http_10=True) == [
        ("error", 400, "", "http1.empty_host")]


HTTP10_REFUSED = (426, "Upgrade Required", "http1.0_disallowed")


@pytest.mark.parametrize("head", [
    "GET / HTTP/1.0\n", "GET / HTTP/1.0\nHost: \n", "GET / HTTP/1.0\nHost: a b\n",
    "GET / HTTP/1.0\nHost: a\nHost: b\n", "GET / HTTP/1.0\nHost: a\nConnection: host\n",
    "GET /#f HTTP/1.0\nHost: a\n", "GET / HTTP/1.0\nHost: a\nTransfer-Encoding: chunked\n",
    "GET / HTTP/1.0\nHost: a\nUpgrade: websocket\nConnection: upgrade\nContent-Length: 1\n",
])
def test_http_1_0_is_426_unless_accepted_before_the_host_checks(head):
    # Envoy's codec refuses HTTP/1.0 after parsing the URL and before checking the Host (each
    # case checked against the 1.40 binary): our empty, invalid and duplicate Host 400s wait.
    assert error_of(request(head)) == HTTP10_REFUSED


@pytest.mark.parametrize(("head", "expected"), [
    ("GET e HTTP/1.0\nHost: a\n", (400, "Bad Request", "http1.codec_error: invalid url")),
    ("GET http:///e HTTP/1.0\n", (400, "Bad Request", "http1.invalid_url")),
    ("GET / HTTP/1.0\nHost: a\nTransfer-Encoding: gzip\n",
     (501, "Not Implemented", "http1.invalid_transfer_encoding")),
])
def test_http_1_0_url_and_transfer_coding_errors_come_before_the_426(head, expected):
    assert error_of(request(head)) == expected


def test_the_first_byte_of_each_request_begins_a_message():
    """The connection manager creates the stream there, so its timeouts have an owner."""
    recorder = RequestRecorder()
    codec = ServerCodec(recorder)
    codec.feed(b"P")
    assert recorder.begun == 1 and recorder.events == []
    codec.feed(b"OST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxG")
    assert recorder.begun == 2


# -- pipelining and fragmentation -------------------------------------------------------------

def test_pipelined_requests_in_one_feed():
    assert parse_requests(PIPELINE) == GET_EVENTS + POST_LENGTH_EVENTS + POST_CHUNKED_EVENTS


def test_pipelined_requests_split_at_every_byte_boundary():
    expected = GET_EVENTS + POST_LENGTH_EVENTS + POST_CHUNKED_EVENTS
    for cut in range(1, len(PIPELINE)):
        assert parse_requests([PIPELINE[:cut], PIPELINE[cut:]]) == expected, cut


def test_pipelined_requests_fed_one_byte_at_a_time():
    expected = GET_EVENTS + POST_LENGTH_EVENTS + POST_CHUNKED_EVENTS
    assert parse_requests(bytewise(PIPELINE)) == expected


def test_request_after_an_upgrade_request_is_parsed_by_a_fresh_parser():
    # llhttp stops at an Upgrade; the codec re-parses the pipelined rest.
    data = (request("GET /ws HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: upgrade\n")
            + request("GET /next HTTP/1.1\nHost: b\n"))
    assert parse_requests(data) == [
        ("headers", "GET", "/ws", "a", "http", [("upgrade", "websocket")], "1.1", True, "none"),
        ("complete",),
        ("headers", "GET", "/next", "b", "http", [], "1.1", True, "none"),
        ("complete",),
    ]


def test_many_pipelined_upgrade_requests_in_one_read():
    one = request("GET / HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: h2c\n")
    try:
        events, escaped = parse_requests(one * 1200), None
    except RecursionError:  # kept out of the report: a 1000-frame traceback takes seconds
        events, escaped = [], "RecursionError"
    assert escaped is None
    assert len(events) == 2400


# -- request target -----------------------------------------------------------------------------

def test_absolute_form_uri_sets_authority_and_origin_form_path():
    # reliability.md #36: Host comes from the URI; upstream sees origin-form.
    events = parse_requests(request("GET http://other.example/abs?q=1 HTTP/1.1\nHost: a\n"))
    assert events[0][1:5] == ("GET", "/abs?q=1", "other.example", "http")


def test_absolute_form_without_path_gets_slash_and_scheme_is_lowercased():
    events = parse_requests(request("GET HTTPS://Other.example:8443 HTTP/1.1\n"))
    assert events[0][1:5] == ("GET", "/", "Other.example:8443", "https")


def test_absolute_form_refused_when_allow_absolute_url_is_false():
    data = request("GET http://other.example/abs HTTP/1.1\nHost: a\n")
    assert error_of(data, allow_absolute_url=False) == (400, "Bad Request", "http1.invalid_url")


def test_absolute_form_with_another_scheme_is_refused():
    assert error_of(request("GET ftp://x/ HTTP/1.1\nHost: a\n")) == (
        400, "Bad Request", "http1.invalid_url")


@pytest.mark.parametrize(("target", "path"), [("/e#frag", "/e#frag"), ("http://h/p#f", "/p#f")])
def test_fragment_is_left_to_the_connection_manager(target, path):
    # reliability.md #39: refused by the connection manager (after any 100 Continue and counted
    # as a failed path normalization, as Envoy does).
    assert parse_requests(request(f"GET {target} HTTP/1.1\nHost: a\n"))[0][2] == path


def test_options_asterisk_is_accepted():
    assert parse_requests(request("OPTIONS * HTTP/1.1\nHost: a\n")) == [
        ("headers", "OPTIONS", "*", "a", "http", [], "1.1", True, "none"), ("complete",)]


def test_asterisk_with_another_method_is_refused():
    assert error_of(request("GET * HTTP/1.1\nHost: a\n")) == (
        400, "Bad Request", "http1.invalid_url")


def test_connect_authority_form_is_passed_on():
    events = parse_requests(request("CONNECT h:443 HTTP/1.1\nHost: h:443\n"))
    assert events[0][1:4] == ("CONNECT", "h:443", "h:443")


def test_path_without_leading_slash_is_refused():
    assert error_of(request("GET e HTTP/1.1\nHost: a\n")) == (
        400, "Bad Request", "http1.codec_error: invalid url")


@pytest.mark.parametrize("method", [b"FOO", b"get"])
def test_unknown_or_lowercase_method_is_refused(method):
    # reliability.md #34: Envoy is strict.
    data = method + b" / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert error_of(data) == (400, "Bad Request", "http1.codec_error: invalid method")


# -- Host ---------------------------------------------------------------------------------------

def test_missing_host_on_http_1_1_is_left_to_the_connection_manager():
    # reliability.md #32: a 400 with an empty body, from Envoy's connection manager (not its
    # codec: after a 100 Continue, and no protocol error).
    assert parse_requests(request("GET / HTTP/1.1\n"))[0][3] == ""


def test_duplicate_host_is_refused():
    # reliability.md #40: our target is 400 (Envoy merges them as "a,b").
    assert error_of(request("GET / HTTP/1.1\nHost: a\nHost: b\n")) == (
        400, "Bad Request", "http1.duplicate_host")


@pytest.mark.parametrize("host", ["a b", "a/b@evil", 'a"b', "a\\b", "x#y", "x?y"])
def test_invalid_host_characters_are_refused(host):
    # reliability.md #41.
    assert error_of(request(f"GET / HTTP/1.1\nHost: {host}\n")) == (
        400, "Bad Request", "http1.invalid_host")


def test_host_with_port_and_ipv6_literal_are_valid():
    assert parse_requests(request("GET / HTTP/1.1\nHost: a.example:8080\n"))[0][3] == (
        "a.example:8080")
    assert parse_requests(request("GET / HTTP/1.1\nHost: [::1]:80\n"))[0][3] == "[::1]:80"


# -- version ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"])
def test_unknown_version_is_426(version):
    # reliability.md #33.
    data = b"GET / " + version + b"\r\nHost: a\r\n\r\n"
    status, body, _ = error_of(data)
    assert (status, body) == (426, "Upgrade Required")


def test_http_0_9_request_line_is_426():
    # reliability.md #30.
    assert error_of(b"GET /e\r\n\r\n") == (426, "Upgrade Required", "http1.invalid_version")


# -- framing and smuggling ------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["gzip, chunked", "chunked, gzip", "xchunked"])
def test_transfer_encoding_other_than_chunked_is_501(value):
    # reliability.md #6.
    data = request(f"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: {value}\n")
    assert error_of(data) == (501, "Not Implemented", "http1.invalid_transfer_encoding")


def test_transfer_encoding_identity_is_501():
    # Envoy 1.40 answers 501 here (seen in the conformance run; reliability.md #5 says 400).
    data = request("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: identity\n")
    assert error_of(data)[0] == 501


@pytest.mark.parametrize("head", [
    "POST / HTTP/1.1\nHost: a\nContent-Length: 6\nTransfer-Encoding: chunked\n",
    "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 6\n",
])
def test_content_length_with_transfer_encoding_is_400(head):
    # reliability.md #1 (allow_chunked_length defaults to false).
    status, body, _ = error_of(request(head))
    assert (status, body) == (400, "Bad Request")


@pytest.mark.parametrize("lengths", [("5", "6"), ("5", "5")])
def test_repeated_content_length_is_400(lengths):
    # reliability.md #2 and #3.
    head = f"POST / HTTP/1.1\nHost: a\nContent-Length: {lengths[0]}\nContent-Length: {lengths[1]}\n"
    assert error_of(request(head)) == (
        400, "Bad Request", "http1.codec_error: Duplicate Content-Length")


@pytest.mark.parametrize("value", ["-1", "+5", "0x5", "99999999999999999999999", "5, 5"])
def test_invalid_content_length_is_400(value):
    # reliability.md #3 and #4.
    status, body, _ = error_of(request(f"POST / HTTP/1.1\nHost: a\nContent-Length: {value}\n"))
    assert (status, body) == (400, "Bad Request")


@pytest.mark.parametrize("size", [b"zz", b"-5", b"1" * 19])
def test_invalid_chunk_size_is_400_after_the_headers(size):
    # reliability.md #10.
    data = request("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", size + b"\r\n")
    events = parse_requests(data)
    assert events[0][0] == "headers"
    assert events[-1][:3] == ("error", 400, "Bad Request")


def test_missing_crlf_after_chunk_data_is_400():
    # reliability.md #14.
    data = request("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"5\r\nhelloXX")
    assert parse_requests(data)[-1][:3] == ("error", 400, "Bad Request")


@pytest.mark.parametrize("line", [b"Foo : bar", b"No colon", b"X-A: a\x00b", b"X\x01A: b"])
def test_malformed_header_lines_are_400(line):
    # reliability.md #20-#24.
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n"
    status, body, details = error_of(data)
    assert (status, body) == (400, "Bad Request")
    assert details.startswith("http1.codec_error: ")


def test_bare_lf_line_endings_are_refused():
    # A deliberate deviation (docs/compatibility.md): Envoy accepts bare LF, but llhttp's
    # leniency for it also accepts a bare LF ending chunk data, a smuggling vector.
    assert error_of(b"GET / HTTP/1.1\nHost: a\n\n")[0] == 400


def test_codec_error_carries_status_body_and_details():
    with pytest.raises(CodecError) as raised:
        ServerCodec(RequestRecorder()).feed(request("GET / HTTP/1.1\nHost: \n"))
    error = raised.value
    assert (error.status, error.body, error.details, str(error)) == (
        400, "", "http1.empty_host", "http1.empty_host")


# -- header limits ------------------------------------------------------------------------------

TOO_LARGE = (431, "Request Header Fields Too Large", "http1.headers_too_large")


def test_61440_byte_header_is_431_and_59000_passes():
    # envoy-features.md: a 61,440-byte header gave 431; a 59,000-byte header passed.
    big = request("GET / HTTP/1.1\nHost: a\nX-Big: " + "v" * 61440 + "\n")
    assert error_of(big) == TOO_LARGE
    ok = request("GET / HTTP/1.1\nHost: a\nX-Big: " + "v" * 59000 + "\n")
    assert parse_requests(ok)[0][5] == [("x-big", "v" * 59000)]


def test_request_line_counts_toward_the_header_limit():
    # reliability.md: a 70 KB URI got 431 and a 59 KB URI was accepted.
    assert error_of(request("GET /" + "u" * 70000 + " HTTP/1.1\nHost: a\n")) == TOO_LARGE
    assert parse_requests(request("GET /" + "u" * 59000 + " HTTP/1.1\nHost: a\n"))[0][2] == (
        "/" + "u" * 59000)


def test_header_limit_follows_max_request_headers_kb():
    big = request("GET / HTTP/1.1\nHost: a\nX-Big: " + "v" * 1100 + "\n")
    assert error_of(big, max_request_headers_kb=1) == TOO_LARGE
    assert parse_requests(big, max_request_headers_kb=2)[0][0] == "headers"


def test_header_limit_holds_when_the_headers_arrive_byte_by_byte():
    big = request("GET / HTTP/1.1\nHost: a\nX-Big: " + "v" * 1100 + "\n")
    assert parse_requests(bytewise(big), max_request_headers_kb=1)[-1] == ("error", *TOO_LARGE)


def test_101_headers_is_431_and_100_pass():
    # reliability.md: max_headers_count 100; 101 headers got 431. Host counts.
    ninety_nine = "".join(f"X-H{i}: v\n" for i in range(99))
    ok = parse_requests(request("GET / HTTP/1.1\nHost: a\n" + ninety_nine))
    assert len(ok[0][5]) == 99
    assert error_of(request("GET / HTTP/1.1\nHost: a\n" + ninety_nine + "X-Last: v\n")) == (
        431, "Request Header Fields Too Large", "http1.too_many_headers")


def test_max_headers_count_is_configurable():
    data = request("GET / HTTP/1.1\nHost: a\nX-1: v\nX-2: v\n")
    assert error_of(data, max_headers_count=2)[2] == "http1.too_many_headers"
    assert parse_requests(data, max_headers_count=3)[0][0] == "headers"


def test_a_limit_error_is_reported_even_after_earlier_good_requests():
    data = GET + request("GET / HTTP/1.1\nHost: a\nX-Big: " + "v" * 2000 + "\n")
    assert parse_requests(data, max_request_headers_kb=1) == GET_EVENTS + [("error", *TOO_LARGE)]


# -- connection-level headers -------------------------------------------------------------------

def test_connection_level_headers_are_consumed():
    data = request("GET / HTTP/1.1\nHost: a\nConnection: keep-alive\nKeep-Alive: timeout=5\n"
                   "Proxy-Connection: keep-alive\nTrailer: x-t\nProxy-Authenticate: Basic\n"
                   "X-Kept: 1\n")
    assert parse_requests(data)[0][5] == [("x-kept", "1")]


def test_headers_named_by_connection_are_dropped():
    # reliability.md #27.
    data = request("GET / HTTP/1.1\nHost: a\nConnection: keep-alive, X-Secret\nX-Secret: s\n"
                   "X-Other: o\n")
    assert parse_requests(data)[0][5] == [("x-other", "o")]


def test_connection_may_name_a_header_that_comes_before_it():
    data = request("GET / HTTP/1.1\nHost: a\nX-Secret: s\nX-Other: o\nConnection: x-secret\n")
    assert parse_requests(data)[0][5] == [("x-other", "o")]


def test_te_trailers_is_kept_and_other_te_values_dropped():
    kept = parse_requests(request("GET / HTTP/1.1\nHost: a\nTE: Trailers\n"))
    assert kept[0][5] == [("te", "trailers")]
    dropped = parse_requests(request("GET / HTTP/1.1\nHost: a\nTE: gzip\n"))
    assert dropped[0][5] == []


@pytest.mark.parametrize("value", ["trailers, deflate", "deflate, trailers"])
def test_te_list_with_trailers_keeps_te_trailers(value):
    data = request(f"GET / HTTP/1.1\nHost: a\nTE: {value}\n")
    assert parse_requests(data)[0][5] == [("te", "trailers")]


def test_upgrade_stays_for_the_connection_manager():
    data = request("GET / HTTP/1.1\nHost: a\nUpgrade: h2c\nConnection: Upgrade, HTTP2-Settings\n"
                   "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\n")
    assert parse_requests(data)[0][5] == [("upgrade", "h2c")]


def test_header_name_cache_is_bounded_and_case_insensitive(monkeypatch):
    from outrider.codec import http1

    monkeypatch.setattr(http1, "_NAMES", {})
    monkeypatch.setattr(http1, "_NAMES_LIMIT", 3)
    names = [f"X-Made-Up-{i}".encode() for i in range(10)]
    assert [http1._header_name(n) for n in names] == [f"x-made-up-{i}" for i in range(10)]
    assert len(http1._NAMES) == 3
    assert http1._header_name(b"X-MADE-UP-9") == "x-made-up-9"  # past the limit: still right


# -- found by the differential fuzzer (tests/fuzz/smuggling_cases.py) -----------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize("framing", [
    b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n",
])
@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket"])
def test_an_upgrade_request_with_a_body_is_refused_not_split_into_two(framing, upgrade):
    """httptools skips an Upgrade request's body; parsed as the next request it would be a
    smuggled request. Refused before anything is delivered."""
    data = (b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: " + upgrade
            + b"\r\n" + framing)
    assert parse_requests(data) == [
        ("error", 400, "Bad Request", "http1.upgrade_with_body")]


def test_an_upgrade_header_without_connection_upgrade_keeps_its_body():
    data = request("POST /a HTTP/1.1\nHost: a\nUpgrade: h2c\nContent-Length: 5\n") + b"hello"
    assert [e[0] for e in parse_requests(data)] == ["headers", "data", "complete"]


@pytest.mark.parametrize("target", [
    "http://", "http:///x", "http://example.com:80:80/", "http://example.com:x/", "http://[::1/"])
def test_an_absolute_form_target_needs_a_valid_authority(target):
    events = parse_requests(request(f"GET {target} HTTP/1.1\nHost: a\n"))
    assert events == [("error", 400, "Bad Request", "http1.invalid_url")]


@pytest.mark.parametrize(("target", "authority"), [
    ("http://example.com:8080/p", "example.com:8080"), ("http://[::1]:80/", "[::1]:80"),
    ("http://example.com/", "example.com"), ("http://example.com:/", "example.com:")])
def test_valid_absolute_form_authorities_pass(target, authority):
    assert parse_requests(request(f"GET {target} HTTP/1.1\nHost: a\n"))[0][3] == authority


@pytest.mark.parametrize(("target", "authority", "path"), [
    ("http://a.com?q=1", "a.com", "/?q=1"), ("http://a.com:81?q", "a.com:81", "/?q"),
    ("http://a.com/p?q=/x", "a.com", "/p?q=/x")])
def test_an_absolute_form_authority_ends_at_the_path_or_the_query(target, authority, path):
    """RFC 3986 §3.2: "http://a.com?q=1" is host a.com asking for /?q=1, not host "a.com?q=1"."""
    event = parse_requests(request(f"GET {target} HTTP/1.1\nHost: b\n"))[0]
    assert (event[3], event[2]) == (authority, path)


def test_connection_naming_host_leaves_no_host():
    events = parse_requests(request("GET / HTTP/1.1\nHost: a\nConnection: Host\n"))
    assert events[0][3] == ""  # the connection manager answers 400, as for no Host at all


def test_repeated_upgrade_values_are_one_list():
    recorder = RequestRecorder()
    codec = ServerCodec(recorder)
    codec.feed(request("GET / HTTP/1.1\nHost: a\nUpgrade: h2c\nUpgrade: h2c\n"))
    assert recorder.upgrade == "h2c,h2c"  # not an h2c upgrade: refused as Envoy refuses it


def test_nothing_more_is_delivered_once_the_request_is_abandoned():
    """The connection closes inside a callback (a local reply with close): the rest of the read
    is still parsed, but no event of that request reaches its stream."""

    class ClosesAtHeaders(RequestRecorder):
        def on_request_headers(self, *args) -> None:
            super().on_request_headers(*args)
            codec.abandon()

    recorder = ClosesAtHeaders()
    codec = ServerCodec(recorder)
    codec.feed(request("POST / HTTP/1.1\nHost: a\nContent-Length: 3\n") + b"abc")
    assert [event[0] for event in recorder.events] == ["headers"]
    assert codec.decoder is None
