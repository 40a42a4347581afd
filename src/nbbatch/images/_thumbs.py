"""Small thumbnails for the grid and the gallery, made once and cached on disk.

Thumbnails live in ``<workspace>/thumbs/ab/<sha256>_<size>.webp`` — outside ``images/``,
which the workspace reconciles against its database on open (a thumbnail there would be
deleted as an orphan). The key is the source's sha256 plus the size and format, so a
thumbnail can never go stale: the source bytes it was made from are immutable.

Each is at most ``size`` pixels on its longer side and aims at ≤ 24 KB (the widget ships
them to the browser in bulk): the encoder quality steps down until the file fits, and
the picture shrinks only if the lowest quality still does not fit. Generation is
thread-safe (striped locks: one thread makes a given thumbnail, the others wait and
reuse it) and atomic (temp file + ``os.replace``), so several processes may share a
cache too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import io
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol, Union

from PIL import Image

from ..core._aio import lower_thread_priority
from ..core._errors import ConfigError
from ..core._model import GeneratedImage, Reference
from ..core._protocols import WorkspaceLike
from ._decode import DEFAULT_LIMITS, ImageLimits, decode_image

__all__ = ["MAX_THUMB_BYTES", "ThumbnailCache", "prune_caches", "thumbnail", "thumbnails"]

#: Target size of one thumbnail file.
MAX_THUMB_BYTES = 24 * 1024
_QUALITIES = (80, 70, 60, 50, 40, 30)
_FORMATS = {"webp": ("WEBP", "webp"), "jpeg": ("JPEG", "jpg"), "jpg": ("JPEG", "jpg")}
_STRIPES = 64
#: Thumbnails asked for from the event loop (the gallery, while a batch runs) render here:
#: two threads bound what they take from the run's saves and leave the loop responsive.
_ASYNC_WORKERS = 2
_async_pool: concurrent.futures.ThreadPoolExecutor | None = None
_async_pool_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _async_pool
    with _async_pool_lock:
        if _async_pool is None:
            _async_pool = concurrent.futures.ThreadPoolExecutor(
                _ASYNC_WORKERS,
                thread_name_prefix="nbbatch-thumb-async",
                initializer=lower_thread_priority,  # a decode must not delay the loop
            )
        return _async_pool


_Loader = Callable[[], bytes]
ThumbSource = Union["GeneratedImage", "Reference", str, os.PathLike[str], bytes]


def _encode(img: Image.Image, fmt: str, max_bytes: int) -> bytes:
    """Encode at the highest quality that fits ``max_bytes``; shrink as a last resort."""
    if fmt == "JPEG" and img.mode != "RGB":
        img = _flatten(img)
    elif fmt == "WEBP" and img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    while True:
        data = b""
        for quality in _QUALITIES:
            buf = io.BytesIO()
            # method=4 is the WebP default speed/size trade-off; 6 is 2-3x slower.
            img.save(buf, format=fmt, quality=quality, method=4)
            data = buf.getvalue()
            if len(data) <= max_bytes:
                return data
        if max(img.size) <= 32:
            return data  # tiny already: accept whatever the lowest quality gave
        img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)))


def _flatten(img: Image.Image) -> Image.Image:
    """RGB on white (JPEG has no alpha)."""
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        back = Image.new("RGB", rgba.size, (255, 255, 255))
        back.paste(rgba, mask=rgba.getchannel("A"))
        return back
    return img.convert("RGB")


def make_thumbnail(
    data: bytes,
    size: int = 256,
    *,
    format: str = "webp",
    max_bytes: int = MAX_THUMB_BYTES,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> bytes:
    """Thumbnail bytes for image ``data`` (guarded decode; no caching)."""
    fmt = _FORMATS[_check_format(format)][0]
    with decode_image(data, limits, draft=(size, size)) as img:
        # reducing_gap: shrink by whole factors first (cheap box filter), then finish
        # with a good filter; indistinguishable at thumbnail size, several times faster.
        img.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
        return _encode(img, fmt, max_bytes)


def _check_format(format: str) -> str:
    key = format.lower()
    if key not in _FORMATS:
        raise ConfigError(f"thumbnail format must be 'webp' or 'jpeg', got {format!r}")
    return key


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 1024:
        raise ConfigError(f"thumbnail size must be a whole number from 16 to 1024, got {size!r}")
    return size


class PrunableWorkspace(WorkspaceLike, Protocol):
    """A workspace that also owns its post-processed copies (``Workspace`` is one)."""

    def prune_derived(self) -> int:
        """Delete the copies (files and rows) of images no row uses; how many files."""
        ...


class ThumbnailCache:
    """The thumbnail folder of one workspace (or any folder)."""

    def __init__(
        self,
        root: WorkspaceLike | str | os.PathLike[str],
        *,
        max_bytes: int = MAX_THUMB_BYTES,
        limits: ImageLimits = DEFAULT_LIMITS,
    ) -> None:
        self.root = root.path / "thumbs" if isinstance(root, WorkspaceLike) else Path(root)
        self.max_bytes = max_bytes
        self.limits = limits
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        #: thumbnails this object actually rendered (cache misses), for tests and stats
        self.rendered = 0

    def path_for(self, sha256: str, size: int = 256, format: str = "webp") -> Path:
        ext = _FORMATS[_check_format(format)][1]
        return self.root / sha256[:2] / f"{sha256}_{_check_size(size)}.{ext}"

    def get(self, image: ThumbSource, size: int = 256, *, format: str = "webp") -> Path:
        """Path of the thumbnail of ``image``, rendering it on first use."""
        sha, load = _source(image)
        path = self.path_for(sha, size, format)
        if path.exists():
            return path
        lock = self._locks[int(sha[:8], 16) % _STRIPES]
        with lock:
            if path.exists():  # made by another thread while we waited
                return path
            data = make_thumbnail(
                load(), size, format=format, max_bytes=self.max_bytes, limits=self.limits
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".tmp-{uuid.uuid4().hex[:12]}"
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            self.rendered += 1
        return path

    def get_bytes(self, image: ThumbSource, size: int = 256, *, format: str = "webp") -> bytes:
        return self.get(image, size, format=format).read_bytes()

    async def aget(self, image: ThumbSource, size: int = 256, *, format: str = "webp") -> Path:
        """:meth:`get` for the event loop: a cached thumbnail is a stat on the loop, a new
        one renders on a small shared pool (decoding a 1024x1024 PNG takes ~20 ms)."""
        if isinstance(image, (GeneratedImage, Reference)):  # named by hash: no read here
            path = self.path_for(image.sha256, size, format)
            if path.exists():
                return path
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool(), lambda: self.get(image, size, format=format))

    async def aget_bytes(
        self, image: ThumbSource, size: int = 256, *, format: str = "webp"
    ) -> bytes:
        """:meth:`get_bytes` for the event loop (see :meth:`aget`)."""
        path = await self.aget(image, size, format=format)
        return await asyncio.to_thread(path.read_bytes)

    def many(
        self,
        images: Iterable[ThumbSource],
        size: int = 256,
        *,
        format: str = "webp",
        max_workers: int | None = None,
    ) -> list[Path]:
        """Thumbnails of many images, rendered in a thread pool (Pillow releases the GIL)."""
        items = list(images)
        workers = max_workers or min(8, (os.cpu_count() or 2))
        if len(items) <= 1 or workers == 1:
            return [self.get(im, size, format=format) for im in items]
        with concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="nbbatch-thumb"
        ) as ex:
            return list(ex.map(lambda im: self.get(im, size, format=format), items))

    def __repr__(self) -> str:
        return f"ThumbnailCache('{self.root}')"


def _source(image: ThumbSource) -> tuple[str, _Loader]:
    """(sha256 of the source bytes, a function that reads them)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return hashlib.sha256(data).hexdigest(), lambda: data
    sha = getattr(image, "sha256", None)
    path_attr = getattr(image, "path", None)
    if isinstance(sha, str) and path_attr is not None:
        p = Path(path_attr)
        return sha, p.read_bytes  # workspace files are named by their hash: no re-hash
    if not isinstance(image, (str, os.PathLike)):
        raise ConfigError(
            f"cannot make a thumbnail of {type(image).__name__}; give a stored image, a "
            "path or bytes"
        )
    path = Path(image)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest(), path.read_bytes


