"""Many clients at once through one proxy: every answer reaches the connection and the request
that asked for it, whole and in order, whatever the mix of uploads, downloads, chunked bodies
and pipelining. Nothing lost or mixed between requests, with the writes of many connections
coalesced into the same loop iterations (outrider/net/flush.py) and upstream connections
handed from one client to the next."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.client import RawClient, build
from tests.support.origin import stream_pattern
from tests.support.proxy import bootstrap, cluster, free_port

CLIENTS = 24
ROUNDS = 20


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    # Two hosts, so connections (and the bytes on them) are shared across clients and hosts.
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "ab"}}]
    return start_proxy(bootstrap(free_port(), routes, [
        cluster("ab", [origins["a"].port, origins["b"].port])]))


def _session(port: int, seed: int) -> list[str]:
    """One client's keep-alive connection: ROUNDS random exchanges, each checked; returns what
    was wrong (an exception, e.g. a timeout, propagates to the test)."""
    rng = random.Random(seed)
    problems: list[str] = []
    client = RawClient(port, timeout=20)

    def expect(condition: bool, what: str) -> None:
        if not condition:
            problems.append(f"client {seed} round {i}: {what}")

    try:
        for i in range(ROUNDS):
            tag = f"c{seed}r{i}"
            kind = rng.choice(("echo", "pipelined", "upload", "download", "chunked"))
            if kind == "echo":
                response = client.exchange(build("GET", f"/echo/{tag}"), require_complete=True)
                expect(response.echo().path == f"/echo/{tag}", f"echo answered {response.body[:80]!r}")
            elif kind == "pipelined":
                client.send(b"".join(build("GET", f"/echo/{tag}-{k}") for k in range(3)))
                responses = client.read_responses(3)
                client.buffer = b""
                paths = [r.echo().path for r in responses if r.complete]
                expect(paths == [f"/echo/{tag}-{k}" for k in range(3)], f"pipelined got {paths}")
            elif kind == "upload":
                body = rng.randbytes(rng.randrange(0, 300_000))
                response = client.exchange(build("POST", f"/echo/{tag}", body=body),
                                           require_complete=True)
                echo = response.echo()
                expect((echo.path, echo.body_length) == (f"/echo/{tag}", len(body)),
                       f"upload of {len(body)} answered {echo.path} {echo.body_length}")
            elif kind == "download":
                size = rng.randrange(1, 400_000)
                response = client.exchange(build("GET", f"/stream/{size}"), require_complete=True)
                expect(response.body == stream_pattern(size),
                       f"download of {size} got {len(response.body)} bytes, or other bytes")
            else:
                size = rng.randrange(1, 50_000)
                response = client.exchange(build("GET", f"/chunked/{size}"),
                                           require_complete=True)
                expect(response.body == b"y" * size, f"chunked {size} got {len(response.body)}")
            if kind != "pipelined":
                expect(response.status == 200, f"{kind} status {response.status}")
    finally:
        client.close()
    return problems


def test_concurrent_mixed_traffic_is_neither_lost_nor_mixed(proxy):
    with ThreadPoolExecutor(CLIENTS) as pool:
        sessions = [pool.submit(_session, proxy.port, seed) for seed in range(CLIENTS)]
        problems = [problem for session in sessions for problem in session.result(timeout=120)]
    assert problems == []
