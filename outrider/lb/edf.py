"""Earliest-deadline-first scheduler: Envoy's smooth weighted round robin.

Each entry has a deadline ``current_time + 1 / weight``; a pick pops the earliest deadline,
advances ``current_time`` to it and re-adds the entry with a freshly computed weight (so a
policy such as weighted LEAST_REQUEST can make the weight depend on live load). Ties go to the
entry added first. A pick is one ``heapreplace``: O(log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

# A weight of 0 would give an infinite deadline; Envoy asserts weights are positive. Policies that
# can compute 0 (none today) are clamped to this so the scheduler keeps working.
_MIN_WEIGHT = 1e-9


class EdfScheduler(Generic[T]):
    """Picks entries in proportion to their weights, smoothly interleaved."""

    __slots__ = ("_heap", "_order", "_time")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._time = 0.0
        self._order = 0

    @classmethod
    def create_with_picks(
        cls, entries: Iterable[T], weight_of: Callable[[T], float], picks: int
    ) -> EdfScheduler[T]:
        """A scheduler holding ``entries`` that has already made ``picks`` picks.

        Envoy uses a random number of pre-picks so that workers (and restarts) do not all start
        the schedule at the same host.
        """
        scheduler: EdfScheduler[T] = cls()
        for entry in entries:
            scheduler.add(weight_of(entry), entry)
        for _ in range(picks):
            scheduler.pick_and_add(weight_of)
        return scheduler

    def add(self, weight: float, entry: T) -> None:
        """Schedule ``entry`` with deadline ``now + 1/weight``."""
        weight = max(weight, _MIN_WEIGHT)
        heapq.heappush(self._heap, (self._time + 1.0 / weight, self._order, entry))
        self._order += 1

    def pick_and_add(self, weight_of: Callable[[T], float]) -> T | None:
        """Pop the earliest deadline and re-add it with ``weight_of(entry)``; None when empty."""
        heap = self._heap
        if not heap:
            return None
        deadline, _, entry = heap[0]
        self._time = deadline
        weight = weight_of(entry)
        weight = max(weight, _MIN_WEIGHT)
        heapq.heapreplace(heap, (deadline + 1.0 / weight, self._order, entry))
        self._order += 1
        return entry

    def peek(self) -> T | None:
        """The entry the next pick returns, without picking it."""
        return self._heap[0][2] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
