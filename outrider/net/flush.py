"""Socket writes coalesced per event-loop iteration, as Envoy's dispatcher defers them.

uvloop's ``transport.write`` sends at once. A proxy that writes as it parses therefore makes
its sends one at a time across the whole loop iteration, each a little after the peer finished
the previous one, so nearly every send finds the peer asleep and pays a cross-CPU wake-up (an
IPI: ~10 µs of the sender's time in a VM). Measured on the benchmark machine: 0.4 IPIs per
request with 10 upstream hosts, 1.4 with 1,000, against Envoy's 0.1 (``bench/RESULTS.md``).

Envoy buffers a connection's writes and sends them when its event loop's pass ends. So does
Outrider: ``write`` collects a connection's bytes, the connection registers with its loop's
``FlushScheduler`` once, and one ``call_soon`` callback sends every connection's bytes back to
back after all ready events have been handled. A response head and body, or several pipelined
answers, still leave in one send. Writes that reach ``FLUSH_NOW_BYTES`` (one full socket read,
uvloop's 256 KiB) go out immediately, so a large body streams as it did and what a connection
holds back stays under two reads; flow control (``pause_writing``) is unchanged for it.
"""

from __future__ import annotations

import logging
import weakref

log = logging.getLogger("outrider.net")

FLUSH_NOW_BYTES = 256 * 1024
_JOIN_LIMIT = 16 * 1024  # below this, one joined copy is cheaper than a writev


class FlushScheduler:
    """The connections of one event loop with writes pending; flushed by one ``call_soon``."""

    __slots__ = ("_loop", "_pending", "__weakref__")

    def __init__(self, loop) -> None:
        # Weakly: the registry below is keyed by the loop, and a value that held its key would
        # keep every loop ever used alive.
        self._loop = weakref.ref(loop)
        self._pending: list[CoalescingWriter] | None = None

    def schedule(self, writer: CoalescingWriter) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [writer]
            self._loop().call_soon(self.run)
        else:
            pending.append(writer)

    def run(self) -> None:
        """Send everything pending now (the end of the loop iteration)."""
        pending, self._pending = self._pending, None
        if pending:
            for writer in pending:
                try:
                    writer.flush()
                except Exception:  # one broken connection must not hold the others' bytes
                    log.exception("write failed; aborting the connection")
                    writer.transport.abort()


_schedulers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def flush_scheduler(loop) -> FlushScheduler:
    """The loop's scheduler (one per event loop, so per worker)."""
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = FlushScheduler(loop)
    return scheduler


class CoalescingWriter:
    """Mixin for the connection protocols: ``write`` collects, ``flush`` sends.

    The protocol class declares the slots ``transport``, ``closed``, ``_out``, ``_out_bytes``
    and ``_flusher`` (its loop's ``FlushScheduler``) and sets ``_out = None`` initially.
    """

    __slots__ = ()

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        out = self._out
        if out is None:
            self._out = [data]
            self._out_bytes = size = len(data)
            if size < FLUSH_NOW_BYTES:
                self._flusher.schedule(self)
                return
        else:
            out.append(data)
            self._out_bytes = size = self._out_bytes + len(data)
            if size < FLUSH_NOW_BYTES:
                return
        self.flush()

    def flush(self) -> None:
        """Send what is collected (a no-op when nothing is, e.g. already flushed)."""
        out = self._out
        if out is None:
            return
        self._out = None
        if self.closed:
            return
        if len(out) == 1:
            self.transport.write(out[0])
        elif self._out_bytes <= _JOIN_LIMIT:
            self.transport.write(b"".join(out))
        else:
            self.transport.writelines(out)  # one writev, no copy

    def discard_output(self) -> None:
        self._out = None
