"""Clusters: settings translated from Envoy's Cluster proto, the per-worker runtime's membership
and pools, and the cluster manager's DNS handling (select_addresses, STRICT_DNS refresh)."""

from __future__ import annotations

import asyncio
import pickle
import socket

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format

from outrider.stats.store import StatsStore
from outrider.upstream.cluster import (
    DEFAULT_BUFFER_LIMIT,
    Cluster,
    ClusterSettings,
    Endpoint,
    UpstreamSettings,
    host_state_for,
    static_membership,
)
from outrider.upstream.cluster_manager import (
    ClusterManager,
    first_address,
    kept_addresses,
    select_addresses,
)
from outrider.upstream.host import Host
from outrider.upstream.membership import (
    ClusterMembership,
    HealthFlag,
    HealthUpdate,
    HostDescription,
    HostState,
    LogicalAddressUpdate,
    MembershipUpdate,
)

HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def cluster_proto(**fields) -> cluster_pb2.Cluster:
    config = {"name": "backend", "type": "STATIC", "load_assignment": {
        "cluster_name": "backend",
        "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1",
                                                         "port_value": 8080}}}}]}]}}
    config.update(fields)
    return json_format.ParseDict(config, cluster_pb2.Cluster())


def endpoints(*lb_endpoints, **locality_fields) -> dict:
    return {"cluster_name": "backend", "endpoints": [{"lb_endpoints": list(lb_endpoints),
                                                      **locality_fields}]}


def lb_endpoint(address: str, port: int = 80, **fields) -> dict:
    return {"endpoint": {"address": {"socket_address": {"address": address,
                                                        "port_value": port}}}, **fields}


def settings(**fields) -> ClusterSettings:
    return ClusterSettings.from_proto(cluster_proto(**fields))


# -- ClusterSettings.from_proto ------------------------------------------------------------------

def test_defaults():
    s = settings()
    assert s.upstream == UpstreamSettings(connect_timeout=5.0, buffer_limit=1024 * 1024,
                                          idle_timeout=3600.0, max_requests_per_connection=0)
    assert DEFAULT_BUFFER_LIMIT == 1048576
    assert (s.name, s.type, s.dns_refresh_rate, s.dns_lookup_family) == (
        "backend", "STATIC", 5.0, "AUTO")


def test_connect_timeout_and_buffer_limit():
    s = settings(connect_timeout="0.25s", per_connection_buffer_limit_bytes=32768)
    assert (s.upstream.connect_timeout, s.upstream.buffer_limit) == (0.25, 32768)


def test_typed_http_protocol_options():
    s = settings(typed_extension_protocol_options={"envoy.extensions.upstreams.http.v3."
                                                   "HttpProtocolOptions": {
        "@type": HTTP_OPTIONS,
        "common_http_protocol_options": {"idle_timeout": "30s",
                                         "max_requests_per_connection": 5},
        "explicit_http_config": {"http_protocol_options": {}}}})
    assert (s.upstream.idle_timeout, s.upstream.max_requests_per_connection) == (30.0, 5)


def test_zero_idle_timeout_disables_it():
    s = settings(typed_extension_protocol_options={"envoy.extensions.upstreams.http.v3."
                                                   "HttpProtocolOptions": {
        "@type": HTTP_OPTIONS, "common_http_protocol_options": {"idle_timeout": "0s"}}})
    assert s.upstream.idle_timeout is None


def test_deprecated_cluster_max_requests_per_connection():
    assert settings(max_requests_per_connection=7).upstream.max_requests_per_connection == 7


def test_typed_max_requests_wins_over_the_deprecated_field():
    s = settings(max_requests_per_connection=7, typed_extension_protocol_options={
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "common_http_protocol_options": {"max_requests_per_connection": 3}}})
    assert s.upstream.max_requests_per_connection == 3


def test_strict_dns_settings():
    s = settings(type="STRICT_DNS", dns_refresh_rate="2.5s", dns_lookup_family="V4_ONLY")
    assert (s.type, s.dns_refresh_rate, s.dns_lookup_family) == ("STRICT_DNS", 2.5, "V4_ONLY")


