"""Log lines in Envoy's format, and ``--log-format`` patterns (spdlog flags)."""

from __future__ import annotations

import logging
import re
import sys

import pytest

from outrider.server.log_format import DEFAULT_FORMAT, EnvoyFormatter, UnknownFlag, compile_pattern


def record(name: str = "outrider", level: int = logging.INFO, msg: str = "loading %d cluster(s)",
           args: tuple = (2,), exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 42, msg, args, exc_info, func="f")


def test_the_default_line_has_envoys_shape():
    line = EnvoyFormatter(DEFAULT_FORMAT).format(record())
    # [2026-12-03 12:42:38.947][8101][info][main] [tests/unit/server/test_log_format.py:42] ...
    assert re.fullmatch(
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\d+\]\[info\]\[main\] "
        r"\[tests/unit/server/test_log_format\.py:42\] loading 2 cluster\(s\)", line), line


@pytest.mark.parametrize(("name", "shown"), [
    ("outrider", "main"), ("outrider.http", "http"), ("outrider.pool", "pool"),
    ("asyncio", "asyncio")])
def test_logger_names_are_envoys_short_ones(name, shown):
    assert EnvoyFormatter("%n").format(record(name)) == shown


@pytest.mark.parametrize(("level", "long", "short"), [
    (logging.DEBUG, "debug", "D"), (logging.INFO, "info", "I"),
    (logging.WARNING, "warning", "W"), (logging.ERROR, "error", "E"),
    (logging.CRITICAL, "critical", "C")])
def test_levels_are_spelled_as_envoy_spells_them(level, long, short):
    assert EnvoyFormatter("%l %L").format(record(level=level)) == f"{long} {short}"


def test_a_custom_pattern_with_literals_and_a_percent_sign():
    line = EnvoyFormatter("100%% %s:%# %! %v").format(record())
    assert line == "100% test_log_format.py:42 f loading 2 cluster(s)"


def test_escaped_message_stays_on_one_line():
    assert EnvoyFormatter("%j").format(record(msg="a\nb", args=())) == "a\\nb"


def test_an_exception_follows_its_line():
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    text = EnvoyFormatter("%l %v").format(record(level=logging.ERROR, msg="failed", args=(),
                                                 exc_info=exc_info))
    first, *rest = text.splitlines()
    assert first == "error failed"
    assert rest[-1] == "ValueError: boom"


def test_an_unknown_flag_is_refused_at_startup():
    with pytest.raises(UnknownFlag, match="'%k'"):
        compile_pattern("[%k] %v")
