"""Waiting on things a test cannot get an event for (byte counters in another process)."""

from __future__ import annotations

import time


def wait_until_stalled(read_counter, settle: float = 0.3, deadline: float = 15.0) -> int:
    """Poll a byte counter until it stops moving for ``settle`` seconds; return its value."""
    end = time.monotonic() + deadline
    last, since = read_counter(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = read_counter()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return now
    raise AssertionError(f"transfer never stalled (counter at {last})")
