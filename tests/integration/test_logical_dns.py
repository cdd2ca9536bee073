"""LOGICAL_DNS through real sockets: one host at the first address of the answer, re-resolved
every ``dns_refresh_rate``; after a change, new connections go to the new address while the
connections already open serve on (Envoy's logical DNS cluster).

The proxy runs in this process so the test controls what the name resolves to: the event
loop's ``getaddrinfo`` answers ``logical.test`` from a table the test edits (every other name
resolves as usual). The two origins listen on the same port at 127.0.0.2 and 127.0.0.3, the
client and the proxy's upstream connections are real sockets.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.support.inprocess import run_with_server, until
from tests.support.marks import outrider_only
from tests.support.origin import Origin
from tests.support.proxy import bootstrap, cluster, free_port

pytestmark = outrider_only

NAME = "logical.test"


class BoundOrigin(Origin):
    """An origin on a chosen loopback address (and port, 0 for any)."""

    def __init__(self, name: str, host: str, port: int = 0) -> None:
        self.host, self.wanted_port = host, port
        super().__init__(name)

    async def _listen(self) -> None:
        self._server = await self._loop.create_server(self.protocol, self.host,
                                                      self.wanted_port, backlog=self.backlog)
        self.port = self._server.sockets[0].getsockname()[1]


@pytest.fixture
def old_and_new():
    old = BoundOrigin("old", "127.0.0.2").start()
    new = BoundOrigin("new", "127.0.0.3", old.port).start()
    yield old, new
    old.stop()
    new.stop()


@pytest.fixture
def answers(monkeypatch):
    """What ``logical.test`` resolves to (a list of IPv4 addresses), editable by the test."""
    table: dict[str, list[str]] = {}
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self, host, port, *args, **kwargs):
        if host != NAME:
            return await real(self, host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in table[NAME]]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return table


async def get(reader, writer, path: str) -> str:
    """One request on an open client connection; the name of the origin that answered."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    return body.split(b'"origin": "')[1].split(b'"')[0].decode()


def test_logical_dns_moves_new_connections_and_keeps_open_ones(old_and_new, answers):
    old, new = old_and_new
    answers[NAME] = ["127.0.0.2", "127.0.0.3"]  # the first address of the answer is used
    port = free_port()
    logical = cluster("logical", [], type="LOGICAL_DNS", dns_lookup_family="V4_ONLY",
                      dns_refresh_rate="0.1s")
    logical["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": NAME, "port_value": old.port}}}}]}]
    config = bootstrap(port, [{"match": {"prefix": "/"}, "route": {
        "cluster": "logical", "auto_host_rewrite": True}}], [logical])

    async def scenario(server) -> None:
        members = server.cluster_manager.get("logical")
        [host] = members.priority_set.all_hosts
        assert host.address_string == f"127.0.0.2:{old.port}"
        first = await asyncio.open_connection("127.0.0.1", port)
        assert await get(*first, "/echo") == "old"
        assert old.last.headers["host"] == NAME  # auto_host_rewrite: the DNS name
        assert old.connections == 1  # its upstream connection now idles in the pool

        answers[NAME] = ["127.0.0.3"]
        await until(lambda: host.address == "127.0.0.3")
        assert members.priority_set.all_hosts == [host]  # the same one host

        # The idle connection to the old address serves on (nothing drains on a DNS change);
        # a request that needs another connection gets one to the new address.
        slow = asyncio.ensure_future(get(*first, "/sleep/0.3"))
        await until(lambda: members.stats.upstream_rq_active.value == 1)
        second = await asyncio.open_connection("127.0.0.1", port)
        assert await get(*second, "/echo") == "new"
        assert await slow == "old"
        assert (old.connections, new.connections) == (1, 1)
        for _, writer in (first, second):
            writer.close()

    run_with_server(config, scenario)


def test_logical_dns_keeps_its_address_when_resolution_fails(old_and_new, answers):
    old, _ = old_and_new
    answers[NAME] = ["127.0.0.2"]
    port = free_port()
    logical = cluster("logical", [], type="LOGICAL_DNS", dns_lookup_family="V4_ONLY",
                      dns_refresh_rate="0.05s")
    logical["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": NAME, "port_value": old.port}}}}]}]
    config = bootstrap(port, [{"match": {"prefix": "/"}, "route": {"cluster": "logical"}}],
                       [logical])

    async def scenario(server) -> None:
        members = server.cluster_manager.get("logical")
        answers[NAME] = []  # an answer without an IPv4 address
        await until(lambda: members.stats.update_failure.value >= 2)
        connection = await asyncio.open_connection("127.0.0.1", port)
        assert await get(*connection, "/echo") == "old"
        connection[1].close()

    run_with_server(config, scenario)
