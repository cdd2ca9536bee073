"""Suite-wide: ``make test`` leaves no process behind."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.proxy import STARTED_DIRS


def _command_lines() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            with open(f"/proc/{entry}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if args and not zombie:
            found[int(entry)] = args
    return found


def left_behind(places: list[str]) -> dict[int, str]:
    """Outrider processes started by this run and still running: main processes (and binary
    upgrade successors) on a config under one of ``places``, and their workers."""
    processes = _command_lines()
    mains = {pid for pid, args in processes.items()
             if "outrider" in args and any(p in a for a in args for p in places)}
    workers = {pid for pid, args in processes.items() if "outrider.server.worker_process" in args
               and "--parent-pid" in args
               and int(args[args.index("--parent-pid") + 1]) in mains}
    return {pid: " ".join(processes[pid]) for pid in mains | workers}


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(tmp_path_factory):
    yield
    # This run's proxies: ProxyProcess directories, and configs under pytest's tmp_path.
    left = left_behind([*STARTED_DIRS, str(tmp_path_factory.getbasetemp())])
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        pytest.fail("processes left behind (killed now):\n" +
                    "\n".join(f"  {pid}: {cmd}" for pid, cmd in left.items()))
