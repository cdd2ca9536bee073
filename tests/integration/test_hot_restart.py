"""Binary upgrade: what a new process may take over, and when the old one keeps serving (the
zero-drop run under load is in test_zero_drop.py)."""

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
import yaml

from tests.integration.test_zero_drop import _answer, _config, _stop_pid, successors
from tests.support.client import RawClient, build
from tests.support.marks import outrider_only
from tests.support.proxy import ProxyProcess, free_port

pytestmark = outrider_only


def _pid_serving_admin(proxy: ProxyProcess, deadline: float = 20.0) -> int:
    """The main process answering the admin port now (the successor, once the old is gone)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return proxy.server_info()["pid"]
        except OSError:
            assert time.monotonic() < end, proxy.log()[-3000:]
            time.sleep(0.05)


def _stop_with_successors(proxy: ProxyProcess) -> None:
    leftovers = successors(proxy.pid)
    proxy.stop()
    for pid in leftovers:
        _stop_pid(pid)

def test_a_failed_upgrade_leaves_the_old_process_serving(origins):
    port, admin_port = free_port(), free_port()
    proxy = ProxyProcess(_config(origins, port, admin_port),
                         extra_args=("--no-watch-config",)).start()
    try:
        with open(proxy.path, "a") as f:
            f.write("not_a_field: 1\n")  # the new process will refuse this config
        proxy.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 15
        while "before serving; still serving" not in proxy.log():
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.05)
        assert proxy.server_info()["pid"] == proxy.pid
        assert proxy.admin("/ready") == (200, "LIVE\n")
        assert _answer(port, "/echo")[0] == 200
    finally:
        proxy.stop()


def test_hot_restart_from_a_pid_takes_the_listeners_over(origins):
    port, admin_port = free_port(), free_port()
    config = _config(origins, port, admin_port)
    old = ProxyProcess(config, extra_args=("--concurrency", "2")).start()
    new = ProxyProcess(config, extra_args=("--hot-restart-from", str(old.pid)))
    try:
        new.start()
        assert old.proc.wait(15) == 0
        assert new.server_info()["pid"] == new.pid
        assert _answer(port, "/echo")[0] == 200
        assert "took over 1 listening address(es) from pid" in new.log()
    finally:
        new.stop()
        old.stop()


# A process of another user connects to the handover socket and asks for the listeners.
_INTRUDER = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect("\\0outrider.hot_restart.0." + sys.argv[1])
try:
    s.sendall(b"HELLO\\n")
    data, fds, _, _ = socket.recv_fds(s, 65536, 64)
except OSError:
    data, fds = b"", []
print(len(fds), len(data))
"""


# The project's interpreter may live where another user cannot read it: the system's will do.
_SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


@pytest.mark.skipif(os.getuid() != 0 or _SYSTEM_PYTHON is None,
                    reason="needs root and a system python3 to run a process as another user")
def test_another_user_cannot_take_the_listening_sockets(origins):
    proxy = ProxyProcess(_config(origins, free_port(), free_port())).start()
    try:
        result = subprocess.run([_SYSTEM_PYTHON, "-c", _INTRUDER, str(proxy.pid)], user=65534,
                                capture_output=True, text=True, timeout=10)
        assert result.stdout.split() == ["0", "0"], result
        deadline = time.monotonic() + 5
        while "refused a successor run by uid 65534" not in proxy.log():
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.05)
        assert proxy.admin("/ready") == (200, "LIVE\n")
        assert _answer(proxy.port, "/echo")[0] == 200
    finally:
        proxy.stop()


# A process of another user holds the name a successor would connect to (its own pid's).
_SQUATTER = """
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\\0outrider.hot_restart.0.%d" % os.getpid())
s.listen(4)
print("ready", flush=True)
time.sleep(30)
"""


@pytest.mark.skipif(os.getuid() != 0 or _SYSTEM_PYTHON is None,
                    reason="needs root and a system python3 to run a process as another user")
