"""Path normalization and slash merging (outrider.http.path), as Envoy's HCM options."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider.http.path import merge_slashes, normalize_path, path_without_query, unescape_slashes


@pytest.mark.parametrize(("path", "expected"), [
    # remove-dot-segments; ".." never climbs above the root
    ("/a/../../etc/passwd", "/etc/passwd"),
    ("/a/b/../c", "/a/c"),
    ("/a/b/./c", "/a/b/c"),
    ("/a/b/../../../../c", "/c"),
    ("/a/.", "/a/"),
    ("/a/..", "/"),
    ("/..", "/"),
    ("/.", "/"),
    ("/a/./", "/a/"),
    ("/.a/..b/.../c.", "/.a/..b/.../c."),  # dots inside names are not segments
    # %2e counts as a dot, in either case
    ("/a/%2e%2e/%2E%2E/etc", "/etc"),
    ("/a/b/%2E%2E/c", "/a/c"),
    ("/a/.%2e/b", "/b"),
    ("/a/%2e/b", "/a/b"),
    # a backslash is a path separator
    ("/a/..\\c", "/c"),
    ("/a\\b", "/a/b"),
    # a missing leading slash is added
    ("a/b/../c", "/a/c"),
    ("", "/"),
    # unreserved characters are decoded, everything else is kept as written
    ("/%41%62%7e%2D%5f%30", "/Ab~-_0"),
    ("/a/%2F%2f/c", "/a/%2F%2f/c"),
    ("/%c0%af", "/%c0%af"),
    ("/%5c%25", "/%5c%25"),
    ("/a%20b", "/a%20b"),
    ("/A/B/C", "/A/B/C"),  # case is kept
    # characters that may not appear raw are escaped
    ("/a b", "/a%20b"),
    ('/a"<>^`{|}', "/a%22%3C%3E%5E%60%7B%7C%7D"),
    ("/caf\u00e9", "/caf%E9"),
    ("/a#frag", "/a%23frag"),
    ("/!$&'()*+,;=:@[]", "/!$&'()*+,;=:@[]"),
    # a '%' that starts no escape is kept; nested escapes cannot become valid ones
    ("/100%", "/100%"),
    ("/%zz", "/%zz"),
    ("/%%300", "/%2500"),
    # the query string is never touched
    ("/a/../b?x=../y&%41=%2e%2e", "/b?x=../y&%41=%2e%2e"),
    ("/ok?a b", "/ok?a b"),
])
def test_normalize_path(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize("path", ["/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc",
                                  "/a\x00b"])
def test_nul_is_rejected(path: str) -> None:
    assert normalize_path(path) is None


def test_fast_path_returns_the_same_object() -> None:
    path = "/api/v1/users?id=1"
    assert normalize_path(path) is path


@pytest.mark.parametrize(("path", "expected"), [
    ("//a///b", "/a/b"),
    ("/a//b/", "/a/b/"),
    ("a//b", "a/b"),
    ("/a/b", "/a/b"),
    ("//a//b?x=//y", "/a/b?x=//y"),
    ("/a?//", "/a?//"),
    ("//", "//"),  # as Envoy: only slashes keep a leading and a trailing one
])
def test_merge_slashes(path: str, expected: str) -> None:
    assert merge_slashes(path) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("/a?b#c", "/a"), ("/a#c?b", "/a"), ("/a", "/a"), ("?x", ""),
])
def test_path_without_query(path: str, expected: str) -> None:
    assert path_without_query(path) == expected


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, the reference the canonicalizer must agree with."""
    out: list[str] = []
    rest = path
    while rest:
        if rest.startswith(("../", "./")):
            rest = rest[rest.index("/") + 1 :]
        elif rest.startswith("/./") or rest == "/.":
            rest = "/" + rest[3:]
        elif rest.startswith("/../") or rest == "/..":
            rest = "/" + rest[4:]
            if out:
                out.pop()
        elif rest in (".", ".."):
            rest = ""
        else:
            end = rest.find("/", 1)
            out.append(rest if end < 0 else rest[:end])
            rest = "" if end < 0 else rest[end:]
    return "".join(out)


SEGMENTS = st.lists(st.sampled_from(["a", "b", ".", "..", "%2e", "%2E%2e", "", "c.d", ".%2e"]),
                    max_size=8)


@given(SEGMENTS)
def test_normalize_agrees_with_rfc3986_remove_dot_segments(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    normalized = normalize_path(path)
    assert normalized is not None
    decoded = path.replace("%2E", ".").replace("%2e", ".")
    assert normalized == (remove_dot_segments(decoded) or "/")
    assert normalize_path(normalized) == normalized  # idempotent


@given(st.text(alphabet="/ab.%2eE?x", max_size=20))
def test_normalize_never_touches_the_query(path: str) -> None:
    normalized = normalize_path(path)
    query = path.find("?")
    if normalized is not None and query >= 0:
        assert normalized.endswith(path[query:])


# -- path_with_escaped_slashes_action's unescaping ------------------------------------------

@pytest.mark.parametrize(("path", "expected"), [
    ("/a%2Fb", "/a/b"),
    ("/a%2fb%5Cc%5cd", "/a/b\\c\\d"),
    ("/a%2Fb?q=%2F%5C", "/a/b?q=%2F%5C"),  # the query is kept byte for byte
    ("/a%252Fb", None),  # an escaped '%' is not an escaped slash
    ("/a%2Gb%2", None),
    ("/a/b?q=%2F", None),  # nothing to act on in the path part
    ("/plain", None),
])
def test_unescape_slashes(path, expected):
    assert unescape_slashes(path) == expected
