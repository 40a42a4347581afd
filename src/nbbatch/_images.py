"""The guarded decoder: the one way untrusted image bytes get into nbbatch.

Order of checks (cheapest first, see reliability.md §B4): byte cap, format by magic
bytes against an allow-list, pixel count from the header (before any pixel is decoded),
then a full decode with only the allowed Pillow plug-ins, with Pillow's own bomb warning
turned into an error. Callers on the event loop use :func:`inspect_image_async`.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ._errors import ImageRejectedError

__all__ = [
    "DEFAULT_LIMITS",
    "UPLOAD_LIMITS",
    "ImageInfo",
    "ImageLimits",
    "inspect_image",
    "inspect_image_async",
    "sniff_format",
]

_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class ImageLimits:
    """Caps for one image. ``formats`` are Pillow format names."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF")


#: For images a provider returns.
DEFAULT_LIMITS = ImageLimits()
#: For images a person drops in (seed 001: at most 10 MB each).
UPLOAD_LIMITS = ImageLimits(max_bytes=10 * 1024 * 1024)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def ext(self) -> str:
        return _EXT[self.format]

    @property
    def mime(self) -> str:
        return _MIME[self.format]


def sniff_format(data: bytes) -> str | None:
    """The format named by the first bytes, or ``None`` when it is none we know."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    for magic, name in (
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"BM", "BMP"),
        (b"SIMPLE  =", "FITS"),
        (b"8BPS", "PSD"),
        (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
        (b"%PDF", "PDF"),
        (b"<svg", "SVG"),
        (b"<?xml", "XML/SVG"),
    ):
        if head.startswith(magic):
            return name
    if head[4:12] in (b"ftypavif", b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "AVIF/HEIF"
    return None


def inspect_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Check ``data`` against ``limits`` and decode it fully; return its format and size.

    Raises :class:`ImageRejectedError` with ``reason`` ``too_many_bytes``, ``format``,
    ``too_many_pixels`` or ``corrupt``.
    """
    size = len(data)
    if size > limits.max_bytes:
        raise ImageRejectedError(
            f"image is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.1f} MB",
            reason="too_many_bytes",
            limit=limits.max_bytes,
            actual=size,
        )
    if size == 0:
        raise ImageRejectedError("image is empty (0 bytes)", reason="corrupt")
    fmt = sniff_format(data)
    if fmt not in limits.formats:
        detected = fmt or "unknown data"
        raise ImageRejectedError(
            f"{detected} is not an accepted image format; accepted: {', '.join(limits.formats)}",
            reason="format",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                width, height = img.size
                pixels = width * height
                if pixels > limits.max_pixels:
                    raise ImageRejectedError(
                        f"image is {width}x{height} = {pixels:,} pixels; the limit is "
                        f"{limits.max_pixels:,}",
                        reason="too_many_pixels",
                        limit=limits.max_pixels,
                        actual=pixels,
                    )
                img.load()
    except ImageRejectedError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejectedError(
            f"image refused as a decompression bomb: {exc}", reason="too_many_pixels"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejectedError(
            f"{fmt} image could not be decoded (truncated or corrupt): {exc}", reason="corrupt"
        ) from None
    return ImageInfo(format=fmt, width=width, height=height)


async def inspect_image_async(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """:func:`inspect_image` in a worker thread, so decoding never blocks the kernel."""
    return await asyncio.to_thread(inspect_image, data, limits)
