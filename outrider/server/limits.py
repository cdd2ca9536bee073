"""Process limits a proxy outgrows: open files.

Every client connection and every upstream connection is a file descriptor, and the usual
soft limit (1,024) is reached at ~500 concurrent proxied requests, after which accept() and
connect() fail with EMFILE. The hard limit is what the administrator allows; like nginx's
``worker_rlimit_nofile`` and Go's runtime since 1.19, the proxy raises its soft limit to it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("outrider")

# With an unlimited hard limit the kernel still caps descriptors at fs.nr_open (1,048,576 by
# default); asking for more fails.
UNLIMITED_TARGET = 1 << 20


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("open files limit stays at %d (cannot raise it to %d: %s)",
                        soft, target, error)
            return soft
        log.debug("open files limit raised from %d to %d", soft, target)
        return target
    return soft
