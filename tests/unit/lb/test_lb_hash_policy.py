"""Route hash policies (outrider.router.hash_policy): Envoy's keys, combining, cookies."""

from __future__ import annotations

import pytest
import xxhash
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import json_format
from lb_helpers import Context, hosts, make_lb

from outrider.http.headers import RequestHeaders
from outrider.router.hash_policy import (
    UnsupportedHashPolicyError,
    compile_hash_policy,
    generated_cookie_value,
    make_set_cookie_value,
    parse_cookie_value,
    query_parameter_value,
)

MASK = (1 << 64) - 1


def _x(s: str) -> int:
    return xxhash.xxh64_intdigest(s.encode())


def _compile(*policies: dict):
    action = json_format.ParseDict({"cluster": "c", "hash_policy": list(policies)},
                                   route_components_pb2.RouteAction())
    return compile_hash_policy(action.hash_policy)


def _req(path: str = "/", authority: str = "example.com", **headers: str) -> RequestHeaders:
    return RequestHeaders("GET", path, authority, items=[
        (k.replace("_", "-"), v) for k, v in headers.items()])


class Cookies(list):
    def __call__(self, value: str) -> None:
        self.append(value)


def test_header_hash_is_xxh64_of_the_value():
    hp = _compile({"header": {"header_name": "x-user"}})
    assert hp.compute(_req(x_user="alice"), "1.2.3.4", None) == _x("alice")
    assert hp.compute(_req(), "1.2.3.4", None) is None


def test_header_names_are_case_insensitive_and_pseudo_headers_work():
    hp = _compile({"header": {"header_name": "X-User"}})
    assert hp.compute(_req(x_user="bob"), "", None) == _x("bob")
    hp = _compile({"header": {"header_name": ":authority"}})
    assert hp.compute(_req(authority="a.example"), "", None) == _x("a.example")


def test_repeated_header_values_are_sorted_and_chained():
    hp = _compile({"header": {"header_name": "x-tag"}})
    one = RequestHeaders(items=[("x-tag", "b"), ("x-tag", "a")])
    two = RequestHeaders(items=[("x-tag", "a"), ("x-tag", "b")])
    expected = xxhash.xxh64_intdigest(b"b", _x("a"))
    assert hp.compute(one, "", None) == hp.compute(two, "", None) == expected


def test_header_regex_rewrite():
    hp = _compile({"header": {"header_name": ":path", "regex_rewrite": {
        "pattern": {"regex": r"^/users/(\d+)/.*$"}, "substitution": r"\1"}}})
    assert hp.compute(_req("/users/42/profile"), "", None) == _x("42")


def test_cookie_present_hashes_its_value_quotes_stripped():
    hp = _compile({"cookie": {"name": "session", "ttl": "180s"}})
    cookies = Cookies()
    req = _req(cookie='a=1; session="abc"; b=2')
    assert hp.compute(req, "", cookies) == _x("abc")
    assert cookies == []


def test_cookie_missing_without_ttl_gives_no_key():
    hp = _compile({"cookie": {"name": "session"}})
    cookies = Cookies()
    assert hp.compute(_req(), "1.2.3.4", cookies) is None
    assert cookies == []


def test_cookie_missing_with_ttl_is_generated_like_envoy():
    hp = _compile({"cookie": {"name": "sticky", "ttl": "180s", "path": "/app"}})
    cookies = Cookies()
    key = hp.compute(_req(), "10.0.0.7", cookies, connection_key="10.0.0.7:51234127.0.0.1:10000")
    value = f"{_x('10.0.0.7:51234127.0.0.1:10000'):016x}"
    assert cookies == [f'sticky="{value}"; Max-Age=180; Path=/app; HttpOnly']
    assert key == _x(value)
    # The client sends it back: same key.
    assert hp.compute(_req(cookie=f'sticky="{value}"'), "10.0.0.7", cookies) == key