def test_endpoints_with_weights_priorities_and_localities():
    s = settings(load_assignment={"cluster_name": "backend", "endpoints": [
        {"locality": {"region": "r1", "zone": "z1", "sub_zone": "s1"},
         "load_balancing_weight": 3,
         "lb_endpoints": [lb_endpoint("10.0.0.1", 81, load_balancing_weight=5),
                          lb_endpoint("10.0.0.2", 82)]},
        {"priority": 1, "lb_endpoints": [lb_endpoint("10.0.1.1", 83)]},
    ]})
    assert s.endpoints == [
        Endpoint("10.0.0.1", 81, 5, 0, ("r1", "z1", "s1"), 3),
        Endpoint("10.0.0.2", 82, 1, 0, ("r1", "z1", "s1"), 3),
        Endpoint("10.0.1.1", 83, 1, 1, ("", "", ""), 0),
    ]


@pytest.mark.parametrize(("status", "healthy"), [
    ("UNKNOWN", True), ("HEALTHY", True), ("UNHEALTHY", False), ("DRAINING", False),
    ("TIMEOUT", False), ("DEGRADED", True),
])
def test_endpoint_health_status(status, healthy):
    s = settings(load_assignment=endpoints(lb_endpoint("10.0.0.1", health_status=status)))
    assert s.endpoints[0].healthy is healthy


def test_host_state_for_copies_the_endpoint():
    endpoint = Endpoint("svc.example", 443, 2, 1, ("r", "z", "s"), 4, healthy=False)
    state = host_state_for(endpoint, "10.9.9.9", resolved=True)
    assert state == HostState(
        HostDescription("10.9.9.9", 443, 2, 1, ("r", "z", "s"), 4, "svc.example"),
        HealthFlag.FAILED_EDS_HEALTH)
    host = Host.from_state(state)
    assert (host.address, host.port, host.address_string, host.weight, host.priority,
            host.locality, host.locality_weight, host.hostname, host.healthy) == (
        "10.9.9.9", 443, "10.9.9.9:443", 2, 1, ("r", "z", "s"), 4, "svc.example", False)
    assert host.description is state.description


def test_host_hostname_as_envoy_names_it():
    # Envoy: the endpoint's hostname field; else, for a DNS endpoint, the name it resolved.
    # A STATIC endpoint without one has none (auto_host_rewrite then leaves Host alone).
    static = Endpoint("10.0.0.1", 80, 1, 0, ("", "", ""), 0)
    assert host_state_for(static, "10.0.0.1").description.hostname == ""
    named = Endpoint("10.0.0.1", 80, 1, 0, ("", "", ""), 0, hostname="named.example")
    assert host_state_for(named, "10.0.0.1").description.hostname == "named.example"
    dns_named = Endpoint("svc.test", 80, 1, 0, ("", "", ""), 0, hostname="named.example")
    assert host_state_for(dns_named, "10.0.0.9", resolved=True).description.hostname == (
        "named.example")


def test_endpoint_hostname_field_is_read():
    s = settings(load_assignment=endpoints({"endpoint": {
        "address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}},
        "hostname": "named.example"}}))
    assert s.endpoints[0].hostname == "named.example"


def test_logical_dns_settings_do_not_judge_the_endpoint_count():
    # The one-endpoint rule is a load-time check (tests/unit/config), reported with the others.
    two = settings(type="LOGICAL_DNS", load_assignment=endpoints(lb_endpoint("a.test"),
                                                                 lb_endpoint("b.test")))
    assert (two.type, len(two.endpoints)) == ("LOGICAL_DNS", 2)


# -- Cluster ---------------------------------------------------------------------------------------

def make_cluster(**fields) -> tuple[Cluster, StatsStore]:
    store = StatsStore()
    cluster = Cluster(settings(**fields), store.scope("cluster.backend"), loop=None)
    return cluster, store


def test_static_cluster_has_its_hosts_at_once():
    cluster, store = make_cluster(load_assignment=endpoints(
        lb_endpoint("10.0.0.1"), lb_endpoint("10.0.0.2", health_status="UNHEALTHY")))
    assert [h.address_string for h in cluster.priority_set.all_hosts] == [
        "10.0.0.1:80", "10.0.0.2:80"]
    assert all(h.created_at == 0.0 for h in cluster.priority_set.all_hosts)
    gauges = store.gauges()
    assert (gauges["cluster.backend.membership_total"].value,
            gauges["cluster.backend.membership_healthy"].value) == (2, 1)


