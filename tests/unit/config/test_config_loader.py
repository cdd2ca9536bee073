"""load_bootstrap: formats, Any resolution, and errors that name the field path and line."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import yaml
from cfg_helpers import BASE_YAML, HCM_PATH, ROUTE_PATH, ROUTER_FILTER, edit, line_containing
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from xds.type.v3 import typed_struct_pb2

from outrider.config.errors import ConfigError
from outrider.config.loader import _explain_parse_error, load_bootstrap, load_bootstrap_text


def load_error(write, text: str, name: str = "envoy.yaml") -> ConfigError:
    path = write(text, name)
    with pytest.raises(ConfigError) as info:
        load_bootstrap(path)
    return info.value


# -- good configs -----------------------------------------------------------------------------


def test_good_config_loads_with_typed_config_resolved(write):
    loaded = load_bootstrap(write(BASE_YAML))
    cluster = loaded.bootstrap.static_resources.clusters[0]
    assert cluster.name == "backend"
    assert cluster.connect_timeout.seconds == 1
    typed_config = loaded.bootstrap.static_resources.listeners[0].filter_chains[0].filters[0]
    hcm = hcm_pb2.HttpConnectionManager()
    assert typed_config.typed_config.Unpack(hcm)
    assert hcm.stat_prefix == "ingress"
    assert hcm.route_config.virtual_hosts[0].routes[0].route.cluster == "backend"


def test_line_of_maps_field_paths_to_yaml_lines(write):
    loaded = load_bootstrap(write(BASE_YAML))
    assert loaded.line_of("static_resources.clusters[0].lb_policy") == line_containing(
        BASE_YAML, "lb_policy:")
    assert loaded.line_of(ROUTE_PATH + ".cluster") == line_containing(BASE_YAML, "{cluster: backend}")
    # An unset field falls back to its nearest ancestor in the file.
    assert loaded.line_of("static_resources.clusters[0].circuit_breakers") == line_containing(
        BASE_YAML, "- name: backend")


def test_camel_case_keys_load_and_map_to_proto_field_paths(write):
    text = edit(BASE_YAML, "connect_timeout: 1s", "connectTimeout: 2s")
    loaded = load_bootstrap(write(text))
    assert loaded.bootstrap.static_resources.clusters[0].connect_timeout.seconds == 2
    assert loaded.line_of("static_resources.clusters[0].connect_timeout") == line_containing(
        text, "connectTimeout")


def test_json_file_loads_and_reports_lines(write):
    data = yaml.safe_load(BASE_YAML)
    loaded = load_bootstrap(write(json.dumps(data, indent=2), "envoy.json"))
    assert loaded.bootstrap.static_resources.clusters[0].name == "backend"
    data["static_resources"]["clusters"][0]["lb_polcy"] = "RANDOM"
    text = json.dumps(data, indent=2)
    error = load_error(write, text, "bad.json")
    assert "no such field 'lb_polcy'" in error.message
    assert error.line == line_containing(text, '"lb_polcy"')


def test_load_bootstrap_text_accepts_json_without_a_file():
    loaded = load_bootstrap_text(json.dumps(yaml.safe_load(BASE_YAML)), fmt="json")
    assert loaded.path is None
    assert loaded.bootstrap.admin.address.socket_address.port_value == 9901


def test_text_proto_loads_with_any_expansion(write):
    text = """
    static_resources { clusters { name: "c" connect_timeout { seconds: 1 } }
      listeners { name: "l" address { socket_address { address: "127.0.0.1" port_value: 1 } }
      filter_chains { filters { name: "hcm" typed_config {
        [type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager] {
          stat_prefix: "x" route_config { name: "r" } } } } } } }
    """
    loaded = load_bootstrap(write(text, "envoy.pb_text"))
    assert loaded.bootstrap.static_resources.clusters[0].name == "c"
    assert loaded.line_of("static_resources") is None


def test_envoy_leniencies_quoted_bool_and_scalar_for_repeated(write):
    text = edit(BASE_YAML, "stat_prefix: ingress", 'stat_prefix: ingress\n          skip_xff_append: "true"')
    text = edit(text, 'domains: ["*"]', 'domains: "*"')
    text = edit(text, "port_value: 8080", 'port_value: "8080"')
    loaded = load_bootstrap(write(text))
    hcm = hcm_pb2.HttpConnectionManager()
    loaded.bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    assert hcm.skip_xff_append is True
    assert list(hcm.route_config.virtual_hosts[0].domains) == ["*"]


def test_lone_mapping_for_a_repeated_field_keeps_its_lines(write):
    text = edit(BASE_YAML, "  clusters:\n  - name: backend\n    connect_timeout: 1s\n",
                "  clusters:\n    name: backend\n    connect_timeout: 1s\n")
    loaded = load_bootstrap(write(text))
    assert loaded.bootstrap.static_resources.clusters[0].name == "backend"
    assert loaded.line_of("static_resources.clusters[0].connect_timeout") == line_containing(
        text, "connect_timeout")


def test_typed_struct_loads_for_xds_and_udpa(write):
    for type_name in ("xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct"):
        text = edit(BASE_YAML, "    lb_policy: ROUND_ROBIN\n", f"""\
    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: ewma
          typed_config:
            "@type": type.googleapis.com/{type_name}
            type_url: type.googleapis.com/outrider.lb.peak_ewma
            value: {{decay: 10s, penalty: 5}}
