"""Draining: when a keep-alive connection is told to close, as Envoy's DrainManager decides it.

A drain starts (shutdown, ``/drain_listeners``, a listener removed by a reload, a binary
upgrade) with Envoy's ``--drain-strategy``: ``immediate`` closes every connection after its next
response; ``gradual`` closes a connection after a response with a probability that grows
linearly from 0 to 1 over ``--drain-time-s``, so the clients of a busy proxy do not all
reconnect in the same second. Pure: the clock and the random source are injected.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

IMMEDIATE = "immediate"
GRADUAL = "gradual"
STRATEGIES = (IMMEDIATE, GRADUAL)

DEFAULT_DRAIN_TIME = 600.0  # Envoy's --drain-time-s


class DrainManager:
    """The drain state of one listener (or of the whole server)."""

    __slots__ = ("draining", "strategy", "drain_time", "started_at", "_clock", "_random")

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.draining = False  # read on every response: an attribute, not a property
        self.strategy = GRADUAL
        self.drain_time = DEFAULT_DRAIN_TIME
        self.started_at: float | None = None
        self._clock = clock
        self._random = (rng or random.Random()).random

    def start(self, strategy: str, drain_time: float) -> None:
        """Start draining. A drain already under way keeps its start and time, but an
        ``immediate`` one overrides a gradual one (a shutdown during ``/drain_listeners``)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown drain strategy {strategy!r}")
        if self.started_at is None:
            self.strategy = strategy
            self.drain_time = drain_time
            self.started_at = self._clock()
            self.draining = True
        elif strategy == IMMEDIATE:
            self.strategy = IMMEDIATE

    def drain_close(self) -> bool:
        """Should the response being sent now close its connection?"""
        if not self.draining:
            return False
        if self.strategy == IMMEDIATE or self.drain_time <= 0:
            return True
        elapsed = self._clock() - self.started_at
        return self._random() * self.drain_time < elapsed

    def remaining(self) -> float:
        """Seconds left of the drain time (0 when over, the whole time when not draining)."""
        if not self.draining:
            return self.drain_time
        return max(0.0, self.started_at + self.drain_time - self._clock())
