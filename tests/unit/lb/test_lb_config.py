"""Policy selection from cluster config: lb_policy, typed extensions, TypedStruct, errors."""

from __future__ import annotations

import pytest
from envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3 import (  # noqa: F401
    client_side_weighted_round_robin_pb2,
)
from lb_helpers import cluster, hosts, make_lb

from outrider.lb.config import (
    LEAST_REQUEST,
    MAGLEV,
    PEAK_EWMA,
    RANDOM,
    RING_HASH,
    ROUND_ROBIN,
    UnsupportedLbPolicyError,
    lb_config_from_cluster,
    parse_duration,
)
from outrider.lb.least_request import LeastRequestLoadBalancer
from outrider.lb.maglev import MaglevLoadBalancer
from outrider.lb.peak_ewma import PeakEwmaLoadBalancer
from outrider.lb.random_lb import RandomLoadBalancer
from outrider.lb.ring_hash import RingHashLoadBalancer
from outrider.lb.round_robin import RoundRobinLoadBalancer

LBP = "type.googleapis.com/envoy.extensions.load_balancing_policies"


def _policies(*typed_configs: dict) -> dict:
    return {"load_balancing_policy": {"policies": [
        {"typed_extension_config": {"name": f"p{i}", "typed_config": tc}}
        for i, tc in enumerate(typed_configs)]}}


def _cfg(data: dict):
    return lb_config_from_cluster(cluster(data))


@pytest.mark.parametrize(("policy", "cls"), [
    ("ROUND_ROBIN", RoundRobinLoadBalancer), ("LEAST_REQUEST", LeastRequestLoadBalancer),
    ("RANDOM", RandomLoadBalancer), ("RING_HASH", RingHashLoadBalancer),
    ("MAGLEV", MaglevLoadBalancer),
])
def test_lb_policy_enum_selects_the_class(policy, cls):
    lb, _, _ = make_lb({"lb_policy": policy}, hosts(3))
    assert type(lb) is cls


def test_enum_form_settings():
    cfg = _cfg({"lb_policy": "LEAST_REQUEST", "least_request_lb_config": {
        "choice_count": 4, "active_request_bias": {"default_value": 0.5, "runtime_key": "x"},
        "slow_start_config": {"slow_start_window": "30s",
                              "aggression": {"default_value": 2.0, "runtime_key": "y"},
                              "min_weight_percent": {"value": 20}}},
        "common_lb_config": {"healthy_panic_threshold": {"value": 30},
                             "locality_weighted_lb_config": {}},
        "load_assignment": {"cluster_name": "test", "policy": {"overprovisioning_factor": 120}}})
    assert cfg.policy == LEAST_REQUEST
    assert (cfg.choice_count, cfg.active_request_bias) == (4, 0.5)
    assert (cfg.slow_start.window, cfg.slow_start.aggression,
            cfg.slow_start.min_weight_percent) == (30.0, 2.0, 20.0)
    assert cfg.common.healthy_panic_threshold == 30.0
    assert cfg.common.locality_weighted is True
    assert cfg.common.overprovisioning_factor == 120


