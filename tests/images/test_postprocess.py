"""Post-processing steps and where their results go."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from nbbatch import Batch, Params, Workspace, postprocess, read_generation_info
from nbbatch.errors import ConfigError, ImageRejectedError
from nbbatch.images import (
    Adjust,
    ConvertFormat,
    CropToAspect,
    PadToAspect,
    Pipeline,
    Resize,
    StripMetadata,
    Watermark,
    derived_images,
    postprocess_async,
)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def run(steps: list, img: Image.Image) -> Image.Image:  # type: ignore[type-arg]
    data, _ = Pipeline(steps).run(png(img))
    out = Image.open(io.BytesIO(data))
    out.load()
    return out


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    ws = Workspace(tmp_path / "ws")
    b = Batch.create(
        ["a red fox", "a blue car"], workspace=ws, params=Params(seed=9, size="640x480")
    )
    b.run_sync("demo")
    yield b
    ws.close()


# ------------------------------------------------------------------ steps
@pytest.mark.parametrize(
    ("step", "size"),
    [
        (Resize(320), (320, 240)),
        (Resize(320, 320, mode="fill"), (320, 320)),
        (Resize(100, 300, mode="exact"), (100, 300)),
        (Resize(1000), (640, 480)),  # never enlarges unless asked
        (Resize(1280, upscale=True), (1280, 960)),
        (CropToAspect("16:9"), (640, 360)),
        (CropToAspect(1), (480, 480)),
        (PadToAspect("1:1"), (640, 640)),
        (PadToAspect("2:1"), (960, 480)),
    ],
)
def test_geometry_steps(step: object, size: tuple[int, int]) -> None:
    assert run([step], Image.new("RGB", (640, 480), (10, 120, 200))).size == size


def test_crop_anchor_decides_what_is_kept() -> None:
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 100, 100))  # left half red
    assert run([CropToAspect("1:1", anchor="left")], img).getpixel((50, 50)) == (255, 0, 0)
    assert run([CropToAspect("1:1", anchor="right")], img).getpixel((50, 50)) == (0, 0, 0)


def test_pad_uses_the_colour_around_the_image() -> None:
    out = run([PadToAspect("1:1", color="#ff0000")], Image.new("RGB", (100, 50), (0, 0, 255)))
    assert out.getpixel((50, 2)) == (255, 0, 0)
    assert out.getpixel((50, 50)) == (0, 0, 255)


def test_adjust_saturation_zero_gives_grey() -> None:
    out = run([Adjust(saturation=0.0)], Image.new("RGB", (8, 8), (200, 40, 90)))
    r, g, b = out.getpixel((4, 4))  # type: ignore[misc]
    assert abs(r - g) <= 1 and abs(g - b) <= 1


def test_adjust_brightness_and_contrast() -> None:
    base = Image.new("RGB", (8, 8), (100, 100, 100))
    assert run([Adjust(brightness=0.5)], base).getpixel((0, 0)) == (50, 50, 50)
    assert run([Adjust(contrast=0.0)], base).getpixel((0, 0)) == (100, 100, 100)


def test_text_watermark_marks_only_its_corner() -> None:
    base = Image.new("RGB", (400, 300), (0, 0, 0))
    out = run([Watermark(text="© nbbatch", position="bottom-right", opacity=1.0, scale=0.1)], base)
    assert out.crop((200, 150, 400, 300)).getbbox() is not None  # something drawn there
    assert out.crop((0, 0, 200, 150)).getbbox() is None  # the rest untouched


def test_watermark_opacity_zero_changes_nothing() -> None:
    base = Image.effect_noise((64, 64), 50).convert("RGB")
    out = run([Watermark(text="x", opacity=0.0)], base)
    assert out.tobytes() == base.tobytes()


def test_image_watermark_from_a_file(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (50, 20), (255, 255, 0, 255)).save(logo)
    out = run(
        [Watermark(image=str(logo), position="top-left", opacity=1.0, scale=0.25, margin=0)],
        Image.new("RGB", (200, 100), (0, 0, 0)),
    )
    assert out.getpixel((5, 5)) == (255, 255, 0)
    assert out.getpixel((150, 80)) == (0, 0, 0)


def test_convert_format_and_quality() -> None:
    noisy = Image.effect_noise((256, 256), 80).convert("RGB")
    high, info = Pipeline([ConvertFormat("jpeg", quality=95)]).run(png(noisy))
    low, _ = Pipeline([ConvertFormat("jpeg", quality=30)]).run(png(noisy))
    assert info.format == "JPEG" and high[:3] == b"\xff\xd8\xff"
    assert len(low) < len(high)
    webp, winfo = Pipeline([ConvertFormat("webp", quality=80)]).run(png(noisy))
    assert winfo.format == "WEBP" and webp[8:12] == b"WEBP"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Resize(0),
        lambda: Resize(100, mode="stretch"),
        lambda: CropToAspect("wide"),
        lambda: PadToAspect("1:1", color="red-ish"),
        lambda: Adjust(brightness=-1),
        lambda: Watermark(),
        lambda: Watermark(text="x", image="y.png"),
        lambda: Watermark(text="x" * 500),
        lambda: Watermark(text="x", opacity=2),
        lambda: Watermark(image="/does/not/exist.png"),
        lambda: ConvertFormat("tiff"),
        lambda: ConvertFormat("png", quality=0),
        lambda: Pipeline([ConvertFormat("png"), ConvertFormat("jpeg")]),
        lambda: Pipeline(["resize"]),  # type: ignore[list-item]
    ],
)
def test_bad_arguments_are_config_errors(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


def test_recipe_hash_follows_the_recipe() -> None:
    a = Pipeline([Resize(100), ConvertFormat("webp")])
    assert a.recipe_hash == Pipeline([Resize(100), ConvertFormat("webp")]).recipe_hash
    assert a.recipe_hash != Pipeline([Resize(101), ConvertFormat("webp")]).recipe_hash


def test_a_bomb_is_refused_by_the_guard() -> None:
    # A PNG header declaring 12,000 x 12,000 pixels (144 MP, above the 40 MP default).
    ihdr = struct.pack(">IIBBBBB", 12_000, 12_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(ImageRejectedError) as err:
        Pipeline([Resize(64)]).run(b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64)
    assert err.value.reason == "too_many_pixels"


# ------------------------------------------------------------------ storage and lineage
def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_results_are_new_files_linked_to_their_source(batch: Batch) -> None:
    before = {im.path: digest(im.path) for im in batch.images}
    steps = [Resize(200), Watermark(text="©"), ConvertFormat("webp", quality=80)]
    results = postprocess(batch, steps)
    assert [d.source_sha256 for d in results] == [im.sha256 for im in batch.images]
    assert {im.path: digest(im.path) for im in batch.images} == before  # originals intact
    ws = batch.workspace.path
    for d, im in zip(results, batch.images, strict=True):
        assert d.path.is_relative_to(ws / "derived" / im.sha256[:2] / im.sha256)
        assert d.format == "WEBP" and max(d.width, d.height) == 200
        assert d.task_id == im.task_id and d.index == im.index
        # the link back is a journal row now (older versions wrote a JSON file beside it)
        assert not d.path.with_suffix(".json").exists()
        (row,) = batch.workspace.derived(im.sha256)
        assert row["source_sha256"] == im.sha256 and row["path"] == d.path
        assert row["sha256"] == digest(d.path)
        assert [s["step"] for s in row["recipe"]] == ["resize", "watermark", "format"]
        assert derived_images(im) == [d]


def test_results_keep_generation_metadata_unless_stripped(batch: Batch) -> None:
    kept = postprocess(batch.images[0], [Resize(128)])[0]
    info = read_generation_info(kept.path)
    assert info.prompt == "a red fox" and info.seed == 9
    assert info.record is not None
    assert info.record["derived"]["source_sha256"] == batch.images[0].sha256
    stripped = postprocess(batch.images[0], [Resize(128), StripMetadata()])[0]
    assert not read_generation_info(stripped.path)


def test_same_recipe_twice_reuses_the_file(batch: Batch) -> None:
    first = postprocess(batch, [Resize(100)])
    stamps = [d.path.stat().st_mtime_ns for d in first]
    second = postprocess(batch, [Resize(100)])
    assert second == first
    assert [d.path.stat().st_mtime_ns for d in second] == stamps


def test_derived_files_survive_reopening_the_workspace(batch: Batch, tmp_path: Path) -> None:
    results = postprocess(batch, [Resize(64)])
    path = batch.workspace.path
    batch.workspace.close()
    with Workspace(path) as again:
        assert again.recovery.orphan_files_removed == 0
        assert all(d.path.exists() for d in results)


def test_paths_and_bytes_need_a_workspace(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (50, 50), (1, 2, 3)).save(src)
    with pytest.raises(ConfigError, match="workspace"):
        postprocess(src, [Resize(10)])
    (out,) = postprocess(src, [Resize(10)], workspace=tmp_path / "w")
    assert out.path.is_relative_to(tmp_path / "w" / "derived")
    assert out.pil.size == (10, 10)


async def test_async_postprocess_leaves_the_event_loop_free(batch: Batch) -> None:
    # Each image waits, in its worker thread, for the loop to have run a coroutine of
    # ours: a blocked loop could never run it, so this would fail, not pass slowly.
    loop_ran = threading.Event()

    def progress(done: int, total: int) -> None:
        if not loop_ran.wait(timeout=60):
            raise AssertionError("the event loop did not turn while images were processed")

    async def mark() -> None:
        loop_ran.set()

    work = asyncio.ensure_future(
        postprocess_async(
            batch,
            [Resize(480, 480, mode="exact", upscale=True), Adjust(contrast=1.2)],
            max_workers=1,
            progress=progress,
        )
    )
    await asyncio.create_task(mark())
    results = await work
    assert len(results) == 2


def test_auto_postprocess_follows_a_running_batch(tmp_path: Path) -> None:
    from nbbatch.images import auto_postprocess

    with Workspace(tmp_path / "ws") as ws:
        batch = Batch.create(["one", "two", "three"], workspace=ws, params=Params(n=2))
        with auto_postprocess(batch, [Resize(64), ConvertFormat("webp")]) as auto:
            batch.run_sync("demo")
            results = auto.wait(timeout=30)
        assert sorted(d.source_sha256 for d in results) == sorted(im.sha256 for im in batch.images)
        assert all(d.format == "WEBP" and max(d.width, d.height) == 64 for d in results)
        assert len(results) == 6


def test_progress_counts_every_image_once_up_to_the_total(batch: Batch) -> None:
    seen: list[tuple[int, int]] = []
    made = postprocess(
        batch, [Resize(64)], max_workers=2, progress=lambda d, t: seen.append((d, t))
    )
    assert len(made) == 2
    assert sorted(seen) == [(1, 2), (2, 2)]
