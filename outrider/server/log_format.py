"""Log lines in Envoy's format, and Envoy's ``--log-format`` patterns.

Envoy logs through spdlog with the pattern ``[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v``:
``[2026-12-03 12:42:38.947][8101][info][config] [source/server/configuration_impl.cc:138]
loading 1 cluster(s)``. Outrider's lines have the same shape, so the log parsers and alerts
written for Envoy read them unchanged: ``%n`` is the logger's name below ``outrider``
(``main`` for the top one), ``%t`` the thread id (the process id in a single-threaded worker),
``%g:%#`` the Python source file and line.

A pattern is compiled once into a list of pieces; formatting a record walks the list.
"""

from __future__ import annotations

import logging
import os
import threading
import time

DEFAULT_FORMAT = "[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v"

# Python's level names as Envoy spells them.
_LEVEL_NAMES = {
    logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
    logging.ERROR: "error", logging.CRITICAL: "critical",
}
_SHORT_LEVELS = {"debug": "D", "info": "I", "warning": "W", "error": "E", "critical": "C"}
_ROOT = "outrider"
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _level(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelno) or record.levelname.lower()


def _name(record: logging.LogRecord) -> str:
    name = record.name
    if name == _ROOT:
        return "main"
    if name.startswith(_ROOT + "."):
        return name[len(_ROOT) + 1:]
    return name


def _source(record: logging.LogRecord) -> str:
    path = record.pathname
    return os.path.relpath(path, _SOURCE_ROOT) if path.startswith(_SOURCE_ROOT) else path


def _escaped(message: str) -> str:
    # Envoy's %j: the message with control characters escaped, so a line stays one line.
    return message.encode("unicode_escape").decode("ascii")


# Pattern flags that depend on the record (the time flags are handled by strftime).
_RECORD_FLAGS = {
    "v": lambda r: r.getMessage(),
    "j": lambda r: _escaped(r.getMessage()),
    "_": lambda r: _escaped(r.getMessage()),
    "l": _level,
    "L": lambda r: _SHORT_LEVELS.get(_level(r), _level(r)[:1].upper()),
    "n": _name,
    # Formatting runs in the thread that logs (handlers are synchronous).
    "t": lambda r: str(threading.get_native_id()),
    "P": lambda r: str(r.process),
    "g": _source,
    "s": lambda r: os.path.basename(r.pathname),
    "#": lambda r: str(r.lineno),
    "!": lambda r: r.funcName,
    "e": lambda r: f"{int(r.msecs):03d}",
    "f": lambda r: f"{int((r.created % 1) * 1e6):06d}",
    "F": lambda r: f"{int((r.created % 1) * 1e9):09d}",
}
# strftime equivalents of spdlog's date and time flags.
_TIME_FLAGS = {
    "Y": "%Y", "y": "%y", "m": "%m", "d": "%d", "H": "%H", "I": "%I", "M": "%M", "S": "%S",
    "p": "%p", "T": "%H:%M:%S", "D": "%m/%d/%y", "a": "%a", "A": "%A", "b": "%b",
    "B": "%B", "c": "%a %b %d %H:%M:%S %Y", "C": "%y", "R": "%H:%M", "r": "%I:%M:%S %p",
    "z": "%z",
}


class UnknownFlag(ValueError):
    """A ``--log-format`` flag this formatter does not know."""


def compile_pattern(pattern: str) -> list:
    """The pieces of ``pattern``: literal strings, strftime formats (tuples) and record flags
    (callables). Raises ``UnknownFlag`` for a flag spdlog has that Outrider does not."""
    pieces: list = []
    literal: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char != "%" or i + 1 == len(pattern):
            literal.append(char)
            i += 1
            continue
        flag = pattern[i + 1]
        i += 2
        if flag == "%":
            literal.append("%")
            continue
        if literal:
            pieces.append("".join(literal))
            literal = []
        if flag in _RECORD_FLAGS:
            pieces.append(_RECORD_FLAGS[flag])
        elif flag in _TIME_FLAGS:
            pieces.append((_TIME_FLAGS[flag],))
        else:
            raise UnknownFlag(f"unknown log format flag '%{flag}'")
    if literal:
        pieces.append("".join(literal))
    return pieces


class EnvoyFormatter(logging.Formatter):
    """Formats records with an Envoy (spdlog) pattern; exceptions follow on their own lines."""

    def __init__(self, pattern: str = DEFAULT_FORMAT) -> None:
        super().__init__()
        self._pieces = compile_pattern(pattern)

    def format(self, record: logging.LogRecord) -> str:
        local = time.localtime(record.created)
        parts = []
        for piece in self._pieces:
            if isinstance(piece, str):
                parts.append(piece)
            elif isinstance(piece, tuple):
                parts.append(time.strftime(piece[0], local))
            else:
                parts.append(piece(record))
        line = "".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: int, pattern: str = DEFAULT_FORMAT, path: str | None = None) -> None:
    """Send every log line to stderr (or ``path``, Envoy's ``--log-path``) in ``pattern``."""
    handler: logging.Handler = (logging.FileHandler(path) if path
                                else logging.StreamHandler())
    handler.setFormatter(EnvoyFormatter(pattern))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
