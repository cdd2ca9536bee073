"""Reload tests: an Outrider whose ``-c`` file the test rewrites while it serves.

``ReloadingProxy`` is a ``ProxyProcess`` that can also run on a config file the test laid out
itself (a Kubernetes ConfigMap's symlinks, a file with ``${VAR}`` references), rewrite that file
in place or by a move, and read what the reloads logged and counted. ``fetch`` asks one question
on a fresh connection; ``wait_for`` / ``timed_wait`` poll with a deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import yaml

from tests.support.client import RawClient, Response, build
from tests.support.proxy import ProxyProcess

T = TypeVar("T")

# Where no promise is made, a loaded two-core box gets this long.
DEADLINE = 10.0


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def write_in_place(path: str, text: str) -> None:
    """An edit in place: the same inode truncated and rewritten (``open(path, "w")``)."""
    with open(path, "w") as f:
        f.write(text)


def write_by_move(path: str, text: str) -> None:
    """An editor's save: a new file in the same directory renamed over the old one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def fetch(port: int, path: str = "/", timeout: float = 5.0) -> Response:
    """One GET on a fresh connection, its complete answer."""
    client = RawClient(port, timeout)
    try:
        return client.exchange(build("GET", path), require_complete=True)
    finally:
        client.close()


def timed_wait(probe: Callable[[], T], timeout: float = DEADLINE,
               what: str = "condition") -> tuple[T, float]:
    """Poll ``probe`` until it returns something truthy; that value and the seconds it took."""
    start = time.monotonic()
    last: T | None = None
    while True:
        last = probe()
        elapsed = time.monotonic() - start
        if last:
            return last, elapsed
        if elapsed > timeout:
            raise AssertionError(f"{what}: not within {timeout:.1f}s (last: {last!r})")
        time.sleep(0.02)


def wait_for(probe: Callable[[], T], timeout: float = DEADLINE, what: str = "condition") -> T:
    return timed_wait(probe, timeout, what)[0]


class ReloadingProxy(ProxyProcess):
    """An Outrider on ``path`` (a config the caller wrote; by default ``config`` is written to a
    directory of its own, next to the log).

    ``config`` tells where the first listener and the admin listen; a caller whose file spells
    them differently (``${PORT}``) sets ``port`` / ``admin_port`` before ``start()``.
    """

    def __init__(self, config: dict, path: str | None = None, extra_args: tuple = ()) -> None:
        super().__init__(config, "outrider", extra_args)
        if path is not None:
            os.remove(self.path)
            self.path = path

    def edit(self, config: dict) -> None:
        write_in_place(self.path, dump(config))

    def stat(self, name: str) -> int:
        return int(self.stats().get(name, "0"))

    def reloads(self) -> tuple[int, int]:
        """(``server.config_reload_total``, ``server.config_reload_failed``)."""
        stats = self.stats()
        return (int(stats.get("server.config_reload_total", "0")),
                int(stats.get("server.config_reload_failed", "0")))

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.log().splitlines() if text in line]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = DEADLINE) -> list[str]:
        """The log lines holding ``text``, once there are ``count`` of them."""
        def enough() -> list[str]:
            if self.proc.poll() is not None:
                raise AssertionError(f"outrider exited ({self.proc.returncode}):\n{self.log()}")
            lines = self.log_lines(text)
            return lines if len(lines) >= count else []

        try:
            return wait_for(enough, timeout, f"{count} log line(s) with {text!r}")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- log ---\n{self.log()[-4000:]}") from None
