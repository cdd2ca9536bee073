"""The worker channel's framing: messages whole however the bytes are cut, and a bound on what
one message may claim to be."""

from __future__ import annotations

import pickle

from outrider.server import ipc
from outrider.server.ipc import Channel


class Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _pair():
    received, closed = [], []
    channel = Channel(lambda kind, payload: received.append((kind, payload)),
                      lambda: closed.append(True))
    transport = Transport()
    channel.connection_made(transport)
    return channel, transport, received


def test_messages_arrive_whole_however_the_bytes_are_cut():
    sender, transport, _ = _pair()
    sender.send("update", {"a": 1})
    sender.send("stats", 7)
    receiver, _, received = _pair()
    for i in range(len(transport.written)):  # one byte at a time
        receiver.data_received(transport.written[i:i + 1])
    assert received == [("update", {"a": 1}), ("stats", 7)]


def test_a_message_claiming_more_than_the_bound_closes_the_channel():
    receiver, transport, received = _pair()
    receiver.data_received(ipc._HEADER.pack(ipc.MAX_MESSAGE + 1) + pickle.dumps(("x", None)))
    assert transport.closed and received == []
