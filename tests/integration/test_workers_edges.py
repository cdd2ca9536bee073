"""Worker processes at the edges: a worker that dies while a reload or a drain is under way,
counters across a worker's death, and gauges that are the same fact in every worker."""

from __future__ import annotations

import os
import signal
import time

import yaml

from tests.integration.test_workers import alive, fresh_connections, wait_for
from tests.support.client import RawClient, build
from tests.support.marks import outrider_only
from tests.support.proxy import ProxyProcess, bootstrap, cluster, free_port

pytestmark = outrider_only

WORKERS = ("--concurrency", "2")


def _config(origins, extra_listener_port: int | None = None) -> dict:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "ring"}}]
    config = bootstrap(free_port(), routes, [cluster(
        "ring", [origins["a"].port, origins["b"].port], lb_policy="RING_HASH")])
    if extra_listener_port is not None:
        second = yaml.safe_load(yaml.safe_dump(config["static_resources"]["listeners"][0]))
        second["name"] = "second"
        second["address"]["socket_address"]["port_value"] = extra_listener_port
        config["static_resources"]["listeners"].append(second)
    return config


def _write(proxy: ProxyProcess, config: dict) -> None:
    with open(proxy.path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def test_a_worker_dying_as_a_reload_starts_does_not_fail_it(origins):
    proxy = ProxyProcess(_config(origins), extra_args=(*WORKERS, "--no-watch-config")).start()
    try:
        second = free_port()
        config = _config(origins, second)
        config["static_resources"]["listeners"][0]["address"]["socket_address"][
            "port_value"] = proxy.port  # the first listener stays; "second" is added
        _write(proxy, config)
        pids = proxy.server_info()["worker_pids"]
        os.kill(pids[0], signal.SIGKILL)
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: proxy.stats()["server.config_reload_total"] == "1", what="the reload")
        assert proxy.stats()["server.config_reload_failed"] == "0"
        wait_for(lambda: None not in (p := proxy.server_info()["worker_pids"]) and pids[0] not in p,
                 what="the replacement worker")
        # Both workers serve the new listener: every connection to it is answered.
        assert fresh_connections(second, 30) == [200] * 30
        assert fresh_connections(proxy.port, 10) == [200] * 10
    finally:
        proxy.stop()


def test_counters_never_go_back_when_a_worker_dies(origins):
    proxy = ProxyProcess(_config(origins), extra_args=WORKERS).start()
    try:
        assert fresh_connections(proxy.port, 60) == [200] * 60
        before = int(proxy.stats()["http.ingress_http.downstream_rq_total"])
        assert before == 60  # asking for /stats refreshes every worker's report
        killed = proxy.server_info()["worker_pids"][0]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: proxy.server_info()["worker_pids"][0] not in (None, killed),
                 what="a new worker")
        assert int(proxy.stats()["http.ingress_http.downstream_rq_total"]) == before
        assert proxy.stats()["server.worker_restarts"] == "1", proxy.log()
    finally:
        proxy.stop()


def test_stats_stay_after_the_workers_drained_out(origins):
    proxy = ProxyProcess(_config(origins), extra_args=(
        *WORKERS, "--drain-strategy", "immediate", "--drain-time-s", "1")).start()
    try:
        assert fresh_connections(proxy.port, 20) == [200] * 20
        assert proxy.admin("/drain_listeners", method="POST")[0] == 200
        pids = proxy.server_info()["worker_pids"]
        wait_for(lambda: proxy.server_info()["worker_pids"] == [None, None],
                 what="the workers to say goodbye")
        # Their channels close as they exit; the processes themselves are gone a moment later.
        wait_for(lambda: not any(alive(pid) for pid in pids), what="the workers to exit")
        stats = proxy.stats()
        assert stats["http.ingress_http.downstream_rq_total"] == "20"
        assert stats["cluster.ring.upstream_rq_total"] == "20"
    finally:
        proxy.stop()


def test_a_worker_that_dies_during_a_graceful_drain_leaves_no_connection_hanging(origins):
    proxy = ProxyProcess(_config(origins), extra_args=(*WORKERS, "--drain-time-s", "30")).start()
    try:
        assert proxy.admin("/drain_listeners?graceful", method="POST")[0] == 200
        os.kill(proxy.server_info()["worker_pids"][0], signal.SIGKILL)
        wait_for(lambda: proxy.server_info()["worker_pids"][0] is None, what="the exit")
        time.sleep(0.2)
        started = time.monotonic()
        for _ in range(20):  # each answered by the other worker, none queued for the dead one
            client = RawClient(proxy.port, timeout=3)
            try:
                assert client.exchange(build("GET", "/echo")).status == 200
            finally:
                client.close()
        assert time.monotonic() - started < 10
        assert proxy.stats()["server.worker_restarts"] == "0"  # draining: not restarted
    finally:
        proxy.stop()


