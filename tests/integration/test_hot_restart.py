"""Binary upgrade: what a new process may take over, and when the old one keeps serving (the
zero-drop run under load is in test_zero_drop.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.integration.test_zero_drop import _answer, _config
from tests.support.marks import outrider_only
from tests.support.proxy import ProxyProcess, free_port

pytestmark = outrider_only

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
