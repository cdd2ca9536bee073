"""Shared data for config tests: a minimal valid bootstrap and helpers to edit it.

Imported by name (``from cfg_helpers import ...``); the name is unique across the test tree.
"""

from __future__ import annotations

# Line numbers matter: tests assert them. Line 1 is "admin:".
BASE_YAML = """\
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 9901}
static_resources:
  listeners:
  - name: l0
    address:
      socket_address: {address: 0.0.0.0, port_value: 10000}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: 8080}
"""

HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
ROUTE_PATH = HCM_PATH + ".route_config.virtual_hosts[0].routes[0].route"
ROUTER_FILTER = """\
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def edit(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced once; fails loudly if ``old`` is absent (a stale test)."""
    assert old in text, f"test fixture does not contain {old!r}"
    return text.replace(old, new, 1)


def line_containing(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` containing ``needle``."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")
