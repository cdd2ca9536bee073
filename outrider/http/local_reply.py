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


# Envoy's Grpc::Utility::httpToGrpcStatus: the grpc-status that stands for a local reply's HTTP
# status when the request is gRPC (400 -> 13 checked against the 1.40 binary).
_GRPC_STATUS = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
_GRPC_UNKNOWN = 2


def is_grpc(headers) -> bool:
    """Envoy's hasGrpcContentType: ``application/grpc`` exactly or ``application/grpc+...``
    (case-sensitive; not grpc-web, not with parameters), as the 1.40 binary tells them apart."""
    content_type = headers.get("content-type")
    return content_type is not None and content_type.startswith("application/grpc") and (
        len(content_type) == 16 or content_type[16] == "+")


def grpc_reply_headers(status: int) -> ResponseHeaders:
    """A local reply to a gRPC request, as Envoy sends it: HTTP 200 with no body, the error in
    ``grpc-status`` (gRPC clients read that, not the HTTP status)."""
    return ResponseHeaders(200, [
        ("content-type", "application/grpc"),
        ("grpc-status", str(_GRPC_STATUS.get(status, _GRPC_UNKNOWN))),
        ("content-length", "0"),
    ])
