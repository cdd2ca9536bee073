"""Known inputs for ``test_smuggling_differential.py``: request streams, hostile responses.

Requests (``CASES``), checked with the request fuzzer's property (``smuggling.check``):
  * DIVERGENCES: every divergence the fuzzer (or a hand probe) ever found. ``open=True`` while
    Outrider still diverges (the test is an xfail, non-strict); flip it to False once fixed so
    the case guards against a regression.
  * FLAKY: violations seen once and never reproduced since, kept as guards.
  * ATTACKS: classic smuggling shapes, kept as seeds whether or not they ever diverged.
Each case has a comment: what it is, what Envoy 1.40 does, what Outrider did (with date).
``sent`` is the number of top-level requests the client wrote; ``cuts`` the offsets where the
client pauses between sends; ``runs`` how many times the test sends it (races need several).

Responses (``RESPONSE_CASES``): hostile first responses, checked with
``response_smuggling.check_reply`` (no leak into the second exchange, same status class).

The CI fuzz tests tolerate the OPEN divergences below (``open_request_divergence``,
``open_response_divergence``): they are already reported by their xfail cases, and a fuzz test
that fails on every run says nothing new. Only the differential parts are tolerated; a smuggled
request, too many requests, bad framing upstream, a leak between responses or a crash always
fail.
"""

from __future__ import annotations

from typing import NamedTuple

from tests.fuzz.response_smuggling import Reply, build_reply
from tests.fuzz.smuggling import (
    H2C_UPGRADE,
    SMUGGLED,
    WRAPPED_SIZE_BODY,
    Stream,
    term_ext_body,
)


class Case(NamedTuple):
    name: str
    data: bytes
    sent: int
    cuts: tuple[int, ...] = ()
    open: bool = False
    runs: int = 1


HEAD = b"POST /a HTTP/1.1\r\nHost: example.com\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n"


def cl_te(te_line: bytes) -> bytes:
    """CL.TE: Content-Length covers ``0`` chunk + SMUGGLED; TE ends the body before it."""
    body = b"0\r\n\r\n" + SMUGGLED
    return HEAD + b"Content-Length: %d\r\n" % len(body) + te_line + b"\r\n\r\n" + body


def te_cl(te_line: bytes) -> bytes:
    """TE.CL: SMUGGLED is chunk data; Content-Length covers only the chunk-size line."""
    size = b"%x\r\n" % len(SMUGGLED)
    return (HEAD + b"Content-Length: %d\r\n" % len(size) + te_line + b"\r\n\r\n" + size
            + SMUGGLED + b"\r\n0\r\n\r\n")


