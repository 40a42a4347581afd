"""Fetching what a remote job made: bounded retries of its polls and downloads.

Once a paid remote job exists (a Replicate prediction, a fal request, a queued ComfyUI
prompt), its status polls, result fetches and output downloads are retried here, for
that same job, through the one retry loop; and downloads are capped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..core._retry import POLL_RETRY, retrying
from ._http import BODY_LIMITS

__all__ = ["DEFAULT_MAX_DOWNLOAD", "FETCH_ATTEMPTS", "FETCH_RETRY_DELAY", "retry_fetch"]

T = TypeVar("T")

#: largest image body an adapter downloads (the HTTP layer's image cap, which is the
#: guarded decoder's own byte cap)
DEFAULT_MAX_DOWNLOAD = BODY_LIMITS.image

#: how often an idempotent GET on an existing remote job is tried, and the first pause
#: (the named policy ``POLL_RETRY``: 3 retries from 0.5 s)
FETCH_ATTEMPTS = POLL_RETRY.max_retries + 1
FETCH_RETRY_DELAY = POLL_RETRY.base_delay


async def retry_fetch(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = FETCH_ATTEMPTS,
    delay: float = FETCH_RETRY_DELAY,
    sleep: Callable[[float], Awaitable[object]] | None = None,
) -> T:
    """Await ``call()``, repeating it on retryable provider errors (bounded).

    For the idempotent GETs (status polls, result fetches, output downloads) that follow
    the creation of a paid remote job. Letting such an error reach the runner would make
    it repeat the whole attempt and create a *second* job while the first keeps running;
    retrying here keeps the same remote id. It is the one retry loop
    (:func:`~nbbatch.core._retry.retrying`) with :data:`~nbbatch.core._retry.POLL_RETRY`
    made to try ``attempts`` times with pauses doubling from ``delay``: a server's
    ``Retry-After`` (on any status) is honoured up to the one cap
    (:data:`~nbbatch.core._retry.MAX_RETRY_AFTER`); a longer one, or the last failure,
    is raised so the caller can cancel the job. Non-retryable errors are raised at once.
    """
    policy = dataclasses.replace(POLL_RETRY, max_retries=max(1, attempts) - 1, base_delay=delay)
    return await retrying(call, policy, sleep=sleep)
