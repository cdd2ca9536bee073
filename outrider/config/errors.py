"""Errors and issues reported while loading and checking a bootstrap.

Two kinds, because they are handled differently by the CLI:

* :class:`ConfigError` is raised by the loader: the file cannot become an Envoy ``Bootstrap`` at
  all (YAML syntax, unknown field, bad enum, bad duration, unknown ``@type``, a PGV constraint
  Envoy enforces). It carries every such problem the loader found in one pass (``issues``), so a
  user fixes the file in one round.
* :class:`ConfigIssue` is returned (never raised) by ``validate()``: the bootstrap is valid Envoy
  config but Outrider does not implement something in it, or it is semantically broken in a way
  Envoy would also refuse or silently mishandle.

Both render in one format, ``<file>:<line>: <severity>: <field path>: <message>``, so editors can
jump to the line and a user sees the same shape whichever stage found the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One finding of the loader or of ``validate()``.

    ``severity`` is "error" (Outrider would behave differently from Envoy, or the config is
    broken) or "warning" (accepted; the field has no effect yet). ``field_path`` is Envoy's dotted
    path (``static_resources.clusters[0].circuit_breakers``), empty for the document as a whole;
    ``line`` is 1-based or None; ``path`` is the config file, used only for rendering.
    """

    severity: Severity
    field_path: str
    line: int | None
    message: str
    path: str | None = None

    def __str__(self) -> str:
        where = f"{self.field_path}: " if self.field_path else ""
        return f"{_location(self.path, self.line)}{self.severity}: {where}{self.message}"


class ConfigError(Exception):
    """The configuration cannot be loaded.

    ``issues`` lists every problem found (at least one, all of severity "error"); ``str()``
    renders one per line. The first one is also exposed flat: ``message`` is its reason prefixed
    by the dotted field path when one is known (``static_resources.clusters[0]: no such field
    'lb_polcy' (did you mean 'lb_policy'?)``), ``field_path`` that path, ``line`` its 1-based line
    or None, ``path`` the config file.
    """

    def __init__(
        self,
        message: str = "",
        path: str | None = None,
        line: int | None = None,
        *,
        field_path: str | None = None,
        issues: Sequence[ConfigIssue] = (),
    ) -> None:
        if not issues:
            detail = message
            if field_path and message.startswith(f"{field_path}: "):
                detail = message[len(field_path) + 2:]
            issues = [ConfigIssue("error", field_path or "", line, detail, path)]
        self.issues = list(issues)
        first = self.issues[0]
        self.path = first.path
        self.line = first.line
        self.field_path = first.field_path or None
        self.message = (f"{first.field_path}: {first.message}" if first.field_path
                        else first.message)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
