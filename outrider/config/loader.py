"""Load an Envoy v3 bootstrap file into ``envoy.config.bootstrap.v3.Bootstrap``.

Contract::

    loaded = load_bootstrap("envoy.yaml")          # raises ConfigError
    loaded.bootstrap                               # the parsed Bootstrap message
    loaded.line_of("static_resources.clusters[0]") # 1-based line, or None

The format follows the file extension as in Envoy: ``.yaml``/``.yml`` (YAML), ``.json``,
``.pb_text`` (text proto), ``.pb`` (binary proto); anything else is refused rather than guessed.

YAML and JSON go through three steps; the :class:`ConfigError` raised at the end lists every
problem found, each with its field path and line, so a user fixes a file in one round:

1. A descriptor-guided walk of the document finds what json_format would reject (unknown field,
   with a did-you-mean for a near miss; invalid enum; invalid duration; wrong scalar type; two
   members of a oneof; unknown or v2-API ``@type``), importing the ``_pb2`` module of every
   ``@type`` on the way so that ``Any`` fields resolve. A field with a problem is recorded and
   dropped, and the walk goes on. It also applies the leniencies Envoy's loader has and
   json_format lacks: enum names in any case (``round_robin``), a quoted ``"true"``/``"false"``
   for a bool and a single scalar for a repeated field.
2. ``json_format.ParseDict`` builds the message (its own message is the fallback for anything the
   walk missed).
3. Envoy's PGV constraints and load-time checks (:mod:`outrider.config.constraints`), except
   those about a field the walk already dropped.

Field paths use proto field names even where the file used JSON (lowerCamel) names, so one path
format serves the loader, the validator and the line map.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import descriptor, json_format, text_format
from google.protobuf.message import DecodeError

from outrider.config import typed
from outrider.config.constraints import envoy_load_checks, iter_violations, join
from outrider.config.env_substitution import substitute
from outrider.config.errors import ConfigError, ConfigIssue

FD = descriptor.FieldDescriptor
RawPath = tuple[str | int, ...]

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".pb_text": "pb_text", ".pb": "pb"}



class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A SafeLoader that leaves dates as strings, as Envoy's YAML reader does."""


_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
# A string json_format reads as an integer: ASCII digits only (Python's int() would also take
# "1_0" and other scripts' digits, which Envoy refuses).
_INTEGER = re.compile(r"[+-]?[0-9]+")
# An enum's number as Envoy reads it (absl::SimpleAtoi): the same, with ASCII white space around.
_ENUM_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_SPECIAL_JSON = _WRAPPERS | {
    f"google.protobuf.{name}"
    for name in ("Any", "Duration", "FieldMask", "ListValue", "Struct", "Timestamp", "Value")
}
_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1), FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1), FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1), FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1), FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_TYPE_NAMES = {
    FD.TYPE_INT32: "int32", FD.TYPE_SINT32: "int32", FD.TYPE_SFIXED32: "int32",
    FD.TYPE_UINT32: "uint32", FD.TYPE_FIXED32: "uint32", FD.TYPE_INT64: "int64",
    FD.TYPE_SINT64: "int64", FD.TYPE_SFIXED64: "int64", FD.TYPE_UINT64: "uint64",
    FD.TYPE_FIXED64: "uint64",
}


@dataclass
class LoadedConfig:
    """A parsed bootstrap and where each field came from.

    ``lines`` maps field paths (``static_resources.clusters[0].lb_policy``) to 1-based lines; it
    is empty for binary and text protos.
    """

    bootstrap: bootstrap_pb2.Bootstrap
    path: str | None = None
    lines: dict[str, int] = field(default_factory=dict)
    fmt: str = "yaml"

    def line_of(self, field_path: str) -> int | None:
        """The line of ``field_path``, else of its nearest ancestor present in the file."""
        path = field_path
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = _parent_path(path)
        return None