_caches: dict[Path, ThumbnailCache] = {}
_caches_lock = threading.Lock()


def _cache_for(
    image: ThumbSource, workspace: WorkspaceLike | str | os.PathLike[str] | None
) -> ThumbnailCache:
    if workspace is None:
        path_attr = getattr(image, "path", None)
        p = Path(path_attr) if path_attr is not None else None
        if p is None or p.parent.parent.name != "images":
            raise ConfigError(
                "pass workspace=... to say where thumbnails are cached (only images "
                "stored in a workspace find it by themselves)"
            )
        root = p.parent.parent.parent / "thumbs"
    else:
        root = (
            workspace.path / "thumbs"
            if isinstance(workspace, WorkspaceLike)
            else Path(workspace) / "thumbs"
        )
    with _caches_lock:
        cache = _caches.get(root)
        if cache is None:
            cache = _caches[root] = ThumbnailCache(root)
        return cache


def thumbnail(
    image: ThumbSource,
    size: int = 256,
    *,
    workspace: WorkspaceLike | str | os.PathLike[str] | None = None,
    format: str = "webp",
) -> Path:
    """Path of a cached thumbnail of ``image`` (a stored image, a path or bytes).

    Stored images (``GeneratedImage``, ``Reference``) find their workspace themselves;
    for other images pass ``workspace=``.
    """
    return _cache_for(image, workspace).get(image, size, format=format)


def thumbnails(
    images: Sequence[ThumbSource],
    size: int = 256,
    *,
    workspace: WorkspaceLike | str | os.PathLike[str] | None = None,
    format: str = "webp",
    max_workers: int | None = None,
) -> list[Path]:
    """:func:`thumbnail` for many images at once, in a thread pool."""
    if not images:
        return []
    return _cache_for(images[0], workspace).many(
        images, size, format=format, max_workers=max_workers
    )


def prune_caches(workspace: PrunableWorkspace) -> dict[str, int]:
    """Delete thumbnails and post-processed files whose source image is gone.

    Both caches are keyed by the source's sha256, so after batches are deleted their
    entries are orphans. The thumbnails are this module's; the post-processed copies
    (files and journal rows) are the workspace's, which prunes them itself. Returns how
    many files went from ``thumbs/`` and ``derived/``.
    """
    live = workspace.known_digests()
    removed = {"thumbs": 0, "derived": 0}
    thumbs = workspace.path / "thumbs"
    for f in thumbs.glob("*/*") if thumbs.is_dir() else ():
        if f.is_file() and f.name.split("_")[0] not in live:
            f.unlink(missing_ok=True)
            removed["thumbs"] += 1
    removed["derived"] = workspace.prune_derived()
    return removed