""")
        loaded = load_bootstrap(write(text))
        policy = loaded.bootstrap.static_resources.clusters[0].load_balancing_policy.policies[0]
        assert policy.typed_extension_config.typed_config.type_url.endswith(type_name)


def test_dates_stay_strings_as_in_envoy(write):
    text = edit(BASE_YAML, '"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
                '"@type": type.googleapis.com/xds.type.v3.TypedStruct\n'
                '              type_url: type.googleapis.com/acme.Filter\n'
                '              value: {since: 2001-12-14}')
    loaded = load_bootstrap(write(text))
    http_filter = typed_struct_pb2.TypedStruct()
    hcm = hcm_pb2.HttpConnectionManager()
    loaded.bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    hcm.http_filters[0].typed_config.Unpack(http_filter)
    assert http_filter.value["since"] == "2001-12-14"


def test_json_format_fallback_message_is_made_readable():
    field_path, detail = _explain_parse_error(
        "Failed to parse static_resources field: Failed to parse clusters field: Failed to parse "
        "lb_policy field: Invalid enum value X for enum type envoy.config.cluster.v3.Cluster."
        "LbPolicy at Bootstrap.static_resources.clusters[0].lb_policy...")
    assert field_path == "static_resources.clusters[0].lb_policy"
    assert detail == "Invalid enum value X for enum type envoy.config.cluster.v3.Cluster.LbPolicy"


# -- load errors -------------------------------------------------------------------------------


def test_typo_names_path_line_and_suggestion(write):
    text = edit(BASE_YAML, "lb_policy:", "lb_polcy:")
    error = load_error(write, text)
    assert error.message == (
        "static_resources.clusters[0]: no such field 'lb_polcy' (did you mean 'lb_policy'?)")
    assert error.line == line_containing(text, "lb_polcy")
    assert str(error) == f"{error.path}:{error.line}: error: {error.message}"
    assert error.path.endswith("envoy.yaml")


def test_typo_inside_typed_config_is_found(write):
    text = edit(BASE_YAML, "stat_prefix: ingress", "stat_prefx: ingress")
    error = load_error(write, text)
    assert error.field_path == HCM_PATH
    assert "no such field 'stat_prefx' (did you mean 'stat_prefix'?)" in error.message
    assert error.line == line_containing(text, "stat_prefx")


def test_bad_enum_value(write):
    text = edit(BASE_YAML, "lb_policy: ROUND_ROBIN", "lb_policy: ROUND_ROBN")
    error = load_error(write, text)
    assert error.field_path == "static_resources.clusters[0].lb_policy"
    assert "invalid value 'ROUND_ROBN' for enum" in error.message
    assert "did you mean 'ROUND_ROBIN'" in error.message
    assert error.line == line_containing(text, "ROUND_ROBN")


@pytest.mark.parametrize("value", ["1x", "5", "1.5"])
def test_bad_duration(write, value):
    text = edit(BASE_YAML, "connect_timeout: 1s", f"connect_timeout: {value}")
    error = load_error(write, text)
    assert error.field_path == "static_resources.clusters[0].connect_timeout"
    assert "invalid duration" in error.message
    assert error.line == line_containing(text, "connect_timeout")


def test_unknown_type_url_names_the_type_and_field(write):
    text = edit(BASE_YAML, "router.v3.Router", "router.v3.Routr")
    error = load_error(write, text)
    assert error.field_path == HCM_PATH + ".http_filters[0].typed_config"
    assert "envoy.extensions.filters.http.router.v3.Routr" in error.message
    assert error.line == line_containing(text, "Routr")


def test_yaml_syntax_error_has_line(write):
    text = edit(BASE_YAML, "    type: STATIC\n", "    type: [STATIC\n")
    error = load_error(write, text)
    assert error.message.startswith("invalid YAML")
    assert error.line is not None and error.line >= line_containing(text, "[STATIC")


def test_unknown_extension_is_refused(write):
    error = load_error(write, BASE_YAML, "envoy.conf")
    assert "unsupported config file extension '.conf'" in error.message


def test_string_field_given_a_number(write):
    error = load_error(write, edit(BASE_YAML, "stat_prefix: ingress", "stat_prefix: 123"))
    assert error.field_path == HCM_PATH + ".stat_prefix"
    assert "expected a string" in error.message


def test_two_members_of_a_oneof(write):
    text = edit(BASE_YAML, "{cluster: backend}", "{cluster: backend, cluster_header: x-c}")
    error = load_error(write, text)
    assert "only one member of oneof 'cluster_specifier'" in error.message


def test_integer_out_of_range(write):
    error = load_error(write, edit(BASE_YAML, "port_value: 8080", "port_value: -1"))
    assert "out of range for uint32" in error.message


# -- PGV constraints Envoy enforces -------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "path", "message"), [
    ("connect_timeout: 1s", "connect_timeout: 0s", "static_resources.clusters[0].connect_timeout",
     "value must be greater than 0s"),
    ("port_value: 8080", "port_value: 70000", ("static_resources.clusters[0].load_assignment."
     "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value"),
     "value must be less than or equal to 65535"),
    ("stat_prefix: ingress", "stat_prefix: ingress\n          max_request_headers_kb: 9000",
     HCM_PATH + ".max_request_headers_kb", "value must be inside range (0, 8192]"),
    ("- name: all", '- name: ""', HCM_PATH + ".route_config.virtual_hosts[0].name",
     "value length must be at least 1 characters"),
    ("port_value: 8080}", "port_value: 8080}\n          load_balancing_weight: 0",
     ("static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]"
     ".load_balancing_weight"), "value must be greater than or equal to 1"),
    ("  - name: backend\n", "  - alt_stat_name: b\n", "static_resources.clusters[0].name",
     "value length must be at least 1 characters"),
])
def test_constraint_violations(write, old, new, path, message):
    text = edit(BASE_YAML, old, new)
    error = load_error(write, text)
    assert error.field_path == path
    assert error.message == f"{path}: {message}"
    assert error.line is not None


def test_listener_without_address(write):
    text = edit(BASE_YAML, "    address:\n      socket_address: {address: 0.0.0.0, port_value: 10000}\n", "")
    error = load_error(write, text)
    assert error.field_path == "static_resources.listeners[0]"
    assert "address is necessary" in error.message
    assert error.line == line_containing(text, "- name: l0")


# -- Envoy's leniencies and refusals (issue 8; each checked against Envoy 1.40) ------------------


@pytest.mark.parametrize(("cluster_type", "lb_policy", "codec"), [
    ("static", "round_robin", "auto"),
    ("Static", "Round_Robin", "aUtO"),
    ("STATIC", "ROUND_ROBIN", "AUTO"),
])
def test_enum_names_load_in_any_case(write, cluster_type, lb_policy, codec):
    text = edit(edit(edit(BASE_YAML, "type: STATIC", f"type: {cluster_type}"),
                     "lb_policy: ROUND_ROBIN", f"lb_policy: {lb_policy}"),
                "stat_prefix: ingress", f"stat_prefix: ingress\n          codec_type: {codec}")
    loaded = load_bootstrap(write(text))
    cluster = loaded.bootstrap.static_resources.clusters[0]
    assert cluster.type == cluster.STATIC and cluster.lb_policy == cluster.ROUND_ROBIN
    hcm = hcm_pb2.HttpConnectionManager()
    loaded.bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    assert hcm.codec_type == hcm.AUTO


def test_enum_as_numeric_string_loads(write):
    loaded = load_bootstrap(write(edit(BASE_YAML, "lb_policy: ROUND_ROBIN", "lb_policy: '3'")))
    assert loaded.bootstrap.static_resources.clusters[0].lb_policy == 3  # RANDOM


@pytest.mark.parametrize("number", [" 1", "1 ", "\t1", "\n1\r", "+1", " +1 "])
def test_enum_number_with_ascii_white_space_loads_as_in_envoy(write, number):
    # Envoy reads an enum's numeric string with absl::SimpleAtoi, which skips ASCII white space.
    text = edit(BASE_YAML, "lb_policy: ROUND_ROBIN", f"lb_policy: {json.dumps(number)}")
    assert load_bootstrap(write(text)).bootstrap.static_resources.clusters[0].lb_policy == 1


@pytest.mark.parametrize("value", ["+ 1", "0x1", "0_1", "\u00a01", "\uff11", " ROUND_ROBIN"])
def test_what_envoy_does_not_read_as_an_enum_number_is_refused(write, value):
    text = edit(BASE_YAML, "lb_policy: ROUND_ROBIN", f"lb_policy: {json.dumps(value)}")
    assert f"invalid value {value!r}" in load_error(write, text).message


@pytest.mark.parametrize("port", ["1_8080", "\uff18080"])
def test_integer_strings_are_ascii_digits_only(write, port):
    # Python's int() takes both; Envoy: "Couldn't parse integer".
    text = edit(BASE_YAML, "port_value: 8080", f"port_value: {json.dumps(port)}")
    assert "expected an integer" in load_error(write, text).message


def test_logical_dns_with_two_endpoints_is_reported_with_the_other_errors(write):
    text = edit(edit(BASE_YAML, "type: STATIC", "type: LOGICAL_DNS"),
                "connect_timeout: 1s", "connect_timeout: 0s") + """        - endpoint:
            address:
              socket_address: {address: 127.0.0.2, port_value: 8080}
