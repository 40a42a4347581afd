"""Sizes as services take them: the nearest aspect ratio to a ``WIDTHxHEIGHT``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ..core._errors import ConfigError

__all__ = ["nearest_aspect_ratio"]


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
