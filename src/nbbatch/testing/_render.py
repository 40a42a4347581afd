"""Small real images for the fakes, rendered with the demo provider's painter."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image

from ..providers._demo import render_demo_image

__all__ = ["fit_size", "render_image", "stamp_png"]


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale (width, height) down so neither side exceeds ``max_side`` (aspect kept)."""
    width, height = max(1, width), max(1, height)
    scale = min(1.0, max_side / max(width, height))
    return max(16, round(width * scale)), max(16, round(height * scale))


@functools.lru_cache(maxsize=256)
def _render_cached(prompt: str, seed: int, size: tuple[int, int], fmt: str) -> bytes:
    return _encode(render_demo_image(prompt, seed, size), fmt)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def render_image(
    prompt: str,
    seed: int,
    size: tuple[int, int],
    *,
    fmt: str = "PNG",
    init: bytes | None = None,
    strength: float = 0.6,
) -> bytes:
    """Encoded image bytes for (prompt, seed, size), blended over ``init`` when given."""
    fmt = fmt.upper().replace("JPG", "JPEG")
    if init is None:
        return _render_cached(prompt, seed, size, fmt)
    with Image.open(io.BytesIO(init)) as base:
        base.load()
        img = render_demo_image(prompt, seed, size, init_image=base, strength=strength)
    return _encode(img, fmt)


def stamp_png(png: bytes, text: str) -> bytes:
    """``png`` with a ``tEXt`` chunk holding ``text`` after IHDR: same pixels, new bytes.

    Lets a fake answer thousands of distinct (never deduplicated) images at the cost of
    one rendering, for benchmarks where the fake must not be the bottleneck.
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    payload = b"Comment\0" + text.encode("latin-1", "replace")
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 8 + 13 + 4
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]
