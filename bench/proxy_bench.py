"""Benchmark (not a test): Outrider vs Envoy on the same Envoy v3 config file (`make bench`).

    python bench/proxy_bench.py [--duration 10] [--repeat 3] [--scenarios small,64k,1m,c1]
                                [--output bench/RESULTS.md]

Layout on a 2-core machine: the proxy under test (``python -m outrider -c F -l error`` or
``envoy -c F --concurrency 1 -l error --base-id N``) alone on core 0; the origin (nginx, one
process, access log off) and the load generator (``wrk -t1``) on core 1. Each run starts a fresh
proxy, warms it up for 1 s, then measures one wrk run. Runs alternate Outrider, Envoy, Outrider,
Envoy... ``--repeat`` times per scenario and the report gives the median of each number.

Reported per scenario and proxy: req/s, p50/p99 latency, CPU microseconds per request (the
utime+stime delta of the proxy process over the run / completed requests: far less sensitive
to a noisy VM than req/s), CPU utilisation during the run and peak RSS (VmHWM). Any socket
error or non-2xx response fails the benchmark. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass

import benchlib as b


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    path: str
    connections: int


SCENARIOS = {s.key: s for s in (
    Scenario("small", "small response, c=50", "/small", 50),
    Scenario("64k", "64 KiB body, c=50", "/static/64k.bin", 50),
    Scenario("1m", "1 MiB body, c=10", "/static/1m.bin", 10),
    Scenario("c1", "small response, c=1 (latency)", "/small", 1),
    Scenario("c1000", "small response, c=1000", "/small", 1000),
)}
HEADLINE = "small"
PROXIES = ("outrider", "envoy")
SMALL_BODY = "hello from the origin\n"

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log error;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    server_tokens off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    open_file_cache max=16 inactive=600s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /small {{ return 200 "{body}"; }}
        location /static/ {{ alias {prefix}/www/; }}
    }}
}}
"""


def start_origin(procs: b.Processes, core: int | None = b.LOAD_CORE) -> int:
    """nginx on ``core`` (1; None: any) with its own prefix dir (never the system's); returns
    its port."""
    prefix = os.path.join(procs.workdir, "nginx")
    os.makedirs(os.path.join(prefix, "www"))
    for name, size in (("64k.bin", 64 * 1024), ("1m.bin", 1024 * 1024)):
        with open(os.path.join(prefix, "www", name), "wb") as f:
            f.write(os.urandom(size))
    port = b.free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(prefix=prefix, port=port, body=SMALL_BODY.replace("\n", "\\n")))
    proc = procs.start("nginx", [b.nginx_binary(), "-p", prefix, "-c", conf,
                                 "-e", os.path.join(prefix, "nginx-error.log")], core)
    b.wait_ready(port, "/small", proc, procs, "nginx")
    for path, size in (("/static/64k.bin", 64 * 1024), ("/static/1m.bin", 1024 * 1024)):
        status, body = b.http_get(port, path)
        if status != 200 or len(body) != size:
            raise b.BenchError(f"nginx serves {path} wrong: {status}, {len(body)} bytes")
    return port


def summarize(runs: list[b.Measurement]) -> dict[str, float]:
    rps = [m.wrk.rps for m in runs]
    return {
        "rps": b.median(rps),
        "spread": b.spread_percent(rps),
        "p50": b.median(m.wrk.latency_us["p50"] for m in runs),
        "p99": b.median(m.wrk.latency_us["p99"] for m in runs),
        "cpu_us": b.median(m.cpu_us_per_request for m in runs),
        "ipis": b.median(m.ipis_per_request for m in runs),
        "cpu_pct": b.median(m.cpu_percent for m in runs),
        "rss_mib": b.median(m.peak_rss_kib for m in runs) / 1024.0,
        "requests": sum(m.wrk.requests for m in runs),
    }


