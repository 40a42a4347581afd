"""The guarded decoder: the one way untrusted image bytes get into nbbatch.

Order of checks (cheapest first, so a hostile file costs little): byte cap, format by magic
bytes against an allow-list, pixel count read from the header by our own few lines of
code (before any Pillow plug-in runs), the plug-in's idea of the size, then a full
decode with only the allowed plug-in. Our pixel cap always sits at or below Pillow's
bomb threshold, so Pillow's bomb warning can never fire on an image we accept. Callers
on the event loop use :func:`inspect_image_async` / :func:`decode_image_async`.

:func:`inspect_image` answers "is this a usable image, and what is it?" by decoding it;
:func:`verify_image` answers the same more cheaply (structure and checksums, no full
decode), for answers that are stored and only decoded later where pixels are needed;
:func:`decode_image` also hands back the decoded pixels, upright (EXIF orientation
applied), for callers that draw with them (thumbnails, post-processing, contact sheets);
:func:`sanitize_image` re-encodes them, which drops every metadata chunk a file carried.
:func:`trim_to_image` cuts whatever follows the image's own end (a PNG's ``IEND``, a
JPEG's end marker, a WebP's RIFF size, a GIF's trailer): decoders ignore such bytes, so
without it a 1 MB image followed by 37 MB of anything was stored as a 38 MB file.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from ..core._errors import ConfigError, ImageRejectedError

__all__ = [
    "DEFAULT_LIMITS",
    "UPLOAD_LIMITS",
    "ImageInfo",
    "ImageLimits",
    "decode_image",
    "decode_image_async",
    "format_bytes",
    "header_size",
    "inspect_image",
    "inspect_image_async",
    "sanitize_image",
    "sniff_format",
    "trim_to_image",
    "verify_image",
]

_ORIENTATION = 0x0112
_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class ImageLimits:
    """Caps for one image. ``formats`` are Pillow format names (a subset of PNG, JPEG,
    WEBP, GIF). ``max_pixels`` may not exceed Pillow's own bomb threshold
    (``PIL.Image.MAX_IMAGE_PIXELS``, ~89 MP); raise that first if you really need more.
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF")

    def __post_init__(self) -> None:
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise ConfigError(f"max_bytes must be a whole number, got {self.max_bytes!r}")
        if self.max_bytes < 1:
            raise ConfigError(f"max_bytes must be positive, got {self.max_bytes!r}")
        bomb = Image.MAX_IMAGE_PIXELS
        if (
            isinstance(self.max_pixels, bool)
            or not isinstance(self.max_pixels, int)
            or self.max_pixels < 1
            or (bomb is not None and self.max_pixels > bomb)
        ):
            raise ConfigError(
                f"max_pixels must be a whole number from 1 to {bomb:,} (Pillow's "
                f"decompression-bomb threshold), got {self.max_pixels!r}"
            )
        unknown = set(self.formats) - set(_EXT)
        if unknown or not self.formats:
            raise ConfigError(
                f"formats must be a non-empty subset of {sorted(_EXT)}, got {self.formats!r}"
            )


#: For images a provider returns.
DEFAULT_LIMITS = ImageLimits()
#: For images a person drops in (at most 10 MiB each).
UPLOAD_LIMITS = ImageLimits(max_bytes=10 * 1024 * 1024)


def format_bytes(size: int) -> str:
    """A byte count for messages, in binary units: ``10 MiB``, ``10.5 MiB``, ``512 KiB``.

    Limits are powers of two (10 MiB = 10,485,760 bytes); decimal megabytes would show
    that limit as "10.5 MB" and disagree with the documentation.
    """
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if size % scale == 0 else f"{value:.1f} {unit}"
    return f"{size} bytes"


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


