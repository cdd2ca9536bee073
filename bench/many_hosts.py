"""Does cluster size cost throughput? Outrider (and Envoy) with 10 vs 1,000 upstream hosts.

Issue 3, benchmark 1: "a 1,000-host cluster must not lower proxy req/s by more than 10% versus
10 hosts". One nginx (core 1) listens on 1,000 ports of 127.0.0.1; the proxy (core 0) balances a
STATIC cluster of the first N of them over small responses, wrk -c50 on core 1. Each variant
warms up long enough for every host's pool to hold a connection, so the measured run sees
steady state, not connection setup.

Besides req/s it reports where the proxy's CPU goes (user vs kernel, per request) and how many
pure ACKs the proxy's upstream sockets send per response (``ss -ti``): once a connection waits
longer than the kernel's 40 ms delayed-ACK timeout between requests, every response costs an
extra segment, which is the cliff between a few hundred and 1,000 hosts at this request rate.

    python bench/many_hosts.py [--duration 10] [--repeat 3] [--hosts 10,1000]
                               [--policies ROUND_ROBIN,LEAST_REQUEST] [--proxies outrider,envoy]
"""

from __future__ import annotations

import functools
import os
import shutil
import sys

import benchlib as b

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log error;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
{listens}
        location / {{ return 200 "hello from the origin\\n"; }}
    }}
}}
"""


def start_origin(procs: b.Processes, count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = b.free_port()
        if port not in ports:
            ports.append(port)
    prefix = os.path.join(procs.workdir, "nginx")
    os.makedirs(prefix)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(prefix=prefix, listens="\n".join(
            f"        listen 127.0.0.1:{p} backlog=1024;" for p in ports)))
    proc = procs.start("nginx", [b.nginx_binary(), "-p", prefix, "-c", conf,
                                 "-e", os.path.join(prefix, "nginx-error.log")], b.LOAD_CORE)
    b.wait_ready(ports[-1], "/", proc, procs, "nginx")
    return ports


def pure_acks_per_response(before: dict, after: dict) -> float:
    """Data-less segments sent per data segment (one per request) over the run, summed over
    the upstream sockets alive at both ends of it."""
    pure = data = 0
    for key, (segs, data_segs) in after.items():
        if key in before:
            pure += (segs - before[key][0]) - (data_segs - before[key][1])
            data += data_segs - before[key][1]
    return pure / data if data else float("nan")


def main() -> int:
    parser = b.run_parser(__doc__, repeat_help="runs per proxy, policy and size", warmup=3.0)
    parser.add_argument("--policies", default="ROUND_ROBIN,LEAST_REQUEST")
    parser.add_argument("--hosts", default="10,1000", help="cluster sizes, up to 1000")
    parser.add_argument("--proxies", default="outrider,envoy")
    args = parser.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    sizes = sorted(int(n) for n in args.hosts.split(","))
    kinds = [k.strip() for k in args.proxies.split(",") if k.strip()]
    if not sizes or sizes[0] < 1 or sizes[-1] > 1000 or not set(kinds) <= set(b.PROXY_LABEL):
        parser.error("--hosts takes sizes from 1 to 1000; --proxies outrider and/or envoy")
    b.require_tools("ss")  # per-socket segment counters (iproute2)
    facts = b.machine_facts()
    workdir = b.make_workdir("outrider-hosts-")
    rows = []
    verdicts = []
    try:
        with b.Processes(workdir) as procs:
            ports = start_origin(procs, 1000)
            for policy in policies:
                medians = {}
                for kind in kinds:
                    for hosts in sizes:
                        listen, admin = b.free_port(), b.free_port()
                        config = b.write_config(
                            os.path.join(workdir, f"{kind}-{policy}-{hosts}.yaml"),
                            b.bootstrap(listen, admin, b.static_cluster(
                                "origin", ports[:hosts], lb_policy=policy)))
                        probe = functools.partial(b.tcp_segments_to, set(ports[:hosts]))
                        runs = [b.measure_proxy(procs, kind, config, listen, admin, "/", 50,
                                                args.duration, warmup=args.warmup, probe=probe)
                                for _ in range(args.repeat)]
                        rps = b.median(m.wrk.rps for m in runs)
                        p99 = b.median(m.wrk.latency_us["p99"] for m in runs)
                        user = b.median(m.per_request_us(m.user_s) for m in runs)
                        system = b.median(m.per_request_us(m.system_s) for m in runs)
                        acks = b.median(pure_acks_per_response(*m.probe) for m in runs)
                        ipis = b.median(m.ipis_per_request for m in runs)
                        medians[(kind, hosts)] = rps
                        print(f"[{policy} {kind} {hosts} hosts] {rps:,.0f} req/s "
                              f"p99 {b.fmt_ms(p99)} ms CPU {user:.0f}+{system:.0f} µs/req, "
                              f"{acks:.2f} pure ACKs/response, {ipis:.2f} IPIs/req", file=sys.stderr)
                        rows.append([policy, b.PROXY_LABEL[kind], str(hosts), f"{rps:,.0f}",
                                     f"{rps / medians[(kind, sizes[0])]:.2f}", b.fmt_ms(p99),
                                     f"{user:.0f}", f"{system:.0f}", f"{acks:.2f}",
                                     f"{ipis:.2f}"])
                if "outrider" in kinds and {10, 1000} <= set(sizes):
                    ratio = medians[("outrider", 1000)] / medians[("outrider", 10)]
                    envoy = (medians[("envoy", 1000)] / medians[("envoy", 10)]
                             if "envoy" in kinds else None)
                    verdicts.append((policy, ratio, ratio >= 0.9, envoy))
    except (b.BenchError, KeyboardInterrupt) as error:
        return b.failure_status(error)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [
        "## Cluster size: 10 vs 1,000 hosts (`bench/many_hosts.py`)", "",
        f"`bench/many_hosts.py --duration {args.duration:g} --repeat {args.repeat} "
        f"--hosts {','.join(map(str, sizes))}`: small responses, wrk -c50, proxy on core 0, "
        "nginx (1,000 ports) and wrk on core 1; median of the repeats. *vs first* is req/s "
        f"relative to the same proxy at {sizes[0]} hosts; CPU is the proxy's own, split into "
        "user and kernel time; *pure ACKs* are data-less segments the proxy's upstream sockets "
        "sent per response; *IPIs* are the wake-up interrupts the load core received per "
        "request (`benchlib.wakeup_ipis`).", "",
        b.facts_markdown(facts), "",
        b.markdown_table(["policy", "proxy", "hosts", "req/s", "vs first", "p99 ms",
                          "user µs/req", "kernel µs/req", "pure ACKs", "IPIs"], rows), "",
        "Target (issue 3): 1,000 hosts lower Outrider's req/s by at most 10% versus 10 hosts.", "",
    ]
    lines += [f"- **{'PASS' if ok else 'FAIL'}** {policy}: 1,000 hosts / 10 hosts = "
              f"{ratio:.2f}×" + (f" (Envoy: {envoy:.2f}×)" if envoy is not None else "")
              for policy, ratio, ok, envoy in verdicts]
    text = "\n".join(lines) + "\n"
    b.emit_report(text, args.output, "many_hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
