"""ConfigWatcher on real files and a real (uv)loop: each way a config file gets replaced reports
its new content once, and events that change nothing report nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time

import pytest
import uvloop

from outrider.server import config_watch
from outrider.server.config_watch import ConfigWatcher

DEADLINE = 5.0  # generous for a loaded box; a pass takes ~0.2 s per change


class Recorder:
    """An on_change that records the contents it was given; optionally raises on its first call."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[bytes] = []
        self.fail_first = fail_first

    async def __call__(self, content: bytes) -> None:
        self.calls.append(content)
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("reload failed")


async def until(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def checks(caplog) -> int:
    """How many checks ended without a change (the watcher's debug line for each)."""
    return sum("no change to report" in r.getMessage() for r in caplog.records)


@contextlib.asynccontextmanager
async def watching(path, recorder, caplog):
    """A watcher with the file's content marked loaded, once its first check has run (the watch
    is set up by then); closed at the end of the block."""
    caplog.set_level(logging.DEBUG, logger="outrider.config_watch")
    watcher = ConfigWatcher(str(path), recorder)
    with open(path, "rb") as file:
        watcher.mark_loaded(file.read())
    watcher.start()
    try:
        await until(lambda: checks(caplog) >= 1, "the first check")
        yield watcher
    finally:
        await watcher.close()


def write(path, content: bytes) -> None:
    with open(path, "wb") as file:
        file.write(content)


def test_in_place_edit_in_two_writes_reports_the_final_content_once(tmp_path, caplog):
    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"old: 1\n")
        recorder = Recorder()
        async with watching(path, recorder, caplog):
            with open(path, "r+b") as file:  # an editor saving in place, in two writes
                file.truncate(0)
                file.write(b"new: ")
                file.flush()
                await asyncio.sleep(0.03)
                file.write(b"2\n")
            await until(lambda: recorder.calls, "the callback")
            marker = checks(caplog)
            write(path, b"new: 2\n")  # same bytes again: checked, not reported
            await until(lambda: checks(caplog) > marker, "a check of the rewrite")
            assert recorder.calls == [b"new: 2\n"]

    uvloop.run(scenario())


def test_atomic_move_over_the_file(tmp_path, caplog):
    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"old\n")
        recorder = Recorder()
        async with watching(path, recorder, caplog):
            for n in (1, 2):  # twice: the watch outlives the replaced directory entry
                write(tmp_path / ".envoy.yaml.swp", b"new %d\n" % n)
                os.replace(tmp_path / ".envoy.yaml.swp", path)
                await until(lambda n=n: len(recorder.calls) == n, f"callback {n}")
            assert recorder.calls == [b"new 1\n", b"new 2\n"]

    uvloop.run(scenario())


def k8s_update(root, stamp: str, content: bytes) -> None:
    """What the kubelet's atomic writer does: new timestamped dir, ``..data`` swapped by rename,
    old dir removed."""
    old = os.readlink(root / "..data")
    (root / stamp).mkdir()
    write(root / stamp / "envoy.yaml", content)
    os.symlink(stamp, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")
    shutil.rmtree(root / old)


def test_kubernetes_configmap_data_symlink_swap(tmp_path, caplog):
    async def scenario():
        (tmp_path / "..2026_12_03_01").mkdir()
        write(tmp_path / "..2026_12_03_01" / "envoy.yaml", b"v1\n")
        os.symlink("..2026_12_03_01", tmp_path / "..data")
        os.symlink("..data/envoy.yaml", tmp_path / "envoy.yaml")
        recorder = Recorder()
        async with watching(tmp_path / "envoy.yaml", recorder, caplog):
            k8s_update(tmp_path, "..2026_12_03_02", b"v2\n")
            await until(lambda: len(recorder.calls) == 1, "the first swap")
            marker = checks(caplog)
            k8s_update(tmp_path, "..2026_12_03_03", b"v2\n")  # same content: nothing to report
            await until(lambda: checks(caplog) > marker, "a check of the identical swap")
            k8s_update(tmp_path, "..2026_12_03_04", b"v3\n")
            await until(lambda: len(recorder.calls) == 2, "the third swap")
            assert recorder.calls == [b"v2\n", b"v3\n"]

    uvloop.run(scenario())


def test_symlink_target_edited_in_place_elsewhere(tmp_path, caplog):
    async def scenario():
        (tmp_path / "conf").mkdir()
        (tmp_path / "real").mkdir()
        write(tmp_path / "real" / "envoy.yaml", b"v1\n")
        os.symlink(tmp_path / "real" / "envoy.yaml", tmp_path / "conf" / "envoy.yaml")
        recorder = Recorder()
        async with watching(tmp_path / "conf" / "envoy.yaml", recorder, caplog):
            write(tmp_path / "real" / "envoy.yaml", b"v2\n")
            await until(lambda: recorder.calls, "the callback")
            assert recorder.calls == [b"v2\n"]

    uvloop.run(scenario())


def test_touch_chmod_and_unrelated_files_report_nothing(tmp_path, caplog):
    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"same\n")
        recorder = Recorder()
        async with watching(path, recorder, caplog):
            for event in (lambda: os.utime(path), lambda: os.chmod(path, 0o600)):
                marker = checks(caplog)
                event()
                await until(lambda marker=marker: checks(caplog) > marker, "a check")
            # Another file in the directory (a log file, say) does not even wake the watcher.
            marker = checks(caplog)
            for _ in range(5):
                write(tmp_path / "other.txt", b"x")
                await asyncio.sleep(0.1)
            assert checks(caplog) == marker
            assert recorder.calls == []

    uvloop.run(scenario())