def test_a_successor_takes_sockets_only_from_the_process_it_was_told_to_replace(origins):
    squatter = subprocess.Popen([_SYSTEM_PYTHON, "-c", _SQUATTER], user=65534,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == "ready"
        proxy = ProxyProcess(_config(origins, free_port(), free_port()),
                             extra_args=("--hot-restart-from", str(squatter.pid)))
        try:
            with pytest.raises(RuntimeError, match="exited"):
                proxy.start()
            assert proxy.proc.wait(5) == 1
            assert (f"the socket is held by pid {squatter.pid} (uid 65534), not by Outrider's "
                    f"pid {squatter.pid} of our user") in proxy.log()
        finally:
            proxy.stop()
    finally:
        squatter.kill()
        squatter.wait()


def _listeners(config: dict, ports: list[int]) -> dict:
    """``config`` with one listener per port (copies of its first)."""
    first = config["static_resources"]["listeners"][0]
    listeners = []
    for i, port in enumerate(ports):
        listener = copy.deepcopy(first)
        listener["name"] = f"l{i}"
        listener["address"]["socket_address"]["port_value"] = port
        listeners.append(listener)
    config["static_resources"]["listeners"] = listeners
    return config


def test_an_upgrade_to_a_config_without_a_listener_or_with_another_admin_address(origins):
    kept, dropped, admin, new_admin = (free_port() for _ in range(4))
    config = _listeners(_config(origins, kept, admin), [kept, dropped])
    proxy = ProxyProcess(config, extra_args=("--concurrency", "2", "--no-watch-config")).start()
    try:
        # The new process reads the same path: give it the config without ``dropped``.
        newer = _listeners(_config(origins, kept, new_admin), [kept])
        with open(proxy.path, "w") as f:
            yaml.safe_dump(newer, f, sort_keys=False)
        proxy.admin_port = admin
        proxy.proc.send_signal(signal.SIGUSR2)
        assert proxy.proc.wait(30) == 0, proxy.log()
        proxy.admin_port = new_admin
        assert _pid_serving_admin(proxy) != proxy.pid
        assert _answer(kept, "/echo")[0] == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", dropped), timeout=2).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", admin), timeout=2).close()
    finally:
        _stop_with_successors(proxy)


def test_an_upgrade_with_more_sockets_than_one_message_carries(origins):
    ports: set[int] = set()
    while len(ports) < 127:  # 127 listeners x 2 workers + the admin socket > 253 descriptors
        ports.add(free_port())
    admin = free_port()
    config = _listeners(_config(origins, min(ports), admin), sorted(ports))
    proxy = ProxyProcess(config, extra_args=("--concurrency", "2", "--no-watch-config")).start()
    try:
        proxy.proc.send_signal(signal.SIGUSR2)
        assert proxy.proc.wait(60) == 0, proxy.log()[-3000:]
        assert _pid_serving_admin(proxy) != proxy.pid
        assert "took over 127 listening address(es)" in proxy.log()
        assert [_answer(port, "/echo")[0] for port in sorted(ports)[::20]] == [200] * 7
    finally:
        _stop_with_successors(proxy)


def test_a_draining_old_process_starts_no_second_successor_and_hurries_on_sigterm(origins):
    """After a handover, the old process drains: it hands its sockets to nobody else (a
    second generation would bind next to the first), and a SIGTERM makes it close its
    remaining keep-alive connections rather than wait out the drain time."""
    port, admin = free_port(), free_port()
    proxy = ProxyProcess(_config(origins, port, admin),
                         extra_args=("--drain-time-s", "60", "--no-watch-config")).start()
    client = RawClient(port)
    try:
        assert client.exchange(build("GET", "/echo")).status == 200  # kept open, idle
        old_pid = proxy.pid
        proxy.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 20
        while "the new process serves; draining" not in proxy.log():
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.05)
        assert proxy.proc.poll() is None  # the idle connection keeps it draining
        proxy.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while "not starting a successor: this process is draining" not in proxy.log():
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.05)
        third = subprocess.run(
            [sys.executable, "-m", "outrider", "-c", proxy.path, "--hot-restart-from",
             str(old_pid), "--concurrency", "1"], capture_output=True, text=True, timeout=30)
        assert third.returncode == 1 and "no Outrider to take over from" in third.stderr
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(10) == 0
        assert time.monotonic() - started < 3
        assert client.is_closed()
    finally:
        client.close()
        _stop_with_successors(proxy)
