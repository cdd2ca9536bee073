"""Suite-wide: ``make test`` leaves no process behind."""

from __future__ import annotations

import os
import signal

import pytest


def _our_processes() -> dict[int, str]:
    """Outrider processes started by this test run (main processes, workers, successors of a
    binary upgrade): descendants of this process or orphans of it, recognised by command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or "-m" not in args:
            continue
        module = args[args.index("-m") + 1] if args.index("-m") + 1 < len(args) else ""
        if module in ("outrider", "outrider.server.worker_process") and any(
                a.startswith(("/tmp/outrider-", "/tmp/pytest-")) for a in args):
            found[int(entry)] = " ".join(args)
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    before = set(_our_processes())  # not ours to judge: another run on this machine
    yield
    left = {pid: cmd for pid, cmd in _our_processes().items() if pid not in before}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        pytest.fail("processes left behind (killed now):\n" +
                    "\n".join(f"  {pid}: {cmd}" for pid, cmd in left.items()))
