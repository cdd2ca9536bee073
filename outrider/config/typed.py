"""``google.protobuf.Any`` resolution: ``@type`` URL → message class, and unpacking.

xds-protos ships ~1,800 ``*_pb2`` modules; importing them all costs seconds, so a type is found
lazily: its proto package is derived from the full name (the leading lower-case components:
``envoy.extensions.filters.http.router.v3.Router`` → ``envoy.extensions.filters.http.router.v3``),
and every ``*_pb2.py`` in that package's directory is imported once, which registers its messages
in the default descriptor pool. Proto packages map one-to-one onto Python packages in
xds-protos, so no name table is needed, except for the few protos Outrider itself supplies
(``PROVIDED_TYPES``).

``TypedStruct`` (``xds.type.v3.TypedStruct`` and the older ``udpa.type.v1.TypedStruct``) carries
its own ``type_url`` and a JSON ``value``; it names Python extensions (a user's HTTP filter,
Outrider's ``outrider.lb.peak_ewma`` policy) that have no proto. :func:`extension_type` returns
the type a consumer should dispatch on for either form.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any as AnyValue

from google.protobuf import any_pb2, descriptor, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

TYPED_STRUCT_TYPES = frozenset({"xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct"})

# Protos Outrider defines itself because xds-protos lacks them: full name → the module that
# adds them to the default pool when imported.
PROVIDED_TYPES = {
    "envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma": "outrider.lb.config",
}

_imported_packages: set[str] = set()


def type_name(type_url: str) -> str:
    """The message full name of a type URL (the part after the last ``/``)."""
    return type_url.rsplit("/", 1)[-1]


def proto_package(full_name: str) -> str:
    """The proto package of a message full name: the components before the first capitalised one."""
    parts = full_name.split(".")
    package: list[str] = []
    for part in parts:
        if part[:1].isupper():
            break
        package.append(part)
    return ".".join(package)


def _import_package(package: str) -> None:
    """Import every ``*_pb2`` module of a Python package once; unknown packages are ignored."""
    if package in _imported_packages or not package:
        return
    _imported_packages.add(package)
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    for directory in spec.submodule_search_locations:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name.endswith("_pb2.py"):
                try:
                    importlib.import_module(f"{package}.{name[:-3]}")
                except Exception:  # noqa: BLE001, S112 - a broken sibling must not hide the wanted type
                    continue


def find_message_descriptor(full_name: str) -> descriptor.Descriptor | None:
    """The descriptor of message ``full_name``, importing its package if needed; None if unknown."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        pass
    _import_package(proto_package(full_name))
    provider = PROVIDED_TYPES.get(full_name)
    if provider is not None:
        importlib.import_module(provider)
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        return None


def ensure_type_url(type_url: str) -> bool:
    """Make ``type_url`` resolvable by json_format/text_format; False when no module defines it."""
    return find_message_descriptor(type_name(type_url)) is not None


def message_class(full_name: str) -> type[Message] | None:
    """The generated class of message ``full_name``, or None when no module defines it."""
    desc = find_message_descriptor(full_name)
    if desc is None:
        return None
    return message_factory.GetMessageClass(desc)


def unpack(packed: any_pb2.Any) -> Message | None:
    """The message inside ``packed``, or None when its type is unknown or the bytes do not parse."""
    cls = message_class(type_name(packed.type_url))
    if cls is None:
        return None
    msg = cls()
    if not packed.Unpack(msg):
        return None
    return msg


def is_typed_struct(packed: any_pb2.Any) -> bool:
    """True when ``packed`` holds an ``xds``/``udpa`` TypedStruct."""
    return type_name(packed.type_url) in TYPED_STRUCT_TYPES


def typed_struct(packed: any_pb2.Any) -> tuple[str, dict[str, AnyValue]] | None:
    """``(inner type name, value as a JSON dict)`` for a TypedStruct, None for any other Any."""
    if not is_typed_struct(packed):
        return None
    msg = unpack(packed)
    if msg is None:
        return None
    value = json_format.MessageToDict(msg.value) if msg.HasField("value") else {}  # type: ignore[attr-defined]
    return type_name(msg.type_url), value  # type: ignore[attr-defined]


def extension_type(packed: any_pb2.Any) -> str:
    """The type an extension registry should dispatch on.

    For a TypedStruct this is its inner ``type_url``'s name (``outrider.lb.peak_ewma``);
    otherwise the Any's own message name. Empty when the Any is unset.
    """
    if is_typed_struct(packed):
        inner = typed_struct(packed)
        return inner[0] if inner else ""
    return type_name(packed.type_url) if packed.type_url else ""
