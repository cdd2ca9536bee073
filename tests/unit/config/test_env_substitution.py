"""Environment-variable substitution: the rules, error reporting, and the loader's opt-in hook."""

from __future__ import annotations

import pytest
from cfg_helpers import BASE_YAML, edit, line_containing

from outrider.config.env_substitution import substitute
from outrider.config.errors import ConfigError
from outrider.config.loader import load_bootstrap

ENV = {"HOST": "10.0.0.1", "PORT": "8080", "EMPTY": "", "DOLLAR": "a${HOST}b"}


def sub(text: str, environ: dict[str, str] | None = None) -> str:
    return substitute(text, ENV if environ is None else environ, "envoy.yaml")


def errors(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        sub(text, environ)
    return [str(issue) for issue in info.value.issues]


# -- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("port_value: ${PORT}", "port_value: 8080"),
    ("${HOST}:${PORT}", "10.0.0.1:8080"),
    ("a: ${EMPTY}.", "a: ."),                       # set but empty: the empty string
    ("a: ${MISSING:-9000}", "a: 9000"),             # unset: the default
    ("a: ${EMPTY:-9000}", "a: 9000"),               # empty: the default too (":-", as in sh)
    ("a: ${PORT:-9000}", "a: 8080"),
    ("a: ${MISSING:-}", "a: "),                     # an empty default
    ("a: ${MISSING:-x y:z $q {w}", "a: x y:z $q {w"),  # the default ends at the first '}'
    ("a: '$${HOST}'", "a: '${HOST}'"),              # the escape
    ("a: $$${HOST}", "a: $${HOST}"),                # left to right: '$', then the escape
    ("a: $HOST $ $$ $}", "a: $HOST $ $$ $}"),       # a '$' not followed by '{' stays
    ("a: ${DOLLAR}", "a: a${HOST}b"),               # values are not expanded again
    ("a: ${_x1:-d}", "a: d"),
    ("no references at all\n", "no references at all\n"),
])
def test_substitution_rules(text, expected):
    assert sub(text, {**ENV, "_x1": ""}) == expected


def test_unset_variable_is_an_error_naming_it_and_the_line():
    assert errors("a: 1\nb: 2\nport_value: ${UPSTREAM_PORT}\n") == [
        "envoy.yaml:3: error: environment variable 'UPSTREAM_PORT' is not set "
        "(use ${UPSTREAM_PORT:-default} for a default)"]


@pytest.mark.parametrize(("text", "message"), [
    ("a: ${}", "empty reference '${}': only ${NAME} and ${NAME:-default} are supported"),
    ("a: ${1X}", "invalid variable name in '${1X}': a name is letters, digits and '_', "
                 "not starting with a digit"),
    ("a: ${A.B}", "invalid variable name in '${A.B}'"),
    ("a: ${A:?x}", "unsupported operator ':?' in '${A:?x}': only ${NAME} and "
                   "${NAME:-default} are supported"),
    ("a: ${A:=x}", "unsupported operator ':='"),
    ("a: ${A-x}", "unsupported operator '-' in '${A-x}'"),
    ("a: ${A#x}", "unsupported operator '#'"),
    ("a: ${", "unterminated reference '${': no closing '}' on its line"),
    ("a: ${PORT\nb: }", "unterminated reference '${PORT'"),       # '}' must be on the line
    ("a: ${MISSING:-x", "unterminated reference '${MISSING:-x'"),
    ("a: ${A:-${PORT}}", "the default in '${A:-${PORT}' contains '${'"),
    ("a: ${A:-$${x}}", "the default in '${A:-$${x}' contains '${'"),
])
def test_malformed_references_are_errors(text, message):
    [error] = errors(text)
    assert error.startswith("envoy.yaml:1: error: ")
    assert message in error


def test_unterminated_reference_does_not_hide_a_later_one_on_the_line():
    assert errors("a: {x: ${OPEN, y: ${MISSING}}") == [
        "envoy.yaml:1: error: unterminated reference '${OPEN, y:': no closing '}' on its line "
        "(write '$${' for a literal '${')",
        "envoy.yaml:1: error: environment variable 'MISSING' is not set "
        "(use ${MISSING:-default} for a default)"]


@pytest.mark.parametrize("value", ["a\nb", "a\r\nb", "a\rb", "a\u2028b"])
def test_a_value_with_a_line_break_is_refused(value):
    assert errors("x: 1\ncert: ${CERT}", {"CERT": value}) == [
        "envoy.yaml:2: error: environment variable 'CERT' contains a line break; only "
        "single-line values can be substituted (so that error lines still match the file)"]
    # Also when it would only be used for being non-empty, and never when the default is used.
    assert len(errors("cert: ${CERT:-x}", {"CERT": value})) == 1
    assert sub("cert: ${CERT:-x}", {}) == "cert: x"