"""
    error = load_error(write, text)
    assert [(i.field_path, i.message) for i in error.issues] == [
        ("static_resources.clusters[0].connect_timeout", "value must be greater than 0s"),
        ("static_resources.clusters[0].load_assignment", "LOGICAL_DNS clusters must have a "
         "single locality_lb_endpoint and a single lb_endpoint"),
    ]
    assert error.issues[1].line == line_containing(text, "load_assignment:")


def test_two_filter_chains_with_the_same_match_are_refused(write):
    # Envoy: "filter chain '' has the same matching rules defined as ''"; Outrider would serve
    # the first and never the second.
    chain = BASE_YAML[BASE_YAML.index("    - filters:\n"):BASE_YAML.index("  clusters:\n")]
    text = edit(BASE_YAML, "  clusters:\n", chain + "  clusters:\n")
    error = load_error(write, text)
    assert [(i.field_path, i.message) for i in error.issues] == [(
        "static_resources.listeners[0].filter_chains[1]",
        "filter chain '' has the same matching rules defined as ''")]
    assert error.line == line_containing(text, "  clusters:") - len(chain.splitlines())


def test_logical_dns_with_one_endpoint_loads(write):
    assert load_bootstrap(write(edit(BASE_YAML, "type: STATIC", "type: LOGICAL_DNS")))


def test_enum_spelt_otherwise_is_refused_with_a_suggestion(write):
    error = load_error(write, edit(BASE_YAML, "lb_policy: ROUND_ROBIN", "lb_policy: round-robin"))
    assert "invalid value 'round-robin'" in error.message
    assert "did you mean 'ROUND_ROBIN'" in error.message


def test_field_newer_than_the_protos_is_not_called_a_typo(write):
    text = edit(BASE_YAML, "    lb_policy: ROUND_ROBIN", "    lb_policy: ROUND_ROBIN\n"
                "    upstream_bind_timeout_policy: 5s")
    error = load_error(write, text)
    version = metadata.version("xds-protos")
    assert error.message == (
        "static_resources.clusters[0]: field 'upstream_bind_timeout_policy' is unknown to the "
        f"installed Envoy API definitions (xds-protos {version}); if it is a newer Envoy field, "
        "it is not supported yet")
    assert "did you mean" not in error.message


def test_claim_path_is_not_a_typo_of_claim_name(write):
    # jwt_authn's claim_path exists in Envoy 1.40's API but not in the installed xds-protos.
    text = edit(BASE_YAML, ROUTER_FILTER, """\
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                p:
                  claim_to_headers:
                  - {header_name: x-sub, claim_path: [{key: sub}]}
