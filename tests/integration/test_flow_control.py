"""Bounded memory: a client that does not read and an upstream that does not read.

Both directions must apply back-pressure (watermarks on per_connection_buffer_limit_bytes, 1 MiB
by default), so the proxy's RSS stays flat however large the body, and once the slow side
catches up the whole body arrives intact.
"""

from __future__ import annotations

import socket
import threading
import zlib

import pytest

from tests.support.client import build
from tests.support.origin import Origin, stream_pattern
from tests.support.polling import wait_until_stalled
from tests.support.proxy import bootstrap, cluster, free_port

DOWNLOAD = 200 * 1024 * 1024
UPLOAD = 100 * 1024 * 1024
RSS_SLACK_KB = 60 * 1024


@pytest.fixture(scope="module")
def origin():
    # Its own origin: the byte counters then belong to this module's tests alone.
    o = Origin("big").start()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def proxy(origin, start_proxy):
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "big", "timeout": "0s"}}]
    proxy = start_proxy(bootstrap(free_port(), routes, [cluster("big", [origin.port])]))
    for _ in range(3):  # warm up code paths and allocator before measuring
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(build("GET", "/size/2000000", headers=[("Connection", "close")]))
            while s.recv(1 << 20):
                pass
    return proxy


def test_client_that_does_not_read_keeps_memory_flat(proxy, origin):
    baseline = proxy.rss_kb()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", proxy.port))
    try:
        before = origin.stream_bytes_sent
        sock.sendall(build("GET", f"/stream/{DOWNLOAD}"))
        sent = wait_until_stalled(lambda: origin.stream_bytes_sent) - before
        grown = proxy.rss_kb() - baseline
        print(f"download stalled after {sent} bytes; RSS +{grown} KiB")
        assert sent < DOWNLOAD // 4, f"the origin could write {sent} bytes: no back-pressure"
        assert grown < RSS_SLACK_KB, f"RSS grew {grown} KiB while the client was not reading"

        # Now read it all: the body must arrive whole and in order.
        sock.settimeout(20)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        head, _, body_start = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert f"content-length: {DOWNLOAD}".encode() in head.lower()
        crc, received = zlib.crc32(body_start), len(body_start)
        buf = bytearray(1 << 20)
        next_check = 0
        while received < DOWNLOAD:
            n = sock.recv_into(buf)
            assert n, f"connection closed after {received} body bytes"
            crc = zlib.crc32(memoryview(buf)[:n], crc)
            received += n
            if received >= next_check:  # memory stays bounded while it flows, too
                next_check += 16 << 20
                assert proxy.rss_kb() - baseline < RSS_SLACK_KB, "RSS grew while streaming"
        assert received == DOWNLOAD
        assert crc == zlib.crc32(stream_pattern(DOWNLOAD))
    finally:
        sock.close()


def test_upstream_that_does_not_read_keeps_memory_flat(proxy, origin):
    baseline = proxy.rss_kb()
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sent = [0]
    errors: list[OSError] = []
    piece = b"u" * (256 * 1024)

    def upload() -> None:
        try:
            sock.sendall(build("POST", "/slow-sink", headers=[("Content-Length", str(UPLOAD))]))
            while sent[0] < UPLOAD:
                n = min(len(piece), UPLOAD - sent[0])
                sock.sendall(piece[:n])
                sent[0] += n
        except OSError as error:  # reported by the main thread
            errors.append(error)

    received_before = origin.body_bytes_received
    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    try:
        stalled_at = wait_until_stalled(lambda: sent[0])
        grown = proxy.rss_kb() - baseline
        print(f"upload stalled after {stalled_at} bytes; RSS +{grown} KiB")
        assert not errors, errors
        assert stalled_at < UPLOAD // 4, f"the client could send {stalled_at} bytes"
        assert grown < RSS_SLACK_KB, f"RSS grew {grown} KiB while the upstream was not reading"

        origin.resume_reading()
        uploader.join(30)
        assert not uploader.is_alive() and not errors, errors
        sock.settimeout(10)
        data = b""
        while not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert b'"body_length": %d' % UPLOAD in data
        assert origin.body_bytes_received - received_before == UPLOAD
    finally:
        origin.resume_reading()
        sock.close()
