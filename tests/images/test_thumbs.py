"""Thumbnails: small, cached in the workspace, made once even under concurrency."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from nbbatch import Batch, Params, Workspace, thumbnail
from nbbatch.errors import ConfigError
from nbbatch.images import ThumbnailCache, thumbnails
from nbbatch.images._thumbs import MAX_THUMB_BYTES, make_thumbnail


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    ws = Workspace(tmp_path / "ws")
    b = Batch.create(
        ["a red fox", "a blue car", "a green tree"],
        workspace=ws,
        params=Params(seed=1, size="1024x768"),
    )
    b.run_sync("demo")
    yield b
    ws.close()


def test_thumbnail_is_small_and_cached_in_the_workspace(batch: Batch) -> None:
    image = batch.images[0]
    path = thumbnail(image)
    assert path.parent.parent == batch.workspace.path / "thumbs"
    assert path.name == f"{image.sha256}_256.webp"
    assert path.stat().st_size <= MAX_THUMB_BYTES
    with Image.open(path) as img:
        assert img.format == "WEBP"
        assert img.size == (256, 192)


def test_noise_still_fits_the_byte_budget() -> None:
    # Random noise is the worst case for compression: quality (then size) must give way.
    noisy = png(Image.effect_noise((1024, 1024), 120).convert("RGB"))
    data = make_thumbnail(noisy, 256)
    assert len(data) <= MAX_THUMB_BYTES
    with Image.open(io.BytesIO(data)) as img:
        assert max(img.size) <= 256


def test_jpeg_thumbnails_flatten_transparency(tmp_path: Path) -> None:
    data = png(Image.new("RGBA", (300, 300), (0, 0, 0, 0)))
    path = thumbnail(data, 64, workspace=tmp_path, format="jpeg")
    with Image.open(path) as img:
        assert img.format == "JPEG" and img.mode == "RGB"
        assert img.getpixel((10, 10)) == (255, 255, 255)


def test_second_request_reuses_the_file(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs")
    data = png(Image.new("RGB", (500, 400), (9, 9, 9)))
    first = cache.get(data, 128)
    stamp = first.stat().st_mtime_ns
    assert cache.get(data, 128) == first
    assert first.stat().st_mtime_ns == stamp
    assert cache.rendered == 1
    cache.get(data, 64)  # another size is another thumbnail
    assert cache.rendered == 2


def test_concurrent_requests_render_once(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs")
    data = png(Image.effect_noise((800, 800), 40).convert("RGB"))
    barrier = threading.Barrier(8)
    paths: list[Path] = []

    def worker() -> None:
        barrier.wait()
        paths.append(cache.get(data, 200))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and len(paths) == 8
    assert cache.rendered == 1
    assert not list((tmp_path / "thumbs").rglob(".tmp-*"))


def test_many_in_a_thread_pool_keeps_order(batch: Batch) -> None:
    paths = thumbnails(batch.images, 96, max_workers=3)
    assert [p.name.split("_")[0] for p in paths] == [im.sha256 for im in batch.images]
    assert all(p.exists() for p in paths)


def test_thumbnails_survive_reopening_the_workspace(batch: Batch) -> None:
    path = thumbnail(batch.images[1])
    root = batch.workspace.path
    batch.workspace.close()
    with Workspace(root) as again:
        assert again.recovery.orphan_files_removed == 0
    assert path.exists()


def test_bytes_and_paths_need_a_workspace(tmp_path: Path) -> None:
    src = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(src)
    with pytest.raises(ConfigError, match="workspace"):
        thumbnail(src)
    assert thumbnail(src, 32, workspace=tmp_path / "w").exists()


@pytest.mark.parametrize(("size", "fmt"), [(0, "webp"), (4096, "webp"), (128, "gif")])
def test_bad_options_are_config_errors(tmp_path: Path, size: int, fmt: str) -> None:
    with pytest.raises(ConfigError):
        thumbnail(png(Image.new("RGB", (8, 8))), size, workspace=tmp_path, format=fmt)


def test_prune_removes_cache_entries_of_deleted_images(tmp_path: Path) -> None:
    from nbbatch.images import Resize, postprocess, prune_caches

    ws = Workspace(tmp_path / "ws")
    keep = Batch.create(["keep me"], workspace=ws)
    drop = Batch.create(["drop me"], workspace=ws)
    keep.run_sync("demo")
    drop.run_sync("demo")
    kept_thumb = thumbnail(keep.images[0], 64)
    dropped_thumb = thumbnail(drop.images[0], 64)
    (kept_derived,) = postprocess(keep, [Resize(32)])
    (dropped_derived,) = postprocess(drop, [Resize(32)])
    ws.delete_batch(drop.id)
    ws.close()
    with Workspace(tmp_path / "ws") as again:  # reconcile removes the image files
        # the derived copy's link back is a journal row (no JSON file beside it any
        # more), forgotten by the reconcile once its source is gone
        assert again.derived(dropped_derived.source_sha256) == []
        assert prune_caches(again) == {"thumbs": 1, "derived": 1}
    assert kept_thumb.exists() and kept_derived.path.exists()
    assert not dropped_thumb.exists() and not dropped_derived.path.exists()
    assert not dropped_derived.path.parent.exists()


def test_prune_forgets_the_derived_rows_of_deleted_images(tmp_path: Path) -> None:
    # Without a reconcile in between, pruning the ``derived/`` files of a deleted image
    # left its rows behind: ``Workspace.derived`` listed copies whose files were gone.
    from nbbatch.images import Resize, postprocess, prune_caches

    with Workspace(tmp_path / "ws") as ws:
        keep = Batch.create(["keep me"], workspace=ws)
        drop = Batch.create(["drop me"], workspace=ws)
        keep.run_sync("demo")
        drop.run_sync("demo")
        (kept,) = postprocess(keep, [Resize(32)])
        (dropped,) = postprocess(drop, [Resize(32)])
        ws.delete_batch(drop.id)
        assert prune_caches(ws) == {"thumbs": 0, "derived": 1}
        assert ws.derived(dropped.source_sha256) == []
        assert [row["path"] for row in ws.derived(kept.source_sha256)] == [kept.path]
        assert kept.path.exists() and not dropped.path.parent.exists()