def _check_bytes(data: bytes, limits: ImageLimits) -> str:
    """Byte cap and magic-byte allow-list; returns the Pillow format name."""
    size = len(data)
    if size > limits.max_bytes:
        raise ImageRejectedError(
            f"image is {format_bytes(size)}; the limit is {format_bytes(limits.max_bytes)}",
            reason="too_many_bytes",
            limit=limits.max_bytes,
            actual=size,
        )
    if size == 0:
        raise ImageRejectedError("image is empty (0 bytes)", reason="corrupt")
    fmt = sniff_format(data)
    if fmt is None or fmt not in limits.formats:
        detected = fmt or "unknown data"
        raise ImageRejectedError(
            f"{detected} is not an accepted image format; accepted: {', '.join(limits.formats)}",
            reason="format",
        )
    return fmt


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height as the file header declares them, read without Pillow.

    ``None`` when the header is too damaged to say (Pillow then gets to refuse it).
    Reading these few bytes ourselves means a bomb is refused before any plug-in runs.
    """
    try:
        if fmt == "PNG":
            if data[12:16] == b"IHDR":
                w, h = struct.unpack(">II", data[16:24])
                return int(w), int(h)
        elif fmt == "GIF":
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        elif fmt == "WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
            if chunk == b"VP8L" and data[20] == 0x2F:
                (bits,) = struct.unpack("<I", data[21:25])
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack("<HH", data[26:30])
                return int(w) & 0x3FFF, int(h) & 0x3FFF
        elif fmt == "JPEG":
            pos = 2
            while pos + 9 < len(data):
                if data[pos] != 0xFF:
                    return None
                marker = data[pos + 1]
                if marker == 0xFF:
                    pos += 1
                    continue
                if 0xD0 <= marker <= 0xD9 or marker == 0x01:
                    pos += 2
                    continue
                (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
                if marker in _SOF:
                    h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                    return int(w), int(h)
                if marker == 0xDA or length < 2:
                    return None
                pos += 2 + length
    except (struct.error, IndexError):
        return None
    return None


def image_end(data: bytes, fmt: str | None = None) -> int | None:
    """The offset just past the image's own end, read from its container structure.

    ``None`` when the structure does not say (damaged, cut short, or a format we do not
    walk): the caller then keeps the data as it is and the decoder judges it.
    """
    fmt = fmt or sniff_format(data)
    try:
        if fmt == "PNG":
            return _png_end(data)
        if fmt == "JPEG":
            return _jpeg_end(data)
        if fmt == "WEBP":
            riff = int.from_bytes(data[4:8], "little")
            end = 8 + riff + (riff & 1)
            return end if end <= len(data) else None
        if fmt == "GIF":
            return _gif_end(data)
    except (struct.error, IndexError):
        return None
    return None


def trim_to_image(data: bytes, fmt: str | None = None) -> bytes:
    """``data`` without whatever follows the image's end (unchanged when none does, or
    when the structure cannot say where the image ends). Never raises on bad data."""
    end = image_end(data, fmt)
    return data[:end] if end is not None and 0 < end < len(data) else data


def _png_end(data: bytes) -> int | None:
    pos = 8
    while pos + 12 <= len(data):
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if end > len(data):
            return None
        if data[pos + 4 : pos + 8] == b"IEND":
            return end
        pos = end
    return None


def _jpeg_end(data: bytes) -> int | None:
    pos = 2
    size = len(data)
    while pos + 1 < size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            return pos + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > size:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        pos += 2 + length
        if marker == 0xDA:
            # entropy-coded data: the next 0xFF not followed by 0x00 (a stuffed byte)
            # or a restart marker is the next marker
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= size:
                    return None
                follower = data[pos + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7:
                    pos += 2
                    continue
                if follower == 0xFF:
                    pos += 1
                    continue
                break
    return None


def _gif_end(data: bytes) -> int | None:
    flags = data[10]
    pos = 13 + (3 << ((flags & 0x07) + 1) if flags & 0x80 else 0)
    size = len(data)

    def sub_blocks(at: int) -> int:
        while True:
            block = data[at]
            at += 1
            if block == 0:
                return at
            at += block

    while pos < size:
        introducer = data[pos]
        if introducer == 0x3B:  # trailer
            return pos + 1
        if introducer == 0x21:  # extension: label, then sub-blocks
            pos = sub_blocks(pos + 2)
        elif introducer == 0x2C:  # image: descriptor, local table, LZW size, sub-blocks
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 0x07) + 1) if local & 0x80 else 0)
            pos = sub_blocks(pos + 1)
        else:
            return None
    return None


def _refuse_pixels(width: int, height: int, limits: ImageLimits) -> None:
    pixels = width * height
    if pixels > limits.max_pixels or width <= 0 or height <= 0:
        raise ImageRejectedError(
            f"image is {width}x{height} = {pixels:,} pixels; the limit is {limits.max_pixels:,}",
            reason="too_many_pixels",
            limit=limits.max_pixels,
            actual=pixels,
        )


def _decode(
    data: bytes, limits: ImageLimits, draft: tuple[int, int] | None = None
) -> tuple[str, Image.Image]:
    """Run every check, then decode; the caller owns (and closes) the returned image."""
    fmt, img, _ = _checked(data, limits, draft)
    return fmt, img


def _checked(
    data: bytes,
    limits: ImageLimits,
    draft: tuple[int, int] | None = None,
    *,
    cheap: bool = False,
) -> tuple[str, Image.Image, tuple[int, int]]:
    """:func:`_decode`, also returning the size as stored in the file.

    ``cheap`` checks the data without decoding every pixel (see :func:`verify_image`);
    the image returned is then only to be closed.
    """
    fmt = _check_bytes(data, limits)
    declared = header_size(data, fmt)
    if declared is not None and declared[0] * declared[1] > limits.max_pixels:
        _refuse_pixels(*declared, limits)
    img: Image.Image | None = None
    try:
        # No warnings.catch_warnings() here: it swaps the process-wide filter list and
        # is not thread-safe, and decoding runs in thread pools. It is not needed either:
        # ImageLimits keeps max_pixels at or below Pillow's bomb threshold, so every
        # image that could trigger DecompressionBombWarning is refused by our own check
        # (from the header above, or from img.size below) before any pixel is decoded.
        # formats=[fmt]: only the plug-in the magic bytes named may look at the data,
        # so a polyglot file can never reach a rarely used (and less audited) decoder.
        img = Image.open(io.BytesIO(data), formats=[fmt])
        # The plug-in's own idea of the size is checked too (GIF frames, odd headers).
        _refuse_pixels(*img.size, limits)
        size = img.size
        if draft is not None and fmt == "JPEG":
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far cheaper when only
            # a thumbnail is wanted.
            img.draft("RGB", draft)
        if cheap:
            _verify(img, fmt)
        else:
            img.load()
    except ImageRejectedError:
        if img is not None:
            img.close()
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if img is not None:
            img.close()
        raise ImageRejectedError(
            f"image refused as a decompression bomb: {exc}", reason="too_many_pixels"
        ) from None
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        IndexError,
        TypeError,
        KeyError,
        struct.error,
        zlib.error,
        UserWarning,  # Pillow's "corrupt EXIF" etc., when the app made warnings errors
    ) as exc:
        # Plug-ins signal bad data with a zoo of exception types; all mean "corrupt".
        if img is not None:
            img.close()
        raise ImageRejectedError(
            f"{fmt} image could not be decoded (truncated or corrupt): {exc}", reason="corrupt"
        ) from None
    return fmt, img, size


def _verify(img: Image.Image, fmt: str) -> None:
    """Prove the data is a whole, well-formed file of its format, cheaply."""
    if fmt == "PNG":
        # Walks every chunk to IEND checking each CRC (a cut or damaged transfer fails)
        # without inflating the pixels: ~0.4 ms for a 1024x1024 answer where a full
        # decode costs ~15 ms.
        img.verify()
    elif fmt == "JPEG":
        # JPEG has no checksums; decoding at 1/8 scale still reads every entropy-coded
        # block (so truncation and bad Huffman data fail) but skips most of the IDCT.
        img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
        img.load()
    else:
        # WebP and GIF have no cheaper whole-file check in Pillow: decode them.
        img.load()


def inspect_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Check ``data`` against ``limits`` and decode it fully; return its format and size.

    Raises :class:`ImageRejectedError` with ``reason`` ``too_many_bytes``, ``format``,
    ``too_many_pixels`` or ``corrupt``. ``width``/``height`` are as stored in the file
    (before any EXIF rotation), which is what providers and the store report.
    """
    fmt, img = _decode(data, limits)
    with img:
        width, height = img.size
    return ImageInfo(format=fmt, width=width, height=height)


