"""Cluster config → which load-balancing policy, with which settings (``LbPolicyConfig``).

Two config forms, as in Envoy:

* ``lb_policy`` (ROUND_ROBIN default, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV) with the matching
  ``*_lb_config`` and ``common_lb_config``;
* ``load_balancing_policy.policies[]``: the **first** policy whose ``typed_extension_config`` type
  Outrider knows wins (Envoy's rule). Known: the five built-ins'
  ``envoy.extensions.load_balancing_policies.<name>.v3.*`` messages, Envoy's contrib
  ``...peak_ewma.v3alpha.PeakEwma`` (registered below, since xds-protos lacks it), and a
  ``TypedStruct`` whose ``type_url`` is ``outrider.lb.peak_ewma`` (or the contrib name), value
  ``{decay_time: "10s", choice_count: 2, default_rtt: "10ms"}``.

Anything else raises :class:`UnsupportedLbPolicyError` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any as AnyValue

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.maglev.v3 import maglev_pb2
from envoy.extensions.load_balancing_policies.random.v3 import random_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from udpa.type.v1 import typed_struct_pb2 as udpa_typed_struct_pb2
from xds.type.v3 import typed_struct_pb2 as xds_typed_struct_pb2

from outrider.config.durations import (
    bool_value,
    percent,
    runtime_double,
    seconds,
    uint_value,
)
from outrider.lb.priority import DEFAULT_HEALTHY_PANIC_THRESHOLD, DEFAULT_OVERPROVISIONING_FACTOR
from outrider.lb.zone_aware import DEFAULT_COMMON, CommonLbSettings, SlowStart

ROUND_ROBIN = "round_robin"
LEAST_REQUEST = "least_request"
RANDOM = "random"
RING_HASH = "ring_hash"
MAGLEV = "maglev"
PEAK_EWMA = "peak_ewma"

PEAK_EWMA_TYPE = "outrider.lb.peak_ewma"
CONTRIB_PEAK_EWMA_TYPE = "envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma"
TYPED_STRUCT_TYPES = frozenset({"xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct"})

DEFAULT_MIN_RING_SIZE = 1024
DEFAULT_MAX_RING_SIZE = 8 * 1024 * 1024
MAX_RING_SIZE_LIMIT = 8 * 1024 * 1024
DEFAULT_TABLE_SIZE = 65537
DEFAULT_DECAY_TIME = 10.0
# Envoy's contrib PeakEwma default; an unmeasured host looks like a fast local upstream, so it
# gets probed soon, and one response replaces the guess.
DEFAULT_RTT = 0.010


class UnsupportedLbPolicyError(ValueError):
    """The cluster's load-balancing configuration names something Outrider cannot run."""


@dataclass(frozen=True)
class LbPolicyConfig:
    """Everything the factory needs; fields not used by ``policy`` keep their defaults."""

    policy: str = ROUND_ROBIN
    common: CommonLbSettings = DEFAULT_COMMON
    slow_start: SlowStart | None = None
    # LEAST_REQUEST (choice_count is also peak EWMA's)
    choice_count: int = 2
    active_request_bias: float = 1.0
    full_scan: bool = False
    # RING_HASH / MAGLEV
    minimum_ring_size: int = DEFAULT_MIN_RING_SIZE
    maximum_ring_size: int = DEFAULT_MAX_RING_SIZE
    use_hostname_for_hashing: bool = False
    table_size: int = DEFAULT_TABLE_SIZE
    # peak EWMA
    decay_time: float = DEFAULT_DECAY_TIME
    default_rtt: float = DEFAULT_RTT
    latency_ratio_limit: float = 2.0  # 0 turns the slow-host rule off (plain Finagle/tower)


def _register_contrib_peak_ewma() -> type[Message]:
    """Put Envoy's contrib PeakEwma message in the default pool so YAML ``@type`` resolves."""
    pool = descriptor_pool.Default()
    try:
        desc = pool.FindMessageTypeByName(CONTRIB_PEAK_EWMA_TYPE)
    except KeyError:
        f = descriptor_pb2.FieldDescriptorProto
        file = descriptor_pb2.FileDescriptorProto(
            name="envoy/extensions/load_balancing_policies/peak_ewma/v3alpha/peak_ewma.proto",
            package="envoy.extensions.load_balancing_policies.peak_ewma.v3alpha",
            syntax="proto3",
            dependency=["google/protobuf/duration.proto", "google/protobuf/wrappers.proto"],
        )
        msg = file.message_type.add(name="PeakEwma")
        for number, name, json_name, type_name in (
            (1, "decay_time", "decayTime", ".google.protobuf.Duration"),
            (2, "aggregation_interval", "aggregationInterval", ".google.protobuf.Duration"),
            (3, "max_samples_per_host", "maxSamplesPerHost", ".google.protobuf.UInt32Value"),
            (4, "default_rtt", "defaultRtt", ".google.protobuf.Duration"),
        ):
            msg.field.add(name=name, number=number, json_name=json_name, type=f.TYPE_MESSAGE,
                          type_name=type_name, label=f.LABEL_OPTIONAL)
        pool.AddSerializedFile(file.SerializeToString())
        desc = pool.FindMessageTypeByName(CONTRIB_PEAK_EWMA_TYPE)
    return message_factory.GetMessageClass(desc)


