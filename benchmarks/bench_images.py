"""Image pipeline benchmark: thumbnails and ZIP export for N 1024x1024 images.

    PYTHONPATH=src python benchmarks/bench_images.py            # 1,000 images
    PYTHONPATH=src python benchmarks/bench_images.py --count 50 # quick CI run

Each measurement runs next to a plain hand-written baseline in the same process on the
same files, so the ratios hold across machines:

* thumbnails — nbbatch's ThumbnailCache (guarded decode, JPEG draft, reducing_gap,
  adaptive quality to ≤ 24 KB, thread pool) against a naive loop
  ``Image.open(p); im.thumbnail((256, 256)); im.save(out, "WEBP")``;
* ZIP export — ``nbbatch.export_zip`` (stored entries streamed from disk, temp file +
  rename) against a naive loop ``zf.writestr(name, path.read_bytes())`` with deflate;
* metadata — the cost of :func:`embed_metadata` per saved image (the runner pays it);
* bomb refusal — :func:`inspect_image` refusing a ~50 KB PNG that declares 20,000 x 20,000
  pixels (``bomb_refusal_ms``, best of 5). The tests prove it is refused before any pixel
  is decoded; this is the figure they used to bound with a wall clock.

Memory is the peak growth of the process RSS over the phase (sampled every 2 ms;
includes Pillow's C buffers) and, for the ZIP phase, the tracemalloc peak of Python
allocations. Output: ``RESULT <name> <value>`` lines.

The images are demo renders with film-grain noise so that each PNG is ~1.5 MB, like a
real 1024x1024 generation (a flat demo render compresses to ~30 KB and would flatter
every number).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from nbbatch import Batch, Params, Workspace, export_zip
from nbbatch.core._model import TaskStatus
from nbbatch.engine._store import StoredImage
from nbbatch.errors import ImageRejectedError
from nbbatch.images import ThumbnailCache
from nbbatch.images._decode import inspect_image
from nbbatch.images._metadata import embed_metadata, generation_record
from nbbatch.providers._demo import render_demo_image

T = TypeVar("T")


def result(name: str, value: float, unit: str = "") -> None:
    print(f"RESULT {name} {value:.4g}" + (f"  # {unit}" if unit else ""), flush=True)


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak RSS growth over a block, sampled by a background thread."""

    def __enter__(self) -> PeakRss:
        self.base = rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def grown_mb(self) -> float:
        return (self.peak - self.base) / 1e6


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    with PeakRss() as mem:
        started = time.perf_counter()
        value = fn()
        elapsed = time.perf_counter() - started
    return value, elapsed, mem.grown_mb


def render(args: tuple[str, int, int]) -> bytes:
    prompt, seed, side = args
    img = render_demo_image(prompt, seed, (side, side))
    noise = Image.effect_noise((side, side), 24).convert("RGB")
    img = Image.blend(img, noise, 0.12)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def build_workspace(root: Path, count: int, side: int) -> Batch:
    ws = Workspace(root / "ws")
    prompts = [f"image {i}: a red fox in the snow, golden hour" for i in range(count)]
    batch = Batch.create(prompts, workspace=ws, params=Params(size=f"{side}x{side}"))
    jobs = [(t.prompt, i, side) for i, t in enumerate(batch.tasks)]
    embed_seconds = 0.0
    sizes = 0
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        for task, data in zip(batch.tasks, pool.map(render, jobs, chunksize=4), strict=True):
            info = inspect_image(data)
            record = generation_record(task, provider="demo", seed=task.order)
            started = time.perf_counter()
            data = embed_metadata(data, info, record)
            embed_seconds += time.perf_counter() - started
            sizes += len(data)
            _, sha = ws.write_blob(data, info.ext)
            task.transition(TaskStatus.QUEUED)
            task.transition(TaskStatus.RUNNING)
            task.transition(TaskStatus.SUCCEEDED)
            task.images.extend(
                ws.record_success(task, [StoredImage(sha, info, task.order, {"provider": "demo"})])
            )
    result("images", count, f"{side}x{side} PNG, mean {sizes / count / 1e6:.2f} MB")
    result("metadata_embed_ms_per_image", embed_seconds / count * 1000)
    return batch