def test_enum_form_hash_settings():
    cfg = _cfg({"lb_policy": "RING_HASH", "ring_hash_lb_config": {
        "minimum_ring_size": 2048, "maximum_ring_size": 4096},
        "common_lb_config": {"consistent_hashing_lb_config": {"use_hostname_for_hashing": True}}})
    assert (cfg.policy, cfg.minimum_ring_size, cfg.maximum_ring_size) == (RING_HASH, 2048, 4096)
    assert cfg.use_hostname_for_hashing
    cfg = _cfg({"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 251}})
    assert (cfg.policy, cfg.table_size) == (MAGLEV, 251)


def test_defaults():
    cfg = _cfg({})
    assert cfg.policy == ROUND_ROBIN and cfg.slow_start is None
    assert cfg.common.healthy_panic_threshold == 50.0
    assert cfg.common.overprovisioning_factor == 140
    assert not cfg.common.locality_weighted
    ring = _cfg({"lb_policy": "RING_HASH"})
    assert (ring.minimum_ring_size, ring.maximum_ring_size) == (1024, 8 * 1024 * 1024)
    assert _cfg({"lb_policy": "MAGLEV"}).table_size == 65537


@pytest.mark.parametrize(("typed_config", "policy"), [
    ({"@type": f"{LBP}.round_robin.v3.RoundRobin"}, ROUND_ROBIN),
    ({"@type": f"{LBP}.least_request.v3.LeastRequest"}, LEAST_REQUEST),
    ({"@type": f"{LBP}.random.v3.Random"}, RANDOM),
    ({"@type": f"{LBP}.ring_hash.v3.RingHash"}, RING_HASH),
    ({"@type": f"{LBP}.maglev.v3.Maglev"}, MAGLEV),
])
def test_typed_extensions(typed_config, policy):
    assert _cfg(_policies(typed_config)).policy == policy


def test_typed_extension_settings():
    cfg = _cfg(_policies({"@type": f"{LBP}.least_request.v3.LeastRequest",
                          "choice_count": 3, "selection_method": "FULL_SCAN",
                          "locality_lb_config": {"locality_weighted_lb_config": {}},
                          "slow_start_config": {"slow_start_window": "5s"}}))
    assert (cfg.choice_count, cfg.full_scan, cfg.common.locality_weighted) == (3, True, True)
    assert cfg.slow_start.window == 5.0 and cfg.slow_start.min_weight_percent == 10.0
    cfg = _cfg(_policies({"@type": f"{LBP}.ring_hash.v3.RingHash", "minimum_ring_size": 16,
                          "maximum_ring_size": 32, "locality_weighted_lb_config": {},
                          "consistent_hashing_lb_config": {"use_hostname_for_hashing": True}}))
    assert (cfg.minimum_ring_size, cfg.maximum_ring_size) == (16, 32)
    assert cfg.common.locality_weighted and cfg.use_hostname_for_hashing
    cfg = _cfg(_policies({"@type": f"{LBP}.maglev.v3.Maglev", "table_size": 5}))
    assert cfg.table_size == 5


def test_first_known_policy_wins():
    cfg = _cfg(_policies(
        {"@type": f"{LBP}.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin"},
        {"@type": "type.googleapis.com/xds.type.v3.TypedStruct", "type_url": "acme.lb.magic"},
        {"@type": f"{LBP}.maglev.v3.Maglev"},
        {"@type": f"{LBP}.random.v3.Random"},
    ))
    assert cfg.policy == MAGLEV


@pytest.mark.parametrize("typed_struct", ["xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct"])
def test_peak_ewma_typed_struct(typed_struct):
    cfg = _cfg(_policies({"@type": f"type.googleapis.com/{typed_struct}",
                          "type_url": "type.googleapis.com/outrider.lb.peak_ewma",
                          "value": {"decay_time": "2.5s", "choice_count": 3,
                                    "default_rtt": "50ms"}}))
    assert (cfg.policy, cfg.decay_time, cfg.choice_count, cfg.default_rtt) == (
        PEAK_EWMA, 2.5, 3, 0.05)


def test_peak_ewma_contrib_proto_and_typed_struct_with_contrib_name():
    cfg = _cfg(_policies({"@type": f"{LBP}.peak_ewma.v3alpha.PeakEwma", "decay_time": "7s",
                          "default_rtt": "0.020s", "aggregation_interval": "0.1s"}))
    assert (cfg.policy, cfg.decay_time, cfg.default_rtt, cfg.choice_count) == (
        PEAK_EWMA, 7.0, 0.020, 2)
    cfg = _cfg(_policies({"@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                          "type_url": f"{LBP}.peak_ewma.v3alpha.PeakEwma",
                          "value": {"decay_time": "3s"}}))
    assert (cfg.policy, cfg.decay_time) == (PEAK_EWMA, 3.0)
    lb, _, _ = make_lb(_policies({"@type": f"{LBP}.peak_ewma.v3alpha.PeakEwma"}), hosts(2))
    assert isinstance(lb, PeakEwmaLoadBalancer)


def test_parse_duration():
    assert parse_duration("10s", "f") == 10.0
    assert parse_duration("250ms", "f") == 0.25
    assert parse_duration(2, "f") == 2.0
    for bad in ("ten", "-1s", 0, True):
        with pytest.raises(UnsupportedLbPolicyError):
            parse_duration(bad, "f")


@pytest.mark.parametrize(("data", "message"), [
    ({"lb_policy": "CLUSTER_PROVIDED"}, "CLUSTER_PROVIDED is not supported"),
    ({"lb_policy": "LOAD_BALANCING_POLICY_CONFIG"}, "needs load_balancing_policy"),
    (_policies({"@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                "type_url": "acme.lb.magic"}), "no supported policy"),
    ({"load_balancing_policy": {}}, "no supported policy"),
    ({"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 65536}}, "prime"),
    ({"lb_policy": "RING_HASH", "ring_hash_lb_config": {
        "minimum_ring_size": 4096, "maximum_ring_size": 1024}}, "minimum_ring_size"),
    ({"lb_policy": "RING_HASH", "ring_hash_lb_config": {"maximum_ring_size": 9000000}},
     "ring sizes"),
    ({"lb_policy": "RING_HASH", "ring_hash_lb_config": {"hash_function": "MURMUR_HASH_2"}},
     "XX_HASH"),
    ({"lb_policy": "RING_HASH", "common_lb_config": {"consistent_hashing_lb_config": {
        "hash_balance_factor": 150}}}, "hash_balance_factor"),
    ({"lb_policy": "LEAST_REQUEST", "least_request_lb_config": {"choice_count": 1}},
     "choice_count"),
    (_policies({"@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                "type_url": "outrider.lb.peak_ewma", "value": {"decay": "1s"}}),
     "unknown peak_ewma field"),
    (_policies({"@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                "type_url": "outrider.lb.peak_ewma", "value": {"choice_count": 1}}),
     "choice_count"),
    (_policies({"@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                "type_url": "outrider.lb.peak_ewma", "value": {"decay_time": "soon"}}),
     "bad duration"),
    ({"load_assignment": {"cluster_name": "t", "policy": {"overprovisioning_factor": 0}}},
     "overprovisioning_factor"),
])
def test_errors_name_the_problem(data, message):
    with pytest.raises(UnsupportedLbPolicyError, match=message) as info:
        _cfg(data)
    assert isinstance(info.value, ValueError)
