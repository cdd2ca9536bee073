"""Keep-alive clients kept busy in a bounded loop, counting every request that fails.

What the zero-drop tests run while they reload or upgrade the proxy. A client behaves as a
strict one: it reuses its connection until a response says ``connection: close`` (then it
reconnects), and it never retries: a request that gets no complete answer (reset, EOF, timeout)
or an answer it did not expect is a failure, recorded with what happened.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.support.client import RawClient, build


@dataclass
class LoadResult:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: Counter = field(default_factory=Counter)
    connections: int = 0


class KeepAliveLoad:
    """``clients`` threads, each with one keep-alive connection at a time, each request a GET
    of ``path``; ``expect(response)`` returns an error text or None."""

    def __init__(self, port: int, clients: int = 32, path: str = "/", expect=None,
                 max_requests: int = 1_000_000, timeout: float = 10.0) -> None:
        self.port = port
        self.clients = clients
        self.path = path
        self.expect = expect or (lambda r: None if r.status == 200 else f"status {r.status}")
        self.max_requests = max_requests
        self.timeout = timeout
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._first_bytes: dict[bytes, float] = {}

    def start(self) -> KeepAliveLoad:
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        """Stop the clients after their current request; what happened."""
        self._stop.set()
        return self.wait()

    def wait(self) -> LoadResult:
        """Wait until every client has sent its ``max_requests``; what happened."""
        for thread in self._threads:
            thread.join()
        return self.result

    def first_seen(self, body: bytes) -> float | None:
        """When a response body was first seen (time.monotonic)."""
        with self._lock:
            return self._first_bytes.get(body)

    def _record(self, body: bytes | None, failure: str | None) -> None:
        with self._lock:
            self.result.requests += 1
            if failure is not None:
                self.result.failures.append(failure)
            if body is not None:
                self.result.bodies[body] += 1
                self._first_bytes.setdefault(body, time.monotonic())

    def _run(self, index: int) -> None:
        raw = build("GET", self.path)
        client = None
        sent = 0
        while not self._stop.is_set() and sent < self.max_requests:
            if client is None:
                try:
                    client = RawClient(self.port, timeout=self.timeout)
                except OSError as error:
                    self._record(None, f"client {index}: connect: {error!r}")
                    time.sleep(0.05)
                    continue
                with self._lock:
                    self.result.connections += 1
            sent += 1
            try:
                client.send(raw)
                responses = client.read_responses(1)
            except OSError as error:  # timeouts included
                self._record(None, f"client {index}: {error!r} after {sent} requests")
                client.close()
                client = None
                continue
            if not responses or not responses[0].complete:
                self._record(None, f"client {index}: no complete response "
                                   f"(peer closed: {client.closed_by_peer}, got "
                                   f"{client.buffer[:200]!r}) after {sent} requests")
                client.close()
                client = None
                continue
            response = responses[0]
            client.buffer = b""
            self._record(response.body, self.expect(response))
            if (response.header("connection") or "").lower() == "close":
                client.close()
                client = None
        if client is not None:
            client.close()
