"""Shared helpers for the route table tests: Envoy YAML in, compiled objects out."""

from __future__ import annotations

import textwrap

import yaml
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import json_format

from outrider.http.headers import RequestHeaders
from outrider.router.route_table import RouteTable


def route_config(text: str) -> route_pb2.RouteConfiguration:
    return json_format.ParseDict(yaml.safe_load(textwrap.dedent(text)),
                                 route_pb2.RouteConfiguration())


def table(text: str, **kwargs) -> RouteTable:
    """Compile a RouteConfiguration written as Envoy YAML."""
    return RouteTable.from_proto(route_config(text), **kwargs)


def routes(routes_yaml: str, **extra) -> RouteTable:
    """A table with one catch-all virtual host holding ``routes_yaml`` (a YAML list)."""
    config = {"name": "rc", "virtual_hosts": [
        {"name": "vh", "domains": ["*"], "routes": yaml.safe_load(textwrap.dedent(routes_yaml))}]}
    config.update(extra)
    return RouteTable.from_proto(json_format.ParseDict(config, route_pb2.RouteConfiguration()))


def proto(message_type, text: str):
    return json_format.ParseDict(yaml.safe_load(textwrap.dedent(text)), message_type())


def header_matcher_proto(text: str) -> route_components_pb2.HeaderMatcher:
    return proto(route_components_pb2.HeaderMatcher, text)


def req(path: str = "/", authority: str = "example.com", method: str = "GET",
        scheme: str = "http", headers=()) -> RequestHeaders:
    return RequestHeaders(method=method, path=path, authority=authority, scheme=scheme,
                          items=list(headers))