def _parent_path(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    cut = path.rfind(".")
    return path[:cut] if cut >= 0 else ""


def load_bootstrap(path: str, *, env_substitution: bool = False) -> LoadedConfig:
    """Read and parse the bootstrap at ``path``; raises ConfigError naming file, line and field.

    With ``env_substitution``, ``${NAME}`` and ``${NAME:-default}`` in the file's text are
    replaced from ``os.environ`` before parsing (:mod:`outrider.config.env_substitution`; not
    Envoy behaviour, so opt-in). A binary proto has no text to substitute and is refused.
    """
    ext = os.path.splitext(path)[1].lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise ConfigError(
            f"unsupported config file extension '{ext or path}': expected one of "
            + ", ".join(FORMATS), path
        )
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", path) from e
    if fmt == "pb":
        if env_substitution:
            raise ConfigError("environment variable substitution applies to text configs "
                              "(YAML, JSON, text proto), not to a binary proto", path)
        return _load_binary(raw, path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config is not valid UTF-8 (byte offset {e.start})", path) from e
    if env_substitution:
        text = substitute(text, os.environ, path)
    return load_bootstrap_text(text, fmt, path=path)


def load_bootstrap_text(text: str, fmt: str = "yaml", path: str | None = None) -> LoadedConfig:
    """Parse bootstrap ``text`` given as ``fmt`` ("yaml", "json" or "pb_text").

    ``path`` is only used in messages. Raises ConfigError.
    """
    if fmt == "pb_text":
        return _load_text_proto(text, path)
    if fmt == "yaml":
        data, raw_lines = _parse_yaml(text, path)
    elif fmt == "json":
        data, raw_lines = _parse_json(text, path)
    else:
        raise ConfigError(f"unknown config format {fmt!r}", path)
    return load_bootstrap_data(data, path, raw_lines, fmt)


def load_bootstrap_data(data: Any, path: str | None = None,
                        raw_lines: dict[RawPath, int] | None = None,
                        fmt: str = "yaml") -> LoadedConfig:
    """Build a LoadedConfig from already-decoded JSON-like data (mutated: see module docs)."""
    if data is None:
        # Envoy: "Unable to convert YAML as JSON" for an empty, comment-only or null document.
        raise ConfigError("the configuration is empty (Envoy refuses an empty bootstrap; "
                          "write '{}' for one that does nothing)", path, None)
    checker = _Checker(raw_lines or {}, path)
    if not isinstance(data, dict):
        raise ConfigError(f"the bootstrap must be a mapping, not {_kind(data)}", path, 1)
    checker.message(data, bootstrap_pb2.Bootstrap.DESCRIPTOR, "", ())
    bootstrap = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(data, bootstrap)
    except json_format.ParseError as e:
        field_path, detail = _explain_parse_error(str(e))
        loaded = LoadedConfig(bootstrap, path, checker.lines, fmt)
        if not checker.errors or not _covered(field_path, checker.dropped):
            checker.errors.append(ConfigIssue("error", field_path, loaded.line_of(field_path),
                                              detail, path))
        raise ConfigError(issues=_in_file_order(checker.errors)) from e
    loaded = LoadedConfig(bootstrap, path, checker.lines, fmt)
    _enforce_constraints(loaded, checker.errors, checker.dropped)
    return loaded


def _enforce_constraints(loaded: LoadedConfig, errors: list[ConfigIssue] | None = None,
                         dropped: list[str] | None = None) -> None:
    """Raise one ConfigError for ``errors`` plus every constraint violation in ``loaded``.

    Violations about a ``dropped`` field (or one inside it, or its container's requirement
    that it be set) are left out: the user is already told about that field. So is a required
    field missing beside a dropped one: most often the dropped one is it, misspelt.
    """
    issues = list(errors or [])
    for check in (iter_violations(loaded.bootstrap), envoy_load_checks(loaded.bootstrap)):
        for field_path, message in check:
            if dropped and (_covered(field_path, dropped) or (
                    field_path not in loaded.lines
                    and _covered(_parent_path(field_path), dropped))):
                continue
            issues.append(ConfigIssue("error", field_path, loaded.line_of(field_path), message,
                                      loaded.path))
    if issues:
        raise ConfigError(issues=_in_file_order(issues))


def _covered(field_path: str, dropped: list[str]) -> bool:
    """True when ``field_path`` is a dropped field, inside one, or one's direct container."""
    for gone in dropped:
        if field_path == gone or field_path.startswith((f"{gone}.", f"{gone}[")):
            return True
        if gone.startswith((f"{field_path}.", f"{field_path}[")) and "." not in gone[
                len(field_path) + 1:].split("[", 1)[0]:
            return True
    return False


def _in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))


# -- formats -----------------------------------------------------------------------------------


def _parse_yaml(text: str, path: str | None) -> tuple[Any, dict[RawPath, int]]:
    try:
        node = yaml.compose(text, Loader=_SafeLoader)
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise ConfigError(f"invalid YAML: {detail}", path, line) from e
    lines: dict[RawPath, int] = {}
    if node is not None:
        _index_node(node, (), lines)
    return data, lines


