"""String, regex, header and query-parameter matchers (outrider.router.matchers)."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import string_pb2
from route_helpers import header_matcher_proto, proto, req

from outrider.http.headers import ResponseHeaders
from outrider.router.matchers import (
    HeaderMatcher,
    PathMatcher,
    QueryParameterMatcher,
    RouteConfigError,
    StringMatcher,
    ascii_lower,
    compile_regex,
    compile_substitution,
    header_value,
    is_grpc_request,
    parse_query,
)


def sm(text: str) -> StringMatcher:
    return StringMatcher.from_proto(proto(string_pb2.StringMatcher, text))


# --- StringMatcher ----------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "value", "expected"), [
    ("exact: abc", "abc", True),
    ("exact: abc", "abcd", False),
    ("exact: abc", "ABC", False),
    ("{exact: abc, ignore_case: true}", "AbC", True),
    ("{exact: abc, ignore_case: true}", "AbCd", False),
    ("exact: ''", "", True),
    ("exact: ''", "x", False),
    ("prefix: /api", "/api/v1", True),
    ("prefix: /api", "/API/v1", False),
    ("{prefix: /api, ignore_case: true}", "/API/v1", True),
    ("{prefix: /api, ignore_case: true}", "/ap", False),
    ("suffix: .json", "a.json", True),
    ("suffix: .json", "a.JSON", False),
    ("{suffix: .json, ignore_case: true}", "a.JSON", True),
    ("{suffix: .json, ignore_case: true}", "json", False),
    ("contains: mid", "amidst", True),
    ("contains: mid", "aMIDst", False),
    ("{contains: mid, ignore_case: true}", "aMIDst", True),
    ("{contains: mid, ignore_case: true}", "amdst", False),
    ("safe_regex: {regex: 'a[0-9]+'}", "a123", True),
    ("safe_regex: {regex: 'a[0-9]+'}", "xa123", False),  # whole-string match
    ("safe_regex: {regex: 'a[0-9]+'}", "a123x", False),
    # ignore_case has no effect on safe_regex, as in Envoy.
    ("{safe_regex: {regex: 'abc'}, ignore_case: true}", "ABC", False),
])
def test_string_matcher(config: str, value: str, expected: bool) -> None:
    assert sm(config).match(value) is expected


def test_ignore_case_is_ascii_only() -> None:
    # absl::AsciiStrToLower folds A-Z only: 'À' and 'à' stay different.
    assert not StringMatcher("exact", "\u00e0", ignore_case=True).match("\u00c0")
    assert StringMatcher("exact", "x\u00e0", ignore_case=True).match("X\u00e0")
    assert ascii_lower("AbC\u00c0") == "abc\u00c0"


def test_custom_string_matcher_is_rejected() -> None:
    with pytest.raises(RouteConfigError, match="unsupported"):
        sm("custom: {name: x, typed_config: {'@type': type.googleapis.com/google.protobuf.Empty}}")


# --- RE2 translation --------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    (r"abc\z", "abc", True),
    (r"(?<year>[0-9]{4})-x", "2024-x", True),
    (r"[[:digit:]]+", "123", True),
    (r"[[:alpha:][:digit:]]+", "a1b2", True),
    (r"[[:alpha:]]+", "a1", False),
    (r"\Qa.b\E", "a.b", True),
    (r"\Qa.b\E", "axb", False),
    (r"\d+", "\u0663", False),  # RE2 \d is ASCII only
    (r"[a[]+", "a[a", True),
])
def test_re2_translation(pattern: str, value: str, expected: bool) -> None:
    assert (compile_regex(pattern).fullmatch(value) is not None) is expected


@pytest.mark.parametrize("pattern", [r"(a)\1", r"a(?=b)", r"a(?!b)", r"(?<=a)b", r"(?<!a)b",
                                     r"(?P<x>a)(?P=x)", r"[[:nope:]]", r"a(", r"\pL"])
def test_regexes_re2_rejects_are_config_errors(pattern: str) -> None:
    with pytest.raises(RouteConfigError, match="invalid regex"):
        compile_regex(pattern, "vh")


def test_substitution_translation() -> None:
    pattern = compile_regex(r"^/service/([^/]+)(/.*)$")
    template = compile_substitution(pattern, r"\2/instance/\1")
    assert pattern.sub(template, "/service/foo/v1/api") == "/v1/api/instance/foo"
    whole = compile_regex("o")
    assert whole.sub(compile_substitution(whole, r"[\0]\\"), "foo") == "f[o]\\[o]\\"


@pytest.mark.parametrize("substitution", [r"\2", r"\n", "trailing\\"])
def test_bad_substitutions_are_config_errors(substitution: str) -> None:
    with pytest.raises(RouteConfigError):
        compile_substitution(compile_regex("(a)"), substitution, "route r")


# --- header_value -----------------------------------------------------------------------------


def test_header_value_joins_repeats_and_reads_pseudo_headers() -> None:
    headers = req("/p?q", authority="h.example", method="POST",
                  headers=[("x-a", "1"), ("x-b", "z"), ("x-a", "2"), ("x-a", "3")])
    assert header_value(headers, "x-a") == "1,2,3"
    assert header_value(headers, "x-b") == "z"
    assert header_value(headers, "x-c") is None
    assert header_value(headers, ":path") == "/p?q"
    assert header_value(headers, ":method") == "POST"
    assert header_value(headers, ":authority") == "h.example"
    assert header_value(headers, "host") == "h.example"
    assert header_value(ResponseHeaders(503), ":status") == "503"


# --- HeaderMatcher ----------------------------------------------------------------------------

H = [("x-env", "prod"), ("x-num", "42"), ("x-multi", "a"), ("x-multi", "b"), ("x-empty", "")]


@pytest.mark.parametrize(("config", "expected"), [
    ("{name: x-env, string_match: {exact: prod}}", True),
    ("{name: x-env, string_match: {exact: PROD}}", False),
    ("{name: x-env, string_match: {exact: PROD, ignore_case: true}}", True),
    ("{name: x-env, string_match: {prefix: pr}}", True),
    ("{name: x-env, string_match: {suffix: od}}", True),
    ("{name: x-env, string_match: {contains: ro}}", True),
    ("{name: x-env, string_match: {safe_regex: {regex: 'p.*d'}}}", True),
    ("{name: x-env, string_match: {safe_regex: {regex: 'p'}}}", False),
    ("{name: X-Env, exact_match: prod}", True),  # names are case-insensitive
    ("{name: x-env, exact_match: dev}", False),
    ("{name: x-env, exact_match: ''}", True),  # legacy: empty exact_match = any value
    ("{name: x-env, prefix_match: pro}", True),
    ("{name: x-env, suffix_match: rod}", True),
    ("{name: x-env, contains_match: ro}", True),
    ("{name: x-env, safe_regex_match: {regex: 'prod|dev'}}", True),
    ("{name: x-num, range_match: {start: 40, end: 43}}", True),
    ("{name: x-num, range_match: {start: 40, end: 42}}", False),  # half-open
    ("{name: x-env, range_match: {start: 0, end: 100}}", False),  # not an integer
    ("{name: x-env, present_match: true}", True),
    ("{name: x-nope, present_match: true}", False),
    ("{name: x-nope, present_match: false}", True),
    ("{name: x-env, present_match: false}", False),
    ("{name: x-env}", True),  # no specifier: presence
    ("{name: x-nope}", False),
    # repeated headers are joined with ',' before matching
    ("{name: x-multi, string_match: {exact: 'a,b'}}", True),
    ("{name: x-multi, string_match: {exact: a}}", False),
    # invert_match
    ("{name: x-env, string_match: {exact: dev}, invert_match: true}", True),
    ("{name: x-env, string_match: {exact: prod}, invert_match: true}", False),
    ("{name: x-nope, present_match: true, invert_match: true}", True),
    ("{name: x-env, present_match: true, invert_match: true}", False),
    # a missing header fails even an inverted matcher ...
    ("{name: x-nope, string_match: {exact: dev}, invert_match: true}", False),
    # ... unless treat_missing_header_as_empty
    (("{name: x-nope, string_match: {exact: dev}, invert_match: true, "
     "treat_missing_header_as_empty: true}"), True),
    ("{name: x-nope, string_match: {exact: ''}, treat_missing_header_as_empty: true}", True),
    ("{name: x-nope, string_match: {exact: ''}}", False),
    ("{name: x-empty, string_match: {exact: ''}}", True),
    # pseudo-headers
    ("{name: ':method', string_match: {exact: GET}}", True),
    ("{name: ':authority', string_match: {suffix: .example.com}}", True),
    ("{name: ':path', string_match: {prefix: /a}}", True),
])
def test_header_matcher(config: str, expected: bool) -> None:
    matcher = HeaderMatcher.from_proto(header_matcher_proto(config))
    headers = req("/a?b=1", authority="api.example.com", headers=H)
    assert matcher.matches(headers) is expected


def test_header_matcher_bad_regex_names_the_header() -> None:
    with pytest.raises(RouteConfigError, match="x-env"):
        HeaderMatcher.from_proto(header_matcher_proto(
            "{name: x-env, safe_regex_match: {regex: '('}}"), "vh 'a'")


def test_header_matcher_on_response_headers() -> None:
    matcher = HeaderMatcher.from_proto(header_matcher_proto(
        "{name: ':status', string_match: {prefix: '5'}}"))
    assert matcher.matches(ResponseHeaders(503))
    assert not matcher.matches(ResponseHeaders(200))


# --- query parameters -------------------------------------------------------------------------


def test_parse_query_first_value_not_decoded() -> None:
    assert parse_query("/p?a=1&b&a=2&c=x%20y&=v&&d=") == {
        "a": "1", "b": "", "c": "x%20y", "": "v", "d": ""}
    assert parse_query("/p") == {}
    assert parse_query("/p?") == {}


def qpm(text: str) -> QueryParameterMatcher:
    return QueryParameterMatcher.from_proto(proto(route_components_pb2.QueryParameterMatcher, text))


@pytest.mark.parametrize(("config", "query", "expected"), [
    ("{name: debug, present_match: true}", "?debug", True),
    ("{name: debug, present_match: true}", "?other=1", False),
    ("{name: debug}", "?debug=0", True),
    ("{name: v, string_match: {exact: '2'}}", "?v=2", True),
    ("{name: v, string_match: {exact: '2'}}", "?v=3&v=2", False),  # first value only
    ("{name: v, string_match: {exact: '2'}}", "?V=2", False),  # names are case-sensitive
    ("{name: v, string_match: {prefix: x, ignore_case: true}}", "?v=XY", True),
    ("{name: v, string_match: {exact: 'a b'}}", "?v=a%20b", False),  # not percent-decoded
    ("{name: v, string_match: {exact: ''}}", "?v", True),
])
def test_query_parameter_matcher(config: str, query: str, expected: bool) -> None:
    assert qpm(config).matches(parse_query("/p" + query)) is expected


# --- PathMatcher, gRPC ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "case_sensitive", "path", "expected"), [
    ("prefix", "/dead", True, "/deadretry", True),
    ("prefix", "/dead", True, "/DEAD", False),
    ("prefix", "/dead", False, "/DEADbeef", True),
    ("prefix", "", True, "/anything", True),
    ("path", "/exact", True, "/exact", True),
    ("path", "/exact", True, "/exact/", False),
    ("path", "/exact", False, "/EXACT", True),
    ("path_separated_prefix", "/psp", True, "/psp", True),
    ("path_separated_prefix", "/psp", True, "/psp/x", True),
    ("path_separated_prefix", "/psp", True, "/pspx", False),
    ("path_separated_prefix", "/psp", True, "/PSP/x", False),
    ("path_separated_prefix", "/psp", False, "/PSP/x", True),
    ("safe_regex", "/v[0-9]+/.*", True, "/v12/users", True),
    ("safe_regex", "/v[0-9]+", True, "/v12/users", False),
    ("never", "", True, "/", False),
])
def test_path_matcher(kind: str, value: str, case_sensitive: bool, path: str,
                      expected: bool) -> None:
    assert PathMatcher(kind, value, case_sensitive).match(path) is expected


@pytest.mark.parametrize(("content_type", "expected"), [
    ("application/grpc", True), ("application/grpc+proto", True),
    ("application/grpc;charset=utf-8", True), ("application/grpcx", False),
    ("application/json", False), (None, False),
])
def test_is_grpc_request(content_type: str | None, expected: bool) -> None:
    headers = req(headers=[("content-type", content_type)] if content_type else [])
    assert is_grpc_request(headers) is expected
