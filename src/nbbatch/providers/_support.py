"""Small helpers the HTTP adapters share: sizes to aspect ratios, base64 and data URLs.

Everything here is pure (no I/O) so it can be tested with tables.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import urllib.parse
from collections.abc import Sequence

from .._errors import ConfigError, MalformedResponseError
from .._images import sniff_format

__all__ = [
    "DEFAULT_MAX_DOWNLOAD",
    "b64_image",
    "data_url",
    "decode_data_url",
    "guess_mime",
    "nearest_aspect_ratio",
    "same_origin",
]

#: largest image body an adapter downloads (the guarded decoder's own cap is the same)
DEFAULT_MAX_DOWNLOAD = 50 * 1024 * 1024

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
        return base64.b64decode(text, validate=True)
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