def verify_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Check ``data`` like :func:`inspect_image` without decoding every pixel.

    The same caps and allow-list apply (byte cap, magic bytes, pixel cap from our own
    header reading and from the plug-in, only the plug-in the magic bytes name); then
    the plug-in proves the file whole: PNG checks every chunk's CRC through ``IEND``,
    JPEG decodes at 1/8 scale, WebP and GIF decode fully. This is what the runner uses
    before storing an answer; pixels are decoded later where they are needed
    (thumbnails, post-processing), with :func:`decode_image`.
    """
    fmt, img, (width, height) = _checked(data, limits, cheap=True)
    img.close()
    return ImageInfo(format=fmt, width=width, height=height)


def decode_image(
    data: bytes,
    limits: ImageLimits = DEFAULT_LIMITS,
    *,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Check ``data`` like :func:`inspect_image` and return the decoded, upright image.

    EXIF orientation is applied, so a phone photo shows the way it was taken. ``draft``
    lets JPEG decode at a reduced scale no smaller than that size (thumbnails). Blocking:
    on the event loop use :func:`decode_image_async`.
    """
    _, img = _decode(data, limits, draft)
    try:
        # Only rotate when the tag asks for it: exif_transpose copies the image even
        # when there is nothing to do, which doubles memory for no reason.
        if img.getexif().get(_ORIENTATION, 1) in (1, None):
            return img
        upright = ImageOps.exif_transpose(img)
    except UserWarning:
        return img  # unreadable EXIF (warnings made errors): keep the image as stored
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, struct.error) as exc:
        img.close()
        raise ImageRejectedError(
            f"image has unreadable EXIF orientation data: {exc}", reason="corrupt"
        ) from None
    if upright is not img:
        img.close()
    return upright