def test_strict_dns_cluster_starts_empty():
    cluster, _ = make_cluster(type="STRICT_DNS")
    assert cluster.priority_set.all_hosts == []


def state(address: str, port: int = 80, **fields) -> HostState:
    flags = fields.pop("health_flags", HealthFlag(0))
    return HostState(HostDescription(address, port, **fields), flags)


def test_static_cluster_membership_is_the_discovery_sides():
    s = settings(load_assignment=endpoints(
        lb_endpoint("10.0.0.1"), lb_endpoint("10.0.0.2", health_status="DRAINING")))
    cluster = Cluster(s, StatsStore().scope("cluster.backend"), loop=None)
    [(key, host), (_, drained)] = cluster.hosts_by_key.items()
    assert key == ("10.0.0.1", 80, 0) == host.description.key
    assert drained.health_flags == HealthFlag.FAILED_EDS_HEALTH and not drained.healthy
    # Both sides build it from config, so the discovery side's snapshot changes nothing here.
    snapshot = static_membership(s).snapshot()
    assert [st.description for st in snapshot.added] == [
        h.description for h in cluster.priority_set.all_hosts]
    before = list(cluster.priority_set.all_hosts)
    notified = []
    cluster.priority_set.on_update(notified.append)
    cluster.apply(snapshot)
    assert cluster.priority_set.all_hosts == before and notified == []


