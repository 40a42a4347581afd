"""Helpers the fake services share: real small images, multipart parsing, key checks."""

from __future__ import annotations

import email.parser
import email.policy
import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

from ..providers._demo import render_demo_image

__all__ = ["FormPart", "fit_size", "parse_multipart", "render_png", "stamp_png"]


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) scaled down so the longer side is at most ``max_side`` (fakes stay fast)."""
    scale = min(1.0, max_side / max(width, height))
    return max(16, round(width * scale)), max(16, round(height * scale))


def render_png(
    prompt: str,
    seed: int,
    size: tuple[int, int],
    *,
    init: bytes | None = None,
    strength: float = 0.6,
    fmt: str = "PNG",
) -> bytes:
    """A real image for ``prompt``/``seed`` (the demo renderer), encoded as ``fmt``."""
    init_image = None
    if init is not None:
        init_image = Image.open(io.BytesIO(init))
        init_image.load()
    img = render_demo_image(prompt, seed, size, init_image=init_image, strength=strength)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@dataclass(frozen=True)
class FormPart:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def parse_multipart(content_type: str, body: bytes) -> list[FormPart]:
    """Parse a ``multipart/form-data`` body with the standard library's MIME parser.

    (Starlette's own form parser needs python-multipart; the fakes avoid the extra
    dependency.) Raises ``ValueError`` when the body is not multipart.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError(f"expected multipart/form-data, got {content_type!r}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("the multipart body has no parts")
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        parts.append(
            FormPart(
                name,
                payload if isinstance(payload, bytes) else b"",
                filename,
                part.get_content_type() if filename else None,
            )
        )
    return parts


def stamp_png(png: bytes, text: str) -> bytes:
    """``png`` with a ``tEXt`` chunk holding ``text`` after IHDR: same pixels, new bytes.

    Lets a fake answer thousands of distinct (never deduplicated) images at the cost of
    one painting, for benchmarks where the fake must not be the bottleneck.
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    payload = b"Comment\0" + text.encode("latin-1", "replace")
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]