def _parse_json(text: str, path: str | None) -> tuple[Any, dict[RawPath, int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"invalid JSON: {e.msg} (column {e.colno})", path, e.lineno) from e
    lines: dict[RawPath, int] = {}
    try:  # JSON is (nearly) YAML, which gives line numbers for free; without them, no lines
        node = yaml.compose(text, Loader=_SafeLoader)
        if node is not None:
            _index_node(node, (), lines)
    except yaml.YAMLError:
        lines = {}
    return data, lines


def _index_node(node: yaml.Node, raw: RawPath, out: dict[RawPath, int]) -> None:
    """Record the 1-based line of every mapping key and sequence item under ``node``."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            child = (*raw, key_node.value)
            out.setdefault(child, key_node.start_mark.line + 1)
            _index_node(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*raw, i)
            out[child] = item.start_mark.line + 1
            _index_node(item, child, out)


def _load_text_proto(text: str, path: str | None) -> LoadedConfig:
    for match in re.finditer(r"\[\s*(?:[\w.\-]+/)?([\w.]+)\s*\]", text):
        if match.group(1).rsplit(".", 1)[-1][:1].isupper():
            typed.find_message_descriptor(match.group(1))
    bootstrap = bootstrap_pb2.Bootstrap()
    try:
        text_format.Parse(text, bootstrap)
    except text_format.ParseError as e:
        raise ConfigError(f"invalid text proto: {e}", path, e.GetLine()) from e
    loaded = LoadedConfig(bootstrap, path, {}, "pb_text")
    _enforce_constraints(loaded)
    return loaded


def _load_binary(raw: bytes, path: str | None) -> LoadedConfig:
    try:
        bootstrap = bootstrap_pb2.Bootstrap.FromString(raw)
    except DecodeError as e:
        raise ConfigError(f"invalid binary proto: {e}", path) from e
    loaded = LoadedConfig(bootstrap, path, {}, "pb")
    _enforce_constraints(loaded)
    return loaded


def _explain_parse_error(text: str) -> tuple[str, str]:
    """``(field path, readable reason)`` from a json_format.ParseError message (a fallback)."""
    detail = re.sub(r"^(Failed to parse \w+ field: )+", "", text.strip())
    detail = detail.split("\n", 1)[0]
    match = re.search(r' at "?Bootstrap\.?([^"\s]*?)"?\.*$', detail)
    if match is None:
        return "", detail.rstrip(".")
    return match.group(1), detail[: match.start()].rstrip(".")


# -- the descriptor-guided walk ------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


@cache
def xds_protos_version() -> str:
    """The installed xds-protos version: the Envoy API definitions Outrider reads configs with."""
    try:
        return metadata.version("xds-protos")
    except metadata.PackageNotFoundError:
        return "unknown"


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit (optimal string alignment)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def did_you_mean(word: str, candidates: list[str]) -> str | None:
    """The candidate nearest ``word`` if it is a near miss (for a did-you-mean), else None.

    A near miss is two edits away at most, and no more than a third of the word: ``claim_path``
    is not a typo of ``claim_name`` but an Envoy field the installed API definitions predate.
    """
    scored = sorted((_distance(word, name), name) for name in candidates)
    if scored and scored[0][0] <= min(2, len(word) // 3):
        return scored[0][1]
    return None


def unknown_field_message(key: str, candidates: list[str]) -> str:
    """Why ``key`` is refused: a typo of a known field, or (likely) a field newer than our protos."""
    near = did_you_mean(key, candidates)
    if near is not None:
        return f"no such field '{key}' (did you mean '{near}'?)"
    return (f"field '{key}' is unknown to the installed Envoy API definitions (xds-protos "
            f"{xds_protos_version()}); if it is a newer Envoy field, it is not supported yet")


def _is_v2_api(full_name: str) -> bool:
    """True for an Envoy v2-era message (``envoy.api.v2.*``, ``envoy.config.filter.*.v2``...).

    xds-protos still ships them, but Envoy 1.40 has dropped them ("could not find @type").
    """
    if not full_name.startswith("envoy."):
        return False
    package = typed.proto_package(full_name).split(".")
    return not any(re.fullmatch(r"v[3-9](alpha\d*)?", part) for part in package)


class _Invalid(Exception):
    """One problem in the document; caught by the enclosing mapping, which drops the field."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


class _Checker:
    """Walks JSON-like data beside a descriptor, collecting every problem in ``errors``.

    A field with a problem is removed from the data (its path goes to ``dropped``) so that
    json_format and the constraint checks can still look at the rest. Fills ``lines`` (field
    path → line) from ``raw_lines`` (document key path → line).
    """

    def __init__(self, raw_lines: dict[RawPath, int], path: str | None) -> None:
        self.raw_lines = raw_lines
        self.file = path
        self.lines: dict[str, int] = {}
        self.errors: list[ConfigIssue] = []
        self.dropped: list[str] = []

    def fail(self, field_path: str, raw: RawPath, message: str) -> _Invalid:
        line = None
        while line is None and raw:
            line = self.raw_lines.get(raw)
            raw = raw[:-1]
        return _Invalid(ConfigIssue("error", field_path, line, message, self.file))

    def note(self, field_path: str, raw: RawPath) -> None:
        line = self.raw_lines.get(raw)
        if line is not None:
            self.lines.setdefault(field_path, line)

    def message(self, data: Any, desc: descriptor.Descriptor, path: str, raw: RawPath,
                skip: tuple[str, ...] = ()) -> None:
        if not isinstance(data, dict):
            raise self.fail(path, raw, f"expected a mapping for {desc.full_name}, got {_kind(data)}")
        by_json = {f.json_name: f for f in desc.fields}
        oneofs_seen: dict[str, str] = {}
        for key in list(data):
            if key in skip:
                continue
            try:
                self.member(data, key, desc, by_json, oneofs_seen, path, raw)
            except _Invalid as bad:
                fd = (desc.fields_by_name.get(key) or by_json.get(key)
                      if isinstance(key, str) else None)
                self.errors.append(bad.issue)
                self.dropped.append(join(path, fd.name if fd else str(key)))
                del data[key]

    def member(self, data: dict, key: Any, desc: descriptor.Descriptor, by_json: dict[str, FD],
               oneofs_seen: dict[str, str], path: str, raw: RawPath) -> None:
        """Check ``data[key]``, one field of a ``desc`` message; raises _Invalid."""
        value = data[key]
        if not isinstance(key, str):
            raise self.fail(path, raw, f"field names must be strings, got {key!r}")
        fd = desc.fields_by_name.get(key) or by_json.get(key)
        child, child_raw = join(path, fd.name if fd else key), (*raw, key)
        if fd is None:
            message = unknown_field_message(key, [f.name for f in desc.fields])
            raise self.fail(path, child_raw, message)
        self.note(child, child_raw)
        if value is None:
            return  # json_format: null means unset
        oneof = fd.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):
            other = oneofs_seen.setdefault(oneof.name, fd.name)
            if other != fd.name:
                raise self.fail(child, child_raw, f"'{other}' and '{fd.name}' are both set, "
                                f"but only one member of oneof '{oneof.name}' may be")
        data[key] = self.field(value, fd, child, child_raw)

    def field(self, value: Any, fd: FD, path: str, raw: RawPath) -> Any:
        """Check one field's value; returns it, normalised the way Envoy reads it."""
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            if not isinstance(value, dict):
                raise self.fail(path, raw, f"expected a mapping, got {_kind(value)}")
            value_fd = fd.message_type.fields_by_name["value"]
            for key in list(value):
                child, child_raw = f'{path}["{key}"]', (*raw, str(key))
                self.note(child, child_raw)
                if value[key] is not None:
                    value[key] = self.single(value[key], value_fd, child, child_raw)
            return value
        if fd.is_repeated:
            if not isinstance(value, list):
                # Envoy accepts a lone scalar or mapping for a repeated field.
                self.note(f"{path}[0]", raw)
                return [self.single(value, fd, f"{path}[0]", raw)]
            for i, item in enumerate(value):
                self.note(f"{path}[{i}]", (*raw, i))
                value[i] = self.single(item, fd, f"{path}[{i}]", (*raw, i))
            return value
        return self.single(value, fd, path, raw)

    def single(self, value: Any, fd: FD, path: str, raw: RawPath) -> Any:
        if fd.message_type is not None:
            return self.message_value(value, fd.message_type, path, raw)
        if fd.type == FD.TYPE_ENUM:
            return self.enum(value, fd.enum_type, path, raw)
        return self.scalar(value, fd.type, path, raw)

    def message_value(self, value: Any, desc: descriptor.Descriptor, path: str,
                      raw: RawPath) -> Any:
        name = desc.full_name
        if name == "google.protobuf.Any":
            self.any(value, path, raw)
        elif name == "google.protobuf.Duration":
            if not isinstance(value, str) or not _DURATION.match(value):
                raise self.fail(path, raw, f"invalid duration {value!r} "
                                "(expected a string such as '5s' or '0.25s')")
        elif name in _WRAPPERS:
            inner = desc.fields_by_name["value"]
            return self.scalar(value, inner.type, path, raw)
        elif name in ("google.protobuf.Struct", "google.protobuf.Empty"):
            if not isinstance(value, dict):
                raise self.fail(path, raw, f"expected a mapping, got {_kind(value)}")
        elif name == "google.protobuf.ListValue":
            if not isinstance(value, list):
                raise self.fail(path, raw, f"expected a list, got {_kind(value)}")
        elif name in ("google.protobuf.Value", "google.protobuf.Timestamp",
                      "google.protobuf.FieldMask"):
            pass  # any JSON / left to json_format
        else:
            self.message(value, desc, path, raw)
        return value

    def any(self, value: Any, path: str, raw: RawPath) -> None:
        if not isinstance(value, dict):
            raise self.fail(path, raw, f"expected a mapping with '@type', got {_kind(value)}")
        type_url = value.get("@type")
        if not isinstance(type_url, str) or not type_url:
            raise self.fail(path, raw, "'@type' is required in a typed_config")
        desc = typed.find_message_descriptor(typed.type_name(type_url))
        type_raw = (*raw, "@type")
        if desc is None:
            raise self.fail(path, type_raw, f"unknown @type '{type_url}': no such message type "
                            f"in the installed Envoy API definitions (xds-protos "
                            f"{xds_protos_version()}); if it is a newer Envoy extension, it is "
                            "not supported yet")
        if _is_v2_api(desc.full_name):
            raise self.fail(path, type_raw, f"@type '{type_url}' is from Envoy's v2 API, "
                            "which Envoy 1.40 no longer reads (\"could not find @type\"); use "
                            "the v3 type")
        if "/" not in type_url:
            raise self.fail(path, type_raw, f"@type '{type_url}' must be a type URL "
                            f"such as 'type.googleapis.com/{type_url}'")
        if desc.full_name in _SPECIAL_JSON:  # {"@type": ..., "value": <its JSON form>}
            if value.get("value") is not None:
                value["value"] = self.message_value(
                    value["value"], desc, join(path, "value"), (*raw, "value"))
            return
        self.message(value, desc, path, raw, skip=("@type",))

    def enum(self, value: Any, enum: descriptor.EnumDescriptor, path: str, raw: RawPath) -> Any:
        """The value as json_format reads it: a canonical name, or a number.

        Envoy parses JSON with protobuf's ``case_insensitive_enum_parsing``: a name not found
        as written is looked up upper-cased (``round_robin``, ``Round_Robin``); a numeric string
        is a number read as absl::SimpleAtoi does (``" 1"``, ``"+1"``). Anything else
        (``round-robin``, ``' ROUND_ROBIN'``, ``"0x1"``) is refused, as there.
        """
        if isinstance(value, str):
            for name in (value, value.upper()):
                if name in enum.values_by_name:
                    return name
            match = _ENUM_NUMBER.fullmatch(value)
            if match is not None:
                return int(match.group(1))
            near = did_you_mean(value.upper(), list(enum.values_by_name))
            hint = f" (did you mean '{near}'?)" if near is not None else ""
            raise self.fail(path, raw, f"invalid value {value!r} for enum "
                            f"{enum.full_name}{hint}")
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # unknown numbers are a PGV matter (defined_only)
        raise self.fail(path, raw, f"invalid value {value!r} for enum {enum.full_name}")

    def scalar(self, value: Any, ftype: int, path: str, raw: RawPath) -> Any:
        if ftype == FD.TYPE_BOOL:
            if isinstance(value, str) and value in ("true", "false"):
                return value == "true"  # Envoy reads a quoted boolean
            if not isinstance(value, bool):
                raise self.fail(path, raw, f"expected a boolean, got {_kind(value)}")
        elif ftype in (FD.TYPE_STRING, FD.TYPE_BYTES):
            if not isinstance(value, str):
                raise self.fail(path, raw, f"expected a string, got {_kind(value)} ({value!r}); "
                                "quote it")
        elif ftype in _INT_RANGES:
            number = _as_int(value)
            if number is None:
                raise self.fail(path, raw, f"expected an integer, got {_kind(value)} ({value!r})")
            low, high = _INT_RANGES[ftype]
            if not low <= number <= high:
                raise self.fail(path, raw, f"value {number} out of range for {_TYPE_NAMES[ftype]}")
        elif ftype in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise self.fail(path, raw, f"expected a number, got {_kind(value)}")
            if isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    raise self.fail(path, raw, f"expected a number, got {value!r}") from None
        return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None