def test_delete_then_recreate(tmp_path, caplog):
    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"v1\n")
        recorder = Recorder()
        async with watching(path, recorder, caplog):
            os.remove(path)
            await asyncio.sleep(0.3)  # missing across a few retries
            write(path, b"v2\n")
            await until(lambda: recorder.calls, "the callback")
            assert recorder.calls == [b"v2\n"]
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    uvloop.run(scenario())


def test_missing_for_long_warns_once_and_keeps_watching(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(config_watch, "_MISSING_GIVE_UP", 0.5)  # 2 s in production

    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"v1\n")
        recorder = Recorder()
        async with watching(path, recorder, caplog):
            os.remove(path)
            warnings = lambda: [r for r in caplog.records if r.levelno == logging.WARNING]  # noqa: E731
            await until(warnings, "the warning")
            marker = checks(caplog)
            os.symlink(tmp_path / "nowhere", tmp_path / "..data")  # an event, still missing
            await until(lambda: checks(caplog) > marker, "a check")
            assert len(warnings()) == 1
            write(path, b"v2\n")
            await until(lambda: recorder.calls, "the callback")
            assert recorder.calls == [b"v2\n"]

    uvloop.run(scenario())


def test_burst_of_edits_reports_whole_contents_ending_with_the_last(tmp_path, caplog):
    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"v0\n" * 100)
        recorder = Recorder()
        async with watching(path, recorder, caplog):
            versions = [b"v%d\n" % n * 100 for n in range(1, 6)]
            for content in versions:
                with open(path, "r+b") as file:  # in place, half a file at a time
                    file.truncate(0)
                    file.write(content[:150])
                    file.flush()
                    await asyncio.sleep(0.005)
                    file.write(content[150:])
                await asyncio.sleep(0.02)
            await until(lambda: recorder.calls and recorder.calls[-1] == versions[-1], "v5")
            # A last write marks the end: whatever the burst reported came before it.
            write(path, b"end\n")
            await until(lambda: recorder.calls[-1] == b"end\n", "the end marker")
            burst = recorder.calls[:-1]
            assert 1 <= len(burst) <= 2
            assert burst[-1] == versions[-1]
            assert set(burst) <= set(versions)

    uvloop.run(scenario())


def test_an_exception_in_the_callback_keeps_the_watcher_alive(tmp_path, caplog):
    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"v1\n")
        recorder = Recorder(fail_first=True)
        async with watching(path, recorder, caplog):
            write(path, b"v2\n")
            await until(lambda: recorder.calls, "the failing callback")
            write(path, b"v3\n")
            await until(lambda: len(recorder.calls) == 2, "the next callback")
            assert recorder.calls == [b"v2\n", b"v3\n"]
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1 and errors[0].exc_info

    uvloop.run(scenario())


def test_calls_never_overlap_and_changes_during_one_are_coalesced(tmp_path, caplog):
    async def scenario():
        path = tmp_path / "envoy.yaml"
        write(path, b"v1\n")
        running = most = 0
        calls: list[bytes] = []
        release = asyncio.Event()

        async def slow(content: bytes) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            calls.append(content)
            await release.wait()
            running -= 1

        async with watching(path, slow, caplog):
            write(path, b"v2\n")
            await until(lambda: calls, "the first call")
            for n in (3, 4, 5):  # while v2 is being handled
                write(path, b"v%d\n" % n)
                await asyncio.sleep(0.08)
            release.set()
            await until(lambda: len(calls) == 2, "the follow-up call")
            assert calls == [b"v2\n", b"v5\n"]
            assert most == 1

    uvloop.run(scenario())


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_close_ends_promptly(tmp_path, runner):
    async def scenario():
        write(tmp_path / "envoy.yaml", b"v1\n")
        watcher = ConfigWatcher(str(tmp_path / "envoy.yaml"), Recorder())
        watcher.start()
        await asyncio.sleep(0.05)
        begun = time.monotonic()
        await watcher.close()
        assert time.monotonic() - begun < 1.0

    runner(scenario())
