"""The command line: ``--mode validate`` and ``--version``, run as a user would."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.support.marks import outrider_only
from tests.support.proxy import bootstrap, cluster, free_port

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
