"""Benchmark (not a test): every core. Outrider and Envoy at ``--concurrency 1`` and ``2``.

    python bench/workers_bench.py [--duration 10] [--repeat 3] [--connections 50]
                                  [--output bench/RESULTS.md]

Honest about the machine: it has 2 cores, and the load generator (``wrk -t1``) and the origin
(nginx, one process) need CPU too. So nothing is pinned here: proxy, origin and wrk share both
cores, as they would on a small host, and the numbers say what a second worker buys when the
proxy is not alone. Runs alternate Outrider c1, Envoy c1, Outrider c2, Envoy c2, ``--repeat``
times; the report gives medians: req/s, p50/p99, CPU µs per request (utime+stime of the whole
proxy process tree over the run / requests: main process and workers, or Envoy's threads) and
the resident memory of each process (Outrider's main process and each worker).

A last section times ``/stats`` with the workers busy: the main process asks each worker for its
values and adds them up (how stats cross processes; the request path pays nothing for it).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time

import benchlib as b
from proxy_bench import start_origin

PROXIES = ("outrider", "envoy")
CONCURRENCY = (1, 2)


def main() -> int:
    parser = b.run_parser(__doc__, repeat_help="alternated runs per proxy and concurrency")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    b.require_tools()
    b.nginx_binary()
    facts = b.machine_facts()
    workdir = b.make_workdir("outrider-workers-")
    runs: dict[tuple[str, int], list[b.Measurement]] = {
        (k, c): [] for k in PROXIES for c in CONCURRENCY}
    stats_ms: list[float] = []
    try:
        with b.Processes(workdir) as procs:
            origin_port = start_origin(procs, core=None)
            listen_port, admin_port = b.free_port(), b.free_port()
            config = b.write_config(os.path.join(workdir, "envoy.yaml"), b.bootstrap(
                listen_port, admin_port, b.static_cluster("origin", [origin_port])))
            for i in range(args.repeat):
                for concurrency in CONCURRENCY:
                    for kind in PROXIES:
                        m = b.measure_proxy(
                            procs, kind, config, listen_port, admin_port, "/small",
                            args.connections, args.duration, warmup=args.warmup,
                            concurrency=concurrency, proxy_core=None, load_core=None)
                        runs[(kind, concurrency)].append(m)
                        print(f"run {i + 1}/{args.repeat} {b.PROXY_LABEL[kind]:8} "
                              f"c{concurrency}: {m.wrk.rps:9,.0f} req/s  "
                              f"CPU {m.cpu_us_per_request:.0f} µs/req  "
                              f"RSS {sorted(v // 1024 for v in m.rss_kib.values())} MiB",
                              file=sys.stderr)
            stats_ms = time_stats_under_load(procs, config, listen_port, admin_port,
                                             args.connections)
    except (b.BenchError, KeyboardInterrupt) as error:
        return b.failure_status(error)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(args, facts, runs, stats_ms)
    b.emit_report(text, args.output, "workers_bench")
    return 0


def time_stats_under_load(procs: b.Processes, config: str, listen_port: int, admin_port: int,
                          connections: int) -> list[float]:
    """Milliseconds per ``/stats`` answer from Outrider with 2 busy workers."""
    proc = procs.start("outrider-stats", b.proxy_command("outrider", config, listen_port, 2), None)
    try:
        b.wait_ready(listen_port, "/small", proc, procs, "Outrider")
        url = f"http://127.0.0.1:{listen_port}/small"
        load = threading.Thread(target=b.run_wrk, args=(url, connections, 6.0, procs.workdir),
                                kwargs={"core": None}, daemon=True)
        load.start()
        time.sleep(1.0)
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            status, body = b.http_get(admin_port, "/stats")
            timings.append((time.perf_counter() - started) * 1000)
            if status != 200 or b"http.ingress_http.downstream_rq_total" not in body:
                raise b.BenchError(f"/stats answered {status}")
            time.sleep(0.1)
        load.join()
        return timings
    finally:
        procs.stop(proc)


def _summary(runs: list[b.Measurement]) -> dict[str, float]:
    return {
        "rps": b.median(m.wrk.rps for m in runs),
        "spread": b.spread_percent([m.wrk.rps for m in runs]),
        "p50": b.median(m.wrk.latency_us["p50"] for m in runs),
        "p99": b.median(m.wrk.latency_us["p99"] for m in runs),
        "cpu_us": b.median(m.cpu_us_per_request for m in runs),
        "cpu_pct": b.median(m.cpu_percent for m in runs),
        "rss": b.median(sum(m.rss_kib.values()) for m in runs) / 1024,
        "processes": b.median(len(m.rss_kib) for m in runs),
    }


def _per_process_rss(runs: list[b.Measurement]) -> str:
    """Outrider's main process and workers: the median of each, largest first."""
    columns = list(zip(*(sorted(m.rss_kib.values(), reverse=True) for m in runs), strict=False))
    return " + ".join(f"{b.median(col) / 1024:.0f}" for col in columns)


def report(args, facts, runs, stats_ms) -> str:
    header = ["proxy", "concurrency", "req/s", "spread", "p50 ms", "p99 ms", "CPU µs/req",
              "proxy CPU %", "RSS MiB (total)", "RSS MiB per process"]
    rows = []
    s = {key: _summary(value) for key, value in runs.items()}
    for concurrency in CONCURRENCY:
        for kind in PROXIES:
            x = s[(kind, concurrency)]
            rows.append([b.PROXY_LABEL[kind], str(concurrency), f"{x['rps']:,.0f}",
                         f"±{x['spread'] / 2:.0f}%", b.fmt_ms(x["p50"]), b.fmt_ms(x["p99"]),
                         f"{x['cpu_us']:.0f}", f"{x['cpu_pct']:.0f}", f"{x['rss']:.0f}",
                         _per_process_rss(runs[(kind, concurrency)])])
        o, e = s[("outrider", concurrency)], s[("envoy", concurrency)]
        rows.append(["**Outrider / Envoy**", str(concurrency), f"**{b.fmt_ratio(o['rps'] / e['rps'])}**",
                     "", b.fmt_ratio(o["p50"] / e["p50"]), b.fmt_ratio(o["p99"] / e["p99"]),
                     b.fmt_ratio(o["cpu_us"] / e["cpu_us"]), "", "", ""])
    scaling = [f"{b.PROXY_LABEL[k]} {b.fmt_ratio(s[(k, 2)]['rps'] / s[(k, 1)]['rps'])}"
               for k in PROXIES]
    stats_line = (f"`/stats` with 2 busy workers (the main process collects and sums the "
                  f"workers' values): median {b.median(stats_ms):.1f} ms, max "
                  f"{max(stats_ms):.1f} ms over {len(stats_ms)} requests." if stats_ms else "")
    return "\n".join([
        "## Every core: `--concurrency 1` and `2`, Outrider vs Envoy (issue 9)",
        "",
        b.facts_markdown(facts),
        "",
        f"Command: `python bench/workers_bench.py --duration {args.duration:g} --repeat "
        f"{args.repeat} --connections {args.connections}`. Nothing pinned: proxy, nginx origin "
        f"and `wrk -t1 -c{args.connections}` share the 2 cores, so a second worker competes "
        "with the load generator and the origin for CPU. Small responses; medians of "
        "alternated runs.",
        "",
        b.markdown_table(header, rows),
        "",
        f"`--concurrency 2` over `1`, req/s: {', '.join(scaling)}.",
        "",
        stats_line,
    ])


if __name__ == "__main__":
    sys.exit(main())
