"""Local replies: responses the proxy makes itself, worded as Envoy words them."""

from __future__ import annotations

from outrider.http.headers import ResponseHeaders

# Response bodies Envoy 1.40 sends (verified against the binary; see shared/reference).
NO_HEALTHY_UPSTREAM = "no healthy upstream"
UPSTREAM_TIMEOUT = "upstream request timeout"
STREAM_TIMEOUT = "stream timeout"
REQUEST_TIMEOUT = "request timeout"
REQUEST_HEADER_TIMEOUT = "request header timeout"
_RESET_BEFORE_HEADERS = "upstream connect error or disconnect/reset before headers. reset reason: "


def reset_before_headers(reason: str) -> str:
    return _RESET_BEFORE_HEADERS + reason


def local_reply_headers(status: int, body: bytes, content_type: str = "text/plain") -> ResponseHeaders:
    items = [("content-length", str(len(body)))]
    if body:
        items.insert(0, ("content-type", content_type))
    return ResponseHeaders(status, items)
