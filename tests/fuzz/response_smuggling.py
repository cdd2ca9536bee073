"""Differential fuzzing of hostile upstream RESPONSES: Outrider against the real Envoy.

A ``ScriptedUpstream`` answers the first request of each run with a generated hostile response
(``replies()``) and the second with a clean one; a client sends two requests, one after the
other, on ONE connection to the proxy and records what came back for each. Both proxies run
the same config (``smuggling.proxy_config``), each in front of its own scripted upstream,
started once (``ResponseHarness``).

Generated first responses: statuses (200, 204, 304, 404, 500...), an optional interim
``100 Continue``; framing: Content-Length (valid, too short for the body, odd values,
duplicated equal/different, as a list), CL+TE, Transfer-Encoding chunked (valid, damaged
chunks), non-chunked codings (``gzip``, ``xchunked``, ``chunked, gzip``), none (body until
close); a HEAD request answered with a body; bytes after the response (junk, a complete fake
response), sent at once or 50 ms later (after the proxy may have pooled the connection);
bare-LF heads, obs-fold, NUL, space before the colon.

Every byte the first response puts on the wire after its head carries ``R1`` (``b"R1x"``); the
second response's body is ``R2-ok``. The property (``response_violations``):
  1. no ``R1`` byte reaches the client in the second exchange: nothing of response 1 is
     delivered as part of response 2 (response-queue poisoning, a desynchronized pool);
  2. per exchange, Outrider's client-visible status class (1..5, or none: no response / the
     connection closed) is Envoy's (200 vs 502 matters; 502 vs 503 does not);
  3. the Outrider process stays alive.
Normalizations: statuses compared by class only; a response counts if its status line
arrived, complete or not (both proxies may start a 200 and then reset it when the body breaks
framing); everything else about the responses (headers, bodies other than the R1/R2 markers)
is ignored. Violations are confirmed by replay like the request fuzzer's.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.fuzz.smuggling import ProxyPair, read_until
from tests.support.loop_server import LoopServer

LEAK = b"R1x"
SECOND_BODY = b"R2-ok"
SECOND = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(SECOND_BODY), SECOND_BODY)
FAKE = b"HTTP/1.1 203 Fake\r\ncontent-length: 6\r\n\r\nR1xR1x"


@dataclass(frozen=True)
class Reply:
    """A hostile first response: ``data`` sent at once, ``late`` 50 ms later; ``close`` ends the
    connection after both. ``head`` makes the first request a HEAD. The other fields say how it
    was built (``family`` is a FRAMINGS key, ``odd`` an ODD_LINES entry, ``extra`` an EXTRAS
    key)."""

    data: bytes
    late: bytes
    close: bool
    head: bool
    status: int = 200
    family: str = "cl"
    odd: bytes = b""
    eol: bytes = b"\r\n"
    interim: bool = False
    extra: str = "none"

    @property
    def label(self) -> str:
        return (f"{'HEAD' if self.head else 'GET'} -> {self.status} {self.family} "
                f"odd={self.odd!r} eol={self.eol!r} interim={self.interim} extra={self.extra}"
                + (" late" if self.late else ""))

    def group(self) -> tuple:
        """What a divergence usually depends on (for grouping reports)."""
        return ("HEAD" if self.head else "GET", self.status, self.family,
                "lf" if self.eol == b"\n" else "crlf", self.odd.decode("latin-1"))


# -- generation ------------------------------------------------------------------------------------

STATUSES = (200, 200, 201, 204, 304, 404, 500)
BODY = b"R1x-body!"  # 9 bytes


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


# family -> (header lines, body on the wire). The body always carries R1x.
FRAMINGS = {
    "cl": ([b"Content-Length: 9"], BODY),
    "cl-short": ([b"Content-Length: 4"], BODY),
    "cl-long": ([b"Content-Length: 20"], BODY),
    "cl-zero": ([b"Content-Length: 0"], BODY),
    "cl-dup-same": ([b"Content-Length: 9", b"Content-Length: 9"], BODY),
    "cl-dup-diff": ([b"Content-Length: 4", b"Content-Length: 9"], BODY),
    "cl-list": ([b"Content-Length: 4, 9"], BODY),
    "cl-plus": ([b"Content-Length: +9"], BODY),
    "cl-junk": ([b"Content-Length: 9x"], BODY),
    "cl-negative": ([b"Content-Length: -1"], BODY),
    "cl+te": ([b"Content-Length: 4", b"Transfer-Encoding: chunked"], _chunked(BODY)),
    "te+cl": ([b"Transfer-Encoding: chunked", b"Content-Length: 30"], _chunked(BODY)),
    "chunked": ([b"Transfer-Encoding: chunked"], _chunked(BODY)),
    "chunked-upper": ([b"Transfer-Encoding: Chunked"], _chunked(BODY)),
    "chunked-bad-size": ([b"Transfer-Encoding: chunked"], b"zz\r\nR1x-body!\r\n0\r\n\r\n"),
    "chunked-size-short": ([b"Transfer-Encoding: chunked"], b"4\r\nR1x-body!\r\n0\r\n\r\n"),
    "chunked-no-last": ([b"Transfer-Encoding: chunked"], b"9\r\nR1x-body!\r\n"),
    "chunked-lf": ([b"Transfer-Encoding: chunked"], b"9\nR1x-body!\n0\n\n"),
    "chunked-ext-lf": ([b"Transfer-Encoding: chunked"], b"9;a\nb\r\nR1x-body!\r\n0\r\n\r\n"),
    "chunked-overflow": ([b"Transfer-Encoding: chunked"],
                         b"10000000000000009\r\nR1x-body!\r\n0\r\n\r\n"),
    "te-gzip": ([b"Transfer-Encoding: gzip"], BODY),
    "te-xchunked": ([b"Transfer-Encoding: xchunked"], BODY),
    "te-chunked-gzip": ([b"Transfer-Encoding: chunked, gzip"], _chunked(BODY)),
    "te-gzip-chunked": ([b"Transfer-Encoding: gzip, chunked"], _chunked(BODY)),
    "te-twice": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
                 _chunked(BODY)),
    "te-space-colon": ([b"Transfer-Encoding : chunked", b"Content-Length: 4"], _chunked(BODY)),
    "none": ([], BODY),
}
ODD_LINES = (b"", b"", b"", b"X-Fold: a\r\n b", b"X-Nul: a\x00b", b"X-Space : 1", b"X-Bare: a\rb",
             b"Connection: close", b"Connection: keep-alive", b"Keep-Alive: timeout=1",
             b"Connection: Content-Length")
EXTRAS = {"none": b"", "junk": b"R1x-junk", "fake": FAKE, "crlf": b"\r\n",
          "fake-twice": FAKE + FAKE}


def build_reply(status: int = 200, family: str = "cl", odd: bytes = b"", eol: bytes = b"\r\n",
                interim: bool = False, extra: str = "none", late: bool = False,
                head: bool = False) -> Reply:
    """The first response these choices describe (see the module docstring)."""
    lines, body = FRAMINGS[family]
    head_lines = [b"HTTP/1.1 %d Whatever" % status, *lines] + ([odd] if odd else [])
    data = (b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b"") \
        + eol.join(head_lines) + eol + eol + body
    tail = EXTRAS[extra]
    return Reply(data + (b"" if late else tail), tail if late else b"", family == "none", head,
                 status, family, odd, eol, interim, extra)


@st.composite
def replies(draw) -> Reply:
    """One hostile first response (see the module docstring)."""
    return build_reply(
        status=draw(st.sampled_from(STATUSES)),
        family=draw(st.sampled_from(sorted(FRAMINGS))),
        odd=draw(st.sampled_from(ODD_LINES)),
        eol=draw(st.sampled_from((b"\r\n", b"\r\n", b"\r\n", b"\n"))),
        interim=draw(st.integers(0, 2)) == 0,
        extra=draw(st.sampled_from(sorted(EXTRAS))),
        late=draw(st.booleans()),
        head=draw(st.integers(0, 3)) == 0)


# -- the scripted upstream -------------------------------------------------------------------------

class _ScriptedConnection(asyncio.Protocol):
    """Answers each request head on this connection from the upstream's current script."""

    def __init__(self, upstream: ScriptedUpstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self._answer(head)

    def _answer(self, head: bytes) -> None:
        number, reply = self.upstream.take(head.split(b" ", 2)[1] if b" " in head else head)
        if number != 1:
            self.transport.write(SECOND)
            return
        self.transport.write(reply.data)
        loop = asyncio.get_running_loop()
        if reply.late:
            loop.call_later(0.05, self._late, reply)
        elif reply.close:
            self.transport.close()

    def _late(self, reply: Reply) -> None:
        if not self.transport.is_closing():
            self.transport.write(reply.late)
            if reply.close:
                self.transport.close()


class ScriptedUpstream(LoopServer):
    """127.0.0.1 port 0, own thread. ``arm(reply)`` starts a run: the run's first request gets
    ``reply``, every later one the clean ``SECOND``. ``targets`` lists the run's request
    targets in arrival order."""

    def __init__(self) -> None:
        self.targets: list[bytes] = []
        self._reply: Reply | None = None
        self._lock = threading.Lock()
        super().__init__()

    def protocol(self) -> _ScriptedConnection:
        return _ScriptedConnection(self)

    def arm(self, reply: Reply) -> None:
        with self._lock:
            self._reply = reply
            self.targets = []

    def take(self, target: bytes) -> tuple[int, Reply | None]:
        """(this request's number in the run, from 1; the reply to send if it is the first)."""
        with self._lock:
            self.targets.append(target)
            return len(self.targets), self._reply


# -- the client ------------------------------------------------------------------------------------

@dataclass
class Exchange:
    """What the client got for one request: the first final status (None if no status line
    came), the raw bytes, whether the connection was closed afterwards (or before sending)."""

    status: int | None
    raw: bytes
    closed: bool

    @property
    def status_class(self) -> int | None:
        return None if self.status is None else self.status // 100


_FINAL_STATUS = re.compile(rb"HTTP/1\.[01] ([2-5]\d\d)")


def _response_complete(raw: bytes, head_request: bool) -> bool:
    """True when ``raw`` holds a whole final response (content-length or chunked framed)."""
    match = _FINAL_STATUS.search(raw)
    if match is None:
        return False
    end = raw.find(b"\r\n\r\n", match.start())
    if end < 0:
        return False
    head, body = raw[match.start():end].lower(), raw[end + 4:]
    status = int(match.group(1))
    if head_request or status in (204, 304):
        return True
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
    if length:
        return len(body) >= int(length.group(1))
    if b"transfer-encoding: chunked" in head:
        return body.endswith(b"0\r\n\r\n")
    return False  # delimited by close


def _read_response(sock: socket.socket, head_request: bool, idle: float = 0.3,
                   cap: float = 3.0) -> tuple[bytes, bool]:
    """Read one response: until complete (+ a short grace for the close), closed, or idle."""
    return read_until(sock, lambda raw: _response_complete(raw, head_request), idle, cap,
                      grace=0.03)


def _exchange(sock: socket.socket, request: bytes, head_request: bool) -> Exchange:
    try:
        sock.sendall(request)
    except OSError:
        return Exchange(None, b"", True)
    raw, closed = _read_response(sock, head_request)
    match = _FINAL_STATUS.search(raw)
    return Exchange(int(match.group(1)) if match else None, raw, closed)


def two_requests(port: int, reply: Reply) -> list[Exchange]:
    """Send the first request (HEAD if ``reply.head``), read its answer, then the second GET on
    the same connection (if it is still open), read its answer."""
    first = b"%s /r1 HTTP/1.1\r\nHost: example.com\r\n\r\n" % (b"HEAD" if reply.head else b"GET")
    second = b"GET /r2 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        one = _exchange(sock, first, reply.head)
        if one.closed:
            return [one, Exchange(None, b"", True)]
        time.sleep(0.07)  # let a late tail of response 1 reach the proxy first
        return [one, _exchange(sock, second, False)]
    finally:
        sock.close()


# -- harness and property --------------------------------------------------------------------------

@dataclass
class ResponseOutcome:
    exchanges: list[Exchange]
    upstream_targets: list[bytes]
    exited: bool = False


class ResponseHarness(ProxyPair):
    """The response fuzzer's pair: each proxy in front of a ScriptedUpstream."""

    upstream_class = ScriptedUpstream

    def run(self, reply: Reply) -> dict[str, ResponseOutcome]:
        return self.run_both(self._run_one, reply)

    def _run_one(self, kind: str, reply: Reply) -> ResponseOutcome:
        upstream = self.upstreams[kind]
        time.sleep(0.06)  # the previous run's late bytes (sent 50 ms after) are out
        upstream.arm(reply)
        try:
            exchanges = two_requests(self.proxies[kind].port, reply)
        except OSError:
            exchanges = [Exchange(None, b"", True)] * 2
        outcome = ResponseOutcome(exchanges, list(upstream.targets))
        outcome.exited = self.restart_if_exited(kind)
        return outcome


def response_violations(ours: ResponseOutcome, envoy: ResponseOutcome) -> list[str]:
    """Why Outrider's handling of one hostile response is unsafe or unlike Envoy's; [] if fine."""
    problems = []
    if ours.exited:
        problems.append("exited: the outrider process died")
    second = ours.exchanges[1]
    if LEAK in second.raw:
        problems.append(f"leak: response 1 bytes in exchange 2: {second.raw[:200]!r}")
    for i, (mine, theirs) in enumerate(zip(ours.exchanges, envoy.exchanges, strict=True)):
        if mine.status_class != theirs.status_class:
            problems.append(f"status-class: exchange {i + 1} outrider {mine.status} "
                            f"envoy {theirs.status}")
    return problems


def describe_response_outcome(kind: str, outcome: ResponseOutcome) -> str:
    lines = [f"  {kind}: upstream saw {outcome.upstream_targets}"
             + (" EXITED" if outcome.exited else "")]
    lines += [f"    exchange {i + 1}: status {e.status} closed={e.closed} raw={e.raw[:300]!r}"
              for i, e in enumerate(outcome.exchanges)]
    return "\n".join(lines)


@dataclass
class ResponseCheck:
    outcomes: dict[str, ResponseOutcome]
    problems: list[str]
    flaky: list[str]

    def report(self, reply: Reply) -> str:
        parts = [f"reply: {reply.label}", f"  bytes {reply.data!r} late {reply.late!r}"]
        parts += [f"  - {p}" for p in self.problems + self.flaky]
        parts += [describe_response_outcome(k, o) for k, o in self.outcomes.items()]
        return "\n".join(parts)


def check_reply(harness: ResponseHarness, reply: Reply, replays: int = 3) -> ResponseCheck:
    """Run one hostile reply through both proxies; violations must repeat in a replay."""
    outcomes = harness.run(reply)
    problems = response_violations(outcomes["outrider"], outcomes["envoy"])
    if not problems:
        return ResponseCheck(outcomes, [], [])
    kinds = {p.split(":")[0] for p in problems}
    for _ in range(replays):
        again = harness.run(reply)
        if {p.split(":")[0] for p in response_violations(again["outrider"], again["envoy"])} \
                == kinds:
            return ResponseCheck(outcomes, problems, [])
    return ResponseCheck(outcomes, [], problems)
