"""Engine events become at most one browser message per interval, whatever their rate."""

from __future__ import annotations

import itertools

from nbbatch.widgets._coalesce import Coalescer
from tests.widgets.page import FakeClock, FakeScheduler


def make(interval: float = 0.2) -> tuple[Coalescer, FakeScheduler, list[float]]:
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    flushed: list[float] = []
    coalescer = Coalescer(
        lambda: flushed.append(clock.now), interval=interval, clock=clock, scheduler=scheduler
    )
    return coalescer, scheduler, flushed


def test_a_burst_of_changes_is_sent_once() -> None:
    coalescer, scheduler, flushed = make()
    for _ in range(1000):
        coalescer.poke()
    scheduler.advance(0.01)
    assert flushed == [0.0]


def test_a_steady_stream_is_sent_at_most_eight_times_a_second() -> None:
    coalescer, scheduler, flushed = make(0.125)  # the interval is a parameter
    for _ in range(2000):  # one event every millisecond for two seconds
        coalescer.poke()
        scheduler.advance(0.001)
    per_second = [sum(1 for t in flushed if s <= t < s + 1) for s in (0, 1)]
    assert max(per_second) <= 8
    gaps = [b - a for a, b in itertools.pairwise(flushed)]
    assert min(gaps) >= 0.125 - 1e-9


def test_nothing_is_sent_when_nothing_changed() -> None:
    coalescer, scheduler, flushed = make()
    coalescer.poke()
    scheduler.advance(5)
    assert len(flushed) == 1


def test_an_early_flush_cancels_the_timer_it_superseded() -> None:
    coalescer, scheduler, flushed = make(0.125)
    coalescer.poke()
    scheduler.advance(0.2)  # first flush at 0
    coalescer.poke()  # due at 0.2 (interval passed)
    coalescer.flush_now()  # e.g. a snapshot reply goes out first
    coalescer.poke()  # due at 0.325
    scheduler.advance(0.05)  # the stale timer at 0.2 must not flush early
    assert flushed == [0.0, 0.2]
    scheduler.advance(0.2)
    assert flushed == [0.0, 0.2, 0.325]


def test_without_an_event_loop_changes_are_sent_at_once() -> None:
    flushed: list[int] = []
    coalescer = Coalescer(lambda: flushed.append(1), scheduler=None)
    coalescer.poke()
    coalescer.poke()
    assert flushed == [1, 1]
