"""Bytes after an image's end are not stored (issue 26: a PNG answer followed by 37 MB of
anything was stored as a 38.8 MB file: decoders ignore what follows the image's end)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from nbbatch import Batch, Workspace
from nbbatch.images._decode import image_end, trim_to_image
from nbbatch.providers import Capabilities, GenerationRequest, ImageData, Provider
from nbbatch.providers._base import ProgressCallback

MIB = 1024 * 1024
JUNK = b"\x00IEND\xff\xd9;RIFF" * 1000


def encoded(fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    img = Image.new("RGB", (48, 32), (200, 40, 90))
    img.putpixel((3, 4), (1, 2, 3))
    if fmt == "GIF":
        img = img.convert("P")
    img.save(out, fmt, **save)
    return out.getvalue()


IMAGES = {
    "PNG": encoded("PNG"),
    "JPEG": encoded("JPEG", quality=90),
    "JPEG-progressive": encoded("JPEG", quality=90, progressive=True),
    "JPEG-exif-thumbnail": encoded("JPEG", exif=Image.Exif(), quality=80),
    "WEBP": encoded("WEBP", quality=80),
    "WEBP-lossless": encoded("WEBP", lossless=True),
    "GIF": encoded("GIF"),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_trailing_bytes_are_cut_at_the_image_end(name: str) -> None:
    image = IMAGES[name]
    assert image_end(image) == len(image)
    assert trim_to_image(image) is image  # nothing follows: the same bytes
    assert trim_to_image(image + JUNK) == image


def test_a_jpeg_whose_thumbnail_has_its_own_end_marker_is_cut_at_the_outer_end() -> None:
    thumb = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(thumb, "JPEG")
    exif = Image.Exif()
    exif[0x010F] = "camera"
    out = io.BytesIO()
    big = Image.new("RGB", (64, 64), "green")
    big.save(out, "JPEG", exif=exif.tobytes() + thumb.getvalue())  # an FFD9 inside APP1
    data = out.getvalue()
    assert data.count(b"\xff\xd9") >= 2
    assert trim_to_image(data + JUNK) == data


@pytest.mark.parametrize(
    "data",
    [b"", b"\x89PNG\r\n\x1a\n", IMAGES["PNG"][:-20], IMAGES["JPEG"][:100], b"GIF89a\x01", b"??"],
)
def test_damaged_or_unknown_data_is_left_as_it_is(data: bytes) -> None:
    assert trim_to_image(data) == data


class TrailingProvider(Provider):
    """Answers a PNG followed by ``trailing`` bytes of junk."""

    name: ClassVar[str] = "trailing"
    capabilities: Capabilities = Capabilities(txt2img=True)

    def __init__(self, trailing: int) -> None:
        self.trailing = trailing

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        return [ImageData(IMAGES["PNG"] + bytes(self.trailing), seed=1)]


async def test_an_answer_with_37_mb_after_its_image_is_stored_as_the_image(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path / "ws")
    try:
        batch = Batch.create(workspace=ws, tasks=["x"])
        await batch.run(TrailingProvider(37 * MIB))
        (task,) = batch.succeeded
        stored = task.images[0].path.stat().st_size
        # the image plus the generation record nbbatch embeds, not the 37 MB after it
        assert stored < len(IMAGES["PNG"]) + 16 * 1024, f"{stored:,} bytes stored"
        with Image.open(task.images[0].path) as img:
            assert img.size == (48, 32)
    finally:
        ws.close()
