"""Header mutations and %FORMATTER% values (outrider.router.header_mutation)."""

from __future__ import annotations

import socket
import textwrap

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format
from route_helpers import req

from outrider.http.headers import ResponseHeaders
from outrider.router.header_mutation import (
    FormatterContext,
    HeaderMutation,
    compile_format,
    format_time,
)
from outrider.router.matchers import RouteConfigError

CTX = FormatterContext(downstream_remote_address="10.0.0.7:51234",
                       downstream_local_address="[::1]:10000",
                       upstream_remote_address="192.168.1.5:8080",
                       protocol="HTTP/1.1",
                       start_time=1_700_000_000.123456)


def mutation(to_add: str = "[]", to_remove: tuple[str, ...] = ()) -> HeaderMutation | None:
    options = [json_format.ParseDict(o, base_pb2.HeaderValueOption())
               for o in yaml.safe_load(textwrap.dedent(to_add))]
    return HeaderMutation.from_protos(options, list(to_remove), "route 'r'")


def render(value: str, ctx=CTX, request=None, response=None) -> str:
    parts = compile_format(value)
    return "".join(p if isinstance(p, str) else p(ctx, request, response) for p in parts)


# --- append actions ---------------------------------------------------------------------------

EXISTING = [("x-a", "old"), ("x-b", "old")]


@pytest.mark.parametrize(("option", "x_a", "x_new"), [
    ("{header: {key: x-a, value: new}}", ["old", "new"], []),  # APPEND_IF_EXISTS_OR_ADD default
    ("{header: {key: x-new, value: new}}", ["old"], ["new"]),
    ("{header: {key: x-a, value: new}, append_action: ADD_IF_ABSENT}", ["old"], []),
    ("{header: {key: x-new, value: new}, append_action: ADD_IF_ABSENT}", ["old"], ["new"]),
    ("{header: {key: x-a, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}", ["new"], []),
    ("{header: {key: x-new, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}", ["old"],
     ["new"]),
    ("{header: {key: x-a, value: new}, append_action: OVERWRITE_IF_EXISTS}", ["new"], []),
    ("{header: {key: x-new, value: new}, append_action: OVERWRITE_IF_EXISTS}", ["old"], []),
    ("{header: {key: x-a, value: new}, append: true}", ["old", "new"], []),
    ("{header: {key: x-a, value: new}, append: false}", ["new"], []),
    ("{header: {key: X-A, value: new}, append: false}", ["new"], []),  # keys are lowercased
    ("{header: {key: x-a, value: ''}}", ["old"], []),  # empty values are skipped...
    ("{header: {key: x-a, value: ''}, keep_empty_value: true}", ["old", ""], []),  # ...or kept
    ("{header: {key: x-new, value: '%REQ(x-missing)%'}}", ["old"], []),  # formats to empty
    ("{header: {key: x-new, raw_value: Ynl0ZXM=}}", ["old"], ["bytes"]),
])
def test_append_actions(option: str, x_a: list[str], x_new: list[str]) -> None:
    headers = req(headers=EXISTING)
    mutation(f"[{option}]").evaluate(headers, CTX, headers)
    assert headers.get_all("x-a") == x_a
    assert headers.get_all("x-new") == x_new
    assert headers.get_all("x-b") == ["old"]


def test_repeated_header_overwrite_replaces_every_value() -> None:
    headers = req(headers=[("x-a", "1"), ("x-b", "b"), ("x-a", "2")])
    mutation("[{header: {key: x-a, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]"
             ).evaluate(headers, CTX, headers)
    assert headers.get_all("x-a") == ["new"]


def test_one_level_decides_against_the_map_before_its_own_adds() -> None:
    # Envoy computes every action first, then overwrites, then appends: the second option does
    # not see the first one's header.
    headers = req()
    mutation("""
        - {header: {key: x-a, value: one}}
        - {header: {key: x-a, value: two}, append_action: ADD_IF_ABSENT}
        - {header: {key: x-a, value: three}, append_action: OVERWRITE_IF_EXISTS}
    """).evaluate(headers, CTX, headers)
    assert headers.get_all("x-a") == ["one", "two"]


def test_overwrites_apply_before_appends() -> None:
    headers = req(headers=[("x-a", "old")])
    mutation("""
        - {header: {key: x-a, value: appended}}
        - {header: {key: x-a, value: replaced}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    """).evaluate(headers, CTX, headers)
    assert headers.get_all("x-a") == ["replaced", "appended"]


def test_remove_happens_before_add() -> None:
    headers = req(headers=[("x-a", "old"), ("x-gone", "1")])
    mutation("[{header: {key: x-a, value: new}, append_action: ADD_IF_ABSENT}]",
             ("x-a", "X-Gone")).evaluate(headers, CTX, headers)
    assert headers.get_all("x-a") == ["new"]
    assert "x-gone" not in headers