def test_generated_cookie_without_connection_key_uses_the_ip():
    hp = _compile({"cookie": {"name": "s", "ttl": "0s"}})
    cookies = Cookies()
    hp.compute(_req(), "192.0.2.1", cookies)
    assert cookies == [f's="{generated_cookie_value("192.0.2.1")}"; HttpOnly']


def test_set_cookie_value_format():
    assert make_set_cookie_value("n", "v") == 'n="v"; HttpOnly'
    assert make_set_cookie_value("n", "v", "/p", 60, True, [("SameSite", "Lax"), ("Secure", "")]) \
        == 'n="v"; Max-Age=60; Path=/p; SameSite=Lax; Secure; HttpOnly'
    assert make_set_cookie_value("n", "v", httponly=False) == 'n="v"'
    assert len(generated_cookie_value("x")) == 16


def test_cookie_attributes_from_config():
    hp = _compile({"cookie": {"name": "s", "ttl": "60s", "attributes": [
        {"name": "SameSite", "value": "Strict"}]}})
    cookies = Cookies()
    hp.compute(_req(), "1.1.1.1", cookies)
    assert cookies[0].endswith("; Max-Age=60; SameSite=Strict; HttpOnly")


def test_parse_cookie_value():
    req = RequestHeaders(items=[("cookie", "a=1;b=2"), ("cookie", " c=\"3\"; d")])
    assert [parse_cookie_value(req, n) for n in "abcd"] == ["1", "2", "3", ""]


def test_source_ip():
    hp = _compile({"connection_properties": {"source_ip": True}})
    assert hp.compute(_req(), "2001:db8::1", None) == _x("2001:db8::1")
    assert hp.compute(_req(), "", None) is None
    assert _compile({"connection_properties": {"source_ip": False}}) is None


def test_query_parameter():
    hp = _compile({"query_parameter": {"name": "u"}})
    assert hp.compute(_req("/p?x=1&u=a%20b&u=second"), "", None) == _x("a%20b")
    assert hp.compute(_req("/p?x=1"), "", None) is None
    assert hp.compute(_req("/p?u"), "", None) == _x("")
    assert query_parameter_value("/p?u=1#frag", "u") == "1"


def test_keys_combine_by_rotate_and_xor():
    hp = _compile({"header": {"header_name": "x-a"}}, {"header": {"header_name": "x-b"}})
    h1, h2 = _x("1"), _x("2")
    assert hp.compute(_req(x_a="1", x_b="2"), "", None) == (((h1 << 1) | (h1 >> 63)) & MASK) ^ h2
    # The same rule twice does not cancel out.
    same = _compile({"header": {"header_name": "x-a"}}, {"header": {"header_name": "x-a"}})
    assert same.compute(_req(x_a="1"), "", None) != 0
    # A policy without a key is skipped.
    assert hp.compute(_req(x_b="2"), "", None) == h2


def test_terminal_stops_after_the_first_key():
    hp = _compile({"header": {"header_name": "x-a"}, "terminal": True},
                  {"header": {"header_name": "x-b"}})
    assert hp.compute(_req(x_a="1", x_b="2"), "", None) == _x("1")
    # A terminal policy that yields nothing does not stop the list.
    assert hp.compute(_req(x_b="2"), "", None) == _x("2")


def test_filter_state_and_empty_entries_rejected():
    with pytest.raises(UnsupportedHashPolicyError, match="filter_state") as info:
        _compile({"filter_state": {"key": "k"}})
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnsupportedHashPolicyError, match="no hash policy"):
        _compile({"terminal": True})
    assert _compile() is None


def test_header_key_sticks_to_one_host_through_ring_hash():
    hp = _compile({"header": {"header_name": "x-user"}})
    lb, _, _ = make_lb({"lb_policy": "RING_HASH"}, hosts(8))
    for user in ("alice", "bob", "carol"):
        key = hp.compute(_req(x_user=user), "", None)
        assert len({lb.choose_host(Context(key)) for _ in range(20)}) == 1
