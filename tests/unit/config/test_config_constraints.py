"""PGV constraints read from the descriptors, on hand-built messages."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from outrider.config.constraints import iter_violations


def violations(msg) -> list[tuple[str, str]]:
    return list(iter_violations(msg))


def test_valid_cluster_has_none():
    cluster = cluster_pb2.Cluster(name="c")
    cluster.connect_timeout.FromMilliseconds(250)
    assert violations(cluster) == []


def test_required_oneof_and_required_message():
    route = route_components_pb2.Route()
    found = violations(route)
    assert ("", ("one of 'route', 'redirect', 'direct_response', 'filter_action', "
            "'non_forwarding_action' is required")) in found
    assert ("match", "value is required") in found


def test_repeated_min_items_and_nested_paths():
    config = route_pb2.RouteConfiguration(virtual_hosts=[
        route_components_pb2.VirtualHost(name="v")])
    assert ("virtual_hosts[0].domains", "value must contain at least 1 item(s)") in violations(
        config)


def test_percent_range_inside_a_nested_message():
    cluster = cluster_pb2.Cluster(name="c")
    cluster.common_lb_config.healthy_panic_threshold.value = 150
    assert violations(cluster) == [
        ("common_lb_config.healthy_panic_threshold.value", "value must be inside range [0, 100]")]


def test_oneof_member_checked_only_when_set():
    # RouteAction.cluster has min_len 1, checked only when cluster is the member that is set.
    assert violations(route_components_pb2.RouteAction(cluster_header="x-cluster")) == []
    assert violations(route_components_pb2.RouteAction(cluster="")) == [
        ("cluster", "value length must be at least 1 characters")]
    assert violations(route_components_pb2.RouteAction()) == [("", (
        "one of 'cluster', 'cluster_header', 'weighted_clusters', 'cluster_specifier_plugin', "
        "'inline_cluster_specifier_plugin' is required"))]


def test_header_name_pattern_on_repeated_items():
    config = route_pb2.RouteConfiguration(request_headers_to_remove=["ok", "bad\nname"])
    found = violations(config)
    assert len(found) == 1 and found[0][0] == "request_headers_to_remove[1]"


def test_any_payload_is_checked():
    packed = any_pb2.Any()
    packed.Pack(hcm_pb2.HttpConnectionManager(stat_prefix=""))
    paths = {path for path, _ in violations(packed)}
    assert "stat_prefix" in paths