""" + ROUTER_FILTER)
    error = load_error(write, text)
    assert "field 'claim_path' is unknown to the installed Envoy API definitions" in error.message
    assert "claim_name" not in error.message


def test_v2_api_type_is_refused_at_load(write):
    text = edit(BASE_YAML, "envoy.extensions.filters.network.http_connection_manager.v3.",
                "envoy.config.filter.network.http_connection_manager.v2.")
    error = load_error(write, text)
    assert error.field_path == HCM_PATH
    assert "is from Envoy's v2 API" in error.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "null\n", "---\n"])
def test_empty_config_is_refused(write, text):
    error = load_error(write, text)
    assert "the configuration is empty" in error.message


def test_every_load_error_is_reported_in_one_pass(write):
    text = edit(edit(edit(edit(BASE_YAML,
                               "stat_prefix: ingress", "stat_prefx: ingress"),
                          "connect_timeout: 1s", "connect_timeout: 1x"),
                     "lb_policy: ROUND_ROBIN", "lb_policy: ROUND_ROBN"),
                "port_value: 8080", "port_value: 70000")
    error = load_error(write, text)
    lines = [(issue.line, issue.message) for issue in error.issues]
    assert lines == [
        (line_containing(text, "stat_prefx"), "no such field 'stat_prefx' (did you mean "
                                              "'stat_prefix'?)"),
        (line_containing(text, "connect_timeout"), "invalid duration '1x' (expected a string "
                                                   "such as '5s' or '0.25s')"),
        (line_containing(text, "ROUND_ROBN"), "invalid value 'ROUND_ROBN' for enum "
                                              "envoy.config.cluster.v3.Cluster.LbPolicy "
                                              "(did you mean 'ROUND_ROBIN'?)"),
        (line_containing(text, "70000"), "value must be less than or equal to 65535"),
    ]
    rendered = str(error).splitlines()
    assert len(rendered) == 4
    assert all(line.startswith(f"{error.path}:") and ": error: " in line for line in rendered)


def test_listener_without_address_but_internal_is_not_told_address_is_necessary(write):
    text = edit(BASE_YAML, "    address:\n      socket_address: {address: 0.0.0.0, port_value: 10000}\n",
                "    internal_listener: {}\n")
    loaded = load_bootstrap(write(text))  # Outrider's refusal is validate()'s: not implemented
    assert loaded.bootstrap.static_resources.listeners[0].HasField("internal_listener")
