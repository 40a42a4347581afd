"""Image bytes as the services carry them: base64 fields, data URLs, the MIME type.

Pure functions (no I/O), tested with tables.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from ..core._errors import MalformedResponseError
from ..images._decode import sniff_format
from ._codec import b64decode

__all__ = ["b64_image", "data_url", "decode_data_url", "guess_mime"]

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def guess_mime(data: bytes, declared: str | None = None) -> str | None:
    """The image type named by the bytes themselves, else the declared one."""
    fmt = sniff_format(data)
    if fmt in _MIME:
        return _MIME[fmt]
    if declared:
        return declared.split(";")[0].strip() or None
    return None


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
