"""An exception in the proxy's own code is an internal error (issue 7, bug 7): answered 500 (or
a reset once the response has started), logged with its traceback and counted as
``downstream_rq_internal_error``; never a 400 "callback failed", a client protocol error, or an
upstream 502 UPE. Only that request's connection pays; the proxy goes on serving.

The proxy runs in this process so that a test can make one component fail; the origin and the
client are real sockets on 127.0.0.1.
"""

from __future__ import annotations

import logging

import pytest

from outrider.router.route_table import RouteTable
from outrider.router.router_filter import RouterFilter
from tests.support.inprocess import exchange, run_with_server
from tests.support.marks import outrider_only
from tests.support.proxy import bootstrap, cluster, free_port

pytestmark = outrider_only


def counters(server) -> dict[str, int]:
    http = "http.ingress_http."
    return {name: server.stats.counter(http + name).value for name in (
        "downstream_rq_internal_error", "downstream_cx_protocol_error", "downstream_rq_5xx")}


def broken(*args, **kwargs):
    raise RuntimeError("a bug in the proxy")


@pytest.mark.parametrize(("owner", "method"), [
    (RouteTable, "route"),                    # routing, before any upstream
    (RouterFilter, "on_upstream_headers"),    # relaying the upstream's response
])
def test_an_exception_is_a_logged_500(origins, monkeypatch, caplog, owner, method):
    port = free_port()
    config = bootstrap(port, [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}],
                       [cluster("a", [origins["a"].port])])

    async def scenario(server) -> None:
        monkeypatch.setattr(owner, method, broken)
        head, _, writer = await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.close()
        assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert counters(server) == {"downstream_rq_internal_error": 1,
                                    "downstream_cx_protocol_error": 0, "downstream_rq_5xx": 1}
        assert server.stats.counter("cluster.a.upstream_rq_502").value == 0
        monkeypatch.undo()
        head, _, writer = await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.close()
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")  # the proxy goes on

    with caplog.at_level(logging.ERROR):
        run_with_server(config, scenario)
    assert "internal error serving GET /echo" in caplog.text
    assert "RuntimeError: a bug in the proxy" in caplog.text
