"""Clusters: settings translated from Envoy's Cluster proto, the per-worker runtime's membership
and pools, and the cluster manager's DNS handling (select_addresses, STRICT_DNS refresh)."""

from __future__ import annotations

import asyncio
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
    host_for,
)
from outrider.upstream.cluster_manager import (
    ClusterManager,
    first_address,
    kept_addresses,
    select_addresses,
)
from outrider.upstream.host import Host

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


def test_host_for_copies_the_endpoint():
    endpoint = Endpoint("svc.example", 443, 2, 1, ("r", "z", "s"), 4, healthy=False)
    host = host_for(endpoint, "10.9.9.9", resolved=True)
    assert (host.address, host.port, host.weight, host.priority, host.locality,
            host.locality_weight, host.hostname, host.healthy) == (
        "10.9.9.9", 443, 2, 1, ("r", "z", "s"), 4, "svc.example", False)


def test_host_hostname_as_envoy_names_it():
    # Envoy: the endpoint's hostname field; else, for a DNS endpoint, the name it resolved.
    # A STATIC endpoint without one has none (auto_host_rewrite then leaves Host alone).
    static = Endpoint("10.0.0.1", 80, 1, 0, ("", "", ""), 0)
    assert host_for(static, "10.0.0.1").hostname == ""
    named = Endpoint("10.0.0.1", 80, 1, 0, ("", "", ""), 0, hostname="named.example")
    assert host_for(named, "10.0.0.1").hostname == "named.example"
    dns_named = Endpoint("svc.test", 80, 1, 0, ("", "", ""), 0, hostname="named.example")
    assert host_for(dns_named, "10.0.0.9", resolved=True).hostname == "named.example"


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


def test_set_hosts_keeps_the_host_objects_that_stay():
    cluster, _ = make_cluster(type="STRICT_DNS")
    first = [Host("10.0.0.1", 80), Host("10.0.0.2", 80)]
    cluster.set_hosts(first, initial=True)
    kept = first[0]
    kept.active_requests = 3
    kept.lb_state = "state"
    cluster.set_hosts([Host("10.0.0.1", 80, weight=7), Host("10.0.0.3", 80)])
    hosts = cluster.priority_set.all_hosts
    assert hosts[0] is kept
    assert (kept.weight, kept.active_requests, kept.lb_state) == (7, 3, "state")
    assert [h.address for h in hosts] == ["10.0.0.1", "10.0.0.3"]
    assert hosts[1].created_at > 0.0  # joined after warm-up: slow start applies


def test_set_hosts_drains_the_pools_of_hosts_that_leave():
    """In-flight requests to a host that leaves finish (drain), none are reset (close_all);
    the next request to that address gets a new pool."""
    cluster, _ = make_cluster(type="STRICT_DNS")
    cluster.set_hosts([Host("10.0.0.1", 80), Host("10.0.0.2", 80)], initial=True)
    staying, leaving = cluster.priority_set.all_hosts
    staying_pool, leaving_pool = cluster.pool_for(staying), cluster.pool_for(leaving)
    calls = []
    for name, pool in (("staying", staying_pool), ("leaving", leaving_pool)):
        pool.drain = lambda name=name: calls.append((name, "drain"))
        pool.close_all = lambda name=name: calls.append((name, "close_all"))
    cluster.set_hosts([Host("10.0.0.1", 80)])
    assert calls == [("leaving", "drain")]
    assert cluster.pools == {("10.0.0.1", 80): staying_pool}
    assert cluster.pool_for(Host("10.0.0.2", 80)) is not leaving_pool


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
            assert cluster.pools == {("10.0.0.7", 8080): pool}
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
