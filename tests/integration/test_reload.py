"""Config reload: the ``-c`` file edited in place, replaced by a move, swapped as a Kubernetes
ConfigMap does, or SIGHUP. A valid config is in effect within two seconds of the write without
dropping a request; an invalid one is rejected with ``--mode validate``'s errors and the running
config keeps serving. Also ``--config-env-substitution``.

Each test starts its own Outrider (the config is what it changes) on the shared origins; the
ones where the worker processes matter run with ``--concurrency`` 1 and 2.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.client import RawClient, build
from tests.support.marks import outrider_only
from tests.support.proxy import bootstrap, cluster, free_port
from tests.support.reload import (
    DEADLINE,
    ReloadingProxy,
    dump,
    fetch,
    timed_wait,
    wait_for,
    write_by_move,
    write_in_place,
)

pytestmark = outrider_only

# The promise: a valid config written to the -c file serves within this long.
PROMISE = 2.0
APPLIED = "reload (config file changed): applied: "
ROUTE_CHANGED = "listeners: changed ingress | routes: changed rc"


@pytest.fixture
def launch():
    """``launch(config, ...)`` starts a ReloadingProxy; each is stopped when the test ends, and
    one that died on its own fails the test."""
    running: list[ReloadingProxy] = []

    def start(config: dict, path: str | None = None, extra_args: tuple = (),
              port: int | None = None) -> ReloadingProxy:
        proxy = ReloadingProxy(config, path, extra_args)
        if port is not None:
            proxy.port = port
        running.append(proxy)
        return proxy.start()

    yield start
    crashed = [(p.proc.returncode, p.log()) for p in running if p.proc.poll() is not None]
    for proxy in running:
        proxy.stop()
    if crashed:
        pytest.fail("".join(f"outrider exited with {code} during the test:\n{log[-3000:]}\n"
                            for code, log in crashed))


def direct(prefix: str, body: str) -> dict:
    return {"match": {"prefix": prefix},
            "direct_response": {"status": 200, "body": {"inline_string": body}}}


def to(prefix: str, cluster_name: str, **route) -> dict:
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster_name, **route}}


def accepted_by_worker(proxy: ReloadingProxy) -> list[int]:
    """How many connections each worker accepted on the first listener."""
    stats = proxy.stats()
    workers = int(stats["server.concurrency"])
    prefix = f"listener.127.0.0.1_{proxy.port}.worker_"
    return [int(stats.get(f"{prefix}{i}.downstream_cx_total", "0")) for i in range(workers)]


def ask_every_worker(proxy: ReloadingProxy, path: str, count: int = 30) -> list:
    """``count`` answers on fresh connections, checked to come from every worker (the kernel
    spreads connections over them: missing one in 30 is a one in 2**29 chance)."""
    before = accepted_by_worker(proxy)
    responses = [fetch(proxy.port, path) for _ in range(count)]
    after = accepted_by_worker(proxy)
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    return responses


def answers(proxy: ReloadingProxy, path: str) -> set[bytes]:
    return {response.body for response in ask_every_worker(proxy, path)}


def origins_of(proxy: ReloadingProxy, path: str) -> set[str | None]:
    return {response.header("x-origin") for response in ask_every_worker(proxy, path)}


def concurrency(n: int) -> tuple[str, ...]:
    return ("--concurrency", str(n))


def edit_and_time(proxy: ReloadingProxy, config: dict, probe, write=None) -> float:
    """Write ``config`` (in place unless ``write`` says otherwise) and return how long until
    ``probe()`` holds."""
    (write or write_in_place)(proxy.path, dump(config))
    _, elapsed = timed_wait(probe, DEADLINE, "the new config answering")
    return elapsed


# -- how a change arrives -----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_an_edit_in_place_serves_within_two_seconds(launch, workers):
    port, admin = free_port(), free_port()
    proxy = launch(bootstrap(port, [direct("/old", "one")], [], admin),
                   extra_args=concurrency(workers))
    assert fetch(port, "/old").body == b"one"

    elapsed = edit_and_time(proxy, bootstrap(port, [direct("/new", "two")], [], admin),
                            lambda: fetch(port, "/new").status == 200)
    assert elapsed <= PROMISE, f"the edit took {elapsed:.2f}s to serve"
    # Every worker serves the new routes, and only them.
    assert answers(proxy, "/new") == {b"two"}
    assert {r.status for r in ask_every_worker(proxy, "/old")} == {404}
    wait_for(lambda: proxy.reloads() == (1, 0), what="config_reload_total 1")
    [line] = proxy.wait_for_log(APPLIED)
    assert line.endswith(APPLIED + ROUTE_CHANGED), line
    last = proxy.server_info()["last_config_reload"]
    assert last["ok"] is True and ROUTE_CHANGED in last["summary"], last


def test_a_file_replaced_by_a_move_serves_within_two_seconds(launch):
    port, admin = free_port(), free_port()
    proxy = launch(bootstrap(port, [direct("/", "one")], [], admin))
    assert fetch(port).body == b"one"

    elapsed = edit_and_time(proxy, bootstrap(port, [direct("/", "two")], [], admin),
                            lambda: fetch(port).body == b"two", write=write_by_move)
    assert elapsed <= PROMISE, f"the move took {elapsed:.2f}s to serve"
    proxy.wait_for_log(APPLIED + ROUTE_CHANGED)
    assert proxy.reloads() == (1, 0)


def test_a_configmap_symlink_swap_serves_within_two_seconds(launch, tmp_path):
    """The kubelet's update: a new timestamped directory, a ``..data_tmp`` link renamed over
    ``..data``, the old directory removed; ``envoy.yaml`` links through ``..data``. Twice, so
    the second swap shows the watch followed the first."""
    port, admin = free_port(), free_port()
    volume = tmp_path / "config"
    volume.mkdir()

    def publish(stamp: str, config: dict, old: str | None) -> None:
        (volume / stamp).mkdir()
        (volume / stamp / "envoy.yaml").write_text(dump(config))
        if old is None:
            os.symlink(stamp, volume / "..data")
            os.symlink("..data/envoy.yaml", volume / "envoy.yaml")
            return
        os.symlink(stamp, volume / "..data_tmp")
        os.rename(volume / "..data_tmp", volume / "..data")
        shutil.rmtree(volume / old)

    first = bootstrap(port, [direct("/", "one")], [], admin)
    publish("..2026_a", first, None)
    proxy = launch(first, path=str(volume / "envoy.yaml"))
    assert fetch(port).body == b"one"

    for count, (stamp, old, body) in enumerate(
            [("..2026_b", "..2026_a", "two"), ("..2026_c", "..2026_b", "three")], start=1):
        publish(stamp, bootstrap(port, [direct("/", body)], [], admin), old)
        _, elapsed = timed_wait(lambda body=body: fetch(port).body == body.encode(),
                                what=f"the swap to {stamp}")
        assert elapsed <= PROMISE, f"the swap to {stamp} took {elapsed:.2f}s to serve"
        proxy.wait_for_log(APPLIED, count)
        assert proxy.reloads() == (count, 0)


def test_without_the_watch_only_sighup_reloads(launch):
    port, admin = free_port(), free_port()
    proxy = launch(bootstrap(port, [direct("/", "one")], [], admin),
                   extra_args=("--no-watch-config",))
    proxy.edit(bootstrap(port, [direct("/", "two")], [], admin))
    # A watched reload would have come within ~0.5 s: the old answer all along.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        assert fetch(port).body == b"one"
        time.sleep(0.05)
    assert proxy.reloads() == (0, 0)

    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: fetch(port).body == b"two", what="the SIGHUP reload")
    [line] = proxy.wait_for_log("reload (SIGHUP): applied: ")
    assert line.endswith("reload (SIGHUP): applied: " + ROUTE_CHANGED), line
    assert proxy.reloads() == (1, 0)
    assert not proxy.log_lines("config file changed")


# -- what a reload checks and changes ---------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_an_invalid_edit_is_rejected_with_validates_errors(launch, tmp_path, workers):
    port, admin = free_port(), free_port()
    proxy = launch(bootstrap(port, [direct("/", "one")], [], admin),
                   extra_args=concurrency(workers))
    broken = bootstrap(port, [direct("/", "two")], [], admin)
    route = broken["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]
    route["match"] = {"prefx": "/"}
    proxy.edit(broken)

    rejected = proxy.wait_for_log(f"configuration '{proxy.path}' is invalid: 1 error(s); "
                                  "the running configuration keeps serving")
    assert len(rejected) == 1 and "reload (config file changed)" in rejected[0], rejected
    assert answers(proxy, "/") == {b"one"}
    assert proxy.reloads() == (0, 1)

    # The same error line --mode validate prints for the same file.
    copy_path = str(tmp_path / "envoy.yaml")
    shutil.copy(proxy.path, copy_path)
    validate = subprocess.run([sys.executable, "-m", "outrider", "--mode", "validate",
                               "-c", copy_path], capture_output=True, text=True, timeout=30)
    assert validate.returncode == 1, validate.stderr
    expected = [line.replace(copy_path, proxy.path) for line in validate.stderr.splitlines()
                if ": error: " in line]
    assert len(expected) == 1 and "prefx" in expected[0], validate.stderr
    assert expected[0].startswith(f"{proxy.path}:"), expected
    logged = [line.split("reload: ", 1)[1] for line in proxy.log_lines("] reload: ")]
    assert logged == expected, proxy.log()
    last = proxy.server_info()["last_config_reload"]
    assert last["ok"] is False and last["errors"] == expected, last
    help_page = proxy.admin("/")[1]
    assert "last config reload: REJECTED" in help_page and expected[0] in help_page, help_page

    # Fixed: it applies.
    proxy.edit(bootstrap(port, [direct("/", "two")], [], admin))
    wait_for(lambda: fetch(port).body == b"two", what="the fixed config")
    assert answers(proxy, "/") == {b"two"}
    wait_for(lambda: proxy.reloads() == (1, 1), what="config_reload_total 1, failed 1")
    assert proxy.server_info()["last_config_reload"]["ok"] is True


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cluster_added_and_a_static_host_swapped(launch, origins, workers):
    port, admin = free_port(), free_port()
    proxy = launch(bootstrap(port, [to("/a", "a")], [cluster("a", [origins["a"].port])], admin),
                   extra_args=concurrency(workers))
    assert origins_of(proxy, "/a/echo") == {"a"}
    assert fetch(port, "/c/echo").status == 404

    proxy.edit(bootstrap(port, [to("/a", "a"), to("/c", "c")],
                         [cluster("a", [origins["b"].port]), cluster("c", [origins["c"].port])],
                         admin))
    wait_for(lambda: fetch(port, "/c/echo").status == 200, what="the route to the new cluster")
    assert origins_of(proxy, "/a/echo") == {"b"}
    assert origins_of(proxy, "/c/echo") == {"c"}
    [line] = proxy.wait_for_log(APPLIED)
    assert line.endswith(" | clusters: added c; changed a"), line


def test_an_unchanged_cluster_keeps_its_pool_and_a_connection_sees_the_new_route(
        launch, origins):
    port, admin = free_port(), free_port()
    clusters = [cluster("a", [origins["a"].port])]
    proxy = launch(bootstrap(port, [to("/v", "a", prefix_rewrite="/echo/v1")], clusters, admin))
    connections_before = origins["a"].connections
    client = RawClient(port)
    try:
        for _ in range(3):
            assert client.exchange(build("GET", "/v"), require_complete=True).echo().path == \
                "/echo/v1"
        assert fetch(port, "/v").echo().path == "/echo/v1"

        proxy.edit(bootstrap(port, [to("/v", "a", prefix_rewrite="/echo/v2")], clusters, admin))
        [line] = proxy.wait_for_log(APPLIED)
        assert line.endswith(APPLIED + ROUTE_CHANGED), line  # cluster a is unchanged

        # The keep-alive connection takes the new route at its next request.
        response = client.exchange(build("GET", "/v"), require_complete=True)
        assert response.echo().path == "/echo/v2"
        assert response.header("connection") != "close"
        assert fetch(port, "/v").echo().path == "/echo/v2"
    finally:
        client.close()
    # One upstream connection, before and after.
    assert proxy.stat("cluster.a.upstream_cx_total") == 1
    assert origins["a"].connections - connections_before == 1


def test_a_request_in_flight_finishes_on_the_config_it_started_on(launch, origins):
    port, admin = free_port(), free_port()
    proxy = launch(bootstrap(port, [to("/sleep", "a")], [cluster("a", [origins["a"].port])],
                             admin))
    seen = len(origins["a"].requests)
    client = RawClient(port, timeout=DEADLINE)
    try:
        client.send(build("GET", "/sleep/3"))
        wait_for(lambda: any(r.path == "/sleep/3" for r in origins["a"].requests[seen:]),
                 what="the slow request reaching origin a")
        # The route and its cluster change under it: cluster a now means origin b.
        proxy.edit(bootstrap(port, [to("/sleep", "a", timeout="5s")],
                             [cluster("a", [origins["b"].port])], admin))
        proxy.wait_for_log(APPLIED)
        assert fetch(port, "/sleep/0").header("x-origin") == "b"

        [response] = client.read_responses(1)
    finally:
        client.close()
    assert response.complete and response.status == 200
    assert response.header("x-origin") == "a"
    assert response.echo().path == "/sleep/3"


def test_a_pipelined_request_waiting_its_turn_is_routed_on_the_new_config(launch, origins):
    """As Envoy's HTTP/1 codec, which reads a pipelined request only when the one before it is
    done: a request queued behind a slow one when a reload renames its cluster takes the new
    routes (the old ones name a cluster that no longer exists)."""
    port, admin = free_port(), free_port()
    proxy = launch(bootstrap(port, [to("/", "a")], [cluster("a", [origins["a"].port])], admin))
    seen = len(origins["a"].requests)
    client = RawClient(port, timeout=DEADLINE)
    try:
        client.send(build("GET", "/sleep/1.5") + build("GET", "/second"))
        wait_for(lambda: any(r.path == "/sleep/1.5" for r in origins["a"].requests[seen:]),
                 what="the slow request reaching origin a")
        proxy.edit(bootstrap(port, [to("/", "renamed")], [cluster("renamed",
                                                                   [origins["b"].port])], admin))
        proxy.wait_for_log(APPLIED)
        first, second = client.read_responses(2)
    finally:
        client.close()
    assert (first.status, first.header("x-origin")) == (200, "a")
    assert (second.status, second.header("x-origin")) == (200, "b")
    assert proxy.stat("http.ingress_http.downstream_rq_active") == 0


def test_listeners_added_and_removed(launch):
    ports: set[int] = set()
    while len(ports) < 5:  # free_port() may hand out a port it gave a moment ago
        ports.add(free_port())
    port, kept_port, removed_port, added_port, admin = ports

    def config(listeners: dict[str, int]) -> dict:
        result = bootstrap(port, [direct("/", "ok")], [], admin)
        base = result["static_resources"]["listeners"][0]
        for name, listener_port in listeners.items():
            listener = copy.deepcopy(base)
            listener["name"] = name
            listener["address"]["socket_address"]["port_value"] = listener_port
            result["static_resources"]["listeners"].append(listener)
        return result

    proxy = launch(config({"kept": kept_port, "removed": removed_port}),
                   extra_args=("--drain-strategy", "immediate"))
    clients = {name: RawClient(p) for name, p in
               (("kept", kept_port), ("draining", removed_port), ("idle", removed_port))}
    try:
        for client in clients.values():
            response = client.exchange(build("GET", "/"), require_complete=True)
            assert response.body == b"ok" and response.header("connection") != "close"

        proxy.edit(config({"kept": kept_port, "added": added_port}))
        [line] = proxy.wait_for_log(APPLIED)
        applied_at = time.monotonic()
        assert line.endswith(APPLIED + "listeners: added added; removed removed"), line

        assert fetch(added_port).body == b"ok"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", removed_port), timeout=2).close()
        # A listener that stays keeps its connections, undisturbed.
        response = clients["kept"].exchange(build("GET", "/"), require_complete=True)
        assert response.body == b"ok" and response.header("connection") != "close"
        # The removed one's connections drain: the next answer closes its connection...
        response = clients["draining"].exchange(build("GET", "/"), require_complete=True)
        assert response.body == b"ok" and response.header("connection") == "close"
        assert clients["draining"].is_closed(DEADLINE)
        # ...and one that stays idle is closed at the end of the drain time (2 s).
        assert clients["idle"].is_closed(DEADLINE)
        closed_after = time.monotonic() - applied_at
        assert 1.0 <= closed_after <= 2.0 + 3.0, f"idle connection closed after {closed_after:.2f}s"
    finally:
        for client in clients.values():
            client.close()


# -- environment substitution --------------------------------------------------------------------


def test_env_substitution(launch, tmp_path, origins, monkeypatch):
    port, admin = free_port(), free_port()
    config = bootstrap(port, [to("/up", "up"), direct("/", "${GREETING:-hello}/${NAME}")],
                       [cluster("up", [origins["a"].port])], admin)
    config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = \
        "${LISTEN_PORT}"
    config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0][
        "lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = \
        "${UPSTREAM_PORT}"
    text = dump(config)
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    line = next(n for n, content in enumerate(text.splitlines(), 1)
                if "${UPSTREAM_PORT}" in content)
    for name in ("GREETING", "NAME", "LISTEN_PORT", "UPSTREAM_PORT"):
        monkeypatch.delenv(name, raising=False)

    # validate: the unset variables, each named with its line.
    monkeypatch.setenv("LISTEN_PORT", str(port))
    monkeypatch.setenv("NAME", "world")
    validate = subprocess.run([sys.executable, "-m", "outrider", "--mode", "validate",
                               "--config-env-substitution", "-c", str(path)],
                              capture_output=True, text=True, timeout=30)
    assert validate.returncode == 1
    assert validate.stderr.splitlines()[0] == (
        f"{path}:{line}: error: environment variable 'UPSTREAM_PORT' is not set "
        "(use ${UPSTREAM_PORT:-default} for a default)"), validate.stderr

    # serve: the port and the upstream from the environment, the greeting from its default.
    monkeypatch.setenv("UPSTREAM_PORT", str(origins["a"].port))
    proxy = launch(config, path=str(path), port=port,
                   extra_args=("--config-env-substitution",))
    assert fetch(port).body == b"hello/world"
    assert fetch(port, "/up/echo").header("x-origin") == "a"

    # A reload substitutes from the environment the process started with.
    path.write_text(text.replace("${NAME}", "${NAME}-again").replace("${UPSTREAM_PORT}",
                                                                     "${NOT_SET_ANYWHERE}"))
    rejected = proxy.wait_for_log("environment variable 'NOT_SET_ANYWHERE' is not set")
    assert rejected[0].endswith(f"reload: {path}:{line}: error: environment variable "
                                "'NOT_SET_ANYWHERE' is not set (use ${NOT_SET_ANYWHERE:-default} "
                                "for a default)"), rejected
    assert fetch(port).body == b"hello/world"
    path.write_text(text.replace("${NAME}", "${NAME}-again"))
    wait_for(lambda: fetch(port).body == b"hello/world-again", what="the reload")
    wait_for(lambda: proxy.reloads() == (1, 1), what="config_reload_total 1, failed 1")
