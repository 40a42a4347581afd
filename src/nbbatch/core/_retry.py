"""Retry policy: which failures to try again, and how long to wait first.

The policy follows the official OpenAI Python client's defaults: up to 2 retries,
exponential backoff from 0.5 s doubling to at most 8 s with jitter in [0.75, 1], and the
server's own wait (``retry-after-ms``, ``Retry-After`` in seconds or as an HTTP date,
Gemini's ``RetryInfo.retryDelay``) honoured on every retried status (429, 503, ...)
when it is finite and at most 120 s. A server
asking for longer than that gets no retry: the task fails at once with a message saying
when the service will take requests again.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import ProviderError

__all__ = ["RetryPolicy", "parse_duration", "parse_retry_after"]


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
    """How many times to retry a task and how long to wait between attempts."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: the longest server-requested wait we honour; longer means "fail now"
    max_retry_after: float = 120.0
    jitter: tuple[float, float] = (0.75, 1.0)

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError("max_retries must be a whole number >= 0 (0 disables retries)")

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
        if error.retry_after is not None:
            wait = error.retry_after
            if math.isfinite(wait) and 0 < wait <= self.max_retry_after:
                return wait
            if math.isfinite(wait) and wait > self.max_retry_after:
                return None
        return self.backoff(retry_number, rng)
