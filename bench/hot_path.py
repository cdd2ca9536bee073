"""Per-request Python cost of the proxy's hot path, without sockets or the kernel.

A fake transport on each side: request bytes go into a DownstreamConnection, the upstream
connection the pool made receives a canned response, and the response bytes come back. What is
measured is exactly the proxy's own code per request (codec, header rules, routing, load
balancing, pooling, encoding), which is what optimisations change; syscalls are not included.

    python bench/hot_path.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import yaml

from outrider.config.loader import load_bootstrap_data
from outrider.net.flush import flush_scheduler
from outrider.net.upstream import UpstreamConnection
from outrider.server.listener import ListenerFactory
from outrider.stats.store import StatsStore
from outrider.upstream.cluster import ClusterSettings
from outrider.upstream.cluster_manager import ClusterManager

CONFIG = """
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
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


async def run(requests: int) -> None:
    loop = asyncio.get_running_loop()
    bootstrap = load_bootstrap_data(yaml.safe_load(CONFIG)).bootstrap
    store = StatsStore()
    resources = bootstrap.static_resources
    cm = ClusterManager([ClusterSettings.from_proto(c) for c in resources.clusters], store, loop)
    factory = ListenerFactory(resources.listeners[0], cm, store, loop)
    pool = next(iter(cm.clusters.values())).pool_for(
        next(iter(cm.clusters.values())).priority_set.all_hosts[0])
    # One upstream connection, made ready by hand: no real connect.
    upstream = UpstreamConnection(pool)
    up_transport = FakeTransport()
    upstream.connection_made(up_transport)
    pool.clients.add(upstream)
    pool.idle.append(upstream)

    from outrider.net.downstream import DownstreamConnection

    down = DownstreamConnection(factory)
    down_transport = FakeTransport()
    down.connection_made(down_transport)

    # Each read is its own loop iteration: the writes it made are flushed after it (the loop
    # runs the scheduled flush as a no-op later; yielding now and then drains those handles).
    flush = flush_scheduler(loop).run

    def one() -> None:
        down.data_received(REQUEST)
        flush()
        upstream.data_received(RESPONSE)
        flush()

    async def many(count: int) -> None:
        for i in range(count):
            one()
            if i % 1000 == 999:
                await asyncio.sleep(0)

    await many(2000)  # warm up
    down_transport.out.clear()
    up_transport.out.clear()
    start = time.perf_counter()
    await many(requests)
    elapsed = time.perf_counter() - start
    assert len(down_transport.out) == requests, len(down_transport.out)
    assert len(up_transport.out) == requests
    print(f"{requests} requests: {elapsed * 1e6 / requests:.2f} µs of Python per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.requests))


if __name__ == "__main__":
    main()