def test_apply_membership_keeps_the_host_objects_and_their_load_state():
    cluster, store = make_cluster(type="STRICT_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace([state("10.0.0.1"), state("10.0.0.2")], initial=True))
    kept, _ = cluster.priority_set.all_hosts
    assert kept.created_at == 0.0  # initial membership: no slow start
    kept.active_requests = 3
    kept.lb_state = "state"
    update = membership.replace([state("10.0.0.1", weight=7), state("10.0.0.3")])
    assert update.added == (state("10.0.0.1", weight=7), state("10.0.0.3"))
    assert update.removed == (("10.0.0.2", 80, 0),)
    cluster.apply(update)
    hosts = cluster.priority_set.all_hosts
    assert hosts[0] is kept
    assert (kept.weight, kept.active_requests, kept.lb_state) == (7, 3, "state")
    assert kept.description == HostDescription("10.0.0.1", 80, weight=7)
    assert [h.address for h in hosts] == ["10.0.0.1", "10.0.0.3"]
    assert hosts[1].created_at > 0.0  # joined after warm-up: slow start applies
    assert list(cluster.hosts_by_key) == [("10.0.0.1", 80, 0), ("10.0.0.3", 80, 0)]
    assert store.gauges()["cluster.backend.membership_total"].value == 2


def test_a_weight_change_rebuilds_the_balancer():
    cluster, _ = make_cluster(type="STRICT_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace([state("10.0.0.1"), state("10.0.0.2")], initial=True))
    a, b = cluster.priority_set.all_hosts
    cluster.apply(membership.replace([state("10.0.0.1", weight=3), state("10.0.0.2")]))
    picks = [cluster.choose_host(None) for _ in range(400)]
    assert (picks.count(a), picks.count(b)) == (300, 100)


def test_apply_membership_drains_the_pools_of_hosts_that_leave():
    """In-flight requests to a host that leaves finish (drain), none are reset (close_all);
    the next request to that address gets a new pool."""
    cluster, _ = make_cluster(type="STRICT_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace([state("10.0.0.1"), state("10.0.0.2")], initial=True))
    staying, leaving = cluster.priority_set.all_hosts
    staying_pool, leaving_pool = cluster.pool_for(staying), cluster.pool_for(leaving)
    calls = []
    for name, pool in (("staying", staying_pool), ("leaving", leaving_pool)):
        pool.drain = lambda name=name: calls.append((name, "drain"))
        pool.close_all = lambda name=name: calls.append((name, "close_all"))
    cluster.apply(membership.replace([state("10.0.0.1")]))
    assert calls == [("leaving", "drain")]
    assert cluster.pools == {("10.0.0.1", 80, 0): staying_pool}
    assert cluster.priority_set.all_hosts == [staying]
    assert cluster.pool_for(Host("10.0.0.2", 80)) is not leaving_pool


def test_an_unchanged_membership_is_no_update_and_no_rebuild():
    cluster, _ = make_cluster(type="STRICT_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace([state("10.0.0.1"), state("10.0.0.2")], initial=True))
    assert membership.replace([state("10.0.0.2"), state("10.0.0.1")]) is None
    notified = []
    cluster.priority_set.on_update(notified.append)
    cluster.apply(MembershipUpdate("backend", (state("10.0.0.1"),), ()))  # already so
    cluster.apply(MembershipUpdate("backend", (), (("10.0.0.9", 80, 0),)))  # not a member
    assert notified == []


def test_health_updates_reach_the_balancer():
    """Round robin skips a host while a health flag is set on it, and takes it back after."""
    cluster, store = make_cluster(type="STRICT_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace([state(f"10.0.0.{i}") for i in (1, 2, 3)], initial=True))
    a, b, c = cluster.priority_set.all_hosts
    gauges = store.gauges()
    assert {cluster.choose_host(None) for _ in range(6)} == {a, b, c}

    update = membership.set_health(b.description.key, HealthFlag.FAILED_OUTLIER_CHECK, True)
    assert update == HealthUpdate("backend", ("10.0.0.2", 80, 0),
                                  HealthFlag.FAILED_OUTLIER_CHECK)
    cluster.apply(update)
    assert (b.healthy, b.health_flags) == (False, HealthFlag.FAILED_OUTLIER_CHECK)
    picks = [cluster.choose_host(None) for _ in range(6)]
    assert b not in picks and set(picks) == {a, c}
    assert gauges["cluster.backend.membership_healthy"].value == 2

    cluster.apply(membership.set_health(b.description.key, HealthFlag.FAILED_OUTLIER_CHECK,
                                        False))
    assert b.healthy and {cluster.choose_host(None) for _ in range(6)} == {a, b, c}
    assert gauges["cluster.backend.membership_healthy"].value == 3
    assert cluster.priority_set.all_hosts == [a, b, c]  # the same hosts throughout


def test_a_cleared_active_health_check_failure_is_a_pass():
    cluster, _ = make_cluster(type="STRICT_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace([state("10.0.0.1")], initial=True))
    [host] = cluster.priority_set.all_hosts
    key = host.description.key
    cluster.apply(membership.set_health(key, HealthFlag.FAILED_OUTLIER_CHECK, True))
    cluster.apply(membership.set_health(key, HealthFlag.FAILED_OUTLIER_CHECK, False))
    assert host.last_hc_pass_time is None  # not an active health check
    cluster.apply(membership.set_health(key, HealthFlag.FAILED_ACTIVE_HC, True))
    cluster.apply(membership.set_health(key, HealthFlag.FAILED_ACTIVE_HC, False))
    assert host.last_hc_pass_time is not None and host.last_hc_pass_time > 0.0


def test_health_update_for_an_unknown_host_is_ignored():
    cluster, _ = make_cluster()
    notified = []
    cluster.priority_set.on_update(notified.append)
    cluster.apply(HealthUpdate("backend", ("10.9.9.9", 80, 0), HealthFlag.FAILED_ACTIVE_HC))
    assert notified == [] and all(h.healthy for h in cluster.priority_set.all_hosts)


def test_membership_update_carries_health_to_new_and_staying_hosts():
    cluster, _ = make_cluster(type="STRICT_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace(
        [state("10.0.0.1"), state("10.0.0.2", health_flags=HealthFlag.FAILED_EDS_HEALTH)],
        initial=True))
    a, b = cluster.priority_set.all_hosts
    assert (a.healthy, b.healthy) == (True, False)
    cluster.apply(membership.replace(
        [state("10.0.0.1", health_flags=HealthFlag.FAILED_EDS_HEALTH), state("10.0.0.2")]))
    assert cluster.priority_set.all_hosts == [a, b]
    assert (a.healthy, b.healthy) == (False, True)
    assert {cluster.choose_host(None) for _ in range(4)} == {b}


def test_logical_address_update_keeps_the_host_and_moves_its_pool():
    cluster, _ = make_cluster(type="LOGICAL_DNS")
    membership = ClusterMembership("backend")  # the discovery side
    cluster.apply(membership.replace([state("10.0.0.1", hostname="svc.test")], initial=True))
    [host] = cluster.priority_set.all_hosts
    pool = cluster.pool_for(host)
    host.active_requests = 2
    notified = []
    cluster.priority_set.on_update(notified.append)
    update = membership.set_logical_address("10.0.0.7")
    assert update == LogicalAddressUpdate("backend", "10.0.0.7")
    cluster.apply(update)
    assert cluster.priority_set.all_hosts == [host] and notified == []
    assert (host.address_string, host.hostname, host.active_requests) == (
        "10.0.0.7:80", "svc.test", 2)
    assert cluster.pools == {("10.0.0.7", 80, 0): pool}
    assert list(cluster.hosts_by_key) == [("10.0.0.7", 80, 0)]
    # Later events name the host by its new key.
    cluster.apply(membership.set_health(("10.0.0.7", 80, 0), HealthFlag.FAILED_ACTIVE_HC, True))
    assert not host.healthy
    # A worker that starts now gets the host at its new address.
    [fresh] = membership.snapshot().added
    assert fresh.description.address == "10.0.0.7"


def test_pool_for_is_one_pool_per_address_and_port():
    cluster, _ = make_cluster(connect_timeout="1s")
    [host] = cluster.priority_set.all_hosts
    pool = cluster.pool_for(host)
    assert cluster.pool_for(Host("10.0.0.1", 8080)) is pool
    assert cluster.pool_for(Host("10.0.0.1", 8081)) is not pool
    assert pool.settings.connect_timeout == 1.0
    assert pool.host is host


def test_request_accounting():
    cluster, store = make_cluster()
    [host] = cluster.priority_set.all_hosts
    cluster.on_request_start()
    cluster.on_request_start()
    cluster.on_request_end(host, 0.01, True)
    assert store.counters()["cluster.backend.upstream_rq_total"].value == 2
    assert store.counters()["cluster.backend.upstream_rq_completed"].value == 1
    assert store.gauges()["cluster.backend.upstream_rq_active"].value == 1


def test_response_codes_are_counted_by_code_and_class():
    cluster, store = make_cluster()
    for status in (200, 201, 503, 503):
        cluster.stats.count_response(status)
    counters = {k: v.value for k, v in store.counters().items() if v.value}
    assert counters == {
        "cluster.backend.upstream_rq_200": 1, "cluster.backend.upstream_rq_201": 1,
        "cluster.backend.upstream_rq_503": 2, "cluster.backend.upstream_rq_2xx": 2,
        "cluster.backend.upstream_rq_5xx": 2}


# -- DNS ---------------------------------------------------------------------------------------------

def info(address: str, port: int = 80) -> tuple:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


INFOS = [info("10.0.0.2"), info("2001:db8::1"), info("10.0.0.1"), info("10.0.0.2"),
         info("2001:db8::2")]


@pytest.mark.parametrize(("family", "expected"), [
    ("V4_ONLY", ["10.0.0.1", "10.0.0.2"]),
    ("V6_ONLY", ["2001:db8::1", "2001:db8::2"]),
    ("AUTO", ["2001:db8::1", "2001:db8::2"]),
    ("V4_PREFERRED", ["10.0.0.1", "10.0.0.2"]),
    ("ALL", ["10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"]),
])
def test_select_addresses(family, expected):
    assert select_addresses(INFOS, family) == expected


@pytest.mark.parametrize(("family", "infos", "expected"), [
    ("AUTO", [info("10.0.0.1")], ["10.0.0.1"]),
    ("V4_PREFERRED", [info("2001:db8::1")], ["2001:db8::1"]),
    ("V4_ONLY", [info("2001:db8::1")], []),
    ("V6_ONLY", [info("10.0.0.1")], []),
])
def test_select_addresses_fallbacks(family, infos, expected):
    assert select_addresses(infos, family) == expected


class DnsLoop:
    """The running loop, with getaddrinfo answered from a table the test edits."""

    def __init__(self, loop, answers) -> None:
        self.loop = loop
        self.answers = answers
        self.queries: list[tuple] = []

    async def getaddrinfo(self, host, port, type=0):
        self.queries.append((host, port, type))
        answer = self.answers[host]
        if isinstance(answer, Exception):
            raise answer
        return [info(address, port) for address in answer]

    def create_task(self, coro):
        return self.loop.create_task(coro)


def dns_settings(refresh: str = "5s") -> ClusterSettings:
    return settings(type="STRICT_DNS", dns_refresh_rate=refresh, dns_lookup_family="V4_ONLY",
                    load_assignment=endpoints(lb_endpoint("svc.test", 8080)))


def test_strict_dns_resolves_every_address_into_a_host():
    async def scenario():
        loop = DnsLoop(asyncio.get_running_loop(), {"svc.test": ["10.0.0.2", "10.0.0.1"]})
        store = StatsStore()
        manager = ClusterManager([dns_settings()], store, loop)
        await manager.start()
        try:
            cluster = manager.get("backend")
            hosts = cluster.priority_set.all_hosts
            assert [(h.address, h.port, h.hostname, h.created_at) for h in hosts] == [
                ("10.0.0.1", 8080, "svc.test", 0.0), ("10.0.0.2", 8080, "svc.test", 0.0)]
            assert loop.queries == [("svc.test", 8080, socket.SOCK_STREAM)]
            assert store.counters()["cluster.backend.update_success"].value == 1
        finally:
            manager.shutdown()

    asyncio.run(scenario())


def test_strict_dns_refresh_keeps_hosts_and_survives_failures():
    async def scenario():
        answers = {"svc.test": ["10.0.0.1"]}
        loop = DnsLoop(asyncio.get_running_loop(), answers)
        store = StatsStore()
        manager = ClusterManager([dns_settings("0.01s")], store, loop)
        await manager.start()
        try:
            cluster = manager.get("backend")
            [first] = cluster.priority_set.all_hosts
            answers["svc.test"] = OSError("SERVFAIL")
            await _until(lambda: store.counters()["cluster.backend.update_failure"].value >= 1)
            assert cluster.priority_set.all_hosts == [first]  # the last good membership
            answers["svc.test"] = ["10.0.0.1", "10.0.0.3"]
            await _until(lambda: len(cluster.priority_set.all_hosts) == 2)
            kept, added = cluster.priority_set.all_hosts
            assert kept is first
            assert added.address == "10.0.0.3" and added.created_at > 0.0
        finally:
            manager.shutdown()

    asyncio.run(scenario())


@pytest.mark.parametrize(("family", "expected"), [
    ("V4_ONLY", "10.0.0.2"), ("V6_ONLY", "2001:db8::1"), ("AUTO", "2001:db8::1"),
    ("V4_PREFERRED", "10.0.0.2"), ("ALL", "10.0.0.2"),
])
def test_first_address_keeps_the_answer_order(family, expected):
    # LOGICAL_DNS takes the first address of the answer (INFOS starts with 10.0.0.2, not the
    # lowest address).
    assert first_address(INFOS, family) == expected


@pytest.mark.parametrize("family", ["V4_ONLY", "V6_ONLY", "AUTO", "V4_PREFERRED", "ALL"])
@pytest.mark.parametrize("infos", [INFOS, INFOS[::-1], [info("10.0.0.1")], [info("2001:db8::1")]],
                         ids=["mixed", "mixed-reversed", "v4", "v6"])
def test_logical_and_strict_dns_keep_the_same_family(family, infos):
    # One rule for both (kept_addresses): LOGICAL_DNS's address is always one of STRICT_DNS's.
    kept = kept_addresses(infos, family)
    assert first_address(infos, family) == (kept[0] if kept else None)
    assert select_addresses(infos, family) == sorted(
        set(kept), key=lambda address: (":" in address, address))
    assert (first_address(infos, family) is None) == (select_addresses(infos, family) == [])


def test_first_address_of_an_answer_without_the_family():
    assert first_address([info("2001:db8::1")], "V4_ONLY") is None
    assert first_address([info("2001:db8::1")], "V4_PREFERRED") == "2001:db8::1"


def logical_settings(refresh: str = "5s") -> ClusterSettings:
    return settings(type="LOGICAL_DNS", dns_refresh_rate=refresh, dns_lookup_family="V4_ONLY",
                    load_assignment=endpoints(lb_endpoint("svc.test", 8080)))


def test_logical_dns_is_one_host_at_the_first_address():
    async def scenario():
        loop = DnsLoop(asyncio.get_running_loop(), {"svc.test": ["10.0.0.2", "10.0.0.1"]})
        store = StatsStore()
        manager = ClusterManager([logical_settings()], store, loop)
        await manager.start()
        try:
            hosts = manager.get("backend").priority_set.all_hosts
            assert [(h.address_string, h.hostname, h.created_at) for h in hosts] == [
                ("10.0.0.2:8080", "svc.test", 0.0)]
            assert store.counters()["cluster.backend.update_success"].value == 1
        finally:
            manager.shutdown()

    asyncio.run(scenario())


def test_logical_dns_change_moves_new_connections_and_keeps_the_pool():
    """A new answer changes the one host's address in place: same Host, same pool (so the
    connections already open serve on, as Envoy's logical host), new connections to the new
    address. A failed resolution keeps the address."""
    async def scenario():
        answers = {"svc.test": ["10.0.0.1"]}
        loop = DnsLoop(asyncio.get_running_loop(), answers)
        store = StatsStore()
        manager = ClusterManager([logical_settings("0.01s")], store, loop)
        await manager.start()
        try:
            cluster = manager.get("backend")
            [host] = cluster.priority_set.all_hosts
            pool = cluster.pool_for(host)
            answers["svc.test"] = OSError("SERVFAIL")
            await _until(lambda: store.counters()["cluster.backend.update_failure"].value >= 1)
            assert host.address == "10.0.0.1"
            answers["svc.test"] = ["10.0.0.7", "10.0.0.1"]
            await _until(lambda: host.address == "10.0.0.7")
            assert cluster.priority_set.all_hosts == [host]
            assert host.address_string == "10.0.0.7:8080"
            assert cluster.pool_for(host) is pool and pool.host is host
            assert cluster.pools == {("10.0.0.7", 8080, 0): pool}
        finally:
            manager.shutdown()

    asyncio.run(scenario())


def test_logical_dns_without_an_answer_has_no_host():
    async def scenario():
        loop = DnsLoop(asyncio.get_running_loop(), {"svc.test": OSError("NXDOMAIN")})
        store = StatsStore()
        manager = ClusterManager([logical_settings()], store, loop)
        await manager.start()
        try:
            assert manager.get("backend").priority_set.all_hosts == []
            assert store.counters()["cluster.backend.update_failure"].value == 1
        finally:
            manager.shutdown()

    asyncio.run(scenario())


def test_strict_dns_events_go_through_publish():
    """The first answer warms the cluster (applied to it directly: no worker knows the cluster
    before it is warm, they get its snapshot); every later change is one event handed to
    ``publish`` (by default: applied here); an answer in another order is none."""
    async def scenario():
        answers = {"svc.test": ["10.0.0.2", "10.0.0.1"]}
        loop = DnsLoop(asyncio.get_running_loop(), answers)
        store = StatsStore()
        manager = ClusterManager([dns_settings("0.01s")], store, loop)
        published = []

        def publish(update):
            published.append(update)
            manager.apply(update)

        manager.publish = publish
        await manager.start()
        try:
            assert published == []
            assert [h.address for h in manager.get("backend").priority_set.all_hosts] == [
                "10.0.0.1", "10.0.0.2"]
            [first] = manager.snapshots()
            assert first.initial and [s.description.address for s in first.added] == [
                "10.0.0.1", "10.0.0.2"]
            answers["svc.test"] = ["10.0.0.1", "10.0.0.2"]
            successes = store.counters()["cluster.backend.update_success"]
            await _until(lambda: successes.value >= 3)
            assert published == []
            answers["svc.test"] = ["10.0.0.2"]
            await _until(lambda: len(published) == 1)
            assert published[0] == MembershipUpdate("backend", (), (("10.0.0.1", 8080, 0),))
            assert [h.address for h in manager.get("backend").priority_set.all_hosts] == [
                "10.0.0.2"]
        finally:
            manager.shutdown()

    asyncio.run(scenario())


def test_a_worker_follows_the_discovery_side_through_pickled_events():
    """A worker (discovery=False) resolves nothing: its DNS clusters are empty until it
    applies the main process's snapshots, then follow the published events; its STATIC
    clusters serve from config from the start. The events cross a pickle, as between processes."""
    async def scenario():
        answers = {"svc.test": ["10.0.0.1"], "logical.test": ["10.0.1.1"]}
        loop = DnsLoop(asyncio.get_running_loop(), answers)
        strict = dns_settings("0.01s")
        logical = settings(name="logical", type="LOGICAL_DNS", dns_refresh_rate="0.01s",
                           dns_lookup_family="V4_ONLY",
                           load_assignment=endpoints(lb_endpoint("logical.test", 8080)))
        static = settings(name="static")
        configs = [strict, logical, static]
        main = ClusterManager(configs, StatsStore(), loop)
        worker = ClusterManager(configs, StatsStore(), loop, discovery=False)
        sent = []

        def broadcast(update):
            main.apply(update)
            sent.append(pickle.dumps(update))

        main.publish = broadcast
        await main.start()
        await worker.start()  # nothing to do
        try:
            assert loop.queries == [("svc.test", 8080, socket.SOCK_STREAM),
                                    ("logical.test", 8080, socket.SOCK_STREAM)]
            assert worker.get("backend").priority_set.all_hosts == []
            assert worker.get("logical").priority_set.all_hosts == []
            assert [h.address_string for h in worker.get("static").priority_set.all_hosts] == [
                "10.0.0.1:8080"]
            with pytest.raises(RuntimeError):
                worker.snapshots()
            # The worker starts: snapshots, then whatever is published from now on.
            for snapshot in main.snapshots():
                worker.apply(pickle.loads(pickle.dumps(snapshot)))
            sent.clear()
            [worker_host] = worker.get("backend").priority_set.all_hosts
            [worker_logical] = worker.get("logical").priority_set.all_hosts
            assert worker_host.created_at == 0.0 and worker_logical.created_at == 0.0

            answers["svc.test"] = ["10.0.0.3", "10.0.0.1"]
            answers["logical.test"] = ["10.0.1.9"]
            main_backend = main.get("backend")
            await _until(lambda: len(main_backend.priority_set.all_hosts) == 2
                         and main.get("logical").priority_set.all_hosts[0].address == "10.0.1.9")
            main.publish(main.memberships["static"].set_health(
                ("10.0.0.1", 8080, 0), HealthFlag.FAILED_ACTIVE_HC, True))
            for event in sent:
                worker.apply(pickle.loads(event))
            for name in ("backend", "logical", "static"):
                assert [(h.description, h.health_flags)
                        for h in worker.get(name).priority_set.all_hosts] == [
                    (h.description, h.health_flags)
                    for h in main.get(name).priority_set.all_hosts], name
            assert worker.get("backend").priority_set.all_hosts[0] is worker_host
            assert worker.get("logical").priority_set.all_hosts == [worker_logical]
            assert worker_logical.address == "10.0.1.9"
            assert not worker.get("static").priority_set.all_hosts[0].healthy
        finally:
            main.shutdown()
            worker.shutdown()

    asyncio.run(scenario())


def test_updates_for_an_unknown_cluster_are_ignored():
    manager = ClusterManager([settings()], StatsStore(), loop=None, discovery=False)
    manager.apply(MembershipUpdate("gone", (HostState(HostDescription("10.0.0.1", 80)),), ()))
    manager.apply(HealthUpdate("gone", ("10.0.0.1", 80, 0), HealthFlag.FAILED_ACTIVE_HC))
    assert list(manager.clusters) == ["backend"]


def test_static_memberships_on_the_discovery_side():
    dns = settings(name="dns", type="STRICT_DNS",
                   load_assignment=endpoints(lb_endpoint("svc.test", 8080)))
    manager = ClusterManager([settings(), dns], StatsStore(), loop=None)
    assert manager.snapshots() == [
        MembershipUpdate("backend", (HostState(HostDescription("10.0.0.1", 8080)),), (),
                         initial=True),
        MembershipUpdate("dns", (), (), initial=True),  # not resolved yet
    ]


def test_unknown_cluster_is_none():
    manager = ClusterManager([settings()], StatsStore(), loop=None)
    assert manager.get("nope") is None
    assert manager.get("backend").name == "backend"


async def _until(condition, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
