"""Round robin over real origins: an even spread, and endpoint weights honoured."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.client import RawClient, build
from tests.support.proxy import bootstrap, cluster, free_port


def weighted_cluster(name: str, ports_weights: list[tuple[int, int]]) -> dict:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}}},
             "load_balancing_weight": weight}
            for port, weight in ports_weights]}]},
    }


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    a, b, c = (origins[n].port for n in "abc")
    routes = [
        {"match": {"prefix": "/rr/"}, "route": {"cluster": "rr", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/weighted/"}, "route": {"cluster": "weighted",
                                                       "prefix_rewrite": "/"}},
    ]
    clusters = [cluster("rr", [a, b, c], lb_policy="ROUND_ROBIN"),
                weighted_cluster("weighted", [(a, 3), (b, 1)])]
    return start_proxy(bootstrap(free_port(), routes, clusters))


def spread(proxy, path: str, count: int) -> Counter:
    """Send ``count`` sequential requests on one connection; count the answering origins."""
    client = RawClient(proxy.port)
    counts = Counter()
    try:
        for _ in range(count):
            client.send(build("GET", path))
            response = client.read_responses(1)[0]
            client.buffer = b""
            assert response.status == 200
            counts[response.header("x-origin")] += 1
    finally:
        client.close()
    return counts


def test_round_robin_spreads_evenly(proxy):
    counts = spread(proxy, "/rr/echo", 30)
    assert set(counts) == {"a", "b", "c"}
    assert all(9 <= n <= 11 for n in counts.values()), counts


def test_round_robin_is_per_request_not_per_connection(proxy):
    # Each request on its own client connection still rotates over the hosts.
    counts = Counter()
    for _ in range(9):
        client = RawClient(proxy.port)
        try:
            client.send(build("GET", "/rr/echo"))
            counts[client.read_responses(1)[0].header("x-origin")] += 1
        finally:
            client.close()
    assert all(2 <= n <= 4 for n in counts.values()) and len(counts) == 3, counts


def test_weighted_endpoints(proxy):
    counts = spread(proxy, "/weighted/echo", 40)
    assert set(counts) == {"a", "b"}
    assert 29 <= counts["a"] <= 31 and 9 <= counts["b"] <= 11, counts


def test_weighted_endpoints_interleave(proxy):
    # Smooth weighted round robin (EDF): b is never starved for long, even over 8 requests.
    counts = spread(proxy, "/weighted/echo", 8)
    assert 5 <= counts["a"] <= 7 and 1 <= counts["b"] <= 3, counts
