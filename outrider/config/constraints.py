"""Envoy's PGV (protoc-gen-validate) constraints, which xds-protos carries but does not enforce.

Envoy refuses ``connect_timeout: 0s``, an empty cluster name, ``port_value: 70000`` or
``max_request_headers_kb: 9000`` with "Proto constraint validation failed"; the Python classes
accept them. The ``(validate.rules)`` options are still in the descriptors, so this module reads
them and enforces the common subset (required messages and oneofs, string lengths and simple
string checks, numeric and duration bounds, defined enums, repeated and map sizes, and the same
rules on wrapper values), descending into ``Any`` payloads as Envoy does when it instantiates an
extension. Rules it does not know (``email``, ``uri``, timestamps, ...) are skipped: the aim is
Envoy's verdict on ordinary configs, not a complete PGV.

Messages follow PGV's wording ("value must be greater than 0s") so they read like Envoy's.
A few checks Envoy makes outside PGV at load time are in :func:`envoy_load_checks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from google.protobuf import any_pb2, descriptor
from google.protobuf.message import Message
from validate import validate_pb2

from outrider.config import typed

FD = descriptor.FieldDescriptor
Violation = tuple[str, str]  # (field path, message)
_LOGICAL_DNS = 2  # envoy.config.cluster.v3.Cluster.DiscoveryType

_NUMERIC_KINDS = (
    "float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64",
)
_HEADER_NAME = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
_LOOSE_HEADER = re.compile(r"^[^\x00\n\r]*$")


def join(path: str, name: str) -> str:
    """``a.b`` + ``c`` → ``a.b.c``; the root path is the empty string."""
    return f"{path}.{name}" if path else name


@cache
def _rules_of(desc: descriptor.Descriptor) -> tuple[list[tuple[FD, validate_pb2.FieldRules]],
                                                   list[descriptor.OneofDescriptor]]:
    """The fields of ``desc`` that carry rules, and its required oneofs (cached per type)."""
    fields = []
    for field in desc.fields:
        options = field.GetOptions()
        if options.HasExtension(validate_pb2.rules):
            fields.append((field, options.Extensions[validate_pb2.rules]))
    oneofs = [
        oneof for oneof in desc.oneofs
        if oneof.GetOptions().HasExtension(validate_pb2.required)
        and oneof.GetOptions().Extensions[validate_pb2.required]
    ]
    return fields, oneofs


def iter_violations(msg: Message, path: str = "") -> Iterator[Violation]:
    """Every constraint violation in ``msg`` and the messages below it, in field order."""
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Any":
        inner = typed.unpack(msg)  # type: ignore[arg-type]
        if inner is not None and not typed.is_typed_struct(msg):  # type: ignore[arg-type]
            yield from iter_violations(inner, path)
        return
    field_rules, oneofs = _rules_of(desc)
    for oneof in oneofs:
        if msg.WhichOneof(oneof.name) is None:
            names = ", ".join(f"'{f.name}'" for f in oneof.fields)
            yield path, f"one of {names} is required"
    for field, rules in field_rules:
        yield from _check_field(msg, field, rules, join(path, field.name))
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        child = join(path, field.name)
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                for key in value:
                    yield from iter_violations(value[key], f'{child}["{key}"]')
        elif field.is_repeated:
            for i, item in enumerate(value):
                yield from iter_violations(item, f"{child}[{i}]")
        else:
            yield from iter_violations(value, child)


def _check_field(msg: Message, field: FD, rules: validate_pb2.FieldRules,
                 path: str) -> Iterator[Violation]:
    kind = rules.WhichOneof("type")
    if field.containing_oneof is not None and msg.WhichOneof(field.containing_oneof.name) != field.name:
        return  # PGV checks a oneof member only when it is the one set
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if kind == "map":
            yield from _check_map(getattr(msg, field.name), rules.map, path)
        return
    if field.is_repeated:
        if kind == "repeated":
            yield from _check_repeated(list(getattr(msg, field.name)), rules.repeated, path)
        return
    if field.message_type is not None:
        present = msg.HasField(field.name)
        if rules.HasField("message") and rules.message.required and not present:
            yield path, "value is required"
            return
        if not present:
            if kind in ("duration", "any", "timestamp") and getattr(rules, kind).required:
                yield path, "value is required"
            return
        value = getattr(msg, field.name)
        if kind == "duration":
            yield from _check_duration(value, rules.duration, path)
        elif kind == "any":
            yield from _check_any(value, rules.any, path)
        elif kind is not None and field.message_type.full_name.startswith("google.protobuf."):
            yield from _check_scalar(value.value, kind, rules, path)  # a wrapper: rules on .value
        return
    if kind is not None:
        yield from _check_scalar(getattr(msg, field.name), kind, rules, path, field)


def _check_repeated(items: list, rules: validate_pb2.RepeatedRules,
                    path: str) -> Iterator[Violation]:
    if rules.ignore_empty and not items:
        return
    if rules.HasField("min_items") and len(items) < rules.min_items:
        yield path, f"value must contain at least {rules.min_items} item(s)"
    if rules.HasField("max_items") and len(items) > rules.max_items:
        yield path, f"value must contain no more than {rules.max_items} item(s)"
    if rules.HasField("items"):
        kind = rules.items.WhichOneof("type")
        if kind is None or kind in ("message", "duration", "any", "timestamp"):
            return
        for i, item in enumerate(items):
            yield from _check_scalar(item, kind, rules.items, f"{path}[{i}]")


def _check_map(mapping, rules: validate_pb2.MapRules, path: str) -> Iterator[Violation]:
    if rules.ignore_empty and not mapping:
        return
    if rules.HasField("min_pairs") and len(mapping) < rules.min_pairs:
        yield path, f"value must contain at least {rules.min_pairs} pair(s)"
    if rules.HasField("max_pairs") and len(mapping) > rules.max_pairs:
        yield path, f"value must contain no more than {rules.max_pairs} pair(s)"
    if rules.HasField("keys"):
        kind = rules.keys.WhichOneof("type")
        if kind in _NUMERIC_KINDS or kind in ("string", "bool"):
            for key in mapping:
                yield from _check_scalar(key, kind, rules.keys, f'{path}["{key}"]')


def _duration_text(d) -> str:
    total = d.seconds + d.nanos / 1e9
    return f"{total:g}s"


def _check_duration(value, rules: validate_pb2.DurationRules, path: str) -> Iterator[Violation]:
    total = value.seconds + value.nanos / 1e9
    yield from _bounds(
        total, path,
        gt=(total_of(rules.gt), _duration_text(rules.gt)) if rules.HasField("gt") else None,
        gte=(total_of(rules.gte), _duration_text(rules.gte)) if rules.HasField("gte") else None,
        lt=(total_of(rules.lt), _duration_text(rules.lt)) if rules.HasField("lt") else None,
        lte=(total_of(rules.lte), _duration_text(rules.lte)) if rules.HasField("lte") else None,
    )


def total_of(d) -> float:
    """Seconds in a Duration message."""
    return d.seconds + d.nanos / 1e9


def _check_any(value: any_pb2.Any, rules: validate_pb2.AnyRules, path: str) -> Iterator[Violation]:
    allowed = list(getattr(rules, "in"))
    if allowed and value.type_url not in allowed:
        yield path, f"type URL must be in list {allowed}"


def _bounds(value: float, path: str, *, gt=None, gte=None, lt=None, lte=None) -> Iterator[Violation]:
    """PGV's range messages; each bound is ``(number, text)`` or None."""
    low = gt or gte
    high = lt or lte
    low_ok = low is None or (value > low[0] if gt else value >= low[0])
    high_ok = high is None or (value < high[0] if lt else value <= high[0])
    if low_ok and high_ok:
        return
    if low is not None and high is not None:
        left = "(" if gt else "["
        right = ")" if lt else "]"
        yield path, f"value must be inside range {left}{low[1]}, {high[1]}{right}"
    elif low is not None:
        yield path, "value must be greater than " + ("" if gt else "or equal to ") + low[1]
    else:
        assert high is not None
        yield path, "value must be less than " + ("" if lt else "or equal to ") + high[1]


