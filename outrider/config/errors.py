"""Errors and issues reported while loading and checking a bootstrap.

Two kinds, because they are handled differently by the CLI:

* :class:`ConfigError` is raised by the loader: the file cannot become an Envoy ``Bootstrap`` at
  all (YAML syntax, unknown field, bad enum, bad duration, unknown ``@type``, a PGV constraint
  Envoy enforces). Loading stops at the first one, as Envoy's does.
* :class:`ConfigIssue` is returned (never raised) by ``validate()``: the bootstrap is valid Envoy
  config but Outrider does not implement something in it, or it is semantically broken in a way
  Envoy would also refuse or silently mishandle.

Both render as ``<file>:<line>: <field path>: <message>`` so editors can jump to the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


def _location(path: str | None, line: int | None) -> str:
    if path and line:
        return f"{path}:{line}: "
    if path:
        return f"{path}: "
    if line:
        return f"line {line}: "
    return ""


class ConfigError(Exception):
    """The configuration cannot be loaded.

    ``message`` is the reason, already prefixed by the dotted field path when one is known
    (``static_resources.clusters[0]: no such field 'lb_polcy' (did you mean 'lb_policy'?)``);
    ``path`` is the config file's path; ``line`` is 1-based, or None when unknown (JSON, text
    proto, or an error about the document as a whole).
    """

    def __init__(
        self,
        message: str,
        path: str | None = None,
        line: int | None = None,
        *,
        field_path: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.field_path = field_path
        super().__init__(str(self))

    def __str__(self) -> str:
        return _location(self.path, self.line) + self.message


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One finding of ``validate()``.

    ``severity`` is "error" (Outrider would behave differently from Envoy, or the config is
    broken) or "warning" (accepted; the field has no effect yet). ``field_path`` is Envoy's dotted
    path (``static_resources.clusters[0].circuit_breakers``); ``line`` is 1-based or None;
    ``path`` is the config file, used only for rendering.
    """

    severity: Severity
    field_path: str
    line: int | None
    message: str
    path: str | None = None

    def __str__(self) -> str:
        where = f"{self.field_path}: " if self.field_path else ""
        return f"{_location(self.path, self.line)}{self.severity}: {where}{self.message}"
