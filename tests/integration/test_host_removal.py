"""A host that leaves its cluster drains (issue 7, bug 8): the request in flight on it finishes,
its connection then closes instead of going back to a pool, and no new request goes to it.

The proxy runs in this process so that the test can change the cluster's membership at the
moment it wants, as a DNS refresh or EDS update would; the origin and the client are real
sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio

from tests.support.inprocess import run_with_server, until
from tests.support.marks import outrider_only
from tests.support.proxy import bootstrap, cluster, free_port

pytestmark = outrider_only


def test_removed_host_finishes_its_in_flight_request(origins):
    port = free_port()
    config = bootstrap(port, [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}],
                       [cluster("a", [origins["a"].port])])

    async def scenario(server) -> None:
        manager = server.cluster_manager
        members = manager.get("a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /sleep/0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        await until(lambda: members.stats.upstream_rq_active.value == 1)
        [pool] = members.pools.values()
        [connection] = pool.clients

        # The host leaves while its request is in flight: the discovery side's update, applied
        # (published) as a DNS refresh's would be.
        manager.publish(manager.memberships["a"].replace([]))

        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        await until(lambda: connection.closed)  # drained: closed, not pooled
        assert members.stats.upstream_rq_active.value == 0
        assert pool.idle == [] and pool.clients == set()
        assert members.pools == {}

        # With no host left, the next request is refused at once, not sent to the old one.
        body_length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(body_length)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        writer.close()

    run_with_server(config, scenario)