def _num_text(n) -> str:
    return f"{n:g}" if isinstance(n, float) else str(n)


def _check_scalar(value, kind: str, rules: validate_pb2.FieldRules, path: str,
                  field: FD | None = None) -> Iterator[Violation]:
    r = getattr(rules, kind)
    if kind in _NUMERIC_KINDS:
        if r.ignore_empty and not value:
            return
        bound = {name: (getattr(r, name), _num_text(getattr(r, name)))
                 for name in ("gt", "gte", "lt", "lte") if r.HasField(name)}
        yield from _bounds(value, path, **bound)
        if r.HasField("const") and value != r.const:
            yield path, f"value must equal {_num_text(r.const)}"
        if list(getattr(r, "in")) and value not in getattr(r, "in"):
            yield path, f"value must be in list {list(getattr(r, 'in'))}"
        if value in r.not_in:
            yield path, f"value must not be in list {list(r.not_in)}"
    elif kind == "enum":
        enum_type = field.enum_type if field is not None else None
        if r.defined_only and enum_type is not None and value not in enum_type.values_by_number:
            yield path, "value must be one of the defined enum values"
        if list(getattr(r, "in")) and value not in getattr(r, "in"):
            yield path, f"value must be in list {list(getattr(r, 'in'))}"
        if value in r.not_in:
            yield path, f"value must not be in list {list(r.not_in)}"
    elif kind in ("string", "bytes"):
        yield from _check_string(value, kind, r, path)
    elif kind == "bool" and r.HasField("const") and value != r.const:
        yield path, f"value must equal {str(r.const).lower()}"