def test_every_error_is_reported_at_once_in_file_order_with_its_line():
    text = ("admin:\n"                                  # 1
            "  port: ${PORT}\n"                         # 2: fine
            "  host: ${NO_HOST}\n"                      # 3
            "  # a comment: ${IN_COMMENT}\n"            # 4: comments are text too
            "  x: ${A:?required} ${1X}\n"               # 5: two on one line
            "  y: $${kept} ${MULTI}\n"                  # 6
            "  z: ${\n")                                # 7
    assert errors(text, {**ENV, "MULTI": "1\n2"}) == [
        "envoy.yaml:3: error: environment variable 'NO_HOST' is not set "
        "(use ${NO_HOST:-default} for a default)",
        "envoy.yaml:4: error: environment variable 'IN_COMMENT' is not set "
        "(use ${IN_COMMENT:-default} for a default)",
        "envoy.yaml:5: error: unsupported operator ':?' in '${A:?required}': only ${NAME} and "
        "${NAME:-default} are supported",
        "envoy.yaml:5: error: invalid variable name in '${1X}': a name is letters, digits and "
        "'_', not starting with a digit",
        "envoy.yaml:6: error: environment variable 'MULTI' contains a line break; only "
        "single-line values can be substituted (so that error lines still match the file)",
        "envoy.yaml:7: error: unterminated reference '${': no closing '}' on its line "
        "(write '$${' for a literal '${')",
    ]


def test_config_error_exposes_the_first_issue_flat():
    with pytest.raises(ConfigError) as info:
        substitute("\n${X}\n${Y}", {}, "/etc/envoy.yaml")
    assert (info.value.path, info.value.line, info.value.field_path) == ("/etc/envoy.yaml", 2,
                                                                         None)
    assert len(info.value.issues) == 2


# -- through load_bootstrap ----------------------------------------------------------------------

UPSTREAM = "socket_address: {address: 127.0.0.1, port_value: 8080}"
# Block style, so that without substitution "${...}" is a plain YAML string.
UPSTREAM_BLOCK = ("socket_address:\n"
                  "                address: ${UPSTREAM_HOST:-127.0.0.1}\n"
                  "                port_value: ${UPSTREAM_PORT}")


def upstream_address(loaded):
    endpoint = loaded.bootstrap.static_resources.clusters[0].load_assignment.endpoints[0]
    return endpoint.lb_endpoints[0].endpoint.address.socket_address


def test_load_bootstrap_substitutes_a_port_from_the_environment(write, monkeypatch):
    monkeypatch.setenv("UPSTREAM_PORT", "9090")
    monkeypatch.delenv("UPSTREAM_HOST", raising=False)
    text = edit(BASE_YAML, UPSTREAM, UPSTREAM_BLOCK)
    loaded = load_bootstrap(write(text), env_substitution=True)
    address = upstream_address(loaded)
    assert (address.address, address.port_value) == ("127.0.0.1", 9090)
    # Lines still match the original file.
    assert loaded.line_of("static_resources.clusters[0].lb_policy") == line_containing(
        text, "lb_policy:")


def test_load_bootstrap_substitutes_json_too(write, monkeypatch):
    monkeypatch.setenv("ADMIN_PORT", "9911")
    text = '{"admin": {"address": {"socket_address":\n  {"address": "127.0.0.1", "port_value": ${ADMIN_PORT}}}}}'
    loaded = load_bootstrap(write(text, "envoy.json"), env_substitution=True)
    assert loaded.bootstrap.admin.address.socket_address.port_value == 9911


def test_load_bootstrap_reports_substitution_errors_with_the_file_path(write, monkeypatch):
    monkeypatch.delenv("UPSTREAM_PORT", raising=False)
    text = edit(BASE_YAML, UPSTREAM, UPSTREAM_BLOCK)
    path = write(text)
    with pytest.raises(ConfigError) as info:
        load_bootstrap(path, env_substitution=True)
    assert str(info.value) == (
        f"{path}:{line_containing(text, 'port_value: ${UPSTREAM_PORT}')}: error: environment "
        "variable 'UPSTREAM_PORT' is not set (use ${UPSTREAM_PORT:-default} for a default)")


def test_later_errors_keep_the_original_line_numbers(write, monkeypatch):
    monkeypatch.setenv("UPSTREAM_PORT", "70000")
    monkeypatch.setenv("UPSTREAM_HOST", "127.0.0.2")
    text = edit(BASE_YAML, UPSTREAM, UPSTREAM_BLOCK)
    with pytest.raises(ConfigError) as info:
        load_bootstrap(write(text), env_substitution=True)
    [issue] = info.value.issues
    assert issue.line == line_containing(text, "port_value: ${UPSTREAM_PORT}")
    assert issue.message == "value must be less than or equal to 65535"


def test_without_the_flag_references_are_left_alone(write, monkeypatch):
    monkeypatch.setenv("UPSTREAM_PORT", "9090")
    monkeypatch.setenv("UPSTREAM_HOST", "127.0.0.2")
    text = edit(BASE_YAML, UPSTREAM, UPSTREAM_BLOCK)
    with pytest.raises(ConfigError) as info:
        load_bootstrap(write(text))
    [issue] = info.value.issues
    assert issue.line == line_containing(text, "port_value: ${UPSTREAM_PORT}")
    assert issue.field_path.endswith("socket_address.port_value")
    assert issue.message == "expected an integer, got a string ('${UPSTREAM_PORT}')"
    # And a reference where a string is expected is kept verbatim.
    loaded = load_bootstrap(write(edit(text, "port_value: ${UPSTREAM_PORT}", "port_value: 1")))
    assert upstream_address(loaded).address == "${UPSTREAM_HOST:-127.0.0.1}"


def test_binary_proto_with_the_flag_is_refused(write):
    path = write("", "envoy.pb")
    with pytest.raises(ConfigError, match="not to a binary proto"):
        load_bootstrap(path, env_substitution=True)
