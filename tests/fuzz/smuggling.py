"""Differential HTTP/1.1 request-smuggling fuzzer: Outrider against the real Envoy.

Hypothesis strategies build hostile request byte streams (``streams()``); a ``Harness`` starts
Outrider and Envoy ONCE, each in front of its own ``RecordingUpstream`` with identical routes, and
``Harness.run`` sends one stream (cut into partial sends) through both and returns an
``Outcome`` per proxy. ``violations`` states the property; ``tests/fuzz/
test_smuggling_differential.py`` runs a short budget, ``tools/smuggle_fuzz.py`` the long one.

What is generated (``Message``: one top-level request as the client wrote it):
  * request lines: methods (odd ones too), origin/absolute/authority/asterisk targets, spacing
    and version variants, a leading empty line;
  * Host: missing, duplicated, conflicting, with bad characters;
  * filler header lines, sometimes one hostile line (space/tab before the colon, obs-fold,
    NUL, bare CR, bare LF, no colon, empty name, ``Connection: Content-Length`` ...), and
    sometimes bare-LF line endings for the whole head;
  * framing: none; Content-Length (odd values); duplicate/conflicting Content-Length;
    ``Transfer-Encoding`` with ``chunked`` variants (``Chunked``, `` chunked``,
    ``chunked, gzip``, ``xchunked``, two headers, obs-fold, hidden behind a bare LF/CR,
    look-alike names) and chunk encodings (hex case, leading zeros, extensions, trailers) with
    at most one damage (bad size token, wrong size, missing/short CRLF, bare LF/CR, NUL,
    oversized sizes, forbidden trailers); CL+TE in both classic placements; the TERM.EXT
    chunk-extension trick and a size that wraps a 64-bit integer to 0;
  * valid bodies that are themselves a request (``SMUGGLED`` as a Content-Length body or as
    chunk data), and targets under ``/early``, which the upstream answers as soon as the head
    arrives (so a proxy that withholds a body it mistook for the next request forwards it);
  * a stream of 1-3 messages (pipelined), cut at random offsets into partial sends.

Smuggling markers. Some messages hide ``SMUGGLED`` (a request for ``MARKER``) in their body,
placed so that it is body under every reading RFC 9112 permits, and only becomes a request if
a parser picks a forbidden reading (CL over TE, the smaller of two Content-Lengths, an
unknown Transfer-Encoding ignored, LF ending a chunk extension, a wrapped chunk size...). The
generator never writes ``MARKER`` as a top-level request, so an upstream that sees it was
smuggled to. (The config has no upgrade or CONNECT routes, so no body is ever tunnel payload:
both proxies refuse Upgrade: websocket and CONNECT.) Where a look-alike header may legitimately not be Transfer-Encoding at all
(bare CR, leading whitespace, ``Transfer_Encoding``), the marker is put only where
Content-Length framing keeps it in the body.

The property (``violations``), per stream:
  1. Outrider's upstream requests are a prefix of Envoy's: at each position the same method,
     target and Host, and the same body (see "unfinished requests" below); no request, not
     even an unfinished head, at a position where Envoy forwarded nothing; and what Outrider
     forwards has sane framing (one Content-Length matching the body, or
     ``transfer-encoding: chunked`` alone; one Host) and parses at the upstream;
  2. Outrider forwards no more complete requests than the client sent top-level messages, and
     never a ``MARKER`` request; and the Outrider process stays alive.
Before every run both proxies forward a warm-up request, so each has an idle upstream connection
(races between a local reply and a pipelined request only show then). A violation is confirmed
if it repeats in one of up to three replays; one that never repeats is reported as flaky.

Normalizations (what is NOT compared, and why):
  * Only method, target, Host, body and the framing verdict of forwarded requests are
    compared. Every other forwarded header is ignored: x-forwarded-*, x-request-id,
    x-envoy-*, and the framing headers themselves (Content-Length vs chunked re-framing is a
    legitimate choice; the upstream checks each for sanity instead).
  * Unfinished requests (head, maybe part of the body, no end) are compared by prefix: both
    proxies stream a request upstream before they have parsed all of its body, so how much of
    a body arrives before a proxy gives up (a bad chunk later in the same read, a client that
    never sends the rest) depends on timing. An unfinished Outrider body must be a prefix of
    Envoy's at that position (or Envoy's of it, when both are unfinished); a complete one
    where Envoy's never ended is a violation (``ended-early``).
  * Each run replaces ``example.com`` in the bytes by a same-length token naming the run
    (``r00000042.t``), turned back afterwards; a request carrying another run's token reached
    the upstream late (a proxy stalled past the client's patience) and is dropped, counted in
    ``Outcome.stale``. Without this, a stalled proxy's leftover shows up as a phantom request.
  * The client side is not part of the property: statuses, status texts, bodies, ``server``,
    ``date`` and ``x-envoy-*`` headers differ by design. ``ClientView.statuses`` (final
    statuses, 1xx dropped) and ``closed`` are recorded and reported as notes.
  * ``closed``: Envoy announces ``connection: close`` and then waits up to its
    delayed_close_timeout (1 s) for the client to close first, so "closed" means EOF/reset
    seen OR a ``connection: close`` response header.
  * No 426-vs-400 (or 501-vs-400) normalization is needed because statuses are not compared.
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from hypothesis import strategies as st

from tests.support.loop_server import LoopServer
from tests.support.proxy import ProxyProcess, bootstrap, cluster, free_port
from tests.support.reads import split

HOST = b"example.com"
RUN_TOKEN = b"r%08d.t"  # replaces HOST in each run's bytes: same length, names the run
_TOKEN_RUN = re.compile(r"r(\d{8})\.t")
MARKER = "/__smuggled"
EARLY = "/early"  # the recording upstream answers these as soon as their head arrives
SMUGGLED = b"GET " + MARKER.encode() + b" HTTP/1.1\r\nHost: example.com\r\n\r\n"
KINDS = ("outrider", "envoy")


# -- generated messages ------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    """One top-level request as the client wrote it.

    ``tags`` name every non-clean ingredient (empty: an RFC 9112-valid, unambiguous request that
    any conforming proxy forwards unchanged); ``label`` says in detail how it was built.
    """

    data: bytes
    tags: tuple[str, ...]
    label: str

    @property
    def clean(self) -> bool:
        return not self.tags


@dataclass(frozen=True)
class Stream:
    """Pipelined messages, sent in pieces cut at ``cuts`` (offsets into ``data``)."""

    messages: tuple[Message, ...]
    cuts: tuple[int, ...] = ()

    @property
    def data(self) -> bytes:
        return b"".join(m.data for m in self.messages)

    @property
    def sent(self) -> int:
        """How many top-level requests the client wrote (the most a proxy may forward)."""
        return len(self.messages)

    def pieces(self) -> list[bytes]:
        return split(self.data, self.cuts)

    def describe(self) -> str:
        labels = " | ".join(m.label for m in self.messages)
        return f"{labels}\n    bytes {self.data!r}\n    sends {len(self.pieces())}"


@dataclass
class Part:
    """A piece of a message: header lines (no line ending), body bytes, what was odd about it."""

    lines: list[bytes] = field(default_factory=list)
    body: bytes = b""
    tags: list[str] = field(default_factory=list)
    label: str = ""


def _pick(draw, clean, odd, is_odd: bool):
    """A value drawn from ``odd`` if ``is_odd`` (and there are any), else from ``clean``."""
    return draw(st.sampled_from(odd if is_odd and odd else clean))


# Request line ingredients.
CLEAN_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
ODD_METHODS = ("get", "GPOST", "G ET", "POST\x00", "CONNECT", "PRI", "GET\x0b", "")
CLEAN_TARGETS = ("/", "/a", "/a/b?x=1&y=2", EARLY + "/x", "/%2e%2e/x", "//x", "/a;p=1",
                 "http://example.com/abs", "HTTP://example.com/abs?q=1", "http://example.com",
                 "http://other.test:8080/p")
ODD_TARGETS = ("*", "example.com:443", "/a b", "/a#frag", "/a\x00", "/a\x7f", "", "/a\tb", "a",
               "/\xff", "http://", "http:/x", "/a\rb", "/a HTTP/1.1\r\nX-In: line",
               "http://a@example.com/", "http://example.com:80:80/")
CLEAN_SPACING = ((" ", " "),)
ODD_SPACING = (("  ", " "), ("\t", " "), (" ", "\t"), (" ", "  "), ("\x0b", " "))
CLEAN_VERSIONS = ("HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0")
ODD_VERSIONS = ("http/1.1", "HTTP/1.2", "HTTP/2.0", "HTTP/1.1 ", "HTTP/1", "HTTP/01.1",
                "HTTP/1.1\x00", "", "HTTP/1.1\t", "HTTP/1.10", "HTTP/0.9")
CLEAN_LEADS = ("",)
ODD_LEADS = ("\r\n", "\n", " ")


@st.composite
def request_lines(draw, odd: bool = False) -> Part:
    """The request line (maybe after an empty line); if ``odd``, one of its parts is odd."""
    which = draw(st.sampled_from(("method", "target", "target", "spacing", "version", "lead"))) \
        if odd else None
    method = _pick(draw, CLEAN_METHODS, ODD_METHODS, which == "method")
    target = _pick(draw, CLEAN_TARGETS, ODD_TARGETS, which == "target")
    sp1, sp2 = _pick(draw, CLEAN_SPACING, ODD_SPACING, which == "spacing")
    version = _pick(draw, CLEAN_VERSIONS, ODD_VERSIONS, which == "version")
    lead = _pick(draw, CLEAN_LEADS, ODD_LEADS, which == "lead")
    line = f"{lead}{method}{sp1}{target}{sp2}{version}".encode("latin-1")
    value = {"method": method, "target": target, "spacing": sp1 + "|" + sp2,
             "version": version, "lead": lead}.get(which)
    return Part([line], tags=[f"line-{which}={value!r}"] if odd else [],
                label=repr(line.decode("latin-1")))


CLEAN_HOSTS = ((b"Host: example.com",), (b"host: example.com",), (b"Host: example.com:8080",),
               (b"HOST: Example.COM",), (b"Host:example.com",))
ODD_HOSTS = ((), (b"Host: example.com", b"Host: example.com"),
             (b"Host: example.com", b"Host: other.test"), (b"Host: ",),
             (b"Host: exa mple.com",), (b"Host: example.com, other.test",),
             (b"Host: example.com\x00",), (b"Host: example.com/x",), (b"Host: a@example.com",),
             (b"Host : example.com",), (b" Host: example.com",))


@st.composite
def host_headers(draw, odd: bool = False) -> Part:
    lines = _pick(draw, CLEAN_HOSTS, ODD_HOSTS, odd)
    return Part(list(lines), tags=[f"host={lines!r}"] if odd else [],
                label=f"host={lines!r}" if odd else "")


H2C_UPGRADE = (b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")
PLAIN_LINES = (b"Accept: */*", b"User-Agent: fuzz", b"X-Pad: 1", b"Cookie: a=b",
               b"Connection: keep-alive", b"Accept-Encoding: gzip", b"X-Empty:",
               b"Connection: close", b"Expect: 100-continue", b"TE: trailers", H2C_UPGRADE)
ODD_LINES = (b"X-Pad : 1", b"X-Pad\t: 1", b" X-Pad: 1", b"X-Pad: a\x00b", b"X-Pad: a\rb",
             b"X-Pad: a\nb", b"X-Pad: a\r\n\tb", b"X Pad: 1", b": empty-name", b"X-Pad",
             b"X-Pad: \xff", b"X-Pad: \x0b1", b"X\x00Pad: 1", b"X-Pad;: 1",
             b"Connection: Transfer-Encoding", b"Connection: Content-Length",
             b"Connection: Host", b"Keep-Alive: timeout=5", b"Proxy-Connection: close",
             b"Upgrade: websocket\r\nConnection: Upgrade", b"Upgrade: h2c",
             b"Connection: Upgrade", b"Expect: 100-continue, x", b"X-Pad: 1\r\n\r\n")


@st.composite
def filler_headers(draw, odd: bool = False) -> Part:
    """0-3 ordinary header lines; if ``odd``, one hostile line among them."""
    lines = list(draw(st.lists(st.sampled_from(PLAIN_LINES), max_size=3)))
    if not odd:
        return Part(lines)
    line = draw(st.sampled_from(ODD_LINES))
    lines.insert(draw(st.integers(0, len(lines))), line)
    return Part(lines, tags=[f"line={line!r}"], label=f"line={line!r}")


# -- framing: Content-Length -----------------------------------------------------------------------

CL_NAMES = (b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Content-length")
# (label, value for a body of n bytes); the first ones are valid RFC 9112 values.
CLEAN_CL_VALUES = (("n", lambda n: b"%d" % n), ("0n", lambda n: b"0%d" % n),
                   ("ows", lambda n: b" %d " % n))
ODD_CL_VALUES = (("+n", lambda n: b"+%d" % n), ("-n", lambda n: b"-%d" % n),
                 ("nx", lambda n: b"%dx" % n), ("0xn", lambda n: b"0x%x" % n),
                 ("n,n", lambda n: b"%d,%d" % (n, n)), ("n, n", lambda n: b"%d, %d" % (n, n)),
                 ("empty", lambda n: b""), ("n.0", lambda n: b"%d.0" % n),
                 ("nul", lambda n: b"%d\x00" % n), ("huge", lambda n: b"1844674407370955161%d" % n),
                 ("n n", lambda n: b"%d %d" % (n, n)), ("vt", lambda n: b"\x0b%d" % n),
                 ("n,", lambda n: b"%d," % n))


# Bodies: bytes, or now and then a whole request (``SMUGGLED``) as the body.
_bodies = st.one_of(st.binary(max_size=24), st.just(SMUGGLED))


@st.composite
def content_length(draw, odd: bool = False) -> Part:
    """A Content-Length body; if ``odd``, the value is malformed (the body keeps n bytes).
    Sometimes the body is ``SMUGGLED`` itself: valid, it must stay body."""
    body = draw(_bodies)
    name = draw(st.sampled_from(CL_NAMES))
    label, value = _pick(draw, CLEAN_CL_VALUES, ODD_CL_VALUES, odd)
    return Part([name + b": " + value(len(body))], body, [f"cl-value={label}"] if odd else [],
                f"cl[{label}]")


@st.composite
def duplicate_content_length(draw) -> Part:
    """Two Content-Lengths. Different values hide ``SMUGGLED`` between the two lengths."""
    pad = draw(st.binary(max_size=8))
    a, b = len(pad), len(pad) + len(SMUGGLED)
    forms = {
        "same": ([b"Content-Length: %d" % a] * 2, pad),
        "same-list": ([b"Content-Length: %d, %d" % (a, a)], pad),
        "small-big": ([b"Content-Length: %d" % a, b"Content-Length: %d" % b], pad + SMUGGLED),
        "big-small": ([b"Content-Length: %d" % b, b"Content-Length: %d" % a], pad + SMUGGLED),
        "list": ([b"Content-Length: %d, %d" % (a, b)], pad + SMUGGLED),
        "list-rev": ([b"Content-Length: %d, %d" % (b, a)], pad + SMUGGLED),
        "zero-and": ([b"Content-Length: 0", b"Content-Length: %d" % b], pad + SMUGGLED),
    }
    form = draw(st.sampled_from(sorted(forms)))
    lines, body = forms[form]
    return Part(list(lines), body, [f"dup-cl={form}"], f"dup-cl[{form}]")


# -- framing: Transfer-Encoding ---------------------------------------------------------------------

TE_NAMES = (b"Transfer-Encoding", b"transfer-encoding", b"TRANSFER-ENCODING",
            b"Transfer-encoding")
CLEAN_TE_VALUES = (b"chunked", b"Chunked", b"CHUNKED", b" chunked", b"chunked ", b"\tchunked")
ODD_TE_VALUES = (b"gzip, chunked", b"chunked, gzip", b"xchunked", b"chunked;q=1", b"identity",
                 b"chunk", b"chunked, chunked", b"chunked,", b", chunked", b'"chunked"',
                 b"\x0bchunked", b"chunked\x00", b"ch unked", b"chunked\r", b"gzip",
                 b"chunked\x0c", b"identity, chunked", b"chunkedchunked", b"chunked\xff")


_CLEAN_TE_FORMS = ("plain", "no-space")


class TeHeader(NamedTuple):
    lines: list[bytes]
    genuine: bool  # under every permitted reading this is a Transfer-Encoding (or invalid)
    clean: bool
    label: str


def _te_forms(name: bytes, value: bytes) -> dict[str, tuple[list[bytes], bool]]:
    """Ways to write a Transfer-Encoding header: form -> (lines, genuine)."""
    return {
        "plain": ([name + b": " + value], True),
        "no-space": ([name + b":" + value], True),
        "space-before-colon": ([name + b" : " + value], True),   # must be rejected
        "tab-before-colon": ([name + b"\t: " + value], True),    # must be rejected
        "two-headers": ([name + b": gzip", name + b": " + value], True),
        "twice": ([name + b": " + value, name + b": " + value], True),
        "obs-fold": ([name + b":\r\n " + value], True),          # reject, or unfold
        "after-bare-lf": ([b"X-Pad: 1\n" + name + b": " + value], True),  # reject, or split
        "nul-in-name": ([name + b"\x00: " + value], True),       # must be rejected
        # These may legitimately not be a Transfer-Encoding at all:
        "after-bare-cr": ([b"X-Pad: 1\r" + name + b": " + value], False),
        "leading-space": ([b" " + name + b": " + value], False),
        "underscore": ([name.replace(b"-", b"_") + b": " + value], False),
        "x-prefixed": ([b"X-" + name + b": " + value], False),
        "suffixed": ([name + b"s: " + value], False),
    }


@st.composite
def te_headers(draw, odd: bool = False, genuine_only: bool = False) -> TeHeader:
    """A Transfer-Encoding header; if ``odd``, an odd value and/or an odd way of writing it."""
    name = draw(st.sampled_from(TE_NAMES))
    odd_value, odd_form = draw(st.sampled_from(((True, False), (False, True), (True, True)))) \
        if odd else (False, False)
    value = _pick(draw, CLEAN_TE_VALUES, ODD_TE_VALUES, odd_value)
    forms = _te_forms(name, value)
    choices = sorted(f for f, (_, genuine) in forms.items()
                     if f not in _CLEAN_TE_FORMS and (genuine or not genuine_only))
    form = draw(st.sampled_from(choices if odd_form else _CLEAN_TE_FORMS))
    lines, genuine = forms[form]
    return TeHeader(lines, genuine, not odd, f"te[{form} {value!r}]")


class Chunk(NamedTuple):
    size: bytes
    ext: bytes
    eol: bytes    # ends the size line
    data: bytes
    tail: bytes   # follows the data (CRLF when well-formed)


def _size(n: int, style: str) -> bytes:
    return {"lower": b"%x" % n, "upper": b"%X" % n, "zeros": b"000%x" % n}[style]


def _serialize(chunks: list[Chunk], trailers: bytes, end: bytes) -> bytes:
    out = [c.size + c.ext + c.eol + c.data + c.tail for c in chunks]
    return b"".join(out) + trailers + end


CLEAN_EXTS = (b"", b";a=b", b";a", b';a="x;y"')
ODD_EXTS = (b" ;a", b"\t;a", b";", b";a=", b"; a=b", b";a=b c")
# (label, change): ``change(chunks, i)`` damages chunk i in place, or the trailer section.
_DAMAGES = {
    "size-g": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"g")),
    "size-neg": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"-" + c[i].size)),
    "size-0x": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"0x" + c[i].size)),
    "size-plus": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"+" + c[i].size)),
    "size-lead-space": lambda c, i: c.__setitem__(i, c[i]._replace(size=b" " + c[i].size)),
    "size-trail-space": lambda c, i: c.__setitem__(i, c[i]._replace(size=c[i].size + b" ")),
    "size-trail-tab": lambda c, i: c.__setitem__(i, c[i]._replace(size=c[i].size + b"\t")),
    "size-underscore": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"1_0")),
    "size-empty": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"")),
    "size-17-digits": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"0" * 16 + c[i].size)),
    "size-more": lambda c, i: c.__setitem__(i, c[i]._replace(size=b"%x" % (len(c[i].data) + 1))),
    "size-less": lambda c, i: c.__setitem__(
        i, c[i]._replace(size=b"%x" % max(len(c[i].data) - 1, 0))),
    "eol-lf": lambda c, i: c.__setitem__(i, c[i]._replace(eol=b"\n")),
    "eol-cr": lambda c, i: c.__setitem__(i, c[i]._replace(eol=b"\r")),
    "eol-crcr": lambda c, i: c.__setitem__(i, c[i]._replace(eol=b"\r\r\n")),
    "tail-none": lambda c, i: c.__setitem__(i, c[i]._replace(tail=b"")),
    "tail-lf": lambda c, i: c.__setitem__(i, c[i]._replace(tail=b"\n")),
    "tail-xx": lambda c, i: c.__setitem__(i, c[i]._replace(tail=b"XX")),
    "tail-extra": lambda c, i: c.__setitem__(i, c[i]._replace(tail=b"x\r\n")),
    "ext-lf": lambda c, i: c.__setitem__(i, c[i]._replace(ext=b";a\nb")),
    "ext-cr": lambda c, i: c.__setitem__(i, c[i]._replace(ext=b";a\rb")),
    "ext-nul": lambda c, i: c.__setitem__(i, c[i]._replace(ext=b";a=\x00")),
    "ext-unterminated-quote": lambda c, i: c.__setitem__(i, c[i]._replace(ext=b';a="x')),
}
_TRAILER_DAMAGES = {
    "trailer-space-colon": b"X-T : 1\r\n", "trailer-no-colon": b"X-T\r\n",
    "trailer-cl": b"Content-Length: 5\r\n", "trailer-te": b"Transfer-Encoding: chunked\r\n",
    "trailer-host": b"Host: other.test\r\n", "trailer-bare-lf": b"X-T: 1\n",
}
_END_DAMAGES = {"end-missing": b"", "end-lf": b"\n", "end-cr": b"\r", "end-xx": b"XX"}


@st.composite
def chunked_bodies(draw, odd_ext: bool = False, damaged: bool = False) -> Part:
    """A chunked body (no headers): chunks, last chunk, trailers; odd extensions and/or one
    damage (a size, line ending, data terminator, trailer or final CRLF gone wrong) on request."""
    datas = draw(st.lists(st.one_of(st.binary(min_size=1, max_size=16), st.just(SMUGGLED)),
                          max_size=3))
    style = draw(st.sampled_from(("lower", "upper", "zeros")))
    ext = _pick(draw, CLEAN_EXTS, ODD_EXTS, odd_ext)
    chunks = [Chunk(_size(len(d), style), ext, b"\r\n", d, b"\r\n") for d in datas]
    chunks.append(Chunk(b"0" if style != "zeros" else b"000", ext, b"\r\n", b"", b""))
    trailers = draw(st.sampled_from((b"", b"X-T: 1\r\n")))
    end = b"\r\n"
    tags = [f"chunk-ext={ext!r}"] if odd_ext else []
    label = f"chunks[{len(datas)} {style} ext={ext!r}]"
    if damaged:
        kind = draw(st.sampled_from(sorted(_DAMAGES) + sorted(_TRAILER_DAMAGES)
                                    + sorted(_END_DAMAGES)))
        if kind in _DAMAGES:
            _DAMAGES[kind](chunks, draw(st.integers(0, len(chunks) - 1)))
        elif kind in _TRAILER_DAMAGES:
            trailers = _TRAILER_DAMAGES[kind]
        else:
            end = _END_DAMAGES[kind]
        tags.append(f"chunk-damage={kind}")
        label += f" damage={kind}"
    return Part([], _serialize(chunks, trailers, end), tags, label)


@st.composite
def chunked(draw, odd: bool = False) -> Part:
    """Transfer-Encoding with a chunked body, no Content-Length; if ``odd``, one or two of: the
    TE header, the chunk extensions, one damage."""
    odd_parts = draw(st.sets(st.sampled_from(("te", "ext", "damage", "damage")), min_size=1,
                             max_size=2)) if odd else set()
    te = draw(te_headers(odd="te" in odd_parts))
    body = draw(chunked_bodies("ext" in odd_parts, "damage" in odd_parts))
    tags = ([] if te.clean else [f"te-header={te.label}"]) + body.tags
    return Part(te.lines, body.body, tags, f"{te.label} {body.label}")


@st.composite
def cl_and_te(draw) -> Part:
    """Content-Length and Transfer-Encoding together, ``SMUGGLED`` placed CL.TE or TE.CL.

    CL.TE: the body is ``0`` chunk + SMUGGLED, Content-Length covers all of it; a reader that
    takes TE (and then does not close the connection, as RFC 9112 §6.1 requires) sees SMUGGLED.
    TE.CL: SMUGGLED is chunk data, Content-Length covers only the chunk-size line; a reader
    that takes CL sees SMUGGLED. TE.CL only for headers that surely are TE (or invalid).
    """
    te = draw(te_headers(odd=draw(st.booleans())))
    placements = ("CL.TE", "TE.CL") if te.genuine else ("CL.TE",)
    placement = draw(st.sampled_from(placements))
    if placement == "CL.TE":
        body = b"0\r\n\r\n" + SMUGGLED
        length = len(body)
    else:
        size_line = b"%x\r\n" % len(SMUGGLED)
        body = size_line + SMUGGLED + b"\r\n0\r\n\r\n"
        length = len(size_line)
    cl = draw(st.sampled_from(CL_NAMES)) + b": %d" % length
    lines = [cl, *te.lines] if draw(st.booleans()) else [*te.lines, cl]
    return Part(lines, body, [f"cl+te={placement}"], f"cl+te[{placement}] {te.label}")


@st.composite
def te_not_chunked(draw) -> Part:
    """A genuine Transfer-Encoding whose body is SMUGGLED itself.

    Whatever the coding, SMUGGLED is never a valid chunked body, so the request must be refused;
    a reader that ignores a Transfer-Encoding it does not know forwards SMUGGLED.
    """
    te = draw(te_headers(odd=draw(st.booleans()), genuine_only=True))
    return Part(te.lines, SMUGGLED, ["te-ignored"], f"te-ignored {te.label}")


def term_ext_body() -> bytes:
    """TERM.EXT: ``2;\\nxx`` read with LF ending the size line is a 2-byte chunk ``xx``; read
    with LF inside the extension (up to CRLF), the 2 data bytes are the next size line's hex
    digits and the ``0`` chunk starting the real data ends the body, leaving SMUGGLED."""
    inner = b"0\r\n\r\n" + SMUGGLED
    assert 16 <= len(inner) <= 255
    return b"2;\nxx\r\n" + b"%02x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"


# A 17-digit size that wraps to 0 in 64 bits: a wrapping reader ends the body and sees SMUGGLED.
WRAPPED_SIZE_BODY = b"10000000000000000\r\n\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"


@st.composite
def chunk_tricks(draw) -> Part:
    """Chunked bodies built so that one known misreading smuggles SMUGGLED."""
    name = draw(st.sampled_from(("term-ext", "wrapped-size")))
    body = term_ext_body() if name == "term-ext" else WRAPPED_SIZE_BODY
    return Part([b"Transfer-Encoding: chunked"], body, [name], name)


CLEAN_FAMILIES = ("none", "length", "chunked")
ODD_FAMILIES = ("length", "chunked", "chunked", "dup-cl", "cl+te", "cl+te", "cl+te",
                "te-ignored", "tricks")


@st.composite
def framings(draw, odd: bool = False) -> Part:
    """Framing headers and body of one message: a valid one, or (``odd``) a hostile one."""
    family = _pick(draw, CLEAN_FAMILIES, ODD_FAMILIES, odd)
    strategy = {
        "none": st.just(Part(label="no-body")), "length": content_length(odd),
        "chunked": chunked(odd), "dup-cl": duplicate_content_length(), "cl+te": cl_and_te(),
        "te-ignored": te_not_chunked(), "tricks": chunk_tricks(),
    }[family]
    return draw(strategy)


# Where a hostile message is hostile: mostly its framing (what smuggling is about).
INGREDIENTS = ("framing",) * 6 + ("line", "host", "filler", "eol")


@st.composite
def messages(draw, hostile: bool | None = None) -> Message:
    """One request: line, Host, fillers and framing headers (at a drawn position), then the
    body. A hostile message has one or two odd ingredients, the others are valid."""
    if hostile is None:
        hostile = draw(st.booleans())
    odd = set()
    if hostile:
        odd.add(draw(st.sampled_from(INGREDIENTS)))
        if draw(st.integers(0, 99)) < 20:  # sometimes a second odd ingredient
            odd.add(draw(st.sampled_from(INGREDIENTS)))
    line = draw(request_lines("line" in odd))
    host = draw(host_headers("host" in odd))
    fillers = draw(filler_headers("filler" in odd))
    framing = draw(framings("framing" in odd))
    lines = host.lines + fillers.lines
    at = draw(st.integers(0, len(lines)))
    lines[at:at] = framing.lines
    eol = b"\n" if "eol" in odd else b"\r\n"
    head = eol.join(line.lines + lines) + eol + eol
    tags = line.tags + host.tags + fillers.tags + framing.tags + (["lf-eol"] if "eol" in odd
                                                                  else [])
    labels = [p.label for p in (line, host, fillers, framing) if p.label]
    labels += ["lf-eol"] if "eol" in odd else []
    return Message(head + framing.body, tuple(tags), " ".join(labels))


def streams(max_messages: int = 3) -> st.SearchStrategy[Stream]:
    """1..max_messages pipelined messages (each hostile or not), cut into up to 6 sends."""
    return st.builds(
        lambda msgs, cuts: Stream(tuple(msgs), tuple(cuts)),
        st.lists(messages(), min_size=1, max_size=max_messages),
        st.lists(st.integers(0, 4000), max_size=5))


# -- the recording upstream ------------------------------------------------------------------------

class Forwarded(NamedTuple):
    """A request as it reached an upstream (the compared part)."""

    method: str
    target: str
    host: str | None
    body: bytes
    sane: bool  # framing headers sane: one valid CL matching the body, or TE chunked alone; one Host
    complete: bool = True  # False: the head (and maybe part of the body) came, the end did not


@dataclass
class Seen:
    """One request the upstream parsed (complete or still arriving)."""

    connection: int
    started: float
    method: str
    target: str
    host: list[str]
    content_length: list[str]
    transfer_encoding: list[str]
    body: bytes = b""
    complete: bool = False
    sane: bool = True
    epoch: int = 0

    def forwarded(self) -> Forwarded:
        return Forwarded(self.method, self.target, self.host[0] if len(self.host) == 1 else
                         ",".join(self.host) or None, self.body, self.sane, self.complete)


class BadUpstreamBytes(Exception):
    """What the proxy sent the upstream does not parse as HTTP/1.1."""


def parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """(method, target, headers lowercased) of a head without its final CRLFCRLF; strict."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        raise BadUpstreamBytes(f"request line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) \
                or re.search(rb"[\x00\r\n]", value):
            raise BadUpstreamBytes(f"header line {line!r}")
        headers.append((name.decode().lower(), value.strip(b" \t").decode("latin-1")))
    return parts[0].decode("latin-1"), parts[1].decode("latin-1"), headers


