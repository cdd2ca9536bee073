"""Drain and shutdown: SIGTERM, SIGINT and ``/quitquitquit`` stop accepting, let requests in
flight finish with ``connection: close`` (the listeners are closed: no strategy spreads those),
then exit 0; ``/drain_listeners`` drains as Envoy's
does and keeps the process (and its admin) up; ``/ready`` says DRAINING throughout."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tests.support.client import RawClient, build
from tests.support.marks import outrider_only
from tests.support.proxy import ProxyProcess, bootstrap, cluster, free_port

pytestmark = outrider_only


def _config(origins) -> dict:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "a", "timeout": "30s"}}]
    return bootstrap(free_port(), routes, [cluster("a", [origins["a"].port])])


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _in_background(client: RawClient, raw: bytes) -> list:
    """Send ``raw`` and read its response in a thread; the list gets the response."""
    out: list = []

    def run() -> None:
        client.send(raw)
        out.extend(client.read_responses(1))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    out.append(thread)
    return out


@pytest.mark.parametrize("concurrency", [1, 2])
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "quitquitquit"])
def test_shutdown_finishes_requests_in_flight_then_exits_0(origins, concurrency, how):
    proxy = ProxyProcess(_config(origins), extra_args=(
        "--concurrency", str(concurrency), "--drain-time-s", "10")).start()
    try:
        client = RawClient(proxy.port, timeout=15)
        client.exchange(build("GET", "/echo"))  # a keep-alive connection that is busy next
        idle = RawClient(proxy.port)
        idle.exchange(build("GET", "/echo"))  # and one that stays idle
        pending = _in_background(client, build("GET", "/sleep/1.0"))
        time.sleep(0.3)  # the slow request is in flight
        started = time.monotonic()
        if how == "quitquitquit":
            assert proxy.admin("/quitquitquit", method="POST")[0] == 200
        else:
            proxy.proc.send_signal(getattr(signal, how))
        assert idle.is_closed(timeout=3)  # nothing in flight on it: closed at once
        pending[0].join(10)
        [response] = pending[1:]
        assert response.status == 200 and response.complete
        assert response.header("connection") == "close"
        assert proxy.proc.wait(10) == 0
        # It left as soon as the last request was answered, not at the end of the drain time.
        assert time.monotonic() - started < 5
        # Shutdown closes every connection after its response, whatever the strategy.
        assert "draining: immediate over 10s" in proxy.log()
    finally:
        proxy.stop()


def test_no_new_connection_is_accepted_while_draining(origins):
    proxy = ProxyProcess(_config(origins), extra_args=("--drain-time-s", "10")).start()
    try:
        client = RawClient(proxy.port, timeout=15)
        pending = _in_background(client, build("GET", "/sleep/1.5"))
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while not _refused(proxy.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refused(proxy.port)
        status, body = proxy.admin("/ready")
        assert (status, body) == (503, "DRAINING\n")
        pending[0].join(10)
        assert pending[1].status == 200
        assert proxy.proc.wait(10) == 0
    finally:
        proxy.stop()


def test_a_second_signal_exits_without_waiting(origins):
    proxy = ProxyProcess(_config(origins), extra_args=("--drain-time-s", "60")).start()
    try:
        client = RawClient(proxy.port, timeout=15)
        client.send(build("GET", "/hang"))
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proxy.proc.poll() is None  # the request holds the drain open
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(5) == 0
        assert "second SIGTERM: exiting without waiting for the drain" in proxy.log()
    finally:
        proxy.stop()


def test_requests_still_in_flight_at_the_end_of_the_drain_time_are_cut(origins):
    proxy = ProxyProcess(_config(origins), extra_args=("--drain-time-s", "1")).start()
    try:
        client = RawClient(proxy.port, timeout=15)
        client.send(build("GET", "/hang"))
        time.sleep(0.3)
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(10) == 0
        assert 1.0 <= time.monotonic() - started < 4  # the drain time, and a short grace
        assert client.is_closed(timeout=1)
    finally:
        proxy.stop()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_drain_listeners_immediate_closes_keep_alive_connections_and_stays_up(
        origins, concurrency):
    proxy = ProxyProcess(_config(origins), extra_args=(
        "--concurrency", str(concurrency), "--drain-strategy", "immediate",
        "--drain-time-s", "5")).start()
    try:
        client = RawClient(proxy.port)
        assert client.exchange(build("GET", "/echo")).header("connection") is None
        assert proxy.admin("/drain_listeners", method="GET")[0] == 405
        assert proxy.admin("/drain_listeners", method="POST") == (200, "OK\n")
        response = client.exchange(build("GET", "/echo"))
        assert response.status == 200 and response.header("connection") == "close"
        assert client.is_closed()
        assert _refused(proxy.port)
        assert proxy.admin("/ready") == (503, "DRAINING\n")
        time.sleep(0.5)
        assert proxy.proc.poll() is None  # Envoy's drain_listeners does not exit
        assert proxy.admin("/quitquitquit", method="POST")[0] == 200
        assert proxy.proc.wait(10) == 0
    finally:
        proxy.stop()


def test_graceful_drain_listeners_keeps_accepting_for_the_drain_time(origins):
    proxy = ProxyProcess(_config(origins), extra_args=(
        "--drain-strategy", "immediate", "--drain-time-s", "2")).start()
    try:
        assert proxy.admin("/drain_listeners?graceful", method="POST")[0] == 200
        # New connections are still accepted (and told to close) during the drain time...
        client = RawClient(proxy.port)
        response = client.exchange(build("GET", "/echo"))
        assert response.status == 200 and response.header("connection") == "close"
        # ...and refused after it.
        deadline = time.monotonic() + 5
        while not _refused(proxy.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refused(proxy.port)
    finally:
        proxy.stop()


def test_gradual_strategy_spreads_the_closes_over_the_drain_time(origins):
    """With ``gradual``, early responses mostly keep their connection; late ones close it."""
    proxy = ProxyProcess(_config(origins), extra_args=(
        "--drain-strategy", "gradual", "--drain-time-s", "4")).start()
    try:
        clients = [RawClient(proxy.port) for _ in range(20)]
        assert proxy.admin("/drain_listeners?graceful", method="POST")[0] == 200
        early = [c.exchange(build("GET", "/echo")).header("connection") for c in clients]
        assert early.count("close") <= 8  # about 0 to 10% of the time elapsed
        time.sleep(3.5)
        still_open = [c for c, header in zip(clients, early, strict=True) if header != "close"]
        late = [c.exchange(build("GET", "/echo")).header("connection") for c in still_open]
        assert late.count("close") >= len(late) * 0.6
    finally:
        proxy.stop()


def test_a_shutdown_during_a_gradual_drain_closes_after_the_response_in_flight(origins):
    proxy = ProxyProcess(_config(origins), extra_args=("--drain-time-s", "20")).start()
    try:
        client = RawClient(proxy.port, timeout=15)
        assert proxy.admin("/drain_listeners?graceful", method="POST")[0] == 200
        pending = _in_background(client, build("GET", "/sleep/0.5"))
        time.sleep(0.2)
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        pending[0].join(10)
        assert pending[1].status == 200 and pending[1].header("connection") == "close"
        assert proxy.proc.wait(10) == 0
        assert time.monotonic() - started < 3
    finally:
        proxy.stop()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_second_signal_stops_the_workers_at_once(origins, concurrency):
    proxy = ProxyProcess(_config(origins), extra_args=(
        "--concurrency", str(concurrency), "--drain-time-s", "60")).start()
    try:
        clients = [RawClient(proxy.port, timeout=15) for _ in range(4)]
        for client in clients:
            client.send(build("GET", "/hang"))
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(10) == 0
        assert time.monotonic() - started < 2
        assert "never retrieved" not in proxy.log()
    finally:
        proxy.stop()
