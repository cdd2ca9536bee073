"""Environment-variable substitution in a config file's text (opt-in; Envoy has none).

Contract::

    text = substitute(text, os.environ, "envoy.yaml")   # raises ConfigError

Rules, shell-like:

* ``${NAME}`` is replaced by the value of ``NAME``; an unset variable is an error (a set but
  empty one gives the empty string, as in a shell).
* ``${NAME:-default}`` gives ``default`` when ``NAME`` is unset *or empty*. The default is the
  text up to the first ``}``, taken as written: it cannot contain ``}`` or ``${`` (a default
  holding either is refused rather than guessed at; put such a value in the environment).
* ``$${`` is an escape for a literal ``${``. A ``$`` not followed by ``{`` is left as it is, so
  ``$NAME`` without braces is *not* substituted, and ``$$`` alone stays ``$$``. Scanning goes
  left to right, so ``$$${A}`` reads as ``$`` then the escape: ``$${A}``.
* ``NAME`` matches ``[A-Za-z_][A-Za-z0-9_]*``. Anything else after ``${`` is an error: an empty
  or invalid name (``${}``, ``${1X}``), another shell operator (``${A:?x}``, ``${A-x}``,
  ``${A:=x}``...) or a reference without its ``}`` on the same line.
* Values are inserted verbatim: a ``${`` inside a value is not expanded again.
* A value (from the environment or a default) may not contain a line break: every line keeps
  its number, so a later YAML, JSON or field error still points at the right line of the file.

Substitution is textual and happens before parsing: the value becomes YAML (or JSON, or text
proto) source, so ``port_value: ${PORT}`` gives a number, and a string that YAML would read
otherwise (``yes``, ``a: b``, ``#x``) must be quoted by the user (``"${NAME}"``). For the same
reason a reference inside a comment is substituted too (an unset one is an error); write
``$${`` there to keep it.

Every problem in the file is reported at once, each as a :class:`ConfigIssue` with the line
of its ``${``, in one :class:`ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from outrider.config.errors import ConfigError, ConfigIssue

# What YAML (PyYAML's reader) counts as a line break; JSON and text protos break on a subset.
_LINE_BREAKS = "\n\r\x85\u2028\u2029"
_START = re.compile(r"\$\$?\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}\n\r\x85\u2028\u2029]*))?\}"
)
_ANY_LINE_BREAK = re.compile(f"[{_LINE_BREAKS}]")
# The first character of a shell parameter-expansion operator (``${A-x}``, ``${A#x}``...).
_OPERATOR_STARTS = set(":-=?+#%/^,@")
_SUPPORTED = "only ${NAME} and ${NAME:-default} are supported"
_EXCERPT = 40


def substitute(text: str, environ: Mapping[str, str], path: str | None) -> str:
    """``text`` with every ``${...}`` reference replaced (see the module docs for the rules).

    ``path`` is only used in messages. Raises ConfigError listing every problem, in file order.
    """
    pieces: list[str] = []
    issues: list[ConfigIssue] = []
    pos = 0
    line, counted = 1, 0  # ``line`` is the line of offset ``counted``

    def error(message: str) -> None:
        issues.append(ConfigIssue("error", "", line, message, path))

    while (start := _START.search(text, pos)) is not None:
        begin = start.start()
        line += text.count("\n", counted, begin)
        counted = begin
        pieces.append(text[pos:begin])
        if start.group() == "$${":
            pieces.append("${")
            pos = start.end()
            continue
        reference = _REFERENCE.match(text, begin)
        if reference is None:
            message, pos = _diagnose(text, begin)
            error(message)
            continue
        pos = reference.end()
        name, default = reference.group("name", "default")
        if default is not None and "${" in default:
            error(f"the default in '{reference.group()}' contains '${{': a default ends at "
                  "the first '}' and cannot hold another reference")
            continue
        value = environ.get(name)
        if default is not None and not value:
            value = default
        if value is None:
            error(f"environment variable '{name}' is not set "
                  f"(use ${{{name}:-default}} for a default)")
            continue
        if _ANY_LINE_BREAK.search(value):
            error(f"environment variable '{name}' contains a line break; only single-line "
                  "values can be substituted (so that error lines still match the file)")
            continue
        pieces.append(value)
    if issues:
        raise ConfigError(issues=issues)
    pieces.append(text[pos:])
    return "".join(pieces)


def _diagnose(text: str, begin: int) -> tuple[str, int]:
    """Why the ``${`` at ``begin`` is not a valid reference, and where to resume scanning."""
    body_start = begin + 2
    eol = _ANY_LINE_BREAK.search(text, body_start)
    end_of_line = eol.start() if eol is not None else len(text)
    close = text.find("}", body_start, end_of_line)
    nested = text.find("${", body_start, end_of_line if close < 0 else close)
    if close < 0 or nested >= 0:
        stop = nested if nested >= 0 else end_of_line
        excerpt = text[begin:stop].rstrip()
        if len(excerpt) > _EXCERPT:
            excerpt = excerpt[:_EXCERPT] + "..."
        return (f"unterminated reference '{excerpt}': no closing '}}' on its line "
                f"(write '$${{' for a literal '${{')", stop if nested >= 0 else body_start)
    reference = text[begin:close + 1]
    body = text[body_start:close]
    name = _NAME.match(body)
    if not body:
        message = f"empty reference '${{}}': {_SUPPORTED}"
    elif name is not None and body[name.end():name.end() + 1] in _OPERATOR_STARTS:
        rest = body[name.end():]
        operator = rest[:2] if rest.startswith(":") else rest[0]
        message = f"unsupported operator '{operator}' in '{reference}': {_SUPPORTED}"
    else:
        message = (f"invalid variable name in '{reference}': a name is letters, digits and "
                   "'_', not starting with a digit")
    return message, close + 1
