"""The command line: ``--mode validate`` and ``--version``, run as a user would."""

from __future__ import annotations

import json
import re
import resource
import socket
import subprocess
import sys
import time

import pytest
import yaml

from tests.support.marks import outrider_only
from tests.support.proxy import bootstrap, cluster, free_port, soft_open_files_limit

pytestmark = outrider_only


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "outrider", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def good_config() -> dict:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]
    return bootstrap(free_port(), routes, [cluster("a", [free_port()])])


def write(tmp_path, config: dict, name: str = "envoy.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def line_of(path: str, text: str) -> int:
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if text in line:
                return number
    raise AssertionError(f"{text!r} not in {path}")


def test_validate_good_config(tmp_path, good_config):
    path = write(tmp_path, good_config)
    result = run("--mode", "validate", "-c", path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_validate_good_json_config(tmp_path, good_config):
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(good_config))
    result = run("--mode", "validate", "-c", str(path))
    assert result.returncode == 0, result.stderr


def test_validate_typo_names_field_path_and_line(tmp_path, good_config):
    good_config["static_resources"]["clusters"][0]["lb_polcy"] = "ROUND_ROBIN"
    path = write(tmp_path, good_config)
    result = run("--mode", "validate", "-c", path)
    assert result.returncode == 1
    assert "lb_polcy" in result.stderr
    assert "static_resources.clusters[0]" in result.stderr
    assert re.search(rf"\b{line_of(path, 'lb_polcy')}\b", result.stderr), result.stderr


def test_validate_unknown_cluster(tmp_path, good_config):
    vhosts = (good_config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
              ["typed_config"]["route_config"]["virtual_hosts"])
    vhosts[0]["routes"][0]["route"]["cluster"] = "nope"
    path = write(tmp_path, good_config)
    result = run("--mode", "validate", "-c", path)
    assert result.returncode == 1
    assert "routes[0].route.cluster" in result.stderr and "nope" in result.stderr


def test_validate_missing_router_filter(tmp_path, good_config):
    hcm = good_config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    hcm["http_filters"] = []
    result = run("--mode", "validate", "-c", write(tmp_path, good_config))
    assert result.returncode == 1
    assert "router" in result.stderr


def test_serve_refuses_an_invalid_config(tmp_path, good_config):
    good_config["static_resources"]["clusters"][0]["lb_polcy"] = "ROUND_ROBIN"
    result = run("-c", write(tmp_path, good_config))
    assert result.returncode == 1
    assert "lb_polcy" in result.stderr


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert re.search(r"outrider version: \d+\.\d+", result.stdout + result.stderr)


def test_serve_raises_its_open_files_limit_to_the_hard_limit(tmp_path, good_config):
    # At the usual soft limit of 1,024 a proxy runs out of descriptors near 500 concurrent
    # proxied requests; it lifts its soft limit to what the hard limit allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("hard open files limit too low to observe a raise")
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    port = good_config["static_resources"]["listeners"][0]["address"]["socket_address"][
        "port_value"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "outrider", "-c", write(tmp_path, good_config), "-l", "error"],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "proxy did not start"
                time.sleep(0.05)
        assert soft_open_files_limit(proc.pid) == expected
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- issue 8: what a new user sees ---------------------------------------------------------------


def test_validate_reports_every_error_at_once_in_one_format(tmp_path, good_config):
    cluster_config = good_config["static_resources"]["clusters"][0]
    cluster_config["lb_polcy"] = "ROUND_ROBIN"
    cluster_config["type"] = "STATC"
    good_config["static_resources"]["listeners"][0]["address"]["socket_address"][
        "port_value"] = 70000
    path = write(tmp_path, good_config)
    result = run("--mode", "validate", "-c", path)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(problems) == 3, result.stderr
    for line, needle in zip(problems, ("70000", "STATC", "lb_polcy"), strict=True):
        assert line.startswith(f"{path}:{line_of(path, needle)}: error: static_resources."), line
    assert "3 error(s)" in result.stderr


def test_validate_accepts_enums_in_any_case(tmp_path, good_config):
    good_config["static_resources"]["clusters"][0]["type"] = "static"
    good_config["static_resources"]["clusters"][0]["lb_policy"] = "Round_Robin"
    result = run("--mode", "validate", "-c", write(tmp_path, good_config))
    assert result.returncode == 0, result.stderr


def test_validate_refuses_an_empty_file(tmp_path):
    path = tmp_path / "envoy.yaml"
    path.write_text("")
    result = run("--mode", "validate", "-c", str(path))
    assert result.returncode == 1
    assert f"{path}: error: the configuration is empty" in result.stderr


def _tls_listener(config: dict) -> dict:
    config["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls."
                                  "v3.DownstreamTlsContext"}}
    return config


def test_allow_unimplemented_does_not_serve_tls_as_plaintext(tmp_path, good_config):
    path = write(tmp_path, _tls_listener(good_config))
    for mode in ("validate", "serve"):
        result = run("--mode", mode, "--allow-unimplemented", "-c", path)
        assert result.returncode == 1
        assert "transport_socket: " in result.stderr
        assert "refused even with --allow-unimplemented" in result.stderr


def test_allow_unimplemented_does_not_serve_a_restricted_filter_chain_to_all(tmp_path,
                                                                            good_config):
    # Outrider serves the first chain to every client: a chain for 10/8 only would serve all.
    chain = good_config["static_resources"]["listeners"][0]["filter_chains"][0]
    chain["filter_chain_match"] = {
        "source_prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}]}
    path = write(tmp_path, good_config)
    for mode in ("validate", "serve"):
        result = run("--mode", mode, "--allow-unimplemented", "-c", path)
        assert result.returncode == 1
        assert "filter_chains[0].filter_chain_match: " in result.stderr
        assert "refused even with --allow-unimplemented" in result.stderr


def test_allow_unimplemented_skips_a_tcp_proxy_listener_and_serves_the_others(tmp_path):
    port, tcp_port = free_port(), free_port()
    routes = [{"match": {"prefix": "/"},
               "direct_response": {"status": 200, "body": {"inline_string": "served"}}}]
    config = bootstrap(port, routes, [cluster("a", [free_port()])])
    config["static_resources"]["listeners"].insert(0, {
        "name": "tcp",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": tcp_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network."
                                      "tcp_proxy.v3.TcpProxy",
                             "stat_prefix": "tcp", "cluster": "a"}}]}]})
    path = write(tmp_path, config)
    refused = run("--mode", "validate", "-c", path)
    assert refused.returncode == 1 and "TcpProxy" in refused.stderr
    checked = run("--mode", "validate", "--allow-unimplemented", "-c", path)
    assert checked.returncode == 0, checked.stderr
    assert "warning: static_resources.listeners[0]: listener 'tcp' is skipped" in checked.stderr
    proc = subprocess.Popen([sys.executable, "-m", "outrider", "-c", path,
                             "--allow-unimplemented", "-l", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "proxy did not start"
                time.sleep(0.05)
        with conn:
            conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"served")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", tcp_port), timeout=1).close()
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert "listener 'tcp' is skipped" in err
    assert "Traceback" not in err