PeakEwmaProto = _register_contrib_peak_ewma()

_TYPED_POLICIES: dict[str, type[Message]] = {
    round_robin_pb2.RoundRobin.DESCRIPTOR.full_name: round_robin_pb2.RoundRobin,
    least_request_pb2.LeastRequest.DESCRIPTOR.full_name: least_request_pb2.LeastRequest,
    random_pb2.Random.DESCRIPTOR.full_name: random_pb2.Random,
    ring_hash_pb2.RingHash.DESCRIPTOR.full_name: ring_hash_pb2.RingHash,
    maglev_pb2.Maglev.DESCRIPTOR.full_name: maglev_pb2.Maglev,
    CONTRIB_PEAK_EWMA_TYPE: PeakEwmaProto,
}


# -- value readers --------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ns|us|ms|s|m|h)?\s*$")
_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: AnyValue, field: str) -> float:
    """``"10s"``, ``"250ms"``, ``"1.5s"`` or a number of seconds → seconds (> 0)."""
    if isinstance(value, bool):
        raise UnsupportedLbPolicyError(f"{field}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds_value = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if match is None:
            raise UnsupportedLbPolicyError(f"{field}: bad duration {value!r} (use e.g. \"10s\")")
        seconds_value = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds_value <= 0:
        raise UnsupportedLbPolicyError(f"{field}: must be positive, got {value!r}")
    return seconds_value


def _slow_start(msg: Message, field: str) -> SlowStart | None:
    if not msg.HasField(field):
        return None
    cfg = getattr(msg, field)
    window = seconds(cfg, "slow_start_window", 0.0) or 0.0
    if window <= 0:
        return None
    aggression = runtime_double(cfg, "aggression", 1.0)
    if aggression <= 0:
        raise UnsupportedLbPolicyError(f"{field}.aggression: must be > 0, got {aggression}")
    return SlowStart(window=window, aggression=aggression,
                     min_weight_percent=percent(cfg, "min_weight_percent", 10.0))


def _common(cluster: cluster_pb2.Cluster, locality_weighted: bool) -> CommonLbSettings:
    factor = DEFAULT_OVERPROVISIONING_FACTOR
    if cluster.HasField("load_assignment") and cluster.load_assignment.HasField("policy"):
        factor = uint_value(cluster.load_assignment.policy, "overprovisioning_factor",
                            DEFAULT_OVERPROVISIONING_FACTOR) or 0
        if factor <= 0:
            raise UnsupportedLbPolicyError(
                "load_assignment.policy.overprovisioning_factor: must be greater than 0")
    threshold = DEFAULT_HEALTHY_PANIC_THRESHOLD
    if cluster.HasField("common_lb_config"):
        threshold = percent(cluster.common_lb_config, "healthy_panic_threshold",
                            DEFAULT_HEALTHY_PANIC_THRESHOLD)
    return CommonLbSettings(overprovisioning_factor=factor,
                            healthy_panic_threshold=min(100.0, threshold),
                            locality_weighted=locality_weighted)


def _ring_sizes(msg: Message, prefix: str) -> tuple[int, int]:
    minimum = uint_value(msg, "minimum_ring_size", DEFAULT_MIN_RING_SIZE) or 0
    maximum = uint_value(msg, "maximum_ring_size", DEFAULT_MAX_RING_SIZE) or 0
    if not 0 < minimum <= MAX_RING_SIZE_LIMIT or not 0 < maximum <= MAX_RING_SIZE_LIMIT:
        raise UnsupportedLbPolicyError(
            f"{prefix}: ring sizes must be in 1..{MAX_RING_SIZE_LIMIT}")
    if minimum > maximum:
        raise UnsupportedLbPolicyError(
            f"{prefix}: minimum_ring_size ({minimum}) > maximum_ring_size ({maximum})")
    return minimum, maximum


def _table_size(msg: Message, prefix: str) -> int:
    size = uint_value(msg, "table_size", DEFAULT_TABLE_SIZE) or 0
    if size < 2 or not _is_prime(size):
        raise UnsupportedLbPolicyError(f"{prefix}.table_size: must be a prime number, got {size}")
    return size


def _is_prime(n: int) -> bool:
    if n < 2 or n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def _reject_hash_balance_factor(msg: Message, prefix: str) -> None:
    if "hash_balance_factor" in msg.DESCRIPTOR.fields_by_name and msg.HasField(
            "hash_balance_factor"):
        raise UnsupportedLbPolicyError(
            f"{prefix}.hash_balance_factor: bounded-load consistent hashing is not supported")


# -- the lb_policy enum form ----------------------------------------------------------------------

def _from_lb_policy(cluster: cluster_pb2.Cluster) -> LbPolicyConfig:
    enum = cluster_pb2.Cluster.LbPolicy
    policy = cluster.lb_policy
    clc = cluster.common_lb_config
    common = _common(cluster, clc.HasField("locality_weighted_lb_config"))
    use_hostname = clc.consistent_hashing_lb_config.use_hostname_for_hashing
    if clc.consistent_hashing_lb_config.HasField("hash_balance_factor"):
        _reject_hash_balance_factor(clc.consistent_hashing_lb_config,
                                    "common_lb_config.consistent_hashing_lb_config")
    if policy == enum.ROUND_ROBIN:
        return LbPolicyConfig(ROUND_ROBIN, common, slow_start=_slow_start(
            cluster.round_robin_lb_config, "slow_start_config"))
    if policy == enum.LEAST_REQUEST:
        cfg = cluster.least_request_lb_config
        return LbPolicyConfig(
            LEAST_REQUEST, common,
            slow_start=_slow_start(cfg, "slow_start_config"),
            choice_count=_choice_count(cfg, "least_request_lb_config"),
            active_request_bias=runtime_double(cfg, "active_request_bias", 1.0),
        )
    if policy == enum.RANDOM:
        return LbPolicyConfig(RANDOM, common)
    if policy == enum.RING_HASH:
        cfg = cluster.ring_hash_lb_config
        if cfg.hash_function != cluster_pb2.Cluster.RingHashLbConfig.XX_HASH:
            raise UnsupportedLbPolicyError(
                "ring_hash_lb_config.hash_function: only XX_HASH is supported")
        minimum, maximum = _ring_sizes(cfg, "ring_hash_lb_config")
        return LbPolicyConfig(RING_HASH, common, minimum_ring_size=minimum,
                              maximum_ring_size=maximum, use_hostname_for_hashing=use_hostname)
    if policy == enum.MAGLEV:
        return LbPolicyConfig(MAGLEV, common, use_hostname_for_hashing=use_hostname,
                              table_size=_table_size(cluster.maglev_lb_config, "maglev_lb_config"))
    name = enum.Name(policy) if policy in enum.values() else str(policy)
    if policy == enum.LOAD_BALANCING_POLICY_CONFIG:
        raise UnsupportedLbPolicyError(
            "lb_policy: LOAD_BALANCING_POLICY_CONFIG needs load_balancing_policy to be set")
    raise UnsupportedLbPolicyError(f"lb_policy: {name} is not supported")


def _choice_count(msg: Message, prefix: str) -> int:
    count = uint_value(msg, "choice_count", 2) or 0
    if count < 2:
        raise UnsupportedLbPolicyError(f"{prefix}.choice_count: must be at least 2, got {count}")
    return count


# -- the typed-extension form ---------------------------------------------------------------------

def _from_typed(cluster: cluster_pb2.Cluster, name: str, msg: Message, prefix: str) -> LbPolicyConfig:
    def locality_weighted(locality_lb_config_field: str) -> bool:
        if not msg.HasField(locality_lb_config_field):  # type: ignore[arg-type]
            return False
        sub = getattr(msg, locality_lb_config_field)
        if locality_lb_config_field == "locality_lb_config":
            return sub.HasField("locality_weighted_lb_config")
        return True

    if isinstance(msg, round_robin_pb2.RoundRobin):
        return LbPolicyConfig(ROUND_ROBIN, _common(cluster, locality_weighted("locality_lb_config")),
                              slow_start=_slow_start(msg, "slow_start_config"))
    if isinstance(msg, least_request_pb2.LeastRequest):
        full_scan = (msg.selection_method == least_request_pb2.LeastRequest.FULL_SCAN
                     or bool_value(msg, "enable_full_scan", False))
        return LbPolicyConfig(
            LEAST_REQUEST, _common(cluster, locality_weighted("locality_lb_config")),
            slow_start=_slow_start(msg, "slow_start_config"),
            choice_count=_choice_count(msg, prefix),
            active_request_bias=runtime_double(msg, "active_request_bias", 1.0),
            full_scan=full_scan,
        )
    if isinstance(msg, random_pb2.Random):
        return LbPolicyConfig(RANDOM, _common(cluster, locality_weighted("locality_lb_config")))
    if isinstance(msg, ring_hash_pb2.RingHash | maglev_pb2.Maglev):
        _reject_hash_balance_factor(msg, prefix)
        chc = msg.consistent_hashing_lb_config
        _reject_hash_balance_factor(chc, prefix + ".consistent_hashing_lb_config")
        use_hostname = chc.use_hostname_for_hashing or getattr(
            msg, "use_hostname_for_hashing", False)
        common = _common(cluster, locality_weighted("locality_weighted_lb_config"))
        if isinstance(msg, maglev_pb2.Maglev):
            return LbPolicyConfig(MAGLEV, common, use_hostname_for_hashing=use_hostname,
                                  table_size=_table_size(msg, prefix))
        if msg.hash_function == ring_hash_pb2.RingHash.MURMUR_HASH_2:
            raise UnsupportedLbPolicyError(f"{prefix}.hash_function: only XX_HASH is supported")
        minimum, maximum = _ring_sizes(msg, prefix)
        return LbPolicyConfig(RING_HASH, common, minimum_ring_size=minimum,
                              maximum_ring_size=maximum, use_hostname_for_hashing=use_hostname)
    # Contrib PeakEwma proto.
    value: dict[str, AnyValue] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return _peak_ewma(cluster, value, prefix)


def _peak_ewma(cluster: cluster_pb2.Cluster, value: dict[str, AnyValue], prefix: str
               ) -> LbPolicyConfig:
    known = {"decay_time", "choice_count", "default_rtt", "latency_ratio_limit",
             "aggregation_interval", "max_samples_per_host"}  # the last two: contrib, no-ops here
    unknown = sorted(set(value) - known)
    if unknown:
        raise UnsupportedLbPolicyError(f"{prefix}: unknown peak_ewma field(s) {unknown}")
    decay = parse_duration(value.get("decay_time", DEFAULT_DECAY_TIME), prefix + ".decay_time")
    default_rtt = parse_duration(value.get("default_rtt", DEFAULT_RTT), prefix + ".default_rtt")
    choice = value.get("choice_count", 2)
    if isinstance(choice, bool) or not isinstance(choice, int | float) or int(choice) != choice \
            or choice < 2:
        raise UnsupportedLbPolicyError(f"{prefix}.choice_count: must be an integer >= 2")
    ratio = value.get("latency_ratio_limit", 2.0)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not (
            ratio == 0 or ratio > 1):
        raise UnsupportedLbPolicyError(
            f"{prefix}.latency_ratio_limit: must be 0 (off) or a number greater than 1")
    return LbPolicyConfig(PEAK_EWMA, _common(cluster, False), choice_count=int(choice),
                          decay_time=decay, default_rtt=default_rtt,
                          latency_ratio_limit=float(ratio))


def _type_name(type_url: str) -> str:
    return type_url.rsplit("/", 1)[-1]


def lb_config_from_cluster(cluster: cluster_pb2.Cluster) -> LbPolicyConfig:
    """The policy and settings of ``cluster``; raises UnsupportedLbPolicyError."""
    if not cluster.HasField("load_balancing_policy"):
        return _from_lb_policy(cluster)
    seen: list[str] = []
    for i, policy in enumerate(cluster.load_balancing_policy.policies):
        packed = policy.typed_extension_config.typed_config
        prefix = f"load_balancing_policy.policies[{i}].typed_extension_config.typed_config"
        name = _type_name(packed.type_url)
        if name in TYPED_STRUCT_TYPES:
            inner, value = _unpack_typed_struct(packed, name, prefix)
            if inner in (PEAK_EWMA_TYPE, CONTRIB_PEAK_EWMA_TYPE):
                return _peak_ewma(cluster, value, prefix + ".value")
            seen.append(f"{name}({inner})")
            continue
        cls = _TYPED_POLICIES.get(name)
        if cls is None:
            seen.append(name or "<empty>")
            continue
        msg = cls()
        if not packed.Unpack(msg):
            raise UnsupportedLbPolicyError(f"{prefix}: cannot decode {name}")
        return _from_typed(cluster, name, msg, prefix)
    raise UnsupportedLbPolicyError(
        "load_balancing_policy: no supported policy among "
        f"{seen or 'an empty list'}; supported: {sorted(_TYPED_POLICIES)} and a TypedStruct "
        f"with type_url {PEAK_EWMA_TYPE!r}")


def _unpack_typed_struct(packed: AnyValue, name: str, prefix: str) -> tuple[str, dict]:
    if name == "xds.type.v3.TypedStruct":
        msg = xds_typed_struct_pb2.TypedStruct()
    else:
        msg = udpa_typed_struct_pb2.TypedStruct()
    if not packed.Unpack(msg):
        raise UnsupportedLbPolicyError(f"{prefix}: cannot decode {name}")
    value = json_format.MessageToDict(msg.value) if msg.HasField("value") else {}
    return _type_name(msg.type_url), value
