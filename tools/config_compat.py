"""Validate a directory of Envoy bootstraps with both Envoy and Outrider, and compare.

    python tools/config_compat.py DIR [--envoy PATH] [--allow-unimplemented]

Every ``*.yaml``, ``*.yml`` and ``*.json`` file under DIR (recursively) that looks like an Envoy
bootstrap (a mapping whose top-level keys are Bootstrap fields; docker-compose files, templates
and other YAML are skipped and listed) is checked with ``envoy --mode validate`` and ``outrider
--mode validate``. The report groups the files: accepted by both, refused by Outrider only (with
Outrider's first reason), refused by both, refused by Envoy only; then the counts.

The Envoy binary is ``--envoy``, else the one ``make envoy`` installs next to this Python, else
``envoy`` on PATH. Each file Envoy accepts and Outrider refuses is checked once more with
``--allow-unimplemented``, and marked when it loads then. Only the standard library and
Outrider's own dependencies (PyYAML, xds-protos) are used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2

EXTENSIONS = (".yaml", ".yml", ".json")
_BOOTSTRAP_KEYS = frozenset(
    name for field in bootstrap_pb2.Bootstrap.DESCRIPTOR.fields
    for name in (field.name, field.json_name))


@dataclass
class Result:
    path: str
    envoy_ok: bool
    envoy_reason: str
    outrider_ok: bool
    outrider_reason: str
    allowed_ok: bool | None = None  # with --allow-unimplemented, when checked


def find_envoy(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    here = os.path.join(os.path.dirname(sys.executable), "envoy")
    return here if os.access(here, os.X_OK) else shutil.which("envoy")


def bootstrap_kind(path: str) -> str:
    """"bootstrap", or why the file is skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        return f"unreadable ({error})"
    if "{{" in text and "}}" in text:
        return "a template"
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        return "not parseable as YAML/JSON"
    if not isinstance(data, dict) or not data:
        return "not a mapping"
    if "services" in data or not set(data) <= _BOOTSTRAP_KEYS:
        return "not an Envoy bootstrap"
    return "bootstrap"


def first_line(text: str, pattern: str) -> str:
    for line in text.splitlines():
        if re.search(pattern, line):
            return line.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_envoy(envoy: str, path: str) -> tuple[bool, str]:
    result = subprocess.run([envoy, "--mode", "validate", "-c", path, "-l", "critical"],
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode == 0:
        return True, ""
    line = first_line(result.stderr + result.stdout, "error initializing configuration")
    return False, re.sub(r"^\[[^\]]*\]\[\d+\]\[\w+\]\[\w+\] \[[^\]]*\] ", "", line)


def run_outrider(path: str, allow_unimplemented: bool) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "outrider", "--mode", "validate", "-c", path]
    if allow_unimplemented:
        cmd.append("--allow-unimplemented")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode == 0:
        return True, ""
    line = first_line(result.stderr, r"\berror: ")
    return False, line.replace(path, os.path.basename(path), 1)


def collect(directory: str) -> tuple[list[str], list[tuple[str, str]]]:
    found, skipped = [], []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(EXTENSIONS):
                continue
            path = os.path.join(root, name)
            kind = bootstrap_kind(path)
            if kind == "bootstrap":
                found.append(path)
            else:
                skipped.append((path, kind))
    return found, skipped


def report(results: list[Result], skipped: list[tuple[str, str]], base: str) -> str:
    def rel(path: str) -> str:
        return os.path.relpath(path, base)

    groups = {
        "accepted by both": [r for r in results if r.envoy_ok and r.outrider_ok],
        "refused by Outrider only": [r for r in results if r.envoy_ok and not r.outrider_ok],
        "refused by both": [r for r in results if not r.envoy_ok and not r.outrider_ok],
        "refused by Envoy only": [r for r in results if not r.envoy_ok and r.outrider_ok],
    }
    out = []
    for title, members in groups.items():
        out.append(f"## {title} ({len(members)})")
        for r in members:
            if title == "refused by Outrider only":
                loads = " [loads with --allow-unimplemented]" if r.allowed_ok else ""
                out.append(f"- {rel(r.path)}: {r.outrider_reason}{loads}")
            elif title == "refused by both":
                out.append(f"- {rel(r.path)}: Envoy: {r.envoy_reason[:200]}")
                out.append(f"  Outrider: {r.outrider_reason}")
            elif title == "refused by Envoy only":
                out.append(f"- {rel(r.path)}: {r.envoy_reason[:200]}")
            else:
                out.append(f"- {rel(r.path)}")
        out.append("")
    if skipped:
        out.append(f"## skipped, not bootstraps ({len(skipped)})")
        out.extend(f"- {rel(path)}: {why}" for path, why in skipped)
        out.append("")
    envoy_ok = sum(r.envoy_ok for r in results)
    allowed = sum(bool(r.allowed_ok) for r in results)
    out.append(f"{len(results)} bootstraps: Envoy accepts {envoy_ok}, Outrider accepts "
               f"{sum(r.outrider_ok for r in results)} (and {allowed} more of Envoy's with "
               "--allow-unimplemented); "
               + ", ".join(f"{title} {len(members)}" for title, members in groups.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--envoy", help="the Envoy binary (default: next to this Python, or PATH)")
    parser.add_argument("--allow-unimplemented", action="store_true",
                        help="pass --allow-unimplemented to Outrider")
    args = parser.parse_args(argv)
    envoy = find_envoy(args.envoy)
    if envoy is None:
        print("config_compat: no envoy binary (run `make envoy` or pass --envoy)", file=sys.stderr)
        return 2
    files, skipped = collect(args.directory)
    results = []
    for path in files:
        envoy_ok, envoy_reason = run_envoy(envoy, path)
        outrider_ok, outrider_reason = run_outrider(path, args.allow_unimplemented)
        result = Result(path, envoy_ok, envoy_reason, outrider_ok, outrider_reason)
        if envoy_ok and not outrider_ok and not args.allow_unimplemented:
            result.allowed_ok = run_outrider(path, True)[0]
        results.append(result)
    print(report(results, skipped, args.directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
