"""Watches the ``-c`` config file and reports its new bytes when they change.

The DIRECTORY holding the config path is watched, not the file. Editors save by writing a temp
file and renaming it over the config, and a Kubernetes ConfigMap update renames a new ``..data``
symlink over the old one; both replace the directory entry, and an inotify watch on the file
itself would follow the old inode and never fire again. When the path is a symlink, the
directory of its resolved target is watched too (an edit in place there changes nothing in the
link's directory); after each batch of events the targets are resolved again and the watch is
rebuilt if they moved (a ConfigMap swap deletes the old target directory).

Every event in those directories only means "maybe changed". The file is then read through the
path, twice, ``settle`` seconds apart, and reported only when both reads agree and differ from
the last content reported or marked loaded: a touch, a chmod, an unrelated file or a swap to the
same bytes reports nothing, and a file still being written is never reported half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

import watchfiles

log = logging.getLogger("outrider.config_watch")
# watchfiles logs every batch of events at INFO, unrelated files in the directory included.
logging.getLogger("watchfiles").setLevel(logging.WARNING)

# watchfiles yields once no event came for _STEP_MS (an editor's writes and renames arrive as one
# batch), and at the latest _DEBOUNCE_MS after the first event of a batch.
_STEP_MS = 50
_DEBOUNCE_MS = 300
# A file missing for this long (not just between a delete and a rename) is worth a warning.
_MISSING_GIVE_UP = 2.0
# Pause before setting up the watch again after it failed (its directory vanished, say).
_REWATCH_DELAY = 1.0


class ConfigWatcher:
    """Calls ``on_change(content)`` when the file at ``path`` has new, stable content.

    Contract: call ``mark_loaded`` with the bytes the owner loaded before ``start()``;
    ``on_change`` is then called only with content that differs from the last content passed to
    ``on_change`` or ``mark_loaded`` (content whose ``on_change`` raised counts as passed: it is
    not offered again until the file changes). Calls never overlap; changes arriving during one
    are checked once it returns. Exceptions from ``on_change`` are logged and the watch goes on.
    """

    def __init__(self, path: str, on_change: Callable[[bytes], Awaitable[None]], *,
                 settle: float = 0.1) -> None:
        self.path = os.path.abspath(path)
        self._on_change = on_change
        self._settle = settle
        self._loaded: bytes | None = None
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._watch_task: asyncio.Task | None = None
        self._check_task: asyncio.Task | None = None
        self._missing_warned = False

    def mark_loaded(self, content: bytes) -> None:
        """Records the content the owner has loaded; events that leave it as is report nothing."""
        self._loaded = content

    def start(self) -> None:
        """Starts watching on the running loop."""
        loop = asyncio.get_running_loop()
        self._watch_task = loop.create_task(self._watch())
        self._check_task = loop.create_task(self._check_loop())

    def stop(self) -> None:
        """Asks the watch to end (within ~50 ms) and cancels a check or ``on_change`` under way."""
        self._stopping.set()
        if self._check_task is not None:
            self._check_task.cancel()

    async def close(self) -> None:
        """Stops and waits until the watcher's tasks are done."""
        self.stop()
        tasks = [task for task in (self._watch_task, self._check_task) if task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _watch_dirs(self) -> tuple[str, ...]:
        dirs = [os.path.dirname(self.path)]
        if os.path.islink(self.path):
            target_dir = os.path.dirname(os.path.realpath(self.path))
            if target_dir != dirs[0] and os.path.isdir(target_dir):
                dirs.append(target_dir)
        return tuple(dirs)

    def _relevant(self, _change, path: str) -> bool:
        """Events that may change what the config path reads: the file's own name (an editor
        renames its temporary file to it), the link's target, a ConfigMap's ``..``-prefixed
        entries, a watched directory itself. Not others: a log file written next to the config
        would otherwise wake the watcher at every line. (watchfiles' default filter is not used:
        it drops the editors' swap and backup names, which is right, but so does this.)"""
        name = os.path.basename(path)
        return (name == os.path.basename(self.path) or name.startswith("..")
                or path == os.path.realpath(self.path) or path in self._watch_dirs())

    async def _watch(self) -> None:
        failing = False
        while not self._stopping.is_set():
            dirs = self._watch_dirs()
            changes = watchfiles.awatch(
                *dirs, watch_filter=self._relevant, recursive=False, debounce=_DEBOUNCE_MS,
                step=_STEP_MS,
                stop_event=self._stopping)
            try:
                async with contextlib.aclosing(changes):
                    # A change made while no watch was set up (before start, or while rebuilding)
                    # has no event: check once. The check runs after this task reaches its first
                    # await, by which time awatch has set up its inotify watches.
                    if self._loaded is not None:
                        self._dirty.set()
                    async for batch in changes:
                        failing = False
                        self._dirty.set()
                        # Rebuild when a link now points elsewhere or a watched directory itself
                        # went away (its inotify watch went with it).
                        if self._watch_dirs() != dirs or any(p in dirs for _, p in batch):
                            break
            except Exception as error:
                if not failing:  # a missing directory needs no traceback; anything else might
                    log.warning("cannot watch %s for config changes (%s); retrying",
                                ", ".join(dirs), error, exc_info=not isinstance(error, OSError))
                failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), _REWATCH_DELAY)

    async def _check_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            content = await self._read_stable()
            if content is None or content == self._loaded:
                log.debug("config %s: checked, no change to report", self.path)
                continue
            self._loaded = content
            log.info("config %s changed (%d bytes)", self.path, len(content))
            try:
                await self._on_change(content)
            except Exception:
                log.exception("config %s: handling the change failed", self.path)

    async def _read_stable(self) -> bytes | None:
        """The file's content once two reads ``settle`` apart agree; None if it stays unreadable."""
        give_up = asyncio.get_running_loop().time() + _MISSING_GIVE_UP
        previous: bytes | None = None
        while True:
            try:
                content = await asyncio.to_thread(_read, self.path)
            except OSError as error:
                # Momentarily missing between a delete and a rename: try again shortly.
                if asyncio.get_running_loop().time() >= give_up:
                    if not self._missing_warned:
                        log.warning("config %s cannot be read (%s); still watching",
                                    self.path, error.strerror or error)
                    self._missing_warned = True
                    return None
                previous = None
            else:
                self._missing_warned = False
                if content == previous:
                    return content
                previous = content
            await asyncio.sleep(self._settle)


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()