def report(args: argparse.Namespace, facts: list[tuple[str, str]],
           results: dict[tuple[str, str], dict[str, float]]) -> tuple[str, bool | None]:
    header = ["scenario", "proxy", "req/s", "req/s spread", "p50 ms", "p99 ms",
              "CPU µs/req", "proxy CPU %", "wake-up IPIs/req", "peak RSS MiB"]
    rows = []
    for key in args.scenarios:
        scenario = SCENARIOS[key]
        o, e = results.get((key, "outrider")), results.get((key, "envoy"))
        for kind, s in (("outrider", o), ("envoy", e)):
            if s is None:
                continue
            rows.append([scenario.title, b.PROXY_LABEL[kind], f"{s['rps']:,.0f}",
                         f"±{s['spread'] / 2:.0f}%" if args.repeat > 1 else "–",
                         b.fmt_ms(s["p50"]), b.fmt_ms(s["p99"]),
                         f"{s['cpu_us']:.0f}", f"{s['cpu_pct']:.0f}", f"{s['ipis']:.2f}",
                         f"{s['rss_mib']:.1f}"])
        if o and e:
            rows.append([scenario.title, "**Outrider / Envoy**",
                         f"**{b.fmt_ratio(o['rps'] / e['rps'])}**", "",
                         b.fmt_ratio(o["p50"] / e["p50"]), b.fmt_ratio(o["p99"] / e["p99"]),
                         b.fmt_ratio(o["cpu_us"] / e["cpu_us"]), "", "",
                         b.fmt_ratio(o["rss_mib"] / e["rss_mib"])])
    verdict: bool | None = None
    lines = []
    o, e = results.get((HEADLINE, "outrider")), results.get((HEADLINE, "envoy"))
    if o and e:
        rps_ratio, p99_ratio = o["rps"] / e["rps"], o["p99"] / e["p99"]
        verdict = rps_ratio >= 1.0 and p99_ratio <= 1.0
        lines = [
            (f"**Target (issue 2), small response at c=50: Outrider req/s ≥ Envoy's and p99 no "
             f"worse: {'PASS' if verdict else 'FAIL'}** (req/s {b.fmt_ratio(rps_ratio)}, "
             f"p99 {b.fmt_ratio(p99_ratio)}; product goal 1.5× req/s: "
             f"{'met' if rps_ratio >= 1.5 else 'not met'})."),
            (f"CPU cost per request, Envoy / Outrider: {b.fmt_ratio(e['cpu_us'] / o['cpu_us'])} "
             "(above 1× means Outrider spends less CPU per request; this is the noise-robust "
             "view of the same comparison)."),
        ]
    text = "\n".join([
        "## Proxy throughput and latency: Outrider vs Envoy (`make bench`)",
        "",
        (f"`bench/proxy_bench.py --duration {args.duration:g} --repeat {args.repeat} "
         f"--scenarios {','.join(args.scenarios)}`: the same Envoy v3 config file for both "
         "proxies; proxy pinned to core 0 (Envoy `--concurrency 1`), nginx origin and "
         f"`wrk -t1` on core 1; {args.warmup:g} s warm-up then {args.duration:g} s measured, "
         f"fresh proxy per run, runs alternated, median of {args.repeat}. "
         "Every response was checked to be 2xx."),
        "",
        b.facts_markdown(facts),
        "",
        b.markdown_table(header, rows),
        "",
        ("req/s spread: half the min–max range across repeats, relative to the median. "
         "CPU µs/req: proxy utime+stime over the run / completed requests. Peak RSS: VmHWM."),
        "",
        *(f"{line}\n" for line in lines),
    ])
    return text, verdict


def main() -> int:
    parser = b.run_parser(__doc__, repeat_help="runs per proxy and scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--check", action="store_true",
                        help="exit 2 when the issue-2 target fails")
    args = parser.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or args.repeat < 1 or args.duration <= 0:
        parser.error(f"bad --scenarios {unknown}" if unknown else "bad --repeat/--duration")

    b.require_tools()
    b.nginx_binary()
    facts = b.machine_facts()
    workdir = b.make_workdir("outrider-bench-")
    results: dict[tuple[str, str], dict[str, float]] = {}
    try:
        with b.Processes(workdir) as procs:
            origin_port = start_origin(procs)
            listen_port, admin_port = b.free_port(), b.free_port()
            config = b.write_config(os.path.join(workdir, "envoy.yaml"), b.bootstrap(
                listen_port, admin_port, b.static_cluster("origin", [origin_port])))
            print(f"config: {config} (origin nginx on :{origin_port}, proxy on :{listen_port})",
                  file=sys.stderr)
            started = time.monotonic()
            for key in args.scenarios:
                scenario = SCENARIOS[key]
                runs: dict[str, list[b.Measurement]] = {k: [] for k in PROXIES}
                for i in range(args.repeat):
                    for kind in PROXIES:
                        m = b.measure_proxy(procs, kind, config, listen_port, admin_port,
                                            scenario.path, scenario.connections, args.duration,
                                            warmup=args.warmup)
                        runs[kind].append(m)
                        print(f"[{scenario.title}] run {i + 1}/{args.repeat} "
                              f"{b.PROXY_LABEL[kind]:8}: {m.wrk.rps:9,.0f} req/s  "
                              f"p50 {b.fmt_ms(m.wrk.latency_us['p50'])} ms  "
                              f"p99 {b.fmt_ms(m.wrk.latency_us['p99'])} ms  "
                              f"CPU {m.cpu_us_per_request:.0f} µs/req ({m.cpu_percent:.0f}%)  "
                              f"IPIs {m.ipis_per_request:.2f}/req  "
                              f"RSS {m.peak_rss_kib / 1024:.1f} MiB", file=sys.stderr)
                for kind in PROXIES:
                    results[(key, kind)] = summarize(runs[kind])
            print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    except (b.BenchError, KeyboardInterrupt) as error:
        return b.failure_status(error)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text, verdict = report(args, facts, results)
    b.emit_report(text, args.output, "proxy_bench")
    return 2 if args.check and verdict is False else 0


if __name__ == "__main__":
    sys.exit(main())
