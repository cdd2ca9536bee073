"""Per-request Python cost of the proxy's hot path, without sockets or the kernel.

A fake transport on each side: request bytes go into a DownstreamConnection, the upstream
connection the pool made receives a canned response, and the response bytes come back. What is
measured is exactly the proxy's own code per request (codec, header rules, routing, load
balancing, pooling, encoding, the per-iteration write flush), which is what optimisations
change; syscalls are not included. ``--batch`` connections (16) share each loop iteration, as
under load, so the flush scheduling is amortised as it is in a running proxy.

    python bench/hot_path.py [--requests N] [--batch K]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import yaml

from outrider.config.loader import load_bootstrap_data
from outrider.net.downstream import DownstreamConnection
from outrider.net.upstream import UpstreamConnection
from outrider.server.listener import ListenerFactory
from outrider.stats.store import StatsStore
from outrider.upstream.cluster import ClusterSettings
from outrider.upstream.cluster_manager import ClusterManager

CONFIG = """
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: b
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: origin }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: origin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9 } } }
"""

REQUEST = (b"GET /api/items?id=7 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Wed, 25 Nov 2026 21:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
            b"hello world\n")


class FakeTransport:
    def __init__(self, peer=("127.0.0.1", 40000)) -> None:
        self.peer = peer
        self.out: list[bytes] = []

    def get_extra_info(self, name, default=None):
        return {"peername": self.peer, "sockname": ("127.0.0.1", 10000)}.get(name, default)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def run(requests: int, batch: int) -> None:
    loop = asyncio.get_running_loop()
    bootstrap = load_bootstrap_data(yaml.safe_load(CONFIG)).bootstrap
    store = StatsStore()
    resources = bootstrap.static_resources
    cm = ClusterManager([ClusterSettings.from_proto(c) for c in resources.clusters], store, loop)
    factory = ListenerFactory(resources.listeners[0], cm, store, loop)
    cluster = next(iter(cm.clusters.values()))
    pool = cluster.pool_for(cluster.priority_set.all_hosts[0])
    # ``batch`` client connections and as many upstream connections, made ready by hand (no
    # real connect), so one loop iteration handles ``batch`` reads as a loaded proxy's does.
    upstreams, downstreams = [], []
    for _ in range(batch):
        upstream = UpstreamConnection(pool)
        upstream.connection_made(FakeTransport())
        pool.clients.add(upstream)
        pool.idle.append(upstream)
        upstreams.append(upstream)
        down = DownstreamConnection(factory)
        down.connection_made(FakeTransport())
        downstreams.append(down)

    async def rounds(count: int) -> None:
        # One iteration reads every client's request, the next every upstream's response; the
        # loop runs the scheduled flush between them (``sleep(0)`` yields one iteration).
        for _ in range(count):
            for down in downstreams:
                down.data_received(REQUEST)
            await asyncio.sleep(0)
            for upstream in upstreams:
                if upstream.request is not None:
                    upstream.data_received(RESPONSE)
            await asyncio.sleep(0)

    await rounds(2000 // batch + 1)  # warm up
    for connection in upstreams + downstreams:
        connection.transport.out.clear()
    count = max(1, requests // batch)
    start = time.perf_counter()
    await rounds(count)
    elapsed = time.perf_counter() - start
    done = count * batch
    assert sum(len(d.transport.out) for d in downstreams) == done
    assert sum(len(u.transport.out) for u in upstreams) == done
    print(f"{done} requests: {elapsed * 1e6 / done:.2f} µs of Python per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=16,
                        help="connections whose reads share one loop iteration")
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.requests, args.batch))


if __name__ == "__main__":
    main()
