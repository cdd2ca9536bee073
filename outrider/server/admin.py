"""The admin listener: Envoy's /ready, /server_info, /stats, /clusters, /quitquitquit, /help.

Small and off the hot path: it reuses the HTTP/1 codec and answers each request whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import deque
from urllib.parse import parse_qs

from outrider import __version__
from outrider.codec.http1 import CodecError, ResponseEncoder, ServerCodec
from outrider.http.headers import ResponseHeaders
from outrider.upstream.membership import health_flags_string

_HELP = {
    "/": "this help",
    "/help": "this help",
    "/ready": "print server state, return 200 if LIVE, otherwise return 503",
    "/server_info": "print server version/status information",
    "/stats": "print server stats (?filter=REGEX, ?format=json), summed over the workers",
    "/stats/prometheus": "print server stats in prometheus format",
    "/clusters": "upstream cluster status",
    "/drain_listeners": "drain listeners (POST; ?graceful: keep accepting for the drain time)",
    "/quitquitquit": "drain and exit the server (POST)",
}
_TEXT = "text/plain; charset=UTF-8"
_POST_ONLY = {"/quitquitquit", "/drain_listeners"}


class AdminServer:
    def __init__(self, server, address: str) -> None:
        self.server = server  # outrider.server.instance.Server
        self.address = address
        self.port = 0
        self.socket = None  # the listening socket, handed over on a binary upgrade
        self.started = time.time()
        self._asyncio_server = None

    async def start(self, loop, sock) -> None:
        self.socket = sock
        self.port = sock.getsockname()[1]
        self._asyncio_server = await loop.create_server(lambda: AdminConnection(self),
                                                        sock=sock.dup())

    def close(self) -> None:
        if self._asyncio_server is not None:
            self._asyncio_server.close()
            self._asyncio_server = None
        self.socket = None  # handed over (or closing): never handed over again

    # -- handlers: (method, path, query) -> (status, content_type, body) -----------------------

    async def handle(self, method: str, path: str, query: dict) -> tuple[int, str, str]:
        if path in _POST_ONLY and method != "POST":
            return 405, _TEXT, "This endpoint requires POST\n"
        if path in ("/", "/help"):
            return 200, _TEXT, self._help_page()
        if path == "/ready":
            state = self.server.state
            return (200 if state == "LIVE" else 503), _TEXT, state + "\n"
        if path == "/server_info":
            return 200, "application/json", json.dumps(self._server_info(), indent=2) + "\n"
        if path == "/stats":
            return self._stats(await self._merged_stats(), query)
        if path == "/stats/prometheus":
            return 200, "text/plain; version=0.0.4", prometheus_text(await self._merged_stats())
        if path == "/clusters":
            return 200, _TEXT, await self._clusters()
        if path == "/drain_listeners":
            self.server.drain_listeners(graceful="graceful" in query)
            return 200, _TEXT, "OK\n"
        if path == "/quitquitquit":
            asyncio.get_running_loop().call_soon(self.server.stop)
            return 200, _TEXT, "OK\n"
        return 404, _TEXT, "invalid path. admin commands are:\n" + "".join(
            f"  {p}: {t}\n" for p, t in _HELP.items() if p != "/")

    def _help_page(self) -> str:
        lines = ["admin commands are:"]
        lines += [f"  {p}: {text}" for p, text in _HELP.items() if p != "/"]
        reload = self.server.last_reload
        if reload is not None:
            lines += ["", f"last config reload: {'applied' if reload.ok else 'REJECTED'}: "
                          f"{reload.summary}", *(f"  {error}" for error in reload.errors)]
        return "\n".join(lines) + "\n"

    def _server_info(self) -> dict:
        server = self.server
        uptime = f"{int(time.time() - self.started)}s"
        info = {
            "version": f"outrider/{__version__}",
            "state": server.state,
            "uptime_current_epoch": uptime,
            "uptime_all_epochs": uptime,
            "hot_restart_version": "outrider.1",
            "command_line_options": server.options_summary(),
            "pid": os.getpid(),
            "worker_pids": server.workers.pids if server.workers is not None else [],
        }
        reload = server.last_reload
        if reload is not None:
            info["last_config_reload"] = {"ok": reload.ok, "summary": reload.summary,
                                          "errors": reload.errors}
        return info

    async def _merged_stats(self) -> dict[str, dict[str, int]]:
        server = self.server
        snapshots = await server.workers.collect_stats() if server.workers is not None else []
        return server.stats.merged(snapshots)

    @staticmethod
    def _stats(merged: dict[str, dict[str, int]], query: dict) -> tuple[int, str, str]:
        values = {**merged["counters"], **merged["gauges"]}
        pattern = query.get("filter", [None])[0]
        if pattern:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                return 400, _TEXT, f"Invalid re2 regex: {exc}\n"
            values = {k: v for k, v in values.items() if regex.search(k)}
        if query.get("format", [""])[0] == "json":
            stats = [{"name": k, "value": values[k]} for k in sorted(values)]
            return 200, "application/json", json.dumps({"stats": stats}) + "\n"
        return 200, _TEXT, "".join(f"{k}: {values[k]}\n" for k in sorted(values))

    async def _clusters(self) -> str:
        """Envoy's /clusters lines per host; request counts summed over the workers."""
        server = self.server
        await server.workers.collect_stats()  # fresh reports from the workers
        outcomes = server.workers.host_outcomes()
        lines = []
        for name, cluster in server.cluster_manager.clusters.items():
            seen = outcomes.get(name, {})
            for key, host in cluster.hosts_by_key.items():
                active, success, error = seen.get(key, (0, 0, 0))
                prefix = f"{name}::{host.address_string}::"
                lines += [
                    f"{prefix}rq_active::{active}",
                    f"{prefix}rq_error::{error}",
                    f"{prefix}rq_success::{success}",
                    f"{prefix}rq_total::{active + success + error}",
                    f"{prefix}hostname::{host.hostname}",
                    f"{prefix}health_flags::{health_flags_string(host.health_flags)}",
                    f"{prefix}weight::{host.weight}",
                    f"{prefix}region::{host.locality[0]}",
                    f"{prefix}zone::{host.locality[1]}",
                    f"{prefix}sub_zone::{host.locality[2]}",
                    f"{prefix}priority::{host.priority}",
                ]
        return "".join(line + "\n" for line in lines)


