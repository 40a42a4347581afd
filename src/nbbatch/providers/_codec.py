"""Decoders for provider answers: strict base64 and JSON, fast when the fast ones exist.

A 1024x1024 PNG arrives as ~1.8 MB of base64 inside JSON. The standard library decodes
that base64 in ~4.5 ms while holding the GIL (a worker thread does not free the event
loop) and parses the JSON in ~1.2 ms; ``pybase64`` (SIMD) and ``orjson`` take ~0.1 ms and
~0.6 ms. Both are dependencies, but a missing or broken wheel must not break nbbatch:
the standard library is the fallback, with the same strictness.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["FAST_BASE64", "FAST_JSON", "b64decode", "loads"]

try:
    import pybase64 as _pybase64
except ImportError:  # pragma: no cover - depends on the environment
    _pybase64 = None  # type: ignore[assignment]
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

#: whether a SIMD base64 decoder is in use (big answers can then be decoded inline)
FAST_BASE64 = _pybase64 is not None
#: whether orjson parses JSON bodies
FAST_JSON = _orjson is not None


def b64decode(text: str | bytes) -> bytes:
    """Strict base64 (only the alphabet and correct padding); ``binascii.Error`` if not."""
    if _pybase64 is not None:
        try:
            return _pybase64.b64decode(text, validate=True)
        except ValueError as exc:  # its errors are binascii.Error too; keep one type
            raise binascii.Error(str(exc)) from None
    return base64.b64decode(text, validate=True)


def loads(data: bytes | str) -> Any:
    """Parse JSON; ``ValueError`` when it is not JSON.

    orjson refuses a few things the standard parser accepts (NaN, integers beyond 64
    bits, text that is not UTF-8); those bodies get a second chance with ``json``.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except ValueError:
            pass
    return json.loads(data)
