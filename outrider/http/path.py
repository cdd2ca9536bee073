"""Request path normalization, as Envoy's HTTP connection manager does it.

``normalize_path`` is Envoy's ``normalize_path: true`` (``PathUtil::canonicalPath``), which runs
Chromium's URL path canonicalizer over the path part of ``:path``:

* RFC 3986 remove-dot-segments, where ``%2e``/``%2E`` counts as a dot and ``\\`` as a ``/``;
  ``..`` never climbs above the root;
* percent-escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``) are decoded; every other
  escape is kept exactly as written (``%2F`` stays ``%2F``, hex case untouched);
* characters that may not appear raw in a path (space, ``"``, ``<``, ``>``, ``\\``-less controls,
  bytes >= 0x7F, ...) are percent-encoded;
* a path that does not start with ``/`` gets one;
* a NUL byte, raw or as ``%00``, makes the path invalid: the result is None and the caller
  answers 400.

``merge_slashes`` is ``merge_slashes: true`` (``PathUtil::mergeSlashes``). Both touch only the
part before the first ``?``; the query string is kept byte for byte. Paths are ``str`` holding
latin-1 decoded bytes, as everywhere in the proxy.
"""

from __future__ import annotations

import re

__all__ = ["merge_slashes", "normalize_path", "path_without_query", "unescape_slashes"]

# Chromium's kPathCharLookup classes.
_PASS = 0
_SPECIAL = 1  # needs a look in the slow branch
_ESCAPE = 2 | _SPECIAL  # percent-encode when seen raw; keep encoded when seen escaped
_UNESCAPE = 4  # decode when seen escaped
_INVALID = 8 | _SPECIAL  # makes the whole path invalid


def _build_table() -> bytes:
    table = bytearray([_ESCAPE] * 256)  # controls and high bytes are escaped
    table[0] = _INVALID
    for ch in "!$&'()*+,/:;=@[]":
        table[ord(ch)] = _PASS
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~":
        table[ord(ch)] = _UNESCAPE
    table[ord(".")] = _SPECIAL
    # '%' and '\\' are ESCAPE (so SPECIAL) and handled by name in the slow branch.
    return bytes(table)


_TABLE = _build_table()
_HEX = frozenset("0123456789abcdefABCDEF")
# A path made only of characters that pass through unchanged is already canonical.
_ALREADY_CANONICAL = re.compile(r"/[A-Za-z0-9_~!$&'()*+,/:;=@\[\]-]*").fullmatch


def path_without_query(path: str) -> str:
    """The path up to (not including) the first ``?`` or ``#``, as Envoy's removeQueryAndFragment."""
    q = path.find("?")
    if q >= 0:
        path = path[:q]
    h = path.find("#")
    return path[:h] if h >= 0 else path


def _split_query(path: str) -> tuple[str, str]:
    q = path.find("?")
    if q < 0:
        return path, ""
    return path[:q], path[q:]


def _dot_len(spec: str, i: int, end: int) -> int:
    """1 for ``.``, 3 for ``%2e``/``%2E``, else 0 (Chromium's IsDot)."""
    ch = spec[i]
    if ch == ".":
        return 1
    if ch == "%" and i + 3 <= end and spec[i + 1] == "2" and spec[i + 2] in "eE":
        return 3
    return 0


def _after_dot(spec: str, after: int, end: int) -> tuple[int, int]:
    """Classify a dot segment: (0 not a directory | 1 current | 2 parent, input consumed)."""
    if after == end:
        return 1, 0
    if spec[after] in "/\\":
        return 1, 1
    second = _dot_len(spec, after, end)
    if second:
        after2 = after + second
        if after2 == end:
            return 2, second
        if spec[after2] in "/\\":
            return 2, second + 1
    return 0, 0


def _back_up_to_previous_slash(out: list[str]) -> None:
    """Drop the last segment; ``out`` ends in ``/`` before and after. Stops at the root."""
    i = len(out) - 1
    if i == 0:
        return
    i -= 1
    while out[i] != "/" and i > 0:
        i -= 1
    del out[i + 1 :]


def _escaped(ch: str) -> list[str]:
    code = ord(ch)
    if code < 256:
        return [f"%{code:02X}"]
    return [f"%{b:02X}" for b in ch.encode("utf-8")]