def test_empty_level_compiles_to_none() -> None:
    assert mutation() is None


@pytest.mark.parametrize(("option", "message"), [
    ("{header: {key: x-a, value: v}, append: true, append_action: ADD_IF_ABSENT}",
     "both append and append_action"),
    ("{header: {key: ':path', value: v}}", "may not be modified"),
    ("{header: {key: host, value: v}}", "may not be modified"),
    ("{header: {key: 'bad name', value: v}}", "invalid header name"),
    ("{header: {key: x-a, value: '100%'}}", "un-escaped %"),
    ("{header: {key: x-a, value: '%NOT_A_COMMAND%'}}", "unsupported formatter"),
    ("{header: {key: x-a, value: '%PROTOCOL(x)%'}}", "unsupported formatter"),
    ("{header: {key: x-a, value: '%REQ()%'}}", "need a header name"),
])
def test_config_errors(option: str, message: str) -> None:
    with pytest.raises(RouteConfigError, match=f"route 'r'.*{message}"):
        mutation(f"[{option}]")


def test_remove_of_pseudo_header_is_a_config_error() -> None:
    with pytest.raises(RouteConfigError, match="may not be removed"):
        mutation("[]", (":path",))


# --- formatters -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("plain", "plain"),
    ("", ""),
    ("100%%", "100%"),
    ("%%REQ(x)%%", "%REQ(x)%"),
    ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.0.0.7:51234"),
    ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.0.0.7"),
    ("%DOWNSTREAM_REMOTE_PORT%", "51234"),
    ("%DOWNSTREAM_LOCAL_ADDRESS%", "[::1]:10000"),
    ("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "::1"),
    ("%DOWNSTREAM_LOCAL_PORT%", "10000"),
    ("%UPSTREAM_REMOTE_ADDRESS%", "192.168.1.5:8080"),
    ("%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "192.168.1.5"),
    ("%PROTOCOL%", "HTTP/1.1"),
    ("ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%; proto=%PROTOCOL%.",
     "ip=10.0.0.7; proto=HTTP/1.1."),
    ("%REQ(x-user)%", "alice"),
    ("%REQ(X-User)%", "alice"),
    ("%REQ(x-missing?x-user)%", "alice"),
    ("%REQ(x-user):3%", "ali"),
    ("%REQ(:path)%", "/p?q=1"),
    ("%REQ(:authority)%", "h.example"),
    ("%REQ(x-missing)%", ""),
    ("%START_TIME%", "2023-11-14T22:13:20.123Z"),
    ("%START_TIME(%Y/%m/%d %s)%", "2023/11/14 1700000000"),
    ("%START_TIME(%E6S|%3f|%f)%", "20.123456|123|123456000"),
])
def test_formatters(value: str, expected: str) -> None:
    request = req("/p?q=1", authority="h.example", headers=[("x-user", "alice")])
    assert render(value, request=request) == expected


def test_hostname_and_missing_context_fields() -> None:
    assert render("%HOSTNAME%") == socket.gethostname()
    assert render("[%UPSTREAM_REMOTE_ADDRESS%]", ctx=FormatterContext()) == "[]"
    assert render("%UPSTREAM_REMOTE_ADDRESS%", ctx=object()) == ""


def test_constant_values_compile_to_one_literal() -> None:
    assert compile_format("abc") == ("abc",)
    assert compile_format("a%%b") == ("a%b",)
    parts = compile_format("<%PROTOCOL%>")
    assert parts[0] == "<" and callable(parts[1]) and parts[2] == ">"


def test_format_time_rounding() -> None:
    assert format_time("%E3S", 59.9999999999) == "00.000"  # carries into the next second
    assert format_time("%H:%M", 3600 * 5 + 60 * 7) == "05:07"


def test_response_mutation_reads_request_and_response_headers() -> None:
    request = req(headers=[("x-request-id", "abc")])
    ctx = FormatterContext(request_headers=request)
    response = ResponseHeaders(200, [("x-upstream", "u1")])
    mutation("""
        - {header: {key: x-echo-id, value: '%REQ(x-request-id)%'}}
        - {header: {key: x-echo-up, value: '%RESP(x-upstream)%'}}
    """).evaluate(response, ctx, request, response)
    assert response.get("x-echo-id") == "abc"
    assert response.get("x-echo-up") == "u1"
    # With no explicit request headers, %REQ% falls back to the context's.
    response = ResponseHeaders(200)
    mutation("[{header: {key: x-echo-id, value: '%REQ(x-request-id)%'}}]").evaluate(response, ctx)
    assert response.get("x-echo-id") == "abc"
