"""HTTP/1 message framing, decided in one place for both directions (RFC 9112 §6).

Whether a message has a body and how its end is found: no body, ``content-length``, chunked,
or (responses only) the connection's close. The parsers use these rules to know what they are
reading and the encoders to know what they write, so a HEAD, 1xx, 204 or 304 response is
treated the same way on the way in and on the way out (h11's ``_body_framing`` is the model).
Pure functions, no I/O.
"""

from __future__ import annotations

NONE = "none"  # no body: the message ends with its headers
LENGTH = "length"  # a content-length body
CHUNKED = "chunked"  # transfer-encoding: chunked
CLOSE = "close"  # the body ends when the connection closes (responses only)


# Responses without a body whatever their headers say (RFC 9112 §6.3 rules 1 and 2): to HEAD,
# 1xx, 204 and 304, and a 2xx to CONNECT (the tunnel follows). Both response framings below
# start with this test, written out in each: they run on every response.
_BODYLESS_STATUSES = frozenset((*range(200), 204, 304))


def parsed_request_framing(content_length: str | None, chunked: bool) -> str:
    """How a received request's body is delimited (the parser has refused the conflicts)."""
    if chunked:
        return CHUNKED
    if content_length is not None and content_length != "0":
        return LENGTH
    return NONE


def parsed_response_framing(request_method: str, status: int, content_length: str | None,
                            chunked: bool) -> str:
    """How a received response's body is delimited, given the request it answers."""
    if request_method == "HEAD" or status in _BODYLESS_STATUSES \
            or (request_method == "CONNECT" and status < 300):
        return NONE
    if chunked:
        return CHUNKED
    if content_length is not None:
        return LENGTH if content_length != "0" else NONE
    return CLOSE


def encoded_response_framing(request_method: str, status: int, has_length: bool,
                             end_stream: bool, version: str) -> str:
    """How a response the proxy sends is delimited.

    A response that cannot have a body has none, whatever its headers say (a HEAD answer keeps
    the content-length the GET would have had). Otherwise a content-length is kept, a response
    that ends with its headers is given ``content-length: 0`` (LENGTH without the header: the
    encoder adds it, as Envoy does), an HTTP/1.1 client gets chunks, an HTTP/1.0 client the close.
    """
    if request_method == "HEAD" or status in _BODYLESS_STATUSES \
            or (request_method == "CONNECT" and status < 300):
        return NONE
    if has_length or end_stream:
        return LENGTH
    return CHUNKED if version == "1.1" else CLOSE


def encoded_request_framing(has_length: bool, end_stream: bool) -> str:
    """How a request the proxy sends upstream is delimited: its length, chunks, or nothing."""
    if has_length:
        return LENGTH
    return NONE if end_stream else CHUNKED
