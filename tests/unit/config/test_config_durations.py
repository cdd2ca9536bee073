"""Presence-aware readers for Duration, wrappers and percents."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.v3 import percent_pb2

from outrider.config.durations import (
    bool_value,
    fractional_percent,
    percent,
    runtime_double,
    seconds,
    timeout,
    uint32_value,
    uint_value,
)


def test_seconds_distinguishes_unset_from_zero():
    action = route_components_pb2.RouteAction()
    assert seconds(action, "timeout", 15.0) == 15.0
    action.timeout.SetInParent()  # explicit 0s: Envoy's "no timeout"
    assert seconds(action, "timeout", 15.0) == 0.0
    action.timeout.FromMilliseconds(1500)
    assert seconds(action, "timeout", 15.0) == pytest.approx(1.5)


def test_timeout_maps_an_explicit_zero_to_disabled():
    action = route_components_pb2.RouteAction()
    assert timeout(action, "timeout", 15.0) == 15.0
    action.timeout.SetInParent()
    assert timeout(action, "timeout", 15.0) is None
    action.timeout.seconds = 2
    assert timeout(action, "timeout", 15.0) == 2.0


def test_seconds_default_may_be_none():
    assert seconds(route_components_pb2.RouteAction(), "idle_timeout", None) is None


def test_wrappers():
    cluster = cluster_pb2.Cluster()
    assert uint_value(cluster, "per_connection_buffer_limit_bytes", 1 << 20) == 1 << 20
    cluster.per_connection_buffer_limit_bytes.value = 0
    assert uint32_value(cluster, "per_connection_buffer_limit_bytes", 1 << 20) == 0
    match = route_components_pb2.RouteMatch()
    assert bool_value(match, "case_sensitive", True) is True
    match.case_sensitive.value = False
    assert bool_value(match, "case_sensitive", True) is False


def test_percent_and_runtime_double():
    common = cluster_pb2.Cluster.CommonLbConfig()
    assert percent(common, "healthy_panic_threshold", 50.0) == 50.0
    common.healthy_panic_threshold.CopyFrom(percent_pb2.Percent(value=0.0))
    assert percent(common, "healthy_panic_threshold", 50.0) == 0.0
    lr = cluster_pb2.Cluster.LeastRequestLbConfig()
    assert runtime_double(lr, "active_request_bias", 1.0) == 1.0
    lr.active_request_bias.default_value = 2.5
    assert runtime_double(lr, "active_request_bias", 1.0) == 2.5


def test_fractional_percent():
    fraction = base_pb2.RuntimeFractionalPercent()
    assert fractional_percent(fraction, "default_value", 1.0) == 1.0
    fraction.default_value.numerator = 25
    assert fractional_percent(fraction, "default_value", 1.0) == 0.25
    fraction.default_value.denominator = percent_pb2.FractionalPercent.TEN_THOUSAND
    assert fractional_percent(fraction, "default_value", 1.0) == 0.0025
