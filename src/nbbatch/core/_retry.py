"""The one retry loop of nbbatch: :func:`retrying`, driven by a named :class:`RetryPolicy`.

Every place that tries a request again goes through :func:`retrying`: the runner's
attempts of a task (:data:`TASK_RETRY`, journaling each attempt through ``on_retry``),
the planner's chat calls (:data:`PLANNER_RETRY`) and the idempotent polls and downloads
on a remote job that already exists (:data:`POLL_RETRY`). Pool failover (another
endpoint for the same task) is failover, not a retry, and lives in the pool.

The task policy follows the official OpenAI Python client's defaults: up to 2 retries,
exponential backoff from 0.5 s doubling to at most 8 s with jitter in [0.75, 1], and the
server's own wait (``retry-after-ms``, ``Retry-After`` in seconds or as an HTTP date,
Gemini's ``RetryInfo.retryDelay``) honoured on every retried status (429, 503, ...)
when it is finite and at most :data:`MAX_RETRY_AFTER` (120 s, the one cap for every
policy). A server asking for longer than that gets no retry: the error is raised at once
(a task fails with a message saying when the service will take requests again; a poll's
caller cancels its remote job).
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import math
import random
import re
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import TypeVar

from ._errors import ConfigError, ProviderError, ProviderTimeoutError

__all__ = [
    "MAX_RETRY_AFTER",
    "PLANNER_RETRY",
    "POLL_RETRY",
    "TASK_RETRY",
    "Retry",
    "RetryPolicy",
    "parse_duration",
    "parse_retry_after",
    "retrying",
]

T = TypeVar("T")

#: the longest server-requested wait (``Retry-After``) honoured by any policy; a longer
#: one means "fail now"
MAX_RETRY_AFTER = 120.0


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` / ``retry-after``.

    Returns ``None`` when neither header holds something usable; never raises.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = _finite(float(ms.strip()) / 1000.0)
        except ValueError:
            value = None
        if value is not None:
            return max(0.0, value)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = _finite(float(raw))
    except ValueError:
        value = None
    if value is not None:
        return max(0.0, value)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    try:
        stamp = when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, stamp - (time.time() if now is None else now))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s\s*$")


def parse_duration(text: object) -> float | None:
    """A protobuf JSON duration such as ``"17s"`` or ``"0.5s"`` (Gemini ``retryDelay``)."""
    if not isinstance(text, str):
        return None
    m = _DURATION.match(text)
    if not m:
        return None
    return _finite(float(m.group(1)))


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a failed request again and how long to wait in between.

    Only a :class:`~nbbatch.errors.ProviderError` whose ``retryable`` is true is retried
    (429, 5xx, timeouts, dropped connections); ``retry_timeouts=False`` leaves out
    :class:`~nbbatch.errors.ProviderTimeoutError` (for calls bounded by their own
    timeout). ``name`` says where the policy is used, in reprs and logs.

    A server's ``Retry-After`` is honoured up to :data:`MAX_RETRY_AFTER` (120 s), the one
    cap of every policy. ``max_retry_after=`` (a per-policy cap, before that one cap) is
    deprecated: it still lowers the cap of this policy, never raises it above 120 s, and
    warns (``DeprecationWarning``), as does reading ``policy.max_retry_after``.
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: tuple[float, float] = (0.75, 1.0)
    retry_timeouts: bool = True
    name: str = "custom"
    _: KW_ONLY
    #: deprecated: a per-policy Retry-After cap (see the class docstring)
    max_retry_after: InitVar[float | None] = None
    #: the cap in effect (private; an init field so that ``dataclasses.replace`` keeps it)
    _retry_after_cap: float = field(default=MAX_RETRY_AFTER, repr=False)

    def __post_init__(self, max_retry_after: float | None) -> None:
        if max_retry_after is not None:
            object.__setattr__(self, "_retry_after_cap", _deprecated_cap(max_retry_after))
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ConfigError(
                f"max_retries must be a whole number >= 0 (0 disables retries), "
                f"got {self.max_retries!r}"
            )
        for label, value in (("base_delay", self.base_delay), ("max_delay", self.max_delay)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0 <= value < math.inf)
            ):
                raise ConfigError(f"{label} must be a number of seconds >= 0, got {value!r}")
        low, high = self.jitter
        if not 0 <= low <= high:
            raise ConfigError(
                f"jitter must be (low, high) with 0 <= low <= high, got {self.jitter}"
            )

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``retry_number`` (1 for the first retry)."""
        exponent = min(max(retry_number - 1, 0), 1000)
        delay = min(self.base_delay * (2.0**exponent), self.max_delay)
        low, high = self.jitter
        return delay * (rng or random).uniform(low, high)

    def delay_for(
        self, error: BaseException, retry_number: int, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before retrying after ``error``, or ``None`` for "do not retry"."""
        if retry_number > self.max_retries:
            return None
        if not isinstance(error, ProviderError) or not error.retryable:
            return None
        if not self.retry_timeouts and isinstance(error, ProviderTimeoutError):
            return None
        if error.retry_after is not None:
            wait = error.retry_after
            if math.isfinite(wait) and 0 < wait <= self._retry_after_cap:
                return wait
            if math.isfinite(wait) and wait > self._retry_after_cap:
                return None
        return self.backoff(retry_number, rng)


def _deprecated_cap(value: object) -> float:
    """The Retry-After cap a deprecated ``max_retry_after=`` asks for, after warning."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or value < 0
    ):
        raise ConfigError(f"max_retry_after must be a number of seconds >= 0, got {value!r}")
    cap = min(float(value), MAX_RETRY_AFTER)
    warnings.warn(
        "RetryPolicy(max_retry_after=...) is deprecated: every policy now shares one "
        f"Retry-After cap, nbbatch.core._retry.MAX_RETRY_AFTER ({MAX_RETRY_AFTER:g} s). "
        f"This policy still honours server waits up to {cap:g} s; drop the argument to "
        f"use the shared cap.",
        DeprecationWarning,
        stacklevel=4,
    )
    return cap


