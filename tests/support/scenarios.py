"""Envoy v3 configs shared by the integration tests and the Envoy conformance test.

``routing_config`` is one route table that exercises every routing feature: virtual host domain
precedence, each path and header/query matcher, every route action, and header mutations at
route, virtual host and route-config level. Direct responses name the route that matched in
their body, so a test sees which route won without an upstream.
"""

from __future__ import annotations

from tests.support.proxy import bootstrap, cluster, free_port

# Upstream paths that the origin understands (see tests/support/origin.py), routed to cluster a.
ORIGIN_PREFIXES = (
    "/echo", "/status/", "/headers", "/sleep/", "/size/", "/chunked/", "/close-delimited/",
    "/garbage", "/truncate", "/reset-after-headers", "/head-cl", "/stream/", "/slow-sink",
)


def direct(match: dict, body: str, status: int = 200) -> dict:
    return {"match": match, "direct_response": {"status": status, "body": {"inline_string": body}}}


def to(match: dict, cluster_name: str, **action) -> dict:
    return {"match": match, "route": {"cluster": cluster_name, **action}}


def header_add(key: str, value: str, action: str = "APPEND_IF_EXISTS_OR_ADD") -> dict:
    return {"header": {"key": key, "value": value}, "append_action": action}


def _header_route(header: dict, body: str) -> dict:
    return direct({"prefix": "/hdr", "headers": [header]}, body)


def routing_routes() -> list[dict]:
    """The catch-all virtual host's routes, in match order."""
    return [
        direct({"path": "/exact"}, "path-exact"),
        direct({"path_separated_prefix": "/psp"}, "psp"),
        direct({"safe_regex": {"regex": "/re/[0-9]+"}}, "regex"),
        _header_route({"name": "x-m", "string_match": {"exact": "e"}}, "hdr-exact"),
        _header_route({"name": "x-m", "string_match": {"prefix": "pre"}}, "hdr-prefix"),
        _header_route({"name": "x-m", "string_match": {"suffix": "suf"}}, "hdr-suffix"),
        _header_route({"name": "x-m", "string_match": {"contains": "mid"}}, "hdr-contains"),
        _header_route({"name": "x-m", "string_match": {"safe_regex": {"regex": "r[0-9]+"}}},
                      "hdr-regex"),
        _header_route({"name": "x-present", "present_match": True}, "hdr-present"),
        _header_route({"name": "x-absent", "present_match": True, "invert_match": True},
                      "hdr-absent"),
        direct({"prefix": "/q", "query_parameters": [
            {"name": "v", "string_match": {"exact": "1"}}]}, "q-exact"),
        direct({"prefix": "/q", "query_parameters": [
            {"name": "p", "present_match": True}]}, "q-present"),
        direct({"prefix": "/q"}, "q-none"),
        direct({"prefix": "/CaseLess", "case_sensitive": False}, "caseless"),
        direct({"prefix": "/dead"}, "dead"),
        direct({"prefix": "/deadretry"}, "deadretry"),  # unreachable: /dead comes first
        {"match": {"prefix": "/weighted/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "a", "weight": 80}, {"name": "b", "weight": 20}]}}},
        {"match": {"prefix": "/by-header/"}, "route": {"cluster_header": "x-cluster"}},
        to({"prefix": "/rewrite/"}, "a", prefix_rewrite="/new/"),
        to({"prefix": "/rx/"}, "a", regex_rewrite={
            "pattern": {"regex": "^/rx/([a-z]+)/([0-9]+)$"}, "substitution": "/\\2/\\1"}),
        to({"prefix": "/hostrw/"}, "a", host_rewrite_literal="rewritten.example"),
        {"match": {"prefix": "/redirect"}, "redirect": {"path_redirect": "/elsewhere"}},
        {"match": {"prefix": "/https"}, "redirect": {"https_redirect": True}},
        {"match": {"prefix": "/found"}, "redirect": {"host_redirect": "new.example",
                                                     "response_code": "FOUND"}},
        {"match": {"prefix": "/direct-empty"}, "direct_response": {"status": 503}},
        direct({"prefix": "/direct"}, "direct body"),
        to({"prefix": "/refused"}, "refused"),
        to({"prefix": "/empty"}, "empty"),
        to({"prefix": "/b/"}, "b"),
        to({"prefix": "/hang"}, "a", timeout="0.5s"),
        to({"prefix": "/short/"}, "a", timeout="0.5s", prefix_rewrite="/"),
        *(to({"prefix": p}, "a") for p in ORIGIN_PREFIXES),
    ]


def routing_virtual_hosts() -> list[dict]:
    def named(name: str, domains: list[str]) -> dict:
        return {"name": name, "domains": domains, "routes": [direct({"prefix": "/"}, name)]}

    mutate = {
        "name": "mutate", "domains": ["mutate.example"],
        "request_headers_to_add": [header_add("x-level", "vhost")],
        "request_headers_to_remove": ["x-remove-vh"],
        "response_headers_to_add": [header_add("x-resp-level", "vhost")],
        "response_headers_to_remove": ["x-drop-vh"],
        "routes": [{
            "match": {"prefix": "/"},
            "route": {"cluster": "a"},
            "request_headers_to_add": [
                header_add("x-level", "route"),
                header_add("x-if-absent", "route", "ADD_IF_ABSENT"),
                header_add("x-overwrite", "route", "OVERWRITE_IF_EXISTS_OR_ADD"),
                header_add("x-ow-exists", "route", "OVERWRITE_IF_EXISTS"),
            ],
            "request_headers_to_remove": ["x-remove-route"],
            "response_headers_to_add": [header_add("x-resp-level", "route")],
            "response_headers_to_remove": ["x-drop-route"],
        }],
    }
    return [
        named("exact", ["api.example.com"]),
        named("suffix-long", ["*.api.example.com"]),
        named("suffix", ["*.example.com"]),
        named("prefix", ["api.*"]),
        mutate,
        {"name": "catchall", "domains": ["*"], "routes": routing_routes()},
    ]


def routing_config(port: int, a: int, b: int, c: int, refused: int | None = None,
                   hcm_extra: dict | None = None) -> dict:
    """The routing scenario on listener ``port``, clusters a, b, c on the given origin ports."""
    config = bootstrap(
        port, [], [
            cluster("a", [a]), cluster("b", [b]), cluster("c", [c]),
            cluster("refused", [refused or free_port()]),
            {**cluster("empty", []), "load_assignment": {"cluster_name": "empty",
                                                         "endpoints": []}},
        ],
        virtual_hosts=routing_virtual_hosts(), hcm_extra=hcm_extra)
    route_config = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]
    route_config.update({
        "request_headers_to_add": [header_add("x-level", "rc")],
        "request_headers_to_remove": ["x-remove-rc"],
        "response_headers_to_add": [header_add("x-resp-level", "rc")],
        "response_headers_to_remove": ["x-drop-rc"],
    })
    return config
