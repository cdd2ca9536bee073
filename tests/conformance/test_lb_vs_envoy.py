"""Consistent hashing against the real Envoy: for the same hosts and keys, RING_HASH and MAGLEV
must pick the same host in Outrider and Envoy (users moving from Envoy keep their affinity)."""

from __future__ import annotations

import pytest

from tests.support.client import RawClient, build
from tests.support.origin import Origin
from tests.support.proxy import ProxyProcess, bootstrap, cluster, envoy_binary, free_port

pytestmark = pytest.mark.skipif(envoy_binary() is None, reason="no envoy binary")


@pytest.fixture(scope="module")
def proxies():
    origins = [Origin(name).start() for name in ("a", "b", "c", "d", "e")]
    ports = [o.port for o in origins]
    routes = [
        {"match": {"prefix": "/ring/"}, "route": {
            "cluster": "ring", "hash_policy": [{"header": {"header_name": "x-user"}}]}},
        {"match": {"prefix": "/maglev/"}, "route": {
            "cluster": "maglev", "hash_policy": [{"header": {"header_name": "x-user"}}]}},
    ]
    clusters = [cluster("ring", ports, lb_policy="RING_HASH"),
                cluster("maglev", ports, lb_policy="MAGLEV")]
    started = {kind: ProxyProcess(bootstrap(free_port(), routes, clusters), kind).start()
               for kind in ("outrider", "envoy")}
    yield started
    for proxy in started.values():
        proxy.stop()
    for origin in origins:
        origin.stop()


def chosen(proxy: ProxyProcess, path: str, user: str) -> str:
    client = RawClient(proxy.port)
    try:
        client.send(build("GET", path, headers=[("x-user", user)]))
        response = client.read_responses(1)[0]
        assert response.status == 200
        return response.header("x-origin")
    finally:
        client.close()


@pytest.mark.parametrize("path", ["/ring/echo", "/maglev/echo"])
def test_same_key_same_host_as_envoy(proxies, path):
    users = [f"user-{i}" for i in range(40)]
    ours = {u: chosen(proxies["outrider"], path, u) for u in users}
    envoys = {u: chosen(proxies["envoy"], path, u) for u in users}
    assert len(set(ours.values())) >= 4  # the keys really spread
    assert ours == envoys