def _check_string(value, kind: str, r, path: str) -> Iterator[Violation]:
    if r.ignore_empty and not value:
        return
    length = len(value)
    nbytes = len(value.encode()) if isinstance(value, str) else len(value)
    unit = "characters" if kind == "string" else "bytes"
    if r.HasField("len") and length != r.len:
        yield path, f"value length must be {r.len} {unit}"
    if r.HasField("min_len") and length < r.min_len:
        yield path, f"value length must be at least {r.min_len} {unit}"
    if r.HasField("max_len") and length > r.max_len:
        yield path, f"value length must be at most {r.max_len} {unit}"
    if kind == "string":
        if r.HasField("min_bytes") and nbytes < r.min_bytes:
            yield path, f"value length must be at least {r.min_bytes} bytes"
        if r.HasField("max_bytes") and nbytes > r.max_bytes:
            yield path, f"value length must be at most {r.max_bytes} bytes"
        if r.HasField("prefix") and not value.startswith(r.prefix):
            yield path, f"value does not have prefix {r.prefix!r}"
        if r.HasField("suffix") and not value.endswith(r.suffix):
            yield path, f"value does not have suffix {r.suffix!r}"
        if r.HasField("contains") and r.contains not in value:
            yield path, f"value does not contain substring {r.contains!r}"
        if list(getattr(r, "in")) and value not in getattr(r, "in"):
            yield path, f"value must be in list {list(getattr(r, 'in'))}"
        if r.HasField("pattern"):
            try:
                if re.search(r.pattern, value) is None:
                    yield path, f"value does not match regex pattern {r.pattern!r}"
            except re.error:
                pass  # an RE2-only pattern: leave it to Envoy
        if r.HasField("well_known_regex") and value:
            yield from _check_well_known(value, r, path)


def _check_well_known(value: str, r, path: str) -> Iterator[Violation]:
    strict = not r.HasField("strict") or r.strict
    if not strict:
        pattern = _LOOSE_HEADER
    elif r.well_known_regex == validate_pb2.HTTP_HEADER_NAME:
        pattern = _HEADER_NAME
    elif r.well_known_regex == validate_pb2.HTTP_HEADER_VALUE:
        pattern = _HEADER_VALUE
    else:
        return
    if pattern.search(value) is None:
        yield path, f"value does not match regex pattern {pattern.pattern!r}"


def envoy_load_checks(bootstrap: Message) -> Iterator[Violation]:
    """Load-time checks Envoy makes outside PGV (each one verified against Envoy 1.40)."""
    static = bootstrap.static_resources  # type: ignore[attr-defined]
    for i, listener in enumerate(static.listeners):
        if listener.HasField("internal_listener") or listener.HasField("api_listener"):
            continue  # kinds without an address; validate() says Outrider lacks them
        if not listener.HasField("address"):
            # Envoy: "error adding listener named 'l0': address is necessary".
            yield f"static_resources.listeners[{i}]", (
                f"listener '{listener.name}': address is necessary"
            )
        seen: dict[bytes, str] = {}
        for c, chain in enumerate(listener.filter_chains):
            rules = chain.filter_chain_match.SerializeToString(deterministic=True)
            if rules in seen:
                # Envoy: "filter chain 'b' has the same matching rules defined as 'a'".
                yield f"static_resources.listeners[{i}].filter_chains[{c}]", (
                    f"filter chain '{chain.name}' has the same matching rules defined as "
                    f"'{seen[rules]}'")
            seen.setdefault(rules, chain.name)
    for i, cluster in enumerate(static.clusters):
        if cluster.type == _LOGICAL_DNS and not cluster.HasField("cluster_type"):
            localities = cluster.load_assignment.endpoints
            if len(localities) != 1 or len(localities[0].lb_endpoints) != 1:
                yield f"static_resources.clusters[{i}].load_assignment", (
                    "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single "
                    "lb_endpoint")
