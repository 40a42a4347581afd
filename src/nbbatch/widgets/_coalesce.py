"""Turn a burst of engine events into at most one browser message per interval.

A run of 32 tasks emits hundreds of events a second (queued, started, progress, saved,
batch progress). Sending one message per event would flood the kernel's IOPub channel
(capped at 1000 messages/s for *all* output) and make the page repaint constantly; the
issue asks for at most 10 messages a second per widget. So events only mark what is
dirty, and a flush scheduled no sooner than ``interval`` after the previous one sends
everything at once. 0.2 s leaves half of the budget to the replies the page asks for
(rows and thumbnails of tasks that just finished on screen).

The clock and the scheduler are injectable so that tests drive time by hand instead of
racing real sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Coalescer", "LoopScheduler", "Scheduler"]


class Scheduler(Protocol):
    def call_later(self, delay: float, fn: Callable[[], None]) -> object: ...


class LoopScheduler:
    """Schedules on an asyncio loop; from another thread it hops onto the loop first."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call_later(self, delay: float, fn: Callable[[], None]) -> object:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return self.loop.call_later(delay, fn)
        return self.loop.call_soon_threadsafe(lambda: self.loop.call_later(delay, fn))


class Coalescer:
    """Calls ``flush`` at most once per ``interval`` seconds after :meth:`poke`."""

    def __init__(
        self,
        flush: Callable[[], None],
        *,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        scheduler: Scheduler | None = None,
    ) -> None:
        self._flush = flush
        self.interval = interval
        self._clock = clock
        self._scheduler = scheduler
        self._pending = False
        self._generation = 0  # which scheduled call is the current one
        self._last = float("-inf")
        #: flushes done so far (the benchmark and tests read it)
        self.flushes = 0

    @property
    def pending(self) -> bool:
        return self._pending

    def poke(self) -> None:
        """Something changed: make sure a flush will happen, not sooner than allowed."""
        if self._pending:
            return
        self._pending = True
        self._generation += 1
        generation = self._generation
        delay = max(0.0, self._last + self.interval - self._clock())
        if self._scheduler is None:
            # No event loop (a plain script or a unit test without one): flush now.
            self._run(generation)
        else:
            self._scheduler.call_later(delay, lambda: self._run(generation))

    def flush_now(self) -> None:
        """Send what is pending at once (a snapshot reply supersedes the patches)."""
        if self._pending:
            self._run(self._generation)

    def _run(self, generation: int) -> None:
        if not self._pending or generation != self._generation:
            return  # flushed early by flush_now; this timer is stale
        self._pending = False
        self._last = self._clock()
        self.flushes += 1
        self._flush()