def naive_thumbs(paths: list[Path], out: Path) -> int:
    out.mkdir()
    for p in paths:
        im = Image.open(p)
        im.thumbnail((256, 256))
        im.save(out / f"{p.stem}.webp", "WEBP")
    return len(paths)


def naive_zip(paths: list[Path], target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i, p in enumerate(paths):
            zf.writestr(f"{i:04d}_{p.name}", p.read_bytes())


def traced_peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: ~50 KB on disk, 400 MB decoded."""

    def chunk(ctype: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)

    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb_refusal_ms(repeats: int = 5) -> float:
    """Best-of-``repeats`` time for :func:`inspect_image` to refuse a decompression bomb."""
    data = bomb_png()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            inspect_image(data)
        except ImageRejectedError as exc:
            assert exc.reason == "too_many_pixels", exc.reason
        else:
            raise AssertionError("the bomb was not refused")
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="number of images (1000)")
    parser.add_argument("--side", type=int, default=1024, help="image side in pixels (1024)")
    parser.add_argument("--workers", type=int, default=None, help="thumbnail threads")
    parser.add_argument("--quick", action="store_true", help="smoke run (8 images, 256 px)")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.side = 8, 256
    count = args.count
    result("bomb_refusal_ms", bomb_refusal_ms(), "ms")
    root = Path(tempfile.mkdtemp(prefix="nbbatch-bench-"))
    try:
        print(f"# {count} images of {args.side}x{args.side}, {os.cpu_count()} CPUs", flush=True)
        started = time.perf_counter()
        batch = build_workspace(root, count, args.side)
        print(f"# workspace built in {time.perf_counter() - started:.1f} s", flush=True)
        images = batch.images
        paths = [im.path for im in images]

        # ---- thumbnails
        _, base_s, base_mb = timed(lambda: naive_thumbs(paths, root / "naive-thumbs"))
        result("thumbs_naive_images_per_s", count / base_s)
        result("thumbs_naive_peak_rss_mb", base_mb)

        seq = ThumbnailCache(root / "thumbs-seq")
        _, seq_s, _ = timed(lambda: seq.many(images, 256, max_workers=1))
        result("thumbs_nbbatch_1thread_images_per_s", count / seq_s)

        cache = ThumbnailCache(batch.workspace)
        _, ours_s, ours_mb = timed(lambda: cache.many(images, 256, max_workers=args.workers))
        result("thumbs_nbbatch_images_per_s", count / ours_s)
        result("thumbs_nbbatch_peak_rss_mb", ours_mb)
        result("thumbs_speedup_vs_naive", base_s / ours_s, "x")
        _, cached_s, _ = timed(lambda: cache.many(images, 256, max_workers=args.workers))
        result("thumbs_cached_images_per_s", count / cached_s)
        thumb_sizes = [cache.path_for(im.sha256, 256).stat().st_size for im in images]
        naive_sizes = [p.stat().st_size for p in (root / "naive-thumbs").iterdir()]
        result("thumbs_nbbatch_max_kb", max(thumb_sizes) / 1024)
        result("thumbs_nbbatch_mean_kb", sum(thumb_sizes) / len(thumb_sizes) / 1024)
        result("thumbs_naive_max_kb", max(naive_sizes) / 1024)

        # ---- ZIP export
        _, nz_s, nz_mb = timed(lambda: naive_zip(paths, root / "naive.zip"))
        result("zip_naive_images_per_s", count / nz_s)
        result("zip_naive_peak_rss_mb", nz_mb)
        _, z_s, z_mb = timed(lambda: export_zip(batch.tasks, root / "ours.zip"))
        result("zip_nbbatch_images_per_s", count / z_s)
        result("zip_nbbatch_peak_rss_mb", z_mb)
        result("zip_speedup_vs_naive", nz_s / z_s, "x")
        result("zip_nbbatch_size_mb", (root / "ours.zip").stat().st_size / 1e6)
        result("zip_naive_size_mb", (root / "naive.zip").stat().st_size / 1e6)
        result(
            "zip_nbbatch_tracemalloc_peak_mb",
            traced_peak_mb(lambda: export_zip(batch.tasks, root / "ours2.zip")),
        )
        result(
            "zip_naive_tracemalloc_peak_mb",
            traced_peak_mb(lambda: naive_zip(paths, root / "naive2.zip")),
        )
        batch.workspace.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
