"""Heavy payload work (big base64, hashing) kept off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from ..core._aio import pass_turn

__all__ = ["OFFLOAD_BYTES", "offload"]

T = TypeVar("T")

#: above this many bytes, base64 coding and hashing run in a worker thread: a multi-MB
#: image takes tens of milliseconds, long enough to stall every other task's I/O
OFFLOAD_BYTES = 1024 * 1024


async def offload(func: Callable[..., T], *args: object, size: int, **kwargs: object) -> T:
    """``func(*args)``, in a worker thread when ``size`` bytes are involved beyond
    :data:`OFFLOAD_BYTES`; small data stays inline (a thread hop costs more than it saves),
    taking its turn among a pass's heavy steps when it is not tiny (``pass_turn``)."""
    if size > OFFLOAD_BYTES:
        return await asyncio.to_thread(func, *args, **kwargs)
    await pass_turn(size)
    return func(*args, **kwargs)
