"""Small helpers the HTTP adapters share: sizes to aspect ratios, base64 and data URLs.

Nearly everything here is pure (no I/O) so it can be tested with tables; the two async
helpers are :func:`offload` (big base64 / hashing off the event loop) and
:func:`retry_fetch` (repeat an idempotent GET on a remote job that already exists).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import math
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..core._aio import pass_turn
from ..core._errors import ConfigError, MalformedResponseError
from ..core._retry import POLL_RETRY, retrying
from ..images._decode import sniff_format
from ._codec import b64decode
from ._http import BODY_LIMITS

__all__ = [
    "DEFAULT_MAX_DOWNLOAD",
    "FETCH_ATTEMPTS",
    "FETCH_RETRY_DELAY",
    "OFFLOAD_BYTES",
    "b64_image",
    "data_url",
    "decode_data_url",
    "guess_mime",
    "nearest_aspect_ratio",
    "offload",
    "retry_fetch",
    "same_origin",
]

T = TypeVar("T")

#: largest image body an adapter downloads (the HTTP layer's image cap, which is the
#: guarded decoder's own byte cap)
DEFAULT_MAX_DOWNLOAD = BODY_LIMITS.image

#: above this many bytes, base64 coding and hashing run in a worker thread: a multi-MB
#: image takes tens of milliseconds, long enough to stall every other task's I/O
OFFLOAD_BYTES = 1024 * 1024

#: how often an idempotent GET on an existing remote job is tried, and the first pause
#: (the named policy ``POLL_RETRY``: 3 retries from 0.5 s)
FETCH_ATTEMPTS = POLL_RETRY.max_retries + 1
FETCH_RETRY_DELAY = POLL_RETRY.base_delay

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def guess_mime(data: bytes, declared: str | None = None) -> str | None:
    """The image type named by the bytes themselves, else the declared one."""
    fmt = sniff_format(data)
    if fmt in _MIME:
        return _MIME[fmt]
    if declared:
        return declared.split(";")[0].strip() or None
    return None


def nearest_aspect_ratio(size: str | None, allowed: Sequence[str]) -> str | None:
    """The entry of ``allowed`` (``"16:9"`` ...) closest to ``size`` (``"1344x768"``).

    Services that take an aspect ratio instead of pixels (Stability, Gemini) get the
    closest one they accept; ``None`` when no size was asked for.
    """
    if size is None or size == "auto":
        return None
    m = re.fullmatch(r"(\d+)x(\d+)", size)
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise ConfigError(f"size must look like '1024x768', got {size!r}")
    want = int(m.group(1)) / int(m.group(2))

    def distance(ratio: str) -> float:
        w, h = (int(v) for v in ratio.split(":"))
        # compare in log space so 2:1 and 1:2 are equally far from 1:1
        return abs(math.log(want) - math.log(w / h))

    return min(allowed, key=distance)


def b64_image(text: object, provider: str, *, task_id: str | None = None) -> bytes:
    """Decode a base64 image field strictly; a bad field is a MalformedResponseError."""
    if not isinstance(text, str) or not text:
        raise MalformedResponseError(
            f"{provider}: the image field is missing or not text",
            provider=provider,
            task_id=task_id,
        )
    try:
        return b64decode(text)
    except (binascii.Error, ValueError):
        raise MalformedResponseError(
            f"{provider}: the image field is not valid base64 ({len(text):,} characters)",
            provider=provider,
            task_id=task_id,
        ) from None


def data_url(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for sending an input image inline."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_url(url: str, provider: str, *, task_id: str | None = None) -> tuple[bytes, str]:
    """(bytes, mime) of a ``data:`` URL; MalformedResponseError when it is not one."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:"):
        raise MalformedResponseError(
            f"{provider}: not a data URL", provider=provider, task_id=task_id
        )
    meta = head[5:].split(";")
    mime = meta[0] or "application/octet-stream"
    if "base64" in meta[1:]:
        return b64_image(payload, provider, task_id=task_id), mime
    return urllib.parse.unquote_to_bytes(payload), mime


def same_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base_url``.

    Adapters only send their key to the origin it was configured for: a URL a server
    hands back (polling, downloads) that points elsewhere is fetched without it.
    """
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


async def offload(func: Callable[..., T], *args: object, size: int, **kwargs: object) -> T:
    """``func(*args)``, in a worker thread when ``size`` bytes are involved beyond
    :data:`OFFLOAD_BYTES`; small data stays inline (a thread hop costs more than it saves),
    taking its turn among a pass's heavy steps when it is not tiny (``pass_turn``)."""
    if size > OFFLOAD_BYTES:
        return await asyncio.to_thread(func, *args, **kwargs)
    await pass_turn(size)
    return func(*args, **kwargs)


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
