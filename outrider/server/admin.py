"""The admin listener: Envoy's /ready, /server_info, /stats, /clusters, /quitquitquit, /help.

Small and off the hot path: it reuses the HTTP/1 codec and answers each request whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs

from outrider import __version__
from outrider.codec.http1 import CodecError, ResponseEncoder, ServerCodec
from outrider.http.headers import ResponseHeaders

_HELP = {
    "/": "this help",
    "/help": "this help",
    "/ready": "print server state, return 200 if LIVE, otherwise return 503",
    "/server_info": "print server version/status information",
    "/stats": "print server stats (?filter=REGEX, ?format=json)",
    "/clusters": "upstream cluster status",
    "/quitquitquit": "exit the server (POST)",
}


class AdminServer:
    def __init__(self, server, address: str, port: int) -> None:
        self.server = server  # outrider.server.instance.Server
        self.address = address
        self.port = port
        self.started = time.time()
        self._asyncio_server = None

    async def start(self, loop) -> None:
        self._asyncio_server = await loop.create_server(
            lambda: AdminConnection(self), self.address, self.port, reuse_address=True)
        if self.port == 0:
            self.port = self._asyncio_server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._asyncio_server is not None:
            self._asyncio_server.close()

    # -- handlers: (method, path, query) -> (status, content_type, body) -----------------------

    def handle(self, method: str, path: str, query: dict) -> tuple[int, str, str]:
        if path in ("/", "/help"):
            body = "admin commands are:\n" + "".join(
                f"  {p}: {text}\n" for p, text in _HELP.items() if p != "/")
            return 200, "text/plain; charset=UTF-8", body
        if path == "/ready":
            state = self.server.state
            return (200 if state == "LIVE" else 503), "text/plain; charset=UTF-8", state + "\n"
        if path == "/server_info":
            info = {
                "version": f"outrider/{__version__}",
                "state": self.server.state,
                "uptime_current_epoch": f"{int(time.time() - self.started)}s",
                "uptime_all_epochs": f"{int(time.time() - self.started)}s",
                "command_line_options": self.server.options_summary(),
            }
            return 200, "application/json", json.dumps(info, indent=2) + "\n"
        if path == "/stats":
            return self._stats(query)
        if path == "/clusters":
            return 200, "text/plain; charset=UTF-8", self._clusters()
        if path == "/quitquitquit":
            if method != "POST":
                return 405, "text/plain; charset=UTF-8", "This endpoint requires POST\n"
            asyncio.get_running_loop().call_soon(self.server.stop)
            return 200, "text/plain; charset=UTF-8", "OK\n"
        return 404, "text/plain; charset=UTF-8", "invalid path. admin commands are:\n" + "".join(
            f"  {p}: {t}\n" for p, t in _HELP.items() if p != "/")

    def _stats(self, query: dict) -> tuple[int, str, str]:
        import re

        store = self.server.stats
        values = {name: c.value for name, c in store.counters().items()}
        values.update({name: g.value for name, g in store.gauges().items()})
        pattern = query.get("filter", [None])[0]
        if pattern:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                return 400, "text/plain; charset=UTF-8", f"Invalid re2 regex: {exc}\n"
            values = {k: v for k, v in values.items() if regex.search(k)}
        if query.get("format", [""])[0] == "json":
            stats = [{"name": k, "value": values[k]} for k in sorted(values)]
            return 200, "application/json", json.dumps({"stats": stats}) + "\n"
        return 200, "text/plain; charset=UTF-8", "".join(
            f"{k}: {values[k]}\n" for k in sorted(values))

    def _clusters(self) -> str:
        lines = []
        for name, cluster in self.server.cluster_manager.clusters.items():
            for host in cluster.priority_set.all_hosts:
                prefix = f"{name}::{host.address_string}::"
                flags = "healthy" if host.healthy else "/failed_active_hc"
                lines += [
                    f"{prefix}weight::{host.weight}",
                    f"{prefix}priority::{host.priority}",
                    f"{prefix}health_flags::{flags}",
                    f"{prefix}rq_active::{host.active_requests}",
                ]
        return "".join(line + "\n" for line in lines)


class AdminConnection(asyncio.Protocol):
    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin
        self.transport = None
        self.codec = ServerCodec(self, self)
        self.encoder: ResponseEncoder | None = None
        self.request = None
        self.keep_alive = True

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.codec.feed(data)
        except CodecError as error:
            self._respond(error.status, "text/plain", error.body, close=True)

    def write(self, data: bytes) -> None:  # the codec's writer
        self.transport.write(data)

    def new_stream(self, encoder: ResponseEncoder):
        self.encoder = encoder
        return self  # requests are answered one at a time, whole: this is their decoder

    def on_request_headers(self, headers, version, keep_alive, framing, upgrade,
                           expect_continue) -> None:
        self.request = headers
        self.keep_alive = keep_alive

    def on_request_data(self, data: bytes) -> None:
        pass  # admin requests carry their arguments in the query string

    def on_request_complete(self) -> None:
        headers = self.request
        path, _, query = headers.path.partition("?")
        status, content_type, body = self.admin.handle(headers.method, path, parse_qs(query))
        self._respond(status, content_type, body, close=not self.keep_alive)

    def _respond(self, status: int, content_type: str, body: str, close: bool) -> None:
        payload = body.encode()
        headers = ResponseHeaders(status, [
            ("content-type", content_type), ("content-length", str(len(payload))),
            ("cache-control", "no-cache, max-age=0"), ("x-content-type-options", "nosniff"),
        ])
        encoder = self.encoder or ResponseEncoder(self)
        close = encoder.encode_headers(headers, False, True, close)
        encoder.encode_data(payload, True)
        if close:
            self.transport.close()
