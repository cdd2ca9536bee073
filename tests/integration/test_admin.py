"""No leaks after a burst of good and bad requests, and the admin endpoints."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.support.client import RawClient, build
from tests.support.proxy import bootstrap, cluster, free_port


def _config(origins) -> dict:
    routes = [
        {"match": {"prefix": "/refused"}, "route": {"cluster": "refused"}},
        {"match": {"prefix": "/hang"}, "route": {"cluster": "a", "timeout": "0.3s"}},
        {"match": {"prefix": "/forever"}, "route": {"cluster": "a", "timeout": "0s",
                                                     "prefix_rewrite": "/hang"}},
        {"match": {"prefix": "/echo"}, "route": {"cluster": "a"}},
        {"match": {"prefix": "/sleep/"}, "route": {"cluster": "a"}},
        {"match": {"prefix": "/size/"}, "route": {"cluster": "a"}},
        {"match": {"prefix": "/truncate"}, "route": {"cluster": "a"}},
        {"match": {"prefix": "/reset-after-headers"}, "route": {"cluster": "a"}},
        {"match": {"prefix": "/slow-sink"}, "route": {"cluster": "a"}},
    ]
    return bootstrap(free_port(), routes, [cluster("a", [origins["a"].port]),
                                           cluster("refused", [free_port()])])


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    return start_proxy(_config(origins))


def exchange(port: int, raw: bytes, count: int = 1):
    client = RawClient(port)
    try:
        client.send(raw)
        return client.read_responses(count)
    finally:
        client.close()


def wait_for_stats(proxy, expected: dict[str, str], deadline: float = 5.0) -> dict[str, str]:
    end = time.monotonic() + deadline
    while True:
        stats = proxy.stats()
        if all(stats.get(k) == v for k, v in expected.items()) or time.monotonic() > end:
            return stats
        time.sleep(0.05)


def test_no_leaks_after_a_burst_with_errors(proxy, origins):
    port = proxy.port
    # Successful requests on keep-alive connections, pipelined and not.
    for _ in range(5):
        assert [r.status for r in exchange(port, build("GET", "/echo") * 4, 4)] == [200] * 4
    # Local replies and upstream failures.
    assert exchange(port, build("GET", "/nothing"))[0].status == 404
    assert exchange(port, build("GET", "/refused"))[0].status == 503
    assert exchange(port, build("GET", "/hang"))[0].status == 504
    assert exchange(port, b"GET /echo HTTP/1.1\r\nBad Name: x\r\nHost: x\r\n\r\n")[0].status == 400
    assert exchange(port, b"GET /echo HTTP/1.0\r\n\r\n")[0].status == 426
    for path in ("/truncate", "/reset-after-headers"):
        client = RawClient(port)
        client.send(build("GET", path))
        client.read_until_close()
        client.close()
    # Clients that go away mid-exchange.
    abandoned = []
    for raw in (build("GET", "/sleep/0.3"),  # before the upstream answers
                build("GET", "/forever"),  # an upstream that never answers, no route timeout
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",  # mid-body
                build("GET", "/echo") * 3,  # pipelined, never read
                build("GET", "/size/5000000"),  # a large response, abandoned
                build("POST", "/slow-sink", headers=[("Content-Length", "1000000")])):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(raw)
        abandoned.append(sock)
    big = abandoned[4]
    assert big.recv(1000)  # the large response started
    time.sleep(0.1)  # let the requests reach the upstream before the clients vanish
    for sock in abandoned:
        sock.close()
    origins["a"].resume_reading()

    stats = wait_for_stats(proxy, {
        "http.ingress_http.downstream_rq_active": "0",
        "http.ingress_http.downstream_cx_active": "0",
        "cluster.a.upstream_rq_active": "0",
        "cluster.refused.upstream_rq_active": "0",
    })
    assert stats.get("http.ingress_http.downstream_rq_active") == "0"
    assert stats.get("http.ingress_http.downstream_cx_active") == "0"
    assert stats.get("cluster.a.upstream_rq_active") == "0"
    assert stats.get("cluster.refused.upstream_rq_active") == "0"
    assert int(stats["http.ingress_http.downstream_rq_total"]) >= 25
    # And it still serves.
    assert exchange(port, build("GET", "/echo"))[0].status == 200


def test_stats_counters_count(proxy):
    before = proxy.stats()
    assert exchange(proxy.port, build("GET", "/nothing"))[0].status == 404
    assert exchange(proxy.port, build("GET", "/echo"))[0].status == 200
    after = wait_for_stats(proxy, {"http.ingress_http.downstream_rq_active": "0"})

    def delta(name: str) -> int:
        return int(after.get(name, 0)) - int(before.get(name, 0))

    assert delta("http.ingress_http.downstream_rq_total") == 2
    assert delta("http.ingress_http.downstream_rq_4xx") == 1
    assert delta("http.ingress_http.downstream_rq_2xx") == 1
    assert delta("http.ingress_http.no_route") == 1
    assert delta("cluster.a.upstream_rq_total") == 1


def test_ready(proxy):
    assert proxy.admin("/ready") == (200, "LIVE\n")


def test_server_info(proxy):
    status, body = proxy.admin("/server_info")
    assert status == 200
    info = json.loads(body)
    assert info["state"] == "LIVE"
    assert info["version"]
    assert "uptime_current_epoch" in info
    assert "command_line_options" in info


def test_quitquitquit_stops_the_process(origins, start_proxy):
    proxy = start_proxy(_config(origins))
    assert exchange(proxy.port, build("GET", "/echo"))[0].status == 200
    proxy.exit_expected = True
    status, _ = proxy.admin("/quitquitquit", method="POST")
    assert status == 200
    assert proxy.proc.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
