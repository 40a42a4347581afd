"""Event-loop plumbing: run a coroutine from synchronous code (a script or a notebook),
share the loop's passes between heavy inline steps, lower background threads' priority."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = [
    "BACKGROUND_NICE",
    "HEAVY_INLINE_BYTES",
    "PASS_BUDGET",
    "PassBudget",
    "lower_thread_priority",
    "pass_turn",
    "run_blocking",
]

#: how much lower than the event loop's the CPU priority of background work threads is
#: (image saves of a run, thumbnails): Linux nice, which weighs each thread's CPU share.
#: The lowest there is: the scheduler weighs nice 10 at about a tenth of nice 0, so four
#: busy save threads together still took ~30 % of the loop's core and held a tick back
#: now and then; at 19 (a seventieth each) they take ~6 %. On one core, 1024x1024
#: answers 32 at a time, loop lag p99 went from 24-31 ms to 16-21 ms with the same work
#: done at the same speed (six runs of each, interleaved).
BACKGROUND_NICE = 19

#: how long (s) the heavy inline steps of one pass of the event loop may run before the
#: next waits for a later pass (see :class:`PassBudget`)
PASS_BUDGET = 0.008
#: inline work on more bytes than this (parsing a JSON answer, decoding base64) is a
#: heavy step: one costs little, the answers of a wave of requests in one pass do not
HEAVY_INLINE_BYTES = 64 * 1024

T = TypeVar("T")
log = logging.getLogger("nbbatch")


def run_blocking(
    make: Callable[[], Coroutine[Any, Any, T]], *, note_if_loop: str | None = None
) -> T:
    """``asyncio.run(make())``; when this thread already runs a loop (a notebook cell),
    on a worker thread with its own loop instead — never ``nest_asyncio``.

    ``note_if_loop`` is logged as a warning in that case (the caller blocks the cell).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    if note_if_loop:
        log.warning(note_if_loop)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbbatch") as pool:
        # The coroutine is created on the worker too: it belongs to the worker's loop.
        return pool.submit(lambda: asyncio.run(make())).result()


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Give the calling thread a lower CPU priority (a pool's ``initializer``).

    Work such as saving or thumbnailing images spends most of its CPU in C code that
    releases the GIL (hashing, CRC checks, decoding, writing), so on a busy core the
    event loop's thread is runnable but queued behind the workers: in a 1024x1024 run
    it waited on the run queue for about a third of the run. With the loop first the
    workers take the CPU it leaves; they still progress (nice weighs shares, it does
    not starve), and one holding the GIL gives it up at the switch interval. Linux
    sets nice per thread; elsewhere, or when not allowed, this does nothing.
    """
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        # Relative to the thread's own (inherited) nice: lowering never needs a
        # privilege, and an already-niced kernel never gets a background thread that
        # outranks its loop.
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


class PassBudget:
    """Shares the passes of one event loop between heavy steps that run inline.

    A pass of an asyncio loop runs every callback that was ready when it began before
    it looks at a timer or a socket again. Some steps are cheap enough per call to stay
    on the loop (a thread hop would cost more CPU) but not when many fall in one pass:
    the answers of a wave of concurrent requests arrive together, and parsing and
    decoding ten 1024x1024 images in base64 JSON in one pass held the loop for
    60-120 ms. :meth:`turn` bounds that: once the heavy steps of the current pass have
    run for ``budget`` seconds (wall time since the first of them began), the next one
    waits for a later pass, behind whatever became ready meanwhile (timers, other
    sockets, the kernel's messages). Work is only reordered, never dropped, and a step
    that waits comes first among the heavy steps of the next pass.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        budget: float = PASS_BUDGET,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._loop = loop
        self._budget = budget
        self._clock = clock
        self._began: float | None = None  # when this pass's first heavy step began
        self._waiting = 0  # steps deferred to a later pass, not yet run

    def _new_pass(self) -> None:
        self._began = None

    async def turn(self) -> None:
        """Return when the caller may run its heavy step in this pass of the loop."""
        deferred = False
        try:
            while True:
                now = self._clock()
                if deferred or not self._waiting:  # steps deferred earlier go first
                    if self._began is None:
                        # First heavy step of this pass. A callback queued now runs at
                        # the start of the next pass, before any step deferred after it.
                        self._began = now
                        self._loop.call_soon(self._new_pass)
                        return
                    if now - self._began < self._budget:
                        return
                if not deferred:
                    deferred = True
                    self._waiting += 1
                await asyncio.sleep(0)
        finally:
            if deferred:
                self._waiting -= 1


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PassBudget] = (
    weakref.WeakKeyDictionary()
)


async def pass_turn(size: int) -> None:
    """For inline work on ``size`` bytes: :meth:`PassBudget.turn` of the running loop's
    budget (made on first use) when it is heavy (over :data:`HEAVY_INLINE_BYTES`)."""
    if size <= HEAVY_INLINE_BYTES:
        return
    loop = asyncio.get_running_loop()
    budget = _budgets.get(loop)
    if budget is None:
        budget = _budgets[loop] = PassBudget(loop)
    await budget.turn()