def decode_chunked(raw: bytes) -> tuple[bytes, int | None]:
    """(body so far, bytes consumed if the chunked body is complete else None); strict RFC 9112
    (extensions allowed, trailers skipped). Raises BadUpstreamBytes on malformed input."""
    body, pos = bytearray(), 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return bytes(body), None
        size_text = raw[pos:eol].split(b";", 1)[0]
        if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_text):
            raise BadUpstreamBytes(f"chunk size {raw[pos:eol]!r}")
        size, pos = int(size_text, 16), eol + 2
        if size == 0:
            end = raw.find(b"\r\n\r\n", pos - 2)
            return bytes(body), (end + 4 if end >= 0 else None)
        body += raw[pos:pos + size]
        if len(raw) < pos + size + 2:
            return bytes(body), None
        if raw[pos + size:pos + size + 2] != b"\r\n":
            raise BadUpstreamBytes("no CRLF after chunk data")
        pos += size + 2


class _UpstreamConnection(asyncio.Protocol):
    """Parses requests off one proxy connection and answers each with ``seq=N``: when its body
    has ended, or for targets under ``EARLY`` as soon as its head has arrived (as servers that
    refuse a request without reading its body do: a proxy that withholds a body it took for
    the next request then goes on to forward that "request")."""

    def __init__(self, upstream: RecordingUpstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.current: Seen | None = None
        self.framing = ("none", 0)
        self.transport = None
        self.number = 0
        self.answered = False  # the current request was answered at its head

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.number = self.upstream.touch(new_connection=True)

    def connection_lost(self, exc) -> None:
        self.upstream.touch()

    def data_received(self, data: bytes) -> None:
        self.upstream.touch()
        self.buffer += data
        try:
            while self._step():
                pass
        except BadUpstreamBytes as error:
            self.upstream.garbage.append(str(error))
            if self.current is not None:
                self.current.sane = False
            self.transport.close()

    def _step(self) -> bool:
        """Advance the parse as far as the buffer allows; True if a request completed."""
        if self.current is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            self._start(self.buffer[:end])
            self.buffer = self.buffer[end + 4:]
        kind, length = self.framing
        if kind == "chunked":
            body, used = decode_chunked(self.buffer)
            self.current.body = body
            if used is None:
                return False
            self.buffer = self.buffer[used:]
        else:
            self.current.body = self.buffer[:length]
            if len(self.buffer) < length:
                return False
            self.buffer = self.buffer[length:]
        self._finish()
        return True

    def _start(self, head: bytes) -> None:
        method, target, headers = parse_head(head)
        values = {name: [v for n, v in headers if n == name]
                  for name in ("host", "content-length", "transfer-encoding")}
        seen = Seen(self.number, time.monotonic(), method, target, values["host"],
                    values["content-length"], values["transfer-encoding"])
        cls, tes = seen.content_length, seen.transfer_encoding
        seen.sane = len(seen.host) == 1 and (
            (not tes and len(cls) <= 1 and all(v.isdigit() for v in cls))
            or (tes == ["chunked"] and not cls))
        if tes and tes[-1].lower().endswith("chunked"):
            self.framing = ("chunked", 0)
        elif cls and cls[0].isdigit():
            self.framing = ("length", int(cls[0]))
        else:
            self.framing = ("none", 0)
        self.current = seen
        self.upstream.record(seen)
        self.answered = seen.target.startswith(EARLY)
        if self.answered:
            self._answer(seen)

    def _finish(self) -> None:
        seen, self.current = self.current, None
        seen.complete = True
        if not self.answered:
            self._answer(seen)

    def _answer(self, seen: Seen) -> None:
        seq = self.upstream.next_seq()
        body = b"seq=%d\n" % seq
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n"
        self.transport.write(head % len(body) + (b"" if seen.method == "HEAD" else body))


class RecordingUpstream(LoopServer):
    """An HTTP/1.1 server on 127.0.0.1 port 0 (own thread) that records what proxies forward.

    ``reset()`` starts a new epoch; ``seen()`` returns this epoch's requests in arrival order
    (complete or not); ``wait_quiet(t)`` blocks until nothing happened for ``t`` seconds.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.garbage: list[str] = []
        self._seen: list[Seen] = []
        self._seq = 0
        self._connections = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()
        super().__init__()

    def protocol(self) -> _UpstreamConnection:
        return _UpstreamConnection(self)

    def touch(self, new_connection: bool = False) -> int:
        with self._lock:
            self._last = time.monotonic()
            if new_connection:
                self._connections += 1
            return self._connections

    def record(self, seen: Seen) -> None:
        with self._lock:
            seen.epoch = self.epoch
            self._seen.append(seen)

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def reset(self) -> None:
        with self._lock:
            self.epoch += 1
            self._seen = []
            self._seq = 0
            self.garbage = []

    def seen(self) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if s.epoch == self.epoch]

    def wait_quiet(self, quiet: float, limit: float = 2.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self._lock:
                idle = time.monotonic() - self._last
            if idle >= quiet:
                return
            time.sleep(quiet - idle)


# -- the client ------------------------------------------------------------------------------------

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n")


@dataclass
class ClientView:
    """What the client saw: final statuses in order, the upstream ``seq`` of each answer that
    came from the upstream (None for local replies), and whether the connection closed."""

    statuses: list[int]
    seqs: list[int | None]
    closed: bool
    raw: bytes


def client_view(raw: bytes, eof: bool) -> ClientView:
    """Parse a proxy's response bytes leniently (status lines, Connection, ``seq=N`` bodies)."""
    statuses, seqs, announced_close = [], [], False
    matches = list(_STATUS.finditer(raw))
    for i, match in enumerate(matches):
        status = int(match.group(1))
        if status < 200:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(raw)
        head, _, body = raw[match.end():end].partition(b"\r\n\r\n")
        announced_close |= bool(re.search(rb"(?im)^connection:[ \t]*close", head))
        seq = re.match(rb"seq=(\d+)\n", body)
        statuses.append(status)
        seqs.append(int(seq.group(1)) if seq else None)
    return ClientView(statuses, seqs, eof or announced_close, raw)


def exchange(port: int, pieces: list[bytes], expected: int, gap: float = 0.003,
             idle: float = 0.25, cap: float = 4.0) -> ClientView:
    """Send ``pieces`` on one connection (pausing ``gap`` between them), then read until the
    peer closes, or ``expected`` final responses arrived (plus a short grace for the close),
    or nothing arrives for ``idle`` seconds."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw, eof = b"", False
    try:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(gap)
            try:
                sock.sendall(piece)
            except OSError:
                break
        raw, eof = _read(sock, expected, idle, cap)
    finally:
        sock.close()
    return client_view(raw, eof)


def _read(sock: socket.socket, expected: int, idle: float, cap: float) -> tuple[bytes, bool]:
    return read_until(sock, lambda raw: len(client_view(raw, False).statuses) >= expected,
                      idle, cap, grace=0.05)


def read_until(sock: socket.socket, complete, idle: float, cap: float,
               grace: float) -> tuple[bytes, bool]:
    """Read until ``complete(raw)`` holds (then ``grace`` seconds more, to see a close), the
    peer closes, nothing arrives for ``idle`` seconds, or ``cap`` seconds pass; return the
    bytes and whether the peer closed."""
    raw = b""
    start = last = time.monotonic()
    grace_until = None
    while True:
        now = time.monotonic()
        if now - start > cap or now - last > idle or (grace_until and now > grace_until):
            return raw, False
        wait = min(idle - (now - last), (grace_until - now) if grace_until else idle)
        readable, _, _ = select.select([sock], [], [], max(wait, 0.001))
        if not readable:
            continue
        try:
            chunk = sock.recv(65536)
        except OSError:
            return raw, True
        if not chunk:
            return raw, True
        raw += chunk
        last = time.monotonic()
        if grace_until is None and complete(raw):
            grace_until = last + grace


# -- the harness -----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One proxy's handling of one stream, normalized (see the module docstring)."""

    requests: list[Forwarded]    # what reached the upstream, in arrival order
    client: ClientView
    exited: bool = False         # the proxy process died
    garbage: list[str] = field(default_factory=list)  # unparseable bytes it sent upstream
    stale: int = 0               # requests of earlier runs that reached the upstream late

    @property
    def forwarded(self) -> list[Forwarded]:
        """The complete requests."""
        return [r for r in self.requests if r.complete]

    @property
    def partial(self) -> list[Forwarded]:
        """Requests whose head reached the upstream but whose body did not end."""
        return [r for r in self.requests if not r.complete]


def proxy_config(port: int, upstream_port: int) -> dict:
    """The one config both proxies run: every path to the recording upstream."""
    route = {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
    return bootstrap(port, [route], [cluster("upstream", [upstream_port])])


class ProxyPair:
    """Outrider and Envoy, each in front of its own upstream (``upstream_class``), started once
    and reused; ``run_both(task, *args)`` runs ``task(kind, *args)`` for both at once."""

    upstream_class: type = None  # set by each harness

    def __init__(self, kinds: tuple[str, ...] = KINDS) -> None:
        self.kinds = kinds
        self.upstreams: dict = {}
        self.proxies: dict[str, ProxyProcess] = {}
        self._pool = ThreadPoolExecutor(max_workers=len(kinds))

    def start(self):
        try:
            for kind in self.kinds:
                self.upstreams[kind] = self.upstream_class().start()
                self._start_proxy(kind)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_proxy(self, kind: str, attempts: int = 3) -> None:
        for attempt in range(attempts):
            config = proxy_config(free_port(), self.upstreams[kind].port)
            proxy = ProxyProcess(config, kind)
            try:
                self.proxies[kind] = proxy.start()
                return
            except RuntimeError:
                proxy.stop()
                if attempt == attempts - 1:
                    raise
                time.sleep(2.0)

    def restart_if_exited(self, kind: str) -> bool:
        """Whether ``kind``'s proxy had died (it is running again now)."""
        if self.proxies[kind].proc.poll() is None:
            return False
        self.proxies[kind].stop()
        self._start_proxy(kind)
        return True

    def run_both(self, task, *args) -> dict:
        futures = {kind: self._pool.submit(task, kind, *args) for kind in self.kinds}
        return {kind: future.result() for kind, future in futures.items()}

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        for upstream in self.upstreams.values():
            upstream.stop()
        self._pool.shutdown(wait=False)


class Harness(ProxyPair):
    """The request fuzzer's pair: each proxy in front of a RecordingUpstream.

    ``run(pieces, expected)`` sends the same pieces through both (concurrently) and returns
    {kind: Outcome}. A proxy that died is restarted (with retries: Outrider may be mid-change)
    and its Outcome says ``exited``.
    """

    upstream_class = RecordingUpstream

    def __init__(self, kinds: tuple[str, ...] = KINDS) -> None:
        super().__init__(kinds)
        self._runs = 0

    def run(self, pieces: list[bytes], expected: int) -> dict[str, Outcome]:
        self._runs += 1
        return self.run_both(self._run_one, tag_run(pieces, self._runs), expected, self._runs)

    def _run_one(self, kind: str, pieces: list[bytes], expected: int, run: int) -> Outcome:
        upstream = self.upstreams[kind]
        upstream.wait_quiet(0.02)
        upstream.reset()
        try:
            view = exchange(self.proxies[kind].port, pieces, expected)
        except OSError:
            view = client_view(b"", True)
        upstream.wait_quiet(0.03)
        requests = [untag_run(seen.forwarded(), run) for seen in upstream.seen()]
        outcome = Outcome([r for r in requests if r is not None], view,
                          garbage=list(upstream.garbage),
                          stale=sum(r is None for r in requests))
        outcome.exited = self.restart_if_exited(kind)
        return outcome


def tag_run(pieces: list[bytes], run: int) -> list[bytes]:
    """``pieces`` with every ``example.com`` replaced by this run's token (same length, so
    lengths and cut offsets hold)."""
    token = RUN_TOKEN % run
    cuts, offset = [], 0
    for piece in pieces[:-1]:
        offset += len(piece)
        cuts.append(offset)
    return split(b"".join(pieces).replace(HOST, token), cuts)


def untag_run(forwarded: Forwarded, run: int) -> Forwarded | None:
    """``forwarded`` with this run's token turned back into ``example.com``; None if it carries
    another run's token (a request left over from an earlier run, forwarded late)."""
    text = f"{forwarded.host} {forwarded.target}"
    if any(int(n) != run for n in _TOKEN_RUN.findall(text)):
        return None
    token = (RUN_TOKEN % run).decode()
    return forwarded._replace(
        target=forwarded.target.replace(token, HOST.decode()),
        host=forwarded.host and forwarded.host.replace(token, HOST.decode()),
        body=forwarded.body.replace(token.encode(), HOST))


# -- the property ----------------------------------------------------------------------------------

def violations(sent: int, ours: Outcome, envoy: Outcome) -> list[str]:
    """Why Outrider's handling of a stream of ``sent`` messages is unsafe next to Envoy's; []
    if it is fine. Each entry starts with a short kind (``kind: details``)."""
    problems = []
    if ours.exited:
        problems.append("exited: the outrider process died")
    problems += sequence_problems(ours.requests, envoy.requests)
    problems += [f"insane-framing: #{i} {_show(f)}"
                 for i, f in enumerate(ours.requests) if not f.sane]
    if ours.garbage:
        problems.append(f"upstream-garbage: {ours.garbage}")
    if len(ours.forwarded) > sent:
        problems.append(f"too-many: forwarded {len(ours.forwarded)} requests, client sent {sent}")
    problems += [f"smuggled: #{i} {_show(f)}" for i, f in enumerate(ours.requests)
                 if MARKER in f.target]
    return problems


def sequence_problems(ours: list[Forwarded], envoy: list[Forwarded]) -> list[str]:
    """Outrider's upstream requests must be a prefix of Envoy's, request by request.

    Position by position: the same method, target and Host, and bodies that agree: equal when
    both are complete; when Outrider's is unfinished, a prefix of Envoy's (it may still be
    waiting, or have given up earlier); never complete where Envoy's never ended (Envoy
    refused the body mid-way, or is still waiting for more of it). A request, even unfinished,
    at a position where Envoy forwarded nothing is a violation.
    """
    for i, mine in enumerate(ours):
        if i >= len(envoy):
            kind = "extra-request" if mine.complete else "extra-head"
            return [f"{kind}: #{i} {_show(mine)} (envoy forwarded {len(envoy)})"]
        theirs = envoy[i]
        if mine[:3] != theirs[:3] or not _bodies_agree(mine, theirs):
            same_head = mine[:3] == theirs[:3]
            kind = "ended-early" if same_head and mine.complete and not theirs.complete else \
                "different-request"
            return [f"{kind}: #{i} outrider {_show(mine)} != envoy {_show(theirs)}"]
    return []


def _bodies_agree(mine: Forwarded, theirs: Forwarded) -> bool:
    if mine.complete:
        return theirs.complete and mine.body == theirs.body
    if theirs.complete:
        return theirs.body.startswith(mine.body)
    return theirs.body.startswith(mine.body) or mine.body.startswith(theirs.body)


def notes(ours: Outcome, envoy: Outcome) -> list[str]:
    """Differences that are not violations but worth a look, each ``kind: details``."""
    out = []
    if len(ours.forwarded) < len(envoy.forwarded):
        out.append(f"refuses-more: outrider forwarded {len(ours.forwarded)} of envoy's "
                   f"{len(envoy.forwarded)}")
    if ours.client.statuses != envoy.client.statuses:
        out.append(f"statuses: outrider {ours.client.statuses} envoy {envoy.client.statuses}")
    if ours.client.closed != envoy.client.closed:
        out.append(f"closing: outrider closed={ours.client.closed} envoy "
                   f"closed={envoy.client.closed}")
    if envoy.exited:
        out.append("envoy-exited: the envoy process died")
    return out


def signature(problems: list[str]) -> tuple[str, ...]:
    """The kinds of a violation list, for telling divergences apart."""
    return tuple(sorted({p.split(":", 1)[0] for p in problems}))


def _show(f: Forwarded) -> str:
    flags = ("" if f.sane else " INSANE-FRAMING") + ("" if f.complete else " (unfinished)")
    return f"{f.method} {f.target!r} host={f.host!r} body={f.body!r}{flags}"


def describe_outcome(kind: str, outcome: Outcome) -> str:
    lines = [f"  {kind}: statuses {outcome.client.statuses} seqs {outcome.client.seqs} "
             f"closed={outcome.client.closed}" + (" EXITED" if outcome.exited else "")
             + (f" stale={outcome.stale}" if outcome.stale else "")]
    lines += [f"    upstream got #{i}: {_show(f)}" for i, f in enumerate(outcome.requests)]
    return "\n".join(lines)


@dataclass
class Check:
    """The result of checking one stream: the outcomes and the violations, after confirmation."""

    outcomes: dict[str, Outcome]
    problems: list[str]
    flaky: list[str]  # violations seen once that did not repeat on replay

    def report(self, data: bytes) -> str:
        parts = [f"bytes: {data!r}"] + [f"  - {p}" for p in self.problems + self.flaky]
        parts += [describe_outcome(kind, o) for kind, o in self.outcomes.items()]
        parts += [f"  note: {n}" for n in notes(self.outcomes["outrider"], self.outcomes["envoy"])]
        return "\n".join(parts)


WARM_UP = b"GET /warm-up HTTP/1.1\r\nHost: example.com\r\n\r\n"


def check(harness: Harness, pieces: list[bytes], sent: int, replays: int = 3) -> Check:
    """Run ``pieces`` through both proxies. A violation counts if it shows again in any of up to
    ``replays`` replays (races are real bugs, but a one-off could be noise); one that never
    repeats is returned in ``Check.flaky``.

    Each run is preceded by a warm-up request, so both proxies have an idle upstream connection
    pooled: some races (a pipelined request dispatched while a local reply closes the client
    connection) only show when a request can be written upstream at once.
    """
    harness.run([WARM_UP], 1)
    outcomes = harness.run(pieces, sent)
    problems = violations(sent, outcomes["outrider"], outcomes["envoy"])
    if not problems:
        return Check(outcomes, [], [])
    for _ in range(replays):
        harness.run([WARM_UP], 1)
        again = harness.run(pieces, sent)
        if signature(violations(sent, again["outrider"], again["envoy"])) == signature(problems):
            return Check(outcomes, problems, [])
    return Check(outcomes, [], problems)