def sanitize_image(
    data: bytes, limits: ImageLimits = DEFAULT_LIMITS, *, format: str | None = None
) -> tuple[bytes, ImageInfo]:
    """Decode and re-encode ``data`` (as ``format``, default: its own format).

    Re-encoding keeps only pixels: EXIF, XMP, ICC-less colour quirks and text chunks are
    gone, and the orientation is baked in. PNG and WebP are written losslessly; JPEG at
    quality 95.
    """
    fmt = (format or _check_bytes(data, limits)).upper()
    if fmt not in _EXT:
        raise ImageRejectedError(
            f"cannot re-encode as {fmt}; choose one of {', '.join(_EXT)}", reason="format"
        )
    with decode_image(data, limits) as img:
        out = io.BytesIO()
        if fmt == "JPEG":
            flat = img.convert("RGB") if img.mode not in ("RGB", "L") else img
            flat.save(out, format="JPEG", quality=95)
        elif fmt == "WEBP":
            img.save(out, format="WEBP", lossless=True)
        else:
            img.save(out, format=fmt)
        width, height = img.size
    return out.getvalue(), ImageInfo(format=fmt, width=width, height=height)


async def inspect_image_async(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """:func:`inspect_image` in a worker thread, so decoding never blocks the kernel."""
    return await asyncio.to_thread(inspect_image, data, limits)


async def decode_image_async(
    data: bytes,
    limits: ImageLimits = DEFAULT_LIMITS,
    *,
    timeout: float | None = 30.0,
) -> Image.Image:
    """:func:`decode_image` in a worker thread, giving up after ``timeout`` seconds.

    The timeout frees the caller; the worker thread itself cannot be interrupted and
    finishes its decode in the background.
    """
    job = asyncio.to_thread(decode_image, data, limits)
    if timeout is None:
        return await job
    try:
        return await asyncio.wait_for(job, timeout)
    except asyncio.TimeoutError:
        raise ImageRejectedError(
            f"decoding took longer than {timeout:g} s; the image was refused",
            reason="too_slow",
        ) from None
