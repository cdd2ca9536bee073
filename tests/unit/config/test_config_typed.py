"""Any resolution by type URL, unpacking and TypedStruct."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf import any_pb2, struct_pb2
from xds.type.v3 import typed_struct_pb2

from outrider.config import typed


def test_proto_package_stops_at_the_first_message_name():
    assert typed.proto_package("envoy.config.route.v3.RouteAction.HashPolicy") == (
        "envoy.config.route.v3")
    assert typed.proto_package("xds.type.v3.TypedStruct") == "xds.type.v3"


def test_finds_a_type_whose_module_is_not_imported_yet():
    module = "envoy.extensions.filters.http.header_mutation.v3.header_mutation_pb2"
    sys.modules.pop(module, None)  # harmless: it re-registers from the pool on re-import
    desc = typed.find_message_descriptor(
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation")
    assert desc is not None
    assert desc.full_name == "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"


def test_unknown_types_are_none():
    assert typed.find_message_descriptor("envoy.extensions.nothing.v3.Nothing") is None
    assert typed.find_message_descriptor("acme.Widget") is None
    assert typed.message_class("envoy.config.route.v3.NoSuchMessage") is None


def test_unpack_round_trip():
    packed = any_pb2.Any()
    packed.Pack(struct_pb2.Struct(fields={"a": struct_pb2.Value(string_value="b")}))
    inner = typed.unpack(packed)
    assert inner is not None and inner.fields["a"].string_value == "b"
    assert typed.extension_type(packed) == "google.protobuf.Struct"


def test_typed_struct_exposes_inner_type_and_value():
    config = typed_struct_pb2.TypedStruct(type_url="type.googleapis.com/outrider.lb.peak_ewma")
    config.value.update({"decay": "10s", "penalty": 5})
    packed = any_pb2.Any()
    packed.Pack(config)
    assert typed.is_typed_struct(packed)
    assert typed.extension_type(packed) == "outrider.lb.peak_ewma"
    assert typed.typed_struct(packed) == ("outrider.lb.peak_ewma", {"decay": "10s", "penalty": 5})


def test_extension_type_of_an_unset_any_is_empty():
    assert typed.extension_type(any_pb2.Any()) == ""


def test_outrider_provided_protos_resolve_in_a_fresh_process():
    # In-process, another test may already have imported the provider module.
    code = ("from outrider.config.typed import find_message_descriptor as f; "
            "assert f('envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma')")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
