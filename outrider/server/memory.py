"""Allocator tuning for a proxy's allocation pattern.

Every read from a socket creates a bytes object of up to 256 KiB, and the HTTP parser another
for the body span. glibc serves allocations that large with fresh ``mmap`` pages and returns
them on free, so each one costs page faults and zeroing: measured here, that alone halved
throughput for 1 MiB responses. Raising the mmap threshold keeps these buffers in the heap,
where freed ones are reused; the trim threshold bounds how much freed heap is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("outrider")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024


def tune_malloc() -> bool:
    """Apply the thresholds on glibc; False (and no change) elsewhere."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in %s: allocator left as is", name)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
