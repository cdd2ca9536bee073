"""Deterministic simulation of benchmark 2 of issue 3 (tail latency with one slow host).

    python bench/lb_sim.py [--duration 30] [--seed 1] [--proxy-us 0]
                           [--stall-every S --stall-ms D] [--startup-stall-ms D]
                           [--host-concurrency N]
                           [--variants rr,lr,ewma,ewma-healthy,lr-healthy]
                           [--ewma key=value ...] [--set key=value ...]

    python bench/lb_sim.py --proxy-us 120                                   # issue 3's setting
    python bench/lb_sim.py --proxy-us 120 --set latency_ratio_limit=0       # Finagle/tower rule
    python bench/lb_sim.py --proxy-us 120 --stall-every 1 --stall-ms 20     # a stalling loop
    python bench/lb_sim.py --proxy-us 120 --duration 10 --startup-stall-ms 30   # issue 8

Not a benchmark of Outrider's speed: a discrete-event model of ``bench/slow_host.py`` on a
simulated clock, so a load-balancing policy can be studied on a busy machine and the same seed
gives the same numbers. It drives the real balancers (``outrider.lb.factory
.create_load_balancer``, real ``Host`` objects, the router's side of the contract: ``active_requests``
and ``on_request_complete``) with a fake clock and a seeded random source.

The model:

* ``--connections`` (50) closed-loop clients (wrk): each sends its next request as soon as the
  previous answer arrives (plus ``--client-gap-us``).
* ``--hosts`` (10) upstream hosts with a pure service time (any number of requests wait
  concurrently, as ``bench/slow_origin.py`` does): ``--fast-ms`` (5) each, the last one
  ``--slow-ms`` (50), plus uniform [0, ``--jitter-ms``) (1 ms: ``loop.call_later`` resolution).
  The ``-healthy`` variants put every host at ``--fast-ms``. ``--host-concurrency N`` instead
  lets a host serve only N requests at once and queues the rest (FIFO), so its latency grows
  with load, as a real server's does once saturated. ``--recover-at S``: the slow host turns
  fast S simulated seconds in; ``--slow-from S``: it is fast until then (either way the report
  lists its requests per second from that moment).
* The proxy: one event loop, modelled as a FIFO single server. A request costs
  ``--proxy-us`` of CPU, 55% on the way in (parse, route, ``choose_host``, write upstream) and
  45% on the way out (read the response, ``on_request_complete``, write downstream). With 0 the
  proxy is infinitely fast. ``--stall-every S --stall-ms D``: on average every S seconds
  (exponential gaps) the loop is blocked for D ms (a GC pause, a long callback, a neighbour
  stealing the core); work queued behind it waits. ``--startup-stall-ms D``: one such stall 1 ms
  in, while the first requests are out (a fresh proxy's first responses wait for its loop, so
  every host's first sample is inflated: issue 8).
* The balancer's RTT sample is what the router measures: from the moment the upstream request
  starts (end of the inbound work) to the moment the response is handled (end of the outbound
  work), so it includes the time the response waited for the loop, as in the real proxy.

Reported per variant: simulated req/s, p50/p99/p99.9 of the client latency (after
``--warmup``) with wrk's coordinated-omission correction applied as wrk does (``wrk_corrected``:
the benchmark's numbers are wrk's), the slow host's share of the requests, and the mean number of requests in flight on
the slow host. For peak EWMA also the estimates the balancer ended with (fast hosts' median and
the slow host's peak estimates). ``--ewma`` adds fields to the peak EWMA config (TypedStruct
value); ``--set`` overrides balancer attributes after construction (e.g.
``latency_ratio_limit=0``). A 30 s run of the four default variants takes a few seconds.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format

import outrider.lb.config  # noqa: F401 - registers the contrib PeakEwma message
from outrider.lb.base import LbStats
from outrider.lb.factory import create_load_balancer
from outrider.lb.peak_ewma import PeakEwmaLoadBalancer
from outrider.stats.store import StatsStore
from outrider.upstream.host import Host, PrioritySet

TYPED_STRUCT = "type.googleapis.com/xds.type.v3.TypedStruct"


@dataclass
class Scenario:
    hosts: int = 10
    fast_ms: float = 5.0
    slow_ms: float = 50.0
    jitter_ms: float = 1.0
    connections: int = 50
    duration: float = 30.0
    warmup: float = 2.0
    proxy_us: float = 0.0
    client_gap_us: float = 20.0
    stall_every: float = 0.0  # mean seconds between loop stalls; 0 = none
    stall_ms: float = 0.0
    startup_stall_ms: float = 0.0  # one stall right after the first requests went out
    host_concurrency: int = 0  # requests a host serves at once, FIFO beyond that; 0 = unlimited
    recover_at: float = 0.0  # the slow host turns fast at this simulated second; 0 = never
    slow_from: float = 0.0  # the slow host is fast until this simulated second
    seed: int = 1


@dataclass
class Variant:
    key: str
    title: str
    cluster: dict
    slow: bool


@dataclass
class Result:
    variant: Variant
    requests: int
    rps: float
    p50: float
    p99: float
    p999: float
    slow_share: float
    slow_in_flight: float
    notes: str = ""
    latencies: list[float] = field(default_factory=list, repr=False)


def peak_ewma_cluster(**value) -> dict:
    value = {"decay_time": "10s", **value}
    return {"load_balancing_policy": {"policies": [{"typed_extension_config": {
        "name": "outrider.peak_ewma",
        "typed_config": {"@type": TYPED_STRUCT, "type_url": "outrider.lb.peak_ewma",
                         "value": value}}}]}}


def variants(ewma_values: dict) -> dict[str, Variant]:
    ewma = peak_ewma_cluster(**ewma_values)
    return {v.key: v for v in (
        Variant("rr", "ROUND_ROBIN", {"lb_policy": "ROUND_ROBIN"}, True),
        Variant("lr", "LEAST_REQUEST", {"lb_policy": "LEAST_REQUEST"}, True),
        Variant("ewma", "peak EWMA", ewma, True),
        Variant("ewma-healthy", "peak EWMA, all healthy (baseline)", ewma, False),
        Variant("lr-healthy", "LEAST_REQUEST, all healthy", {"lb_policy": "LEAST_REQUEST"},
                False),
    )}


def wrk_corrected(latencies: list[float], connections: int, duration: float) -> list[float]:
    """The latencies as wrk reports them: wrk (``stats_correct``) corrects for coordinated
    omission with ``interval`` = duration / (requests / connections), the mean time between one
    connection's requests: each latency ``L`` ≥ 2 × interval also counts at L − interval,
    L − 2 × interval, ... while above the interval (the requests that connection would have sent
    meanwhile). So one 50 ms response counts ~7 times at ~8k req/s over 50 connections."""
    if len(latencies) < connections:
        return sorted(latencies)
    interval = duration / (len(latencies) // connections)
    out = list(latencies)
    for value in latencies:
        if value >= 2 * interval:
            m = value - interval
            while m > interval:
                out.append(m)
                m -= interval
    out.sort()
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# Event kinds, in the order they are handled when times tie.
_STALL, _ARRIVE, _IN_DONE, _UPSTREAM, _OUT_DONE = range(5)


def simulate(variant: Variant, sc: Scenario, attrs: dict | None = None) -> Result:
    """Run one variant; everything is derived from ``sc.seed``."""
    rng = random.Random(sc.seed)
    clock = Clock()
    hosts = [Host(f"10.0.0.{i + 1}", 80, created_at=-1e9) for i in range(sc.hosts)]
    slow_host = hosts[-1] if variant.slow else None
    service = {h: sc.fast_ms / 1000.0 for h in hosts}
    if slow_host is not None:
        service[slow_host] = sc.slow_ms / 1000.0
    limit = sc.host_concurrency
    serving = dict.fromkeys(hosts, 0)
    waiting: dict[Host, list] = {h: [] for h in hosts}
    cluster = json_format.ParseDict({"name": "sim", **variant.cluster}, cluster_pb2.Cluster())
    lb = create_load_balancer(cluster, PrioritySet.from_hosts(hosts),
                              rng=random.Random(sc.seed + 1), clock=clock,
                              stats=LbStats(StatsStore().scope("cluster.sim")))
    if isinstance(lb, PeakEwmaLoadBalancer):
        for name, value in (attrs or {}).items():  # constructor settings not in the config
            if not hasattr(lb, name):
                raise SystemExit(f"PeakEwmaLoadBalancer has no attribute {name!r}")
            setattr(lb, name, value)

    jitter = sc.jitter_ms / 1000.0
    fast = sc.fast_ms / 1000.0

    def service_time(host: Host, t: float) -> float:
        base = fast if (host is slow_host and (t >= sc.recover_at > 0 or t < sc.slow_from)) \
            else service[host]
        return base + rng.random() * jitter

    # requests the slow host got in each second after --recover-at (or --slow-from)
    change_at = sc.recover_at or sc.slow_from
    slow_after_recovery = [0] * (int(sc.warmup + sc.duration - change_at) + 1
                                 if change_at > 0 else 0)
    cost_in = sc.proxy_us * 0.55e-6
    cost_out = sc.proxy_us * 0.45e-6
    gap = sc.client_gap_us * 1e-6
    end = sc.warmup + sc.duration

    events: list[tuple[float, int, int, object]] = []
    seq = 0

    def push(t: float, kind: int, payload: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, kind, seq, payload))

    # Each request: [sent_at, host, upstream_start]
    for c in range(sc.connections):
        push(c * 1e-5, _ARRIVE, [c * 1e-5, None, 0.0])
    if sc.stall_every > 0 and sc.stall_ms > 0:
        t = rng.expovariate(1.0 / sc.stall_every)
        while t < end:
            push(t, _STALL, sc.stall_ms)
            t += rng.expovariate(1.0 / sc.stall_every)
    if sc.startup_stall_ms > 0:
        push(0.001, _STALL, sc.startup_stall_ms)

    proxy_free = 0.0
    latencies: list[float] = []
    per_host = dict.fromkeys(hosts, 0)
    slow_busy_integral = 0.0  # ∫ slow host in-flight dt over the measured window
    last_t = sc.warmup

    while events:
        t, kind, _s, req = heapq.heappop(events)
        if t >= end:
            break
        if slow_host is not None and t > sc.warmup:
            slow_busy_integral += slow_host.active_requests * (t - max(last_t, sc.warmup))
            last_t = t
        clock.now = t
        if kind == _ARRIVE:  # request reaches the proxy: queue the inbound work
            proxy_free = max(proxy_free, t) + cost_in
            push(proxy_free, _IN_DONE, req)
        elif kind == _IN_DONE:  # routed: choose a host, start the upstream request
            host = lb.choose_host(None)
            host.active_requests += 1
            req[1] = host
            req[2] = t
            if t >= sc.warmup:
                per_host[host] += 1
            if t >= change_at > 0 and host is slow_host:
                slow_after_recovery[int(t - change_at)] += 1
            if limit and serving[host] >= limit:
                waiting[host].append(req)
            else:
                serving[host] += 1
                push(t + service_time(host, t), _UPSTREAM, req)
        elif kind == _UPSTREAM:  # response bytes wait for the loop
            host = req[1]
            if limit:
                if waiting[host]:
                    push(t + service_time(host, t), _UPSTREAM, waiting[host].pop(0))
                else:
                    serving[host] -= 1
            proxy_free = max(proxy_free, t) + cost_out
            push(proxy_free, _OUT_DONE, req)
        elif kind == _OUT_DONE:  # response handled: feed the balancer, answer the client
            host = req[1]
            host.active_requests -= 1
            lb.on_request_complete(host, t - req[2], True)
            if req[0] >= sc.warmup:
                latencies.append(t - req[0])
            push(t + gap, _ARRIVE, [t + gap, None, 0.0])
        else:  # _STALL: the loop is blocked; work queued after this point waits
            proxy_free = max(proxy_free, t) + req / 1000.0

    latencies.sort()
    reported = wrk_corrected(latencies, sc.connections, sc.duration)
    total = sum(per_host.values())
    notes = ""
    estimate = getattr(lb, "estimate", None)
    if estimate is not None:
        fast = sorted(e for h in hosts if h is not slow_host and (e := estimate(h)) is not None)
        parts = [f"fast est. median {1000 * fast[len(fast) // 2]:.1f} ms" if fast else ""]
        if slow_host is not None and estimate(slow_host) is not None:
            parts.append(f"slow est. {1000 * estimate(slow_host):.1f} ms")
        notes = ", ".join(p for p in parts if p)
    if slow_after_recovery:
        what = f"recovers at {sc.recover_at:g}" if sc.recover_at else f"turns slow at {sc.slow_from:g}"
        notes += f", slow host requests per second after it {what} s: {slow_after_recovery}"
    return Result(
        variant=variant, requests=len(latencies), rps=len(latencies) / sc.duration,
        p50=percentile(reported, 0.50), p99=percentile(reported, 0.99),
        p999=percentile(reported, 0.999),
        slow_share=(per_host[slow_host] / total if slow_host is not None and total else
                    float("nan")),
        slow_in_flight=(slow_busy_integral / sc.duration if slow_host is not None else
                        float("nan")),
        notes=notes, latencies=latencies)


def table(results: list[Result]) -> str:
    rows = ["| variant | req/s | p50 ms | p99 ms | p99.9 ms | slow host share | "
            "slow host in flight | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        share = "–" if r.slow_share != r.slow_share else f"{100 * r.slow_share:.3f}%"
        busy = "–" if r.slow_in_flight != r.slow_in_flight else f"{r.slow_in_flight:.2f}"
        rows.append(f"| {r.variant.title} | {r.rps:,.0f} | {1000 * r.p50:.1f} | "
                    f"{1000 * r.p99:.1f} | **{1000 * r.p999:.1f}** | {share} | {busy} | "
                    f"{r.notes} |")
    return "\n".join(rows)


def _parse_values(items: list[str]) -> dict:
    values: dict = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            values[key] = int(raw)
        except ValueError:
            try:
                values[key] = float(raw)
            except ValueError:
                values[key] = raw
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Scenario()
    for name, value in vars(defaults).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--variants", default="rr,lr,ewma,ewma-healthy")
    parser.add_argument("--ewma", nargs="*", default=[],
                        help="extra peak EWMA config fields, key=value (e.g. decay_time=5s)")
    parser.add_argument("--set", nargs="*", default=[], dest="attrs",
                        help="peak EWMA balancer attributes to override after construction, "
                             "key=value (e.g. latency_ratio_limit=0)")
    args = parser.parse_args(argv)
    sc = Scenario(**{k: getattr(args, k) for k in vars(defaults)})
    table_variants = variants(_parse_values(args.ewma))
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in table_variants]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {','.join(table_variants)}")
    attrs = _parse_values(args.attrs)
    results = [simulate(table_variants[k], sc, attrs) for k in keys]
    print(f"simulated: {sc.hosts} hosts at {sc.fast_ms:g} ms (+U[0,{sc.jitter_ms:g}) ms), one at "
          f"{sc.slow_ms:g} ms; {sc.connections} closed-loop connections; proxy "
          f"{sc.proxy_us:g} µs/req; stalls "
          + (f"{sc.stall_ms:g} ms every ~{sc.stall_every:g} s" if sc.stall_every > 0 else "none")
          + f"; {sc.duration:g} s measured after {sc.warmup:g} s; seed {sc.seed}"
          + (f"; peak EWMA {attrs}" if attrs else "") + "\n")
    print(table(results))
    by_key = {r.variant.key: r for r in results}
    if "ewma" in by_key and "ewma-healthy" in by_key:
        ratio = by_key["ewma"].p999 / by_key["ewma-healthy"].p999
        print(f"\npeak EWMA p99.9 / all-healthy p99.9 = {ratio:.2f} (target ≤ 2)")
    if "ewma" in by_key and "lr" in by_key:
        ratio = by_key["ewma"].p999 / by_key["lr"].p999
        print(f"peak EWMA p99.9 / LEAST_REQUEST p99.9 = {ratio:.2f} (target ≤ 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