def test_a_balancers_gauges_are_one_workers_not_a_sum(origins):
    one = ProxyProcess(_config(origins), extra_args=("--concurrency", "1")).start()
    two = ProxyProcess(_config(origins), extra_args=WORKERS).start()
    try:
        for proxy in (one, two):
            assert fresh_connections(proxy.port, 4) == [200] * 4
        names = ("cluster.ring.ring_hash_lb.size", "cluster.ring.ring_hash_lb.min_hashes_per_host",
                 "cluster.ring.membership_total")
        single, double = one.stats(), two.stats()
        assert [double[n] for n in names] == [single[n] for n in names]
        assert single["cluster.ring.ring_hash_lb.size"] == "1024"
    finally:
        one.stop()
        two.stop()


def test_a_worker_that_died_just_before_a_graceful_drain_leaves_no_connection_hanging(origins):
    proxy = ProxyProcess(_config(origins), extra_args=(*WORKERS, "--drain-time-s", "30")).start()
    try:
        os.kill(proxy.server_info()["worker_pids"][0], signal.SIGKILL)  # young: restart waits 1 s
        time.sleep(0.3)
        assert proxy.admin("/drain_listeners?graceful", method="POST")[0] == 200
        time.sleep(1.5)  # the restart pause is over: no restart while draining
        assert proxy.server_info()["worker_pids"][0] is None
        for _ in range(20):
            client = RawClient(proxy.port, timeout=3)
            try:
                assert client.exchange(build("GET", "/echo")).status == 200
            finally:
                client.close()
    finally:
        proxy.stop()


def _host_counts(proxy: ProxyProcess, cluster_name: str) -> dict[str, tuple[int, int]]:
    """/clusters: (rq_success, rq_error) by host address."""
    _, text = proxy.admin("/clusters")
    counts: dict[str, list[int]] = {}
    for line in text.splitlines():
        name, host, stat, value = line.split("::")
        if name == cluster_name and stat in ("rq_success", "rq_error"):
            counts.setdefault(host, [0, 0])[stat == "rq_error"] = int(value)
    return {host: (ok, bad) for host, (ok, bad) in counts.items()}


def test_a_host_removed_and_added_again_starts_from_zero_as_with_one_process(origins):
    proxy = ProxyProcess(_config(origins), extra_args=(*WORKERS, "--no-watch-config")).start()
    with open(proxy.path) as f:
        config = yaml.safe_load(f)
    try:
        assert fresh_connections(proxy.port, 20) == [200] * 20
        b = f"127.0.0.1:{origins['b'].port}"
        proxy.stats()  # every worker reports now (else at the next 5 s flush)
        killed = proxy.server_info()["worker_pids"][0]
        os.kill(killed, signal.SIGKILL)  # what it counted is kept by the main process
        wait_for(lambda: proxy.server_info()["worker_pids"][0] not in (None, killed),
                 what="a new worker")
        assert sum(ok for ok, _ in _host_counts(proxy, "ring").values()) == 20
        endpoints = config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"]
        all_hosts = list(endpoints[0]["lb_endpoints"])
        for hosts, reloads in ((all_hosts[:1], "1"), (all_hosts, "2")):  # b out, then back
            endpoints[0]["lb_endpoints"] = hosts
            _write(proxy, config)
            proxy.proc.send_signal(signal.SIGHUP)
            wait_for(lambda r=reloads: proxy.stats()["server.config_reload_total"] == r,
                     what="the reload")
        assert _host_counts(proxy, "ring")[b] == (0, 0)
    finally:
        proxy.stop()


def test_a_stuck_worker_holds_neither_stats_nor_a_reload_back(origins):
    """A worker that does not answer (stopped here) costs /stats its timeout, answered from
    the worker's last report, and a reload its timeout; it applies the reload when it runs."""
    proxy = ProxyProcess(_config(origins), extra_args=(*WORKERS, "--no-watch-config")).start()
    stuck = None
    try:
        assert fresh_connections(proxy.port, 10) == [200] * 10
        assert proxy.stats()["http.ingress_http.downstream_rq_total"] == "10"
        stuck = proxy.server_info()["worker_pids"][0]
        os.kill(stuck, signal.SIGSTOP)
        started = time.monotonic()
        assert proxy.stats()["http.ingress_http.downstream_rq_total"] == "10"
        assert time.monotonic() - started < 4  # the 2 s stats timeout, not forever
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: proxy.stats()["server.config_reload_total"] == "1", deadline=20,
                 what="the reload, despite the stuck worker")
        assert "did not confirm within" in proxy.log()
        os.kill(stuck, signal.SIGCONT)
        stuck = None
        assert fresh_connections(proxy.port, 10) == [200] * 10
    finally:
        if stuck is not None:
            os.kill(stuck, signal.SIGCONT)
        proxy.stop()
