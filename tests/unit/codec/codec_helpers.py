"""Recording callbacks for the HTTP/1 codecs and helpers to feed them.

Imported by name (``from codec_helpers import ...``); the name is unique across the test tree.
Events are plain tuples so that tests compare whole sequences:
``("headers", method, path, authority, scheme, items, version, keep_alive, framing)``,
``("data", bytes)``, ``("complete",)`` for requests; ``("headers", status, items, keep_alive,
framing)``, ``("data", bytes)``, ``("complete",)`` for responses; ``("error", status, body,
details)`` when ``feed`` raised ``CodecError``.
"""

from __future__ import annotations

from outrider.codec.http1 import ClientCodec, CodecError, ServerCodec
from outrider.http.headers import RequestHeaders


class RequestRecorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.headers: list = []
        self.begun = 0  # messages whose first byte arrived
        self.upgrade: str | None = None
        self.expect_continue = False

    def new_stream(self, encoder) -> RequestRecorder:
        self.begun += 1
        return self  # the decoder of every request

    def on_request_headers(self, headers, version, keep_alive, framing, upgrade,
                           expect_continue) -> None:
        self.headers.append(headers)
        self.upgrade = upgrade  # of the last request
        self.expect_continue = expect_continue
        self.events.append(("headers", headers.method, headers.path, headers.authority,
                            headers.scheme, list(headers.items()), version, keep_alive, framing))

    def on_request_data(self, data: bytes) -> None:
        self.events.append(("data", bytes(data)))

    def on_request_complete(self) -> None:
        self.events.append(("complete",))


class ResponseRecorder:
    """The ClientCodec's connection: records response events and the request bytes sent."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    def on_response_headers(self, headers, keep_alive, framing) -> None:
        self.events.append(("headers", headers.status, list(headers.items()), keep_alive,
                            framing))

    def on_response_data(self, data: bytes) -> None:
        self.events.append(("data", bytes(data)))

    def on_response_complete(self, data: bytes) -> None:
        if data:
            self.on_response_data(data)
        self.events.append(("complete",))


def merge_data(events: list[tuple]) -> list[tuple]:
    """Join consecutive data events: how a body is cut into events depends on the reads."""
    merged: list[tuple] = []
    for event in events:
        if event[0] == "data" and merged and merged[-1][0] == "data":
            merged[-1] = ("data", merged[-1][1] + event[1])
        else:
            merged.append(event)
    return merged


def parse_requests(pieces, **codec_options) -> list[tuple]:
    """Feed ``pieces`` (bytes, or a list of reads) to a fresh ServerCodec; the events, data
    merged, ending with an ``error`` event if the codec refused the input."""
    if isinstance(pieces, bytes):
        pieces = [pieces]
    recorder = RequestRecorder()
    codec = ServerCodec(recorder, **codec_options)
    try:
        for piece in pieces:
            codec.feed(piece)
    except CodecError as error:
        recorder.events.append(("error", error.status, error.body, error.details))
    return merge_data(recorder.events)


def send_request(codec: ClientCodec, method: str = "GET") -> None:
    """Encode a body-less request on ``codec``: from now on it expects the response."""
    codec.encode_headers(RequestHeaders(method, "/", "h"), True, codec.connection)


def parse_responses(pieces, head: bool = False) -> list[tuple]:
    """Send a GET (``head``: a HEAD) on a fresh ClientCodec, then feed it ``pieces``; the
    events, data merged, ending with an ``error`` event if the codec refused the input."""
    if isinstance(pieces, bytes):
        pieces = [pieces]
    recorder = ResponseRecorder()
    codec = ClientCodec(recorder)
    send_request(codec, "HEAD" if head else "GET")
    try:
        for piece in pieces:
            codec.feed(piece)
    except CodecError as error:
        recorder.events.append(("error", error.status, error.details))
    return merge_data(recorder.events)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]
