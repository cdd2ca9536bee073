"""``--concurrency N``: N worker processes, each accepting on its own SO_REUSEPORT socket, all
serving; stats summed over them; a worker that dies is replaced; the main process takes its
workers with it however it dies."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.client import RawClient, build
from tests.support.load import KeepAliveLoad
from tests.support.marks import outrider_only
from tests.support.proxy import ProxyProcess, bootstrap, cluster, free_port

pytestmark = outrider_only

WORKERS = 2


def _config(origins) -> dict:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "ab"}}]
    dns = cluster("dns", [origins["c"].port])
    dns["type"] = "STRICT_DNS"
    dns["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]["address"] = "localhost"
    dns["dns_lookup_family"] = "V4_ONLY"
    vhosts = [{"name": "dns", "domains": ["dns.test"],
               "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "dns"}}]},
              {"name": "vh", "domains": ["*"], "routes": routes}]
    return bootstrap(free_port(), routes, [cluster("ab", [origins["a"].port, origins["b"].port]),
                                           dns], virtual_hosts=vhosts)


@pytest.fixture(scope="module")
def proxy(origins, start_proxy):
    return start_proxy(_config(origins), extra_args=("--concurrency", str(WORKERS)))


def alive(pid: int) -> bool:
    """Running (not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition, deadline: float = 10.0, what: str = "condition"):
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what} not met within {deadline}s")
        time.sleep(0.05)


def fresh_connections(port: int, count: int, path: str = "/echo", host: str = "example.com"):
    """``count`` requests, each on a new connection (so the kernel spreads them)."""
    statuses = []
    for _ in range(count):
        client = RawClient(port)
        try:
            client.send(build("GET", path, host=host))
            responses = client.read_responses(1)
        finally:
            client.close()
        statuses.append(responses[0].status if responses and responses[0].complete else None)
    return statuses


def test_every_worker_is_a_process_of_its_own_and_all_of_them_serve(proxy):
    info = proxy.server_info()
    pids = info["worker_pids"]
    assert len(set(pids)) == WORKERS and info["pid"] not in pids
    assert all(alive(pid) for pid in pids)
    assert fresh_connections(proxy.port, 60) == [200] * 60
    stats = proxy.stats()
    address = f"listener.127.0.0.1_{proxy.port}"
    accepted = [int(stats[f"{address}.worker_{i}.downstream_cx_total"]) for i in range(WORKERS)]
    assert all(n > 0 for n in accepted), accepted  # SO_REUSEPORT spread them
    assert int(stats[f"{address}.downstream_cx_total"]) == sum(accepted)
    assert stats["server.concurrency"] == str(WORKERS)


def test_stats_are_summed_over_the_workers_under_load(proxy):
    before = proxy.stats()
    result = KeepAliveLoad(proxy.port, clients=16, path="/echo", max_requests=40).start().wait()
    assert result.failures == [] and result.requests == 16 * 40
    stats = proxy.stats()

    def grew(name: str) -> int:
        return int(stats[name]) - int(before.get(name, "0"))

    assert grew("http.ingress_http.downstream_rq_total") == 640
    assert grew("http.ingress_http.downstream_rq_2xx") == 640
    assert grew("cluster.ab.upstream_rq_total") == 640
    assert grew("cluster.ab.upstream_rq_200") == 640
    # Membership is the main process's fact, not a sum over the workers.
    assert stats["cluster.ab.membership_total"] == "2"
    assert stats["cluster.ab.membership_healthy"] == "2"
    assert stats["http.ingress_http.downstream_rq_active"] == "0"
    _, text = proxy.admin("/stats/prometheus")
    assert f"envoy_cluster_ab_upstream_rq_total {stats['cluster.ab.upstream_rq_total']}\n" in text


def test_workers_serve_dns_clusters_resolved_by_the_main_process(proxy):
    assert fresh_connections(proxy.port, 10, host="dns.test") == [200] * 10
    stats = proxy.stats()
    assert stats["cluster.dns.membership_total"] == "1"
    assert int(stats["cluster.dns.update_success"]) >= 1


def test_a_killed_worker_is_replaced_and_the_listener_keeps_answering(origins):
    with ProxyProcess(_config(origins), extra_args=("--concurrency", str(WORKERS))) as proxy:
        pids = proxy.server_info()["worker_pids"]
        load = KeepAliveLoad(proxy.port, clients=4, path="/echo").start()
        time.sleep(0.3)
        os.kill(pids[0], signal.SIGKILL)
        replaced = wait_for(lambda: (p := proxy.server_info()["worker_pids"])[0] not in (
            None, pids[0]) and p, what="a new worker")
        time.sleep(0.3)
        result = load.stop()
        assert replaced[1] == pids[1] and alive(replaced[0])
        assert proxy.stats()["server.worker_restarts"] == "1"
        # Only the killed worker's own connections can fail; new connections keep being served.
        assert len(result.failures) <= 4, result.failures
        assert fresh_connections(proxy.port, 30) == [200] * 30
        assert "worker 0 (pid" in proxy.log() and "exited unexpectedly" in proxy.log()


def test_a_connection_waiting_in_a_dead_workers_queue_is_served_by_its_successor(origins):
    """The main process owns the listening sockets: a connection the kernel queued for a worker
    that died is accepted by the worker that replaces it, not reset."""
    with ProxyProcess(_config(origins), extra_args=("--concurrency", str(WORKERS))) as proxy:
        pids = proxy.server_info()["worker_pids"]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # nobody accepts: connections wait in the queues
        # Answered once the replacements are up: a 1 s crash-loop pause, then their start.
        clients = [RawClient(proxy.port, timeout=15) for _ in range(8)]
        for client in clients:
            client.send(build("GET", "/echo"))
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        responses = [client.read_responses(1) for client in clients]
        assert [r[0].status if r else None for r in responses] == [200] * 8
        for client in clients:
            client.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_workers_go_with_the_main_process(origins, sig):
    proxy = ProxyProcess(_config(origins), extra_args=("--concurrency", str(WORKERS))).start()
    try:
        pids = proxy.server_info()["worker_pids"]
        assert all(alive(pid) for pid in pids)
        proxy.proc.send_signal(sig)
        proxy.proc.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in pids), what="no worker left")
    finally:
        proxy.stop()


def _host_counts(proxy) -> dict[str, int]:
    """/clusters' rq_success and rq_error of cluster ab, summed over its hosts."""
    _, text = proxy.admin("/clusters")
    totals = {"rq_success": 0, "rq_error": 0, "rq_active": 0}
    for line in text.splitlines():
        parts = line.split("::")
        if parts[0] == "ab" and parts[2] in totals:
            totals[parts[2]] += int(parts[3])
    return totals


def test_per_host_outcomes_reach_the_main_process_from_every_worker(proxy, origins):
    """What outlier detection will judge: each worker reports its requests' outcomes per host,
    and /clusters (Envoy's lines) shows them summed."""
    before = _host_counts(proxy)
    assert fresh_connections(proxy.port, 40) == [200] * 40
    assert fresh_connections(proxy.port, 10, path="/status/503") == [503] * 10
    after = _host_counts(proxy)
    assert after["rq_success"] - before["rq_success"] == 40
    assert after["rq_error"] - before["rq_error"] == 10
    assert after["rq_active"] == 0
    _, text = proxy.admin("/clusters")
    assert f"ab::127.0.0.1:{origins['a'].port}::health_flags::healthy" in text
    assert f"ab::127.0.0.1:{origins['b'].port}::weight::1" in text
