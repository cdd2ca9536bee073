"""Connection and stream ids, as Envoy's debug log lines carry them (``[C12][S34] ...``).

One sequence of each per process: downstream and upstream connections share the connection ids,
so a log line names one connection unambiguously.
"""

from __future__ import annotations

import itertools

next_connection_id = itertools.count(1).__next__
next_stream_id = itertools.count(1).__next__