def _fix_nested_escape(spec: str, next_i: int, end: int, bad_pct: int, out: list[str]) -> None:
    """Keep ``%%300`` from turning into a valid ``%00`` once the inner ``%30`` is decoded.

    ``out`` ends with the ``%`` at ``bad_pct`` (which began no valid escape) followed by one or
    two characters, the last one just decoded. If those now read as an escape, the ``%`` becomes
    ``%25`` (Chromium's CheckForNestedEscapes).
    """
    length = len(out)
    last = out[-1]
    append_next = bad_pct == length - 2
    if append_next:
        if next_i == end or ord(spec[next_i]) >= 0x80:
            return
        out.append(spec[next_i])
    if len(out) >= bad_pct + 3 and out[bad_pct + 1] in _HEX and out[bad_pct + 2] in _HEX:
        if not append_next:
            out.append(out[bad_pct + 1])
        out[bad_pct + 1] = "2"
        out[bad_pct + 2] = "5"
        out.append(last)
    elif append_next:
        del out[length:]


def _canonicalize(spec: str) -> str | None:
    end = len(spec)
    if end == 0:
        return "/"
    out: list[str] = [] if spec[0] in "/\\" else ["/"]
    ok = True
    bad_pct = -10  # output index of the last '%' that began no valid escape
    table = _TABLE
    i = 0
    while i < end:
        ch = spec[i]
        code = ord(ch)
        flags = table[code] if code < 256 else _ESCAPE
        if not flags & _SPECIAL:
            out.append(ch)
        elif dot := _dot_len(spec, i, end):
            if out and out[-1] == "/":
                kind, consumed = _after_dot(spec, i + dot, end)
                if kind == 0:
                    out.append(".")
                    i += dot - 1
                else:
                    if kind == 2:
                        _back_up_to_previous_slash(out)
                    i += dot + consumed - 1
            else:
                out.append(".")
                i += dot - 1
        elif ch == "\\":
            out.append("/")
        elif ch == "%":
            if i + 3 <= end and spec[i + 1] in _HEX and spec[i + 2] in _HEX:
                value = int(spec[i + 1 : i + 3], 16)
                i += 2
                vflags = table[value]
                if vflags & _UNESCAPE:
                    out.append(chr(value))
                    if bad_pct >= len(out) - 3:
                        _fix_nested_escape(spec, i + 1, end, bad_pct, out)
                else:
                    out.extend(("%", spec[i - 1], spec[i]))
                    if vflags == _INVALID:
                        ok = False
            else:
                bad_pct = len(out)
                out.append("%")
        else:
            out.extend(_escaped(ch))
            if flags == _INVALID:
                ok = False
        i += 1
    return "".join(out) if ok else None


def normalize_path(path: str) -> str | None:
    """Envoy's ``normalize_path``: the canonical ``:path``, or None when it must be rejected (400).

    Only the part before the first ``?`` changes; the query string is appended unchanged.
    """
    just_path, query = _split_query(path)
    if _ALREADY_CANONICAL(just_path) is not None:
        return path
    canonical = _canonicalize(just_path)
    if canonical is None:
        return None
    return canonical + query if query else canonical


def merge_slashes(path: str) -> str:
    """Envoy's ``merge_slashes``: runs of ``/`` in the path part become one ``/``.

    A leading and a trailing slash are kept, so ``//a///b/`` becomes ``/a/b/``. As in Envoy, a
    path made only of slashes keeps two (``//`` stays ``//``). The query string is not touched.
    """
    just_path, query = _split_query(path)
    if "//" not in just_path:
        return path
    prefix = "/" if just_path.startswith("/") else ""
    suffix = "/" if just_path.endswith("/") else ""
    middle = "/".join(seg for seg in just_path.split("/") if seg)
    return prefix + middle + suffix + query


_ESCAPED_SLASH = re.compile(r"%(?:2[fF]|5[cC])")


def unescape_slashes(path: str) -> str | None:
    """``path_with_escaped_slashes_action``'s unescaping (Envoy's PathUtil::unescapeSlashes):
    ``%2F``/``%2f`` become ``/`` and ``%5C``/``%5c`` become ``\\`` in the path part; the query
    is kept byte for byte. None when the path part has no escaped slash (nothing to act on).
    """
    just_path, query = _split_query(path)
    if "%" not in just_path:
        return None
    unescaped = _ESCAPED_SLASH.sub(lambda m: "/" if m.group()[1] == "2" else "\\", just_path)
    if unescaped == just_path:
        return None
    return unescaped + query
