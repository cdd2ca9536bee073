"""Zero-drop: 32 keep-alive clients kept busy while the config is reloaded several times (a route
added, a cluster added, a host swapped, an invalid edit) and while the binary is upgraded: not one
request fails, and each change is in effect within 2 s of the write."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import yaml

from tests.support.client import RawClient, build
from tests.support.load import KeepAliveLoad
from tests.support.marks import outrider_only
from tests.support.proxy import ProxyProcess, bootstrap, cluster, free_port

pytestmark = outrider_only

CLIENTS = 32
EFFECT_WITHIN = 2.0


def _config(origins, port: int, admin_port: int) -> dict:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "main"}}]
    return bootstrap(port, routes, [cluster("main", [origins["a"].port])], admin_port=admin_port)


def _write(proxy: ProxyProcess, config: dict) -> float:
    with open(proxy.path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return time.monotonic()


def _answer(port: int, path: str) -> tuple[int | None, bytes]:
    """One request on a new connection."""
    client = RawClient(port)
    try:
        responses = client.read_responses(1) if client.send(build("GET", path)) is None else []
    finally:
        client.close()
    return (responses[0].status, responses[0].body) if responses else (None, b"")


def _in_effect(port: int, path: str, check, written: float) -> float:
    """Seconds from the write until ``check(status, body)`` holds for a new request."""
    while time.monotonic() - written < 10:
        if check(*_answer(port, path)):
            return time.monotonic() - written
        time.sleep(0.02)
    raise AssertionError(f"{path}: change not in effect after 10 s")


def _origin(body: bytes) -> str | None:
    try:
        return json.loads(body)["origin"]
    except (ValueError, KeyError):
        return None


@pytest.mark.parametrize("concurrency", [1, 2])
def test_reloads_under_load_drop_nothing(origins, concurrency):
    port, admin_port = free_port(), free_port()
    config = _config(origins, port, admin_port)
    proxy = ProxyProcess(config, extra_args=("--concurrency", str(concurrency))).start()
    load = KeepAliveLoad(port, clients=CLIENTS, path="/echo").start()
    try:
        time.sleep(0.5)
        vhost = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]["route_config"]["virtual_hosts"][0]
        delays = {}
        # A route added.
        vhost["routes"].insert(0, {"match": {"prefix": "/added"}, "direct_response": {
            "status": 200, "body": {"inline_string": "added"}}})
        written = _write(proxy, config)
        delays["route added"] = _in_effect(port, "/added", lambda s, b: b == b"added", written)
        # A cluster added, with a route to it.
        config["static_resources"]["clusters"].append(cluster("second", [origins["b"].port]))
        vhost["routes"].insert(0, {"match": {"prefix": "/second"},
                                   "route": {"cluster": "second"}})
        written = _write(proxy, config)
        delays["cluster added"] = _in_effect(port, "/second/x", lambda s, b: _origin(b) == "b",
                                             written)
        # The busy cluster's host swapped (the clients' own requests move to it).
        config["static_resources"]["clusters"][0] = cluster("main", [origins["c"].port])
        written = _write(proxy, config)
        delays["host swapped"] = _in_effect(port, "/echo", lambda s, b: _origin(b) == "c",
                                            written)
        # An invalid edit: rejected, the running config keeps serving.
        with open(proxy.path, "a") as f:
            f.write("not_a_field: 1\n")
        failed = time.monotonic() + 5
        while proxy.stats()["server.config_reload_failed"] != "1" and time.monotonic() < failed:
            time.sleep(0.05)
        assert proxy.stats()["server.config_reload_failed"] == "1"
        assert _origin(_answer(port, "/echo")[1]) == "c"
        time.sleep(0.5)
        result = load.stop()
        assert result.failures == [], result.failures[:10]
        assert result.requests > 500
        assert all(delay < EFFECT_WITHIN for delay in delays.values()), delays
        assert proxy.stats()["server.config_reload_total"] == "3"
        origins_seen = {_origin(body) for body in result.bodies}
        assert origins_seen == {"a", "c"}
    finally:
        load.stop()
        proxy.stop()


def _wait_for_successor(proxy: ProxyProcess, old_pid: int) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            info = proxy.server_info()
            if info["pid"] != old_pid:
                return info
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no new process took over:\n{proxy.log()}")


def successors(old_pid: int) -> list[int]:
    """Processes started with ``--hot-restart-from old_pid`` (to stop them whatever happened)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if b"--hot-restart-from" in args and str(old_pid).encode() in args:
                found.append(int(entry))
    return found


def _stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_binary_upgrade_under_load_drops_nothing(origins, concurrency):
    port, admin_port = free_port(), free_port()
    proxy = ProxyProcess(_config(origins, port, admin_port),
                         extra_args=("--concurrency", str(concurrency))).start()
    new_pid = None
    load = KeepAliveLoad(port, clients=CLIENTS, path="/echo").start()
    try:
        time.sleep(0.5)
        old_pid = proxy.pid
        proxy.proc.send_signal(signal.SIGUSR2)
        info = _wait_for_successor(proxy, old_pid)
        new_pid = info["pid"]
        assert info["command_line_options"]["hot_restart_epoch"] == 1
        assert proxy.proc.wait(15) == 0  # the old one drained and left
        time.sleep(0.5)
        result = load.stop()
        assert result.failures == [], result.failures[:10]
        assert result.requests > 500
        assert result.connections > CLIENTS  # the clients moved to the new process
        assert proxy.stats()["server.hot_restart_epoch"] == "1"
        assert _answer(port, "/echo")[0] == 200
    finally:
        load.stop()
        leftovers = successors(proxy.pid)
        proxy.stop()
        for pid in {new_pid, *leftovers} - {None}:
            _stop_pid(pid)
