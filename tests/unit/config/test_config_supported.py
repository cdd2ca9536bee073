"""The support table is explicit and consistent with the Envoy protos it names."""

from __future__ import annotations

from google.protobuf import descriptor

from outrider.config import supported, typed
from outrider.config.supported import EXTENSIONS, LEAF_TYPES, SUPPORTED

BOOTSTRAP = "envoy.config.bootstrap.v3.Bootstrap"


def _reachable_tables() -> tuple[dict[str, descriptor.Descriptor], list[str]]:
    """Walk the table from Bootstrap and every registered extension type.

    Returns the tables reached (with the message type each describes) and a list of problems:
    a field name that the message does not have, an enum value that does not exist, a supported
    message field whose type has neither a table nor a LEAF_TYPES entry, an unknown slot.
    """
    problems: list[str] = []
    seen: dict[str, descriptor.Descriptor] = {}
    pending: list[tuple[str, descriptor.Descriptor]] = [
        (BOOTSTRAP, typed.find_message_descriptor(BOOTSTRAP))]
    for types in EXTENSIONS.values():
        for name in types:
            desc = typed.find_message_descriptor(name)
            if desc is not None:
                pending.append((name, desc))
    while pending:
        table, desc = pending.pop()
        if table in seen:
            continue
        seen[table] = desc
        if table not in SUPPORTED:
            problems.append(f"{table}: reached but has no SUPPORTED entry")
            continue
        for field_name, rule in SUPPORTED[table].items():
            fd = desc.fields_by_name.get(field_name)
            if fd is None:
                problems.append(f"{table}.{field_name}: no such field in {desc.full_name}")
                continue
            if rule.status != "supported":
                continue
            element = fd
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                element = fd.message_type.fields_by_name["value"]
            if rule.enums is not None:
                if element.enum_type is None:
                    problems.append(f"{table}.{field_name}: enum restriction on a non-enum")
                else:
                    missing = rule.enums - set(element.enum_type.values_by_name)
                    if missing:
                        problems.append(f"{table}.{field_name}: unknown values {missing}")
            if element.message_type is None:
                continue
            name = element.message_type.full_name
            if name == "google.protobuf.Any":
                if rule.slot not in EXTENSIONS:
                    problems.append(f"{table}.{field_name}: Any without a known slot")
            elif name not in LEAF_TYPES:
                pending.append((rule.table or name, element.message_type))
    return seen, problems


def test_every_table_entry_names_real_fields_and_every_reached_type_is_listed():
    _, problems = _reachable_tables()
    assert problems == []


def test_no_orphan_tables():
    seen, _ = _reachable_tables()
    assert set(SUPPORTED) - set(seen) == set()


def test_context_tables_describe_the_right_message():
    seen, _ = _reachable_tables()
    assert seen["downstream CommonHttpProtocolOptions"].full_name == (
        "envoy.config.core.v3.HttpProtocolOptions")
    assert seen["upstream Http1ProtocolOptions"].full_name == (
        "envoy.config.core.v3.Http1ProtocolOptions")


def test_every_rule_that_is_not_supported_documents_why():
    for table, rules in SUPPORTED.items():
        for name, rule in rules.items():
            if rule.status != "supported":
                assert rule.note, f"{table}.{name} needs a note"


def test_register_extension_adds_to_a_slot():
    slot = "test-slot-for-register"
    try:
        supported.register_extension(slot, "x.Y")
        assert EXTENSIONS[slot] == {"x.Y"}
    finally:
        EXTENSIONS.pop(slot, None)