def _max_retry_after(self: RetryPolicy) -> float | None:
    """Deprecated: the longest server-requested wait this policy honours."""
    if sys._getframe(1).f_globals.get("__name__") == "dataclasses":
        # dataclasses.replace reads every InitVar to pass it on; the cap itself travels in
        # _retry_after_cap, so the copy gets no keyword (and no second warning)
        return None
    warnings.warn(
        "RetryPolicy.max_retry_after is deprecated: every policy now shares one "
        f"Retry-After cap, nbbatch.core._retry.MAX_RETRY_AFTER ({MAX_RETRY_AFTER:g} s)",
        DeprecationWarning,
        stacklevel=2,
    )
    return self._retry_after_cap


# The keyword is an InitVar (read by __post_init__); the attribute of the same name is a
# property so that reading it warns too. The generated __init__ keeps its own default.
setattr(RetryPolicy, "max_retry_after", property(_max_retry_after))  # noqa: B010


#: a task's attempts in the runner (``Batch.run(retry=...)`` changes ``max_retries``)
TASK_RETRY = RetryPolicy(name="task")
#: the planner's chat calls; its own timeout bounds the whole call, so no timeout retry
PLANNER_RETRY = RetryPolicy(name="planner", retry_timeouts=False)
#: idempotent GETs on a remote job that exists (status polls, result fetches, output
#: downloads): retried here for the same job instead of the runner creating a second one
POLL_RETRY = RetryPolicy(name="poll", max_retries=3, jitter=(1.0, 1.0))


@dataclass(frozen=True)
class Retry:
    """What ``on_retry`` is told before the wait: the error, which retry, how long."""

    error: ProviderError
    number: int
    delay: float


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[Retry], Awaitable[object] | object] | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``call()``, trying it again as ``policy`` says; the last error is raised.

    Before each wait ``on_retry`` (sync or async) is called with a :class:`Retry`; the
    runner emits its ``TaskRetrying`` there. ``sleep`` (default ``asyncio.sleep``) and
    ``rng`` (the jitter) may be injected so tests never wait. An error ``policy`` does
    not retry, or one past the last retry, propagates unchanged.
    """
    pause = asyncio.sleep if sleep is None else sleep
    number = 0
    while True:
        try:
            return await call()
        except ProviderError as exc:
            number += 1
            delay = policy.delay_for(exc, number, rng)
            if delay is None:
                raise
            if on_retry is not None:
                outcome = on_retry(Retry(exc, number, delay))
                if inspect.isawaitable(outcome):
                    await outcome
            await pause(delay)
