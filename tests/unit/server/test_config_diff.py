"""What a reload changes, as the log line and the admin page summarise it."""

from __future__ import annotations

from outrider.config.loader import load_bootstrap_data
from outrider.server.config_diff import diff
from tests.support.proxy import bootstrap, cluster


def _config(routes_prefix="/", clusters=("a",), listener_port=10000, extra_listener=False):
    config = bootstrap(listener_port, [{"match": {"prefix": routes_prefix},
                                        "route": {"cluster": clusters[0]}}],
                       [cluster(name, [9000 + i]) for i, name in enumerate(clusters)],
                       admin_port=9901)
    if extra_listener:
        second = dict(config["static_resources"]["listeners"][0], name="second")
        second["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": 10001}}
        config["static_resources"]["listeners"].append(second)
    return load_bootstrap_data(config).bootstrap


def test_the_same_config_is_no_change():
    changes = diff(_config(), _config())
    assert not changes
    assert changes.summary() == "no change"


def test_a_route_change_is_a_route_and_a_listener_change():
    changes = diff(_config(), _config(routes_prefix="/api"))
    assert changes.routes.changed == ("rc",)
    assert changes.listeners.changed == ("ingress",)
    assert not changes.clusters


def test_clusters_and_listeners_added_removed_and_changed():
    old = _config(clusters=("a", "b"))
    new = _config(clusters=("a", "c"), listener_port=10005, extra_listener=True)
    changes = diff(old, new)
    assert changes.clusters.added == ("c",)
    assert changes.clusters.removed == ("b",)
    assert changes.listeners.added == ("second",)
    assert changes.listeners.changed == ("ingress",)
    assert changes.summary() == ("listeners: added second; changed ingress | "
                                 "clusters: added c; removed b")