DIVERGENCES = [
    # HTTP/1.0 keep-alive request, then a pipelined HTTP/1.1 request in the same read. Envoy:
    # 426 (HTTP/1.0 not accepted), connection closed, nothing forwarded. Outrider at 23dee93:
    # the same 426 + close, but it still forwarded `GET /next` upstream whenever an idle
    # upstream connection was pooled (18 runs in 30): a request executed whose answer the
    # client never gets. Not reproducible since ad5089c/6fc7784 (0 in 30): fixed, kept as a
    # guard (5 runs, after a warm-up that pools a connection).
    Case("http10-then-pipelined",
         b"GET /a HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n" + NEXT,
         sent=2, runs=5),
    # FIXED in de599f0 (Outrider now 400s both absolute-form cases, like Envoy).
    # Absolute-form target with an empty authority. Envoy: 400, closes. Outrider (6fc7784):
    # forwards `GET /` with an EMPTY `host:` header (the Host header sent by the client is
    # replaced by the URI's empty authority), answers the upstream's 200.
    Case("absolute-form-empty-authority",
         b"GET http:// HTTP/1.1\r\nHost: example.com\r\n\r\n", sent=1, runs=2),
    # Absolute-form target whose authority is not a valid host[:port]. Envoy: 400, closes.
    # Outrider (6fc7784): forwards `GET /` with `host: example.com:80:80`.
    Case("absolute-form-invalid-authority",
         b"GET http://example.com:80:80/ HTTP/1.1\r\nHost: example.com\r\n\r\n", sent=1,
         runs=2),
    # FIXED in de599f0 (the four h2c cases below): Outrider now refuses an Upgrade/CONNECT
    # request with a body (400, close): it refuses more than Envoy, which forwards the body.
    # REQUEST SMUGGLING. An h2c upgrade request (`Upgrade: h2c`, `Connection: Upgrade`) with a
    # Content-Length body that is itself a request. Envoy (no upgrade configured) forwards the
    # request with its body. Outrider (6fc7784 .. 5bec3ae): the request ends at its headers
    # (llhttp's upgrade stop); it forwards the head with `content-length: 47` and no body, and
    # parses the body as the NEXT request. The upstream here answers /early at the head, so
    # Outrider at once forwards that next request on the SAME upstream connection, still owed
    # 47 body bytes: the upstream reads Outrider's re-encoded `GET /__smuggled ...` as the
    # body and the rest as a new request (garbage) -> a desynchronized upstream connection,
    # a 503 to the client. With an upstream that waits for the body, the smuggled
    # `GET /__smuggled` is forwarded after the 15 s route timeout (504), and its 200 reaches
    # the client.
    Case("h2c-upgrade-content-length-body",
         b"POST /early/x HTTP/1.1\r\nHost: example.com\r\n" + H2C_UPGRADE
         + b"\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, sent=1, runs=2),
    # The same with a chunked body. Envoy forwards the body; Outrider forwards `POST /a` with
    # an EMPTY body, then parses `2f` (the chunk size) as a request line: 400, close.
    Case("h2c-upgrade-chunked-body",
         b"POST /a HTTP/1.1\r\nHost: example.com\r\n" + H2C_UPGRADE
         + b"\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED) + SMUGGLED
         + b"\r\n0\r\n\r\n", sent=1, runs=2),
    # Found first, by the long run (6fc7784): h2c upgrade and a damaged last chunk (`0\r\r\n`).
    # Envoy forwards the head, then refuses the body (400). Outrider forwards the request as
    # complete with an empty body, answers its 200, then 400 for `0\r\r\n`.
    Case("h2c-upgrade-damaged-last-chunk",
         b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: example.com\r\n"
         + H2C_UPGRADE + b"\r\n\r\n0\r\r\n", sent=1, runs=2),
    # REQUEST SMUGGLING, immediate (found by the long run on 5bec3ae + working tree): an h2c
    # upgrade request with `Transfer-Encoding: chunked` whose body is a request. Envoy forwards
    # the head, then refuses the body (not valid chunked): 400, close. Outrider ends the
    # request at its headers, forwards `GET /` with an empty body, then parses the body as a
    # second request and FORWARDS `GET /__smuggled`: the client, which sent one request, gets
    # two 200s. (Also with the upgrade headers repeated.)
    Case("h2c-upgrade-chunked-request-as-body",
         b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: example.com\r\n" + H2C_UPGRADE
         + b"\r\n\r\n" + SMUGGLED, sent=1, runs=2),
    # `Connection: Host` (hop-by-hop option naming Host). Envoy: 400, close. Outrider (5bec3ae,
    # de599f0): forwards the request, Host kept. Fixed: 400, as Envoy.
    Case("connection-names-host",
         b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: Host\r\n\r\n", sent=1),
    # The h2c upgrade headers twice (`Upgrade: h2c, h2c` once combined). Envoy: 403 (an upgrade
    # it is not configured for), close. Outrider (5bec3ae, de599f0): forwards the request.
    # Fixed: the Upgrade values are one list, 403 as Envoy.
    Case("h2c-upgrade-headers-twice",
         b"GET / HTTP/1.1\r\nHost: example.com\r\n" + H2C_UPGRADE + b"\r\n" + H2C_UPGRADE
         + b"\r\n\r\n", sent=1),
    # Seen ONCE in the 3000-stream run (6fc7784), never on replay nor since (0 in 40 at
    # 5bec3ae, five cut points): Outrider's upstream got the second request (`POST //x`)
    # twice and the client a 200 for the third (HTTP/1.0, which Envoy answers 426): as if a
    # request's state had been reused for the next one. Kept as a guard (3 runs, 2 sends).
    Case("pipelined-http10-after-chunked",
         b'DELETE http://example.com HTTP/1.1\r\nContent-Length: 3\r\nHost: example.com\r\n'
         b'Expect: 100-continue\r\nX-Pad: 1\r\nAccept-Encoding: gzip\r\n\r\n9\x1c\xeb'
         b'POST //x HTTP/1.1\r\nHost:example.com\r\nExpect: 100-continue\r\nX-Pad: 1\r\n'
         b'Transfer-encoding: chunked\r\nAccept-Encoding: gzip\r\n\r\n000;a="x;y"\r\n\r\n'
         b'PUT http://other.test:8080/p HTTP/1.0\r\nHOST: Example.COM\r\n'
         b'Accept-Encoding: gzip\r\nTransfer-Encoding:chunked\r\nAccept-Encoding: gzip\r\n'
         b'Connection: keep-alive\r\n\r\n0;a=b\r\nXX', sent=3, cuts=(200,), runs=3),
]


# Open divergences above, as predicates over generated messages -> the case's name (none open
# since 2026-12-03; add one here with its case when the fuzzer finds a new one).
OPEN_REQUEST_DIVERGENCES: tuple = ()

FLAKY = [
    # Seen ONCE (2026-12-03, `make fuzz --seed 11`, two sends, on a proxy started before the
    # double-start fix of that day): chunk data longer than its size line (0x2f bytes, a whole
    # request, then "x" before the CRLF). Envoy 1.40 ignores the extra byte and forwards the
    # 47-byte body (200); Outrider answers 400 (RFC 9112 §7.1), but its upstream had got an
    # unfinished body that was not a prefix of the client's ('...Host: r'), as when one stream
    # was started twice and its body split between two upstream requests. Not reproduced since
    # (with and without a pause mid-chunk). Kept as a guard.
    Case("chunk-data-longer-than-its-size",
         b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: example.com\r\n\r\n2f\r\n"
         + SMUGGLED + b"x\r\n0\r\nX-T: 1\r\n\r\n", sent=1, cuts=(100,), runs=3),
    # Seen ONCE in the final 2823-stream run (de599f0), never since (0 in 40, five cut points):
    # after three pipelined requests (the last a HEAD with a 6-byte body), Outrider's upstream
    # got the HEAD a second time, unfinished (no body), which Envoy never sends. Kept as a
    # guard (3 runs, 2 sends).
    Case("pipelined-head-with-body-twice",
         b"OPTIONS /a;p=1 HTTP/1.1\r\nhost: example.com\r\nX-Empty:\r\nUser-Agent: fuzz\r\n"
         b"\r\nOPTIONS /a;p=1 HTTP/1.1\r\nhost: example.com\r\nX-Empty:\r\n"
         b"content-length: 6\r\nUser-Agent: fuzz\r\n\r\n\xe7\xb9qr\x88\x9cHEAD /a;p=1 HTTP/1.1\r\n"
         b"content-length: 6\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n\r\n"
         b"\xe7\xb9qr\x88\x9c", sent=3, cuts=(260,), runs=3),
]

ATTACKS = [
    # CL.TE and TE.CL with a plain `chunked`: both proxies answer 400 and close, forward nothing.
    Case("cl.te", cl_te(b"Transfer-Encoding: chunked"), sent=1),
    Case("te.cl", te_cl(b"Transfer-Encoding: chunked"), sent=1),
    # Obfuscated TE next to CL: space before the colon, obs-fold, hidden behind a bare LF, double
    # space. Both: 400, nothing forwarded.
    Case("te.cl-space-before-colon", te_cl(b"Transfer-Encoding : chunked"), sent=1),
    Case("te.cl-obs-fold", te_cl(b"Transfer-Encoding:\r\n chunked"), sent=1),
    Case("te.cl-after-bare-lf", te_cl(b"X-Pad: 1\nTransfer-Encoding: chunked"), sent=1),
    Case("cl.te-xchunked", cl_te(b"Transfer-Encoding: xchunked"), sent=1),
    # TE hidden behind a bare CR, next to CL. Envoy reads the CR as part of X-Pad's value and
    # forwards the whole CL body (SMUGGLED stays body: fine). Outrider: 400 (refuses more).
    Case("cl.te-after-bare-cr", cl_te(b"X-Pad: 1\rTransfer-Encoding: chunked"), sent=1),
    # Unknown transfer codings without CL, SMUGGLED as the body. Both: 501, nothing forwarded.
    Case("te-xchunked", HEAD + b"Transfer-Encoding: xchunked\r\n\r\n" + SMUGGLED, sent=1),
    Case("te-identity", HEAD + b"Transfer-Encoding: identity\r\n\r\n" + SMUGGLED, sent=1),
    # Conflicting Content-Lengths (two headers, one list). Both: 400.
    Case("dup-cl", HEAD + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
         + SMUGGLED, sent=1),
    Case("cl-list", HEAD + b"Content-Length: 0, %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, sent=1),
    # TERM.EXT (LF inside a chunk extension) and a chunk size that wraps 64 bits to 0. Both: 400
    # (Envoy may have forwarded the head before it saw the bad chunk: a partial, not compared).
    Case("term-ext", HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + term_ext_body(), sent=1),
    Case("wrapped-chunk-size", HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + WRAPPED_SIZE_BODY,
         sent=1),
    # Hop-by-hop naming a framing header. Both forward the request with its body, then /next.
    Case("connection-content-length", HEAD + b"Connection: Content-Length\r\n"
         b"Content-Length: 5\r\n\r\nhello" + NEXT, sent=2),
    Case("connection-transfer-encoding", HEAD + b"Connection: Transfer-Encoding\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + NEXT, sent=2),
    # LF instead of CRLF after chunk data. Envoy accepts it (forwards `hello`, then /next);
    # Outrider: 400 (refuses more: fine).
    Case("chunk-data-bare-lf", HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n"
         b"0\r\n\r\n" + NEXT, sent=2),
    # Content-Length in the trailer section. Envoy forwards and ignores it; Outrider: 400.
    Case("trailer-content-length", HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
         b"0\r\nContent-Length: 5\r\n\r\n" + NEXT, sent=2),
    # The same CL twice, as two headers or a list. Both: 400.
    Case("cl-same-twice", HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + NEXT,
         sent=2),
    # A body split across sends right inside the chunk-size line and the final CRLF.
    Case("chunked-split", HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
         + NEXT, sent=2, cuts=(len(HEAD) + 30, len(HEAD) + 45)),
]

CASES = DIVERGENCES + FLAKY + ATTACKS


def open_request_divergence(stream: Stream) -> str | None:
    """The name of the open request divergence ``stream`` runs into, if any."""
    for message in stream.messages:
        for matches, name in OPEN_REQUEST_DIVERGENCES:
            if matches(message):
                return name
    return None


# -- hostile upstream responses ----------------------------------------------------------------

class ResponseCase(NamedTuple):
    name: str
    reply: Reply
    open: bool = False


RESPONSE_DIVERGENCES = [
    # Status-class divergences found by the response fuzzer (2026-12-03, 6fc7784). Statuses are
    # [first exchange, second exchange]; no case leaks response-1 bytes into exchange 2.
    # 204 with a body framed by Content-Length (or chunked): Envoy [502, 200]; Outrider
    # [204, 200], relaying `content-length: 9` on the 204 to the client (a client honouring it
    # would read the next response as this one's body). Fixed: 502, as Envoy.
    ResponseCase("204-with-content-length", build_reply(status=204, family="cl")),
    ResponseCase("204-chunked", build_reply(status=204, family="chunked")),
    # 304 with an invalid Content-Length value (`9x`, `4, 9`, `-1`, `+9`): Envoy relays the 304
    # [304, 200]; Outrider [502, 200] (refuses more).
    ResponseCase("304-bad-content-length", build_reply(status=304, family="cl-junk"),
                 open=True),
    # `Transfer-Encoding: chunked` twice (chunked applied twice: invalid): Envoy [502, 200] for
    # any status; Outrider decodes it once and relays [200, 200]. Fixed: 502, as Envoy.
    ResponseCase("transfer-encoding-chunked-twice", build_reply(family="te-twice")),
    # A chunk size (4) shorter than its data (9): Envoy relays a 200 whose body it ends after 4
    # bytes, and keeps the connection [200, 200]; Outrider starts the 200, then aborts the
    # client connection [200, none] (arguably the safer choice).
    ResponseCase("chunk-size-shorter-than-data", build_reply(family="chunked-size-short"),
                 open=True),
    # Heads Envoy accepts and Outrider refuses with 502: bare-LF line endings, obs-fold, a bare
    # CR inside a value. Envoy [200, 200]; Outrider [502, 200] (refuses more).
    ResponseCase("bare-lf-head", build_reply(eol=b"\n"), open=True),
    ResponseCase("obs-fold-header", build_reply(odd=b"X-Fold: a\r\n b"), open=True),
    ResponseCase("bare-cr-in-value", build_reply(odd=b"X-Bare: a\rb"), open=True),
]

RESPONSE_ATTACKS = [
    # Extra bytes after a response: a complete fake response right behind it, or 50 ms later
    # (after the connection may be pooled), or junk; after a HEAD response with a body; after a
    # too-short Content-Length; after a close-delimited body. Both proxies: [200, 200], the
    # second exchange is the real second response (the connection is not reused).
    ResponseCase("fake-response-after-content-length", build_reply(extra="fake")),
    ResponseCase("late-fake-response", build_reply(extra="fake", late=True)),
    ResponseCase("late-fake-after-chunked", build_reply(family="chunked", extra="fake-twice",
                                                       late=True)),
    ResponseCase("head-response-with-body", build_reply(head=True, extra="fake")),
    ResponseCase("content-length-too-short", build_reply(family="cl-short", extra="fake")),
    ResponseCase("close-delimited-then-fake", build_reply(family="none", extra="fake",
                                                         late=True)),
    # CL+TE, conflicting CLs and unknown codings: both 502.
    ResponseCase("cl-and-te", build_reply(family="cl+te", extra="fake")),
    ResponseCase("conflicting-content-lengths", build_reply(family="cl-dup-diff")),
    ResponseCase("transfer-encoding-xchunked", build_reply(family="te-xchunked")),
]

RESPONSE_CASES = RESPONSE_DIVERGENCES + RESPONSE_ATTACKS


def open_response_divergence(reply: Reply) -> str | None:
    """The name of the open response divergence ``reply`` runs into, if any (these predicates
    generalize the open RESPONSE_DIVERGENCES above to every generated variant)."""
    if reply.eol == b"\n":
        return "bare-lf-head"
    if reply.odd in (b"X-Fold: a\r\n b", b"X-Bare: a\rb"):
        return "obs-fold-header / bare-cr-in-value"
    if reply.status == 304 and reply.family in ("cl-junk", "cl-list", "cl-plus", "cl-negative"):
        return "304-bad-content-length"
    if reply.family == "chunked-size-short":
        return "chunk-size-shorter-than-data"
    return None
