"""Run a proxy (Outrider, or the real Envoy for conformance) on a generated config.

``config.bootstrap(...)`` builds an Envoy v3 bootstrap dict; ``ProxyProcess`` writes it to a
YAML file, starts the binary, and waits until the listener accepts connections.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster(name: str, ports: list[int], **extra) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": p}}}}
            for p in ports]}]},
        **extra,
    }


def bootstrap(port: int, routes: list[dict], clusters: list[dict], admin_port: int = 0,
              hcm_extra: dict | None = None, domains: list[str] | None = None,
              virtual_hosts: list[dict] | None = None, listener_extra: dict | None = None) -> dict:
    vhosts = virtual_hosts or [{"name": "vh", "domains": domains or ["*"], "routes": routes}]
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "ingress_http",
        "route_config": {"name": "rc", "virtual_hosts": vhosts},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": ROUTER_TYPE}}],
        **(hcm_extra or {}),
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port or free_port()}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
                **(listener_extra or {}),
            }],
            "clusters": clusters,
        },
    }


def integration_proxy_kind() -> str:
    """Which proxy the integration tests drive: ``outrider`` unless ``OUTRIDER_TEST_PROXY=envoy``.

    Running the integration suite against the real Envoy checks that the tests themselves
    expect Envoy's behaviour (tests of Outrider-only details skip themselves then).
    """
    return os.environ.get("OUTRIDER_TEST_PROXY", "outrider")


def soft_open_files_limit(pid: int) -> int:
    """A running process's soft limit on open files (``/proc/<pid>/limits``)."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open files limit")


def envoy_binary() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "envoy")
    return here if os.path.exists(here) else shutil.which("envoy")


# The directories of every proxy started by this test run (tests/conftest.py makes sure that
# no process running on one of them outlives the run).
STARTED_DIRS: list[str] = []


class ProxyProcess:
    def __init__(self, config: dict, kind: str = "outrider", extra_args: tuple = ()) -> None:
        self.config = config
        self.kind = kind
        listener = config["static_resources"]["listeners"][0]
        self.port = listener["address"]["socket_address"]["port_value"]
        self.admin_port = config["admin"]["address"]["socket_address"]["port_value"]
        self.dir = tempfile.mkdtemp(prefix=f"{kind}-")
        STARTED_DIRS.append(self.dir)
        self.path = os.path.join(self.dir, "envoy.yaml")
        with open(self.path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.dir, "log.txt")

    def start(self, timeout: float = 15.0) -> ProxyProcess:
        if self.kind == "outrider":
            # One process, as Envoy's --concurrency 1 below; a short drain, so that stopping
            # a proxy with a request still in flight does not wait Envoy's ten minutes.
            cmd = [sys.executable, "-m", "outrider", "-c", self.path, "-l", "warning",
                   "--concurrency", "1", "--drain-time-s", "2"]
        else:
            cmd = [envoy_binary(), "-c", self.path, "-l", "error", "--concurrency", "1",
                   "--base-id", str(self.port)]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([*cmd, *self.extra_args], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                # The listening sockets exist before the workers serve them: wait until the
                # server says it is LIVE.
                if self.admin("/ready", timeout=1.0)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not start: {self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kb(self) -> int:
        """The process's resident set size (VmRSS) in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def admin(self, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
        """One admin request; returns (status, body text)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def stats(self) -> dict[str, str]:
        """The admin ``/stats`` text as a name -> value dict."""
        _, text = self.admin("/stats")
        pairs = (line.split(": ", 1) for line in text.splitlines() if ": " in line)
        return {name: value for name, value in pairs}

    def server_info(self) -> dict:
        return json.loads(self.admin("/server_info")[1])

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