def prometheus_text(merged: dict[str, dict[str, int]]) -> str:
    """Counters and gauges in Prometheus' text format, named as Envoy names a stat it has no
    tag for (``envoy_`` + the name with every character outside [a-zA-Z0-9_] as ``_``).
    Envoy's tag extraction (``envoy_cluster_name`` labels and the like) comes with the
    observability work; the values, summed over the workers, are final."""
    out = []
    for kind, values in (("counter", merged["counters"]), ("gauge", merged["gauges"])):
        for name in sorted(values):
            metric = "envoy_" + _PROMETHEUS_UNSAFE.sub("_", name)
            out.append(f"# TYPE {metric} {kind}\n{metric} {values[name]}\n")
    return "".join(out)


_PROMETHEUS_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


class AdminConnection(asyncio.Protocol):
    """One admin client. Requests are answered one at a time, in order: a handler may wait
    (the workers' stats), so answers are written from a task, never out of order."""

    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin
        self.transport = None
        self.codec = ServerCodec(self, self)
        self.encoder: ResponseEncoder | None = None
        self.request = None
        self.keep_alive = True
        self._queue: deque = deque()
        self._task: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.codec.feed(data)
        except CodecError as error:
            self._queue.append((self.encoder, None, error, False))
            self.transport.pause_reading()
            self._run()

    def connection_lost(self, exc) -> None:
        if self._task is not None:
            self._task.cancel()

    def write(self, data: bytes) -> None:  # the codec's writer
        self.transport.write(data)

    def new_stream(self, encoder: ResponseEncoder):
        self.encoder = encoder
        return self  # this connection decodes its requests itself, one at a time

    def on_request_headers(self, headers, version, keep_alive, framing, upgrade,
                           expect_continue) -> None:
        self.request = headers
        self.keep_alive = keep_alive

    def on_request_data(self, data: bytes) -> None:
        pass  # admin requests carry their arguments in the query string

    def on_request_complete(self) -> None:
        self._queue.append((self.encoder, self.request, None, self.keep_alive))
        self._run()

    def _run(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._answer_all())

    async def _answer_all(self) -> None:
        while self._queue:
            encoder, headers, error, keep_alive = self._queue.popleft()
            if error is not None:
                self._respond(encoder, error.status, "text/plain", error.body, close=True)
                return
            path, _, query = headers.path.partition("?")
            status, content_type, body = await self.admin.handle(
                headers.method, path, parse_qs(query, keep_blank_values=True))
            if self._respond(encoder, status, content_type, body, close=not keep_alive):
                return
        self._task = None

    def _respond(self, encoder, status: int, content_type: str, body: str, close: bool) -> bool:
        """Write one answer; True when the connection is now closed."""
        if self.transport.is_closing():
            return True
        payload = body.encode()
        headers = ResponseHeaders(status, [
            ("content-type", content_type), ("content-length", str(len(payload))),
            ("cache-control", "no-cache, max-age=0"), ("x-content-type-options", "nosniff"),
        ])
        encoder = encoder or ResponseEncoder(self)
        close = encoder.encode_headers(headers, False, True, close)
        encoder.encode_data(payload, True)
        if close:
            self.transport.close()
        return close
