"""Run a coroutine to completion from synchronous code, in a script or a notebook."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_blocking"]

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
