"""DrainManager: when a response closes its connection while draining (Envoy's drainClose)."""

from __future__ import annotations

import random

import pytest

from outrider.server.drain import DrainManager


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_closes_before_a_drain():
    drain = DrainManager(clock=Clock())
    assert not drain.draining
    assert not any(drain.drain_close() for _ in range(1000))


def test_immediate_closes_every_connection_at_once():
    drain = DrainManager(clock=Clock())
    drain.start("immediate", 600)
    assert drain.draining
    assert all(drain.drain_close() for _ in range(100))


@pytest.mark.parametrize("elapsed, expected", [(0, 0.0), (150, 0.25), (300, 0.5), (540, 0.9),
                                               (600, 1.0), (900, 1.0)])
def test_gradual_closes_in_proportion_to_the_time_elapsed(elapsed, expected):
    clock = Clock()
    drain = DrainManager(clock=clock, rng=random.Random(7))
    drain.start("gradual", 600)
    clock.now += elapsed
    closed = sum(drain.drain_close() for _ in range(20_000)) / 20_000
    assert closed == pytest.approx(expected, abs=0.02)


def test_a_second_start_keeps_the_first_ones_time_but_immediate_wins():
    clock = Clock()
    drain = DrainManager(clock=clock)
    drain.start("gradual", 600)
    clock.now += 60
    drain.start("gradual", 1)
    assert (drain.strategy, drain.drain_time, drain.started_at) == ("gradual", 600, 100.0)
    assert drain.remaining() == 540
    drain.start("immediate", 1)  # a shutdown during a graceful drain
    assert (drain.strategy, drain.drain_time) == ("immediate", 600)
    assert all(drain.drain_close() for _ in range(100))


def test_zero_drain_time_closes_at_once_and_unknown_strategy_is_refused():
    drain = DrainManager(clock=Clock())
    with pytest.raises(ValueError):
        drain.start("slowly", 10)
    drain.start("gradual", 0)
    assert drain.drain_close()
