"""Settling many queued tasks of a run at once without holding the event loop.

Stopping a run sends its queued tasks back to ``idle``; ``cancel_pending`` cancels them.
Done in one go on the loop, 100,000 tasks held a kernel's event loop for about two
seconds (the transitions, the events and one journal transaction of every row). Here
the tasks move a slice at a time (a few milliseconds of work), each slice is journaled
on the run's journal thread in one ``executemany`` while the loop serves others, and
only then announced, so a status change is still committed before it is announced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..core._model import Task, TaskStatus
from ._store import Workspace

__all__ = ["SETTLE_IN_SLICES_FROM", "settle_in_slices"]

#: fewer tasks than this are settled at once, as before (a few milliseconds)
SETTLE_IN_SLICES_FROM = 1_000
#: the longest stretch of work between two yields to the loop
SLICE_SECONDS = 0.005
#: tasks moved between two clock reads
_STEP = 64


async def settle_in_slices(
    tasks: Sequence[Task],
    new: TaskStatus,
    *,
    still: Callable[[Task], bool],
    moved: Callable[[list[Task]], None],
    journal: Callable[[list[Task], list[tuple[Any, ...]]], Awaitable[None]],
    announce: Callable[[Task], None] | None = None,
    slice_seconds: float | None = None,
) -> int:
    """Move ``tasks`` to ``new`` a slice at a time; return how many moved.

    For each slice: the tasks for which ``still(task)`` holds (queued, not removed
    meanwhile) make the transition in memory, ``moved(slice)`` updates the caller's
    counts at once, ``await journal(slice, rows)`` commits their lifecycle rows (off the
    loop), then ``announce(task)`` tells subscribers of each, also in slices. The loop
    runs other work while a slice is journaled and between slices. ``slice_seconds``
    defaults to :data:`SLICE_SECONDS`.
    """
    if slice_seconds is None:
        slice_seconds = SLICE_SECONDS
    total = 0
    i, n = 0, len(tasks)
    while i < n:
        since = time.perf_counter()
        part: list[Task] = []
        rows: list[tuple[Any, ...]] = []
        while i < n:  # at least one step of _STEP tasks per slice
            for t in tasks[i : i + _STEP]:
                if still(t):
                    t.transition(new)
                    part.append(t)
                    rows.append(Workspace.status_row(t))
            i += _STEP
            if time.perf_counter() - since >= slice_seconds:
                break
        if part:
            moved(part)
            await journal(part, rows)
            if announce is not None:
                await _in_slices(part, announce, slice_seconds)
            total += len(part)
        await asyncio.sleep(0)
    return total


async def _in_slices(
    tasks: Sequence[Task], each: Callable[[Task], None], slice_seconds: float
) -> None:
    since = time.perf_counter()
    for i in range(0, len(tasks), _STEP):
        for t in tasks[i : i + _STEP]:
            each(t)
        if time.perf_counter() - since > slice_seconds:
            await asyncio.sleep(0)
            since = time.perf_counter()
