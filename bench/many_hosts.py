"""Does cluster size cost throughput? Outrider (and Envoy) with 10 vs 1,000 upstream hosts.

Issue 3, benchmark 1: "a 1,000-host cluster must not lower proxy req/s by more than 10% versus
10 hosts". One nginx (core 1) listens on 1,000 ports of 127.0.0.1; the proxy (core 0) balances a
STATIC cluster of the first 10 or of all 1,000 over small responses, wrk -c50 on core 1. Each
variant warms up long enough for every host's pool to hold a connection, so the measured run
sees steady state, not connection setup.

    python bench/many_hosts.py [--duration 10] [--repeat 3] [--policies ROUND_ROBIN,LEAST_REQUEST]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--policies", default="ROUND_ROBIN,LEAST_REQUEST")
    parser.add_argument("--output", help="write the report as a section of this markdown file")
    args = parser.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    b.require_tools()
    facts = b.machine_facts()
    workdir = b.make_workdir("outrider-hosts-")
    rows = []
    verdicts = []
    try:
        with b.Processes(workdir) as procs:
            ports = start_origin(procs, 1000)
            for policy in policies:
                medians = {}
                for kind in ("outrider", "envoy"):
                    for hosts in (10, 1000):
                        listen, admin = b.free_port(), b.free_port()
                        config = b.write_config(
                            os.path.join(workdir, f"{kind}-{policy}-{hosts}.yaml"),
                            b.bootstrap(listen, admin, b.static_cluster(
                                "origin", ports[:hosts], lb_policy=policy)))
                        runs = [b.measure_proxy(procs, kind, config, listen, admin, "/", 50,
                                                args.duration, warmup=args.warmup)
                                for _ in range(args.repeat)]
                        rps = b.median(m.wrk.rps for m in runs)
                        cpu = b.median(m.cpu_us_per_request for m in runs)
                        p99 = b.median(m.wrk.latency_us["p99"] for m in runs)
                        medians[(kind, hosts)] = rps
                        print(f"[{policy} {kind} {hosts} hosts] {rps:,.0f} req/s "
                              f"p99 {b.fmt_ms(p99)} ms CPU {cpu:.0f} µs/req", file=sys.stderr)
                        rows.append([policy, b.PROXY_LABEL[kind], str(hosts), f"{rps:,.0f}",
                                     b.fmt_ms(p99), f"{cpu:.0f}"])
                ratio = medians[("outrider", 1000)] / medians[("outrider", 10)]
                verdicts.append((policy, ratio, ratio >= 0.9,
                                 medians[("envoy", 1000)] / medians[("envoy", 10)]))
    except (b.BenchError, KeyboardInterrupt) as error:
        return b.failure_status(error)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [
        "## Cluster size: 10 vs 1,000 hosts (`bench/many_hosts.py`)", "",
        f"`bench/many_hosts.py --duration {args.duration:g} --repeat {args.repeat}`: small "
        "responses, wrk -c50, proxy on core 0, nginx (1,000 ports) and wrk on core 1; median "
        "of the repeats.", "",
        b.facts_markdown(facts), "",
        b.markdown_table(["policy", "proxy", "hosts", "req/s", "p99 ms", "CPU µs/req"], rows), "",
        "Target (issue 3): 1,000 hosts lower Outrider's req/s by at most 10% versus 10 hosts.", "",
    ]
    lines += [f"- **{'PASS' if ok else 'FAIL'}** {policy}: 1,000 hosts / 10 hosts = "
              f"{ratio:.2f}× (Envoy: {envoy_ratio:.2f}×)"
              for policy, ratio, ok, envoy_ratio in verdicts]
    text = "\n".join(lines) + "\n"
    b.emit_report(text, args.output, "many_hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
