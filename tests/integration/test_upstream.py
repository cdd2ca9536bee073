"""Upstream membership and pooling: STRICT_DNS resolution, pool idle timeout, admin /clusters."""

from __future__ import annotations

import time

import pytest

from tests.support.client import RawClient, build
from tests.support.proxy import bootstrap, cluster, free_port

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    a = origins["a"].port
    dns = cluster("dns", [], type="STRICT_DNS", dns_lookup_family="V4_ONLY",
                  dns_refresh_rate="0.2s")
    dns["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "localhost", "port_value": a}}}}]}]
    idle = cluster("idle", [origins["b"].port], typed_extension_protocol_options={
        HTTP_OPTIONS: {"@type": f"type.googleapis.com/{HTTP_OPTIONS}",
                       "common_http_protocol_options": {"idle_timeout": "0.3s"},
                       "explicit_http_config": {"http_protocol_options": {}}}})
    routes = [
        {"match": {"prefix": "/dns/"}, "route": {"cluster": "dns", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/idle/"}, "route": {"cluster": "idle", "prefix_rewrite": "/"}},
    ]
    return start_proxy(bootstrap(free_port(), routes, [dns, idle]))


def get(port: int, path: str):
    client = RawClient(port)
    try:
        client.send(build("GET", path))
        return client.read_responses(1)[0]
    finally:
        client.close()


def test_strict_dns_cluster_resolves_and_serves(proxy):
    response = get(proxy.port, "/dns/echo")
    assert response.status == 200
    assert response.header("x-origin") == "a"


def test_clusters_admin_lists_resolved_hosts(proxy, origins):
    body = get(proxy.admin_port, "/clusters").body.decode()
    assert f"dns::127.0.0.1:{origins['a'].port}::health_flags::healthy" in body


def test_dns_refresh_keeps_serving(proxy):
    time.sleep(0.5)  # a few refresh periods: the membership is replaced, hosts kept
    stats = get(proxy.admin_port, "/stats?filter=cluster.dns.update").body.decode()
    counts = dict(line.split(": ") for line in stats.splitlines())
    assert int(counts["cluster.dns.update_success"]) >= 2, counts
    assert get(proxy.port, "/dns/echo").status == 200


def test_idle_upstream_connections_close_after_idle_timeout(proxy, origins):
    before = origins["b"].connections
    assert get(proxy.port, "/idle/echo").status == 200
    assert get(proxy.port, "/idle/echo").status == 200
    assert origins["b"].connections == before + 1  # the second request reused the connection
    time.sleep(0.6)
    assert get(proxy.port, "/idle/echo").status == 200
    assert origins["b"].connections == before + 2  # the idle one was closed; a new one made
    stats = get(proxy.admin_port, "/stats?filter=cluster.idle.upstream_cx_idle").body.decode()
    assert "cluster.idle.upstream_cx_idle_timeout: 1" in stats
