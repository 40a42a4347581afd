"""Run a coroutine to completion from synchronous code, in a script or a notebook."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["BACKGROUND_NICE", "lower_thread_priority", "run_blocking"]

#: how much lower than the event loop's the CPU priority of background work threads is
#: (image saves of a run, thumbnails): Linux nice, which weighs each thread's CPU share
BACKGROUND_NICE = 10

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
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
