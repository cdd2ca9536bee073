"""What an operator sees: log lines in Envoy's format, per-request debug lines with connection and
stream ids, startup and shutdown lines, signals that must not kill the proxy, start failures."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.client import build, request
from tests.support.marks import outrider_only
from tests.support.origin import Origin
from tests.support.proxy import ProxyProcess, bootstrap, cluster, free_port

pytestmark = outrider_only

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\d+\]\[(\w+)\]\[([\w.]+)\] "
                  r"\[[\w/.]+:\d+\] (.*)$")


@pytest.fixture
def origin():
    server = Origin("a").start()
    yield server
    server.stop()


def config_for(*ports: int) -> dict:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]
    return bootstrap(free_port(), routes, [cluster("a", list(ports))])


def wait_for(proxy: ProxyProcess, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = proxy.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged:\n{proxy.log()}")


def test_info_lines_have_envoys_format_and_say_what_started(origin):
    with ProxyProcess(config_for(origin.port), extra_args=("-l", "info")) as proxy:
        log = wait_for(proxy, "starting main dispatch loop")
    lines = [LINE.match(line) for line in log.splitlines()]
    assert all(lines), log
    messages = [m.group(3) for m in lines]
    assert "loading 1 cluster(s)" in messages
    assert f"listener 'ingress' listening on 127.0.0.1:{proxy.port}" in messages
    assert f"admin address: 127.0.0.1:{proxy.admin_port}" in messages


def test_debug_has_one_line_per_request_with_connection_and_stream_ids(origin):
    with ProxyProcess(config_for(origin.port), extra_args=("-l", "debug")) as proxy:
        for path in ("/first", "/second"):
            response, _ = request(proxy.port, build("GET", path))
            assert response.status == 200
        log = wait_for(proxy, "GET /second")
    done = re.findall(r"\[C(\d+)\]\[S(\d+)\] GET (/\w+) \(host example\.com\) -> 200, flags -, "
                      rf"upstream 127\.0\.0\.1:{origin.port}, [\d.]+ ms", log)
    assert [path for _, _, path in done] == ["/first", "/second"], log
    assert done[0][1] != done[1][1]  # a stream id each


def test_debug_names_an_upstream_failure_with_its_stream(origin):
    dead = free_port()
    with ProxyProcess(config_for(dead), extra_args=("-l", "debug")) as proxy:
        response, _ = request(proxy.port, build("GET", "/"))
        assert response.status == 503
        log = wait_for(proxy, "upstream reset")
    assert re.search(rf"\[C\d+\]\[S\d+\] upstream reset: remote connection failure \(UF\), "
                     rf"host 127\.0\.0\.1:{dead}", log), log
    assert re.search(rf"\[C\d+\] connection to 127\.0\.0\.1:{dead}: remote connection failure",
                     log), log


def test_no_request_lines_at_info(origin):
    with ProxyProcess(config_for(origin.port), extra_args=("-l", "info")) as proxy:
        response, _ = request(proxy.port, build("GET", "/quiet"))
        assert response.status == 200
        log = proxy.log()
    assert "/quiet" not in log


@pytest.mark.parametrize("sig, logged", [(signal.SIGHUP, "caught SIGHUP: reloading the config"),
                                         (signal.SIGUSR1, "caught SIGUSR1: ignored")])
def test_sighup_and_sigusr1_are_logged_and_do_not_kill(origin, sig, logged):
    with ProxyProcess(config_for(origin.port), extra_args=("-l", "info")) as proxy:
        wait_for(proxy, "starting main dispatch loop")
        proxy.proc.send_signal(sig)
        wait_for(proxy, logged)
        assert proxy.proc.poll() is None
        response, _ = request(proxy.port, build("GET", "/"))
        assert response.status == 200


def test_sigterm_logs_the_shutdown_and_exits_cleanly(origin):
    proxy = ProxyProcess(config_for(origin.port), extra_args=("-l", "info")).start()
    try:
        wait_for(proxy, "starting main dispatch loop")
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(10) == 0
        log = proxy.log()
    finally:
        proxy.stop()
    messages = [m.group(3) for m in map(LINE.match, log.splitlines()) if m]
    tail = messages[messages.index("caught SIGTERM"):]
    assert tail == ["caught SIGTERM", "draining: immediate over 2s", "shutting down server instance",
                    "exiting"], log


def test_a_port_in_use_names_the_listener_and_the_address(tmp_path, origin):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    config = config_for(origin.port)
    port = busy.getsockname()[1]
    config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
    proxy = ProxyProcess(config)
    try:
        result = subprocess.run([sys.executable, "-m", "outrider", "-c", proxy.path],
                                capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
        proxy.stop()
    assert result.returncode == 1
    assert (f"cannot bind listener 'ingress' to 127.0.0.1:{port}: Address already in use"
            in result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_log_format_and_log_path(tmp_path, origin):
    log_file = tmp_path / "outrider.log"
    args = ("-l", "info", "--log-format", "%l|%n|%v", "--log-path", str(log_file))
    with ProxyProcess(config_for(origin.port), extra_args=args):
        deadline = time.monotonic() + 5
        while "starting main dispatch loop" not in (log_file.read_text()
                                                    if log_file.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert "info|main|loading 1 cluster(s)" in log_file.read_text().splitlines()


def test_an_unknown_log_format_flag_is_refused():
    result = subprocess.run([sys.executable, "-m", "outrider", "--log-format", "%k", "-c", "x"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "unknown log format flag '%k'" in result.stderr
