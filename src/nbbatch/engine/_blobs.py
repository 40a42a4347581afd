"""Blobs: the workspace's image files, named by content, and the ``derived/`` layout.

Layout::

    <workspace>/images/ab/ab12….png                      every input and output image,
                                                        named by its sha256
    <workspace>/derived/ab/<source sha256>/<recipe>.webp a post-processed copy of a
                                                        stored image, named by its source
                                                        and its recipe

A file is written to a temp file in its final folder, fsynced, and renamed into place;
the journal row that points at it is committed only after (by the caller). This module
knows files and nothing of rows: ``_recovery`` matches the two after a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ..core._errors import StorageError
from ..core._model import new_id
from ..images._decode import ImageInfo
from ..images._files import TMP_PREFIX, write_atomic

__all__ = ["TMP_PREFIX", "Blobs", "StoredImage"]

IMAGES_DIR = "images"
DERIVED_DIR = "derived"


class StoredImage(NamedTuple):
    """An image file already written to the workspace, waiting for its row."""

    sha256: str
    info: ImageInfo
    seed: int | None
    params: dict[str, Any]


def fsync_dir(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Blobs:
    """The content-addressed files of one workspace folder."""

    def __init__(self, root: Path, *, durability: Literal["normal", "full"] = "normal") -> None:
        self.root = root
        self.images_dir = root / IMAGES_DIR
        self.derived_dir = root / DERIVED_DIR
        self.durability = durability
        self._made_dirs: set[str] = set()

    def path(self, sha: str, ext: str) -> Path:
        """Where the image with this digest and extension lives."""
        return self.images_dir / sha[:2] / f"{sha}.{ext}"

    def write(self, data: bytes, ext: str) -> tuple[Path, str]:
        """Write ``data`` durably under its sha256 name; return ``(path, sha256)``.

        Blocking (file I/O + fsync): call it from a worker thread on the event loop.
        Writing the same bytes twice is harmless (same name, same content).
        """
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha, ext)
        try:
            if os.stat(final).st_size == len(data):
                return final, sha
        except FileNotFoundError:
            pass
        tmp = final.parent / f"{TMP_PREFIX}{new_id()}"
        try:
            if final.parent.name not in self._made_dirs:  # 256 folders: mkdir once each
                final.parent.mkdir(exist_ok=True)
                self._made_dirs.add(final.parent.name)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            if self.durability == "full":
                # Makes the rename itself survive a power cut. Under "normal" the journal
                # may lose its newest commits on a power cut anyway, and reconcile turns a
                # row whose file vanished into a retryable failure; syncing the folder
                # costs a journal commit of the file system (~1 ms) per image.
                fsync_dir(final.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(
                f"could not save an image to {str(final.parent)!r} ({exc.strerror or exc}); "
                "free disk space or check permissions, then retry the task"
            ) from None
        return final, sha

    def unlink(self, sha: str, ext: str) -> bool:
        """Remove one image file; whether it was there."""
        try:
            self.path(sha, ext).unlink()
        except FileNotFoundError:
            return False
        return True

    def entries(self) -> Iterator[Path]:
        """Every file under ``images/`` (temp files included), folder by folder."""
        if not self.images_dir.exists():
            return
        for sub in self.images_dir.iterdir():
            if sub.is_dir():
                yield from sub.iterdir()

    # ------------------------------------------------------------------ derived
    def derived_folder(self, source_sha256: str) -> Path:
        """The folder holding every post-processed copy of one source image."""
        return self.derived_dir / source_sha256[:2] / source_sha256

    def derived_path(self, source_sha256: str, recipe_hash: str, ext: str) -> Path:
        """Where the copy of ``source_sha256`` made by the recipe ``recipe_hash`` goes."""
        return self.derived_folder(source_sha256) / f"{recipe_hash}.{ext}"

    def derived_sources(self) -> Iterator[str]:
        """The sha256 of every source image that has a folder under ``derived/``."""
        if not self.derived_dir.is_dir():
            return
        for folder in self.derived_dir.glob("*/*"):
            if folder.is_dir():
                yield folder.name

    def remove_derived(self, source_sha256: str) -> int:
        """Delete every post-processed copy of one source (and its folder); how many files."""
        folder = self.derived_folder(source_sha256)
        removed = 0
        for f in folder.iterdir() if folder.is_dir() else ():
            f.unlink(missing_ok=True)
            removed += 1
        with contextlib.suppress(OSError):
            folder.rmdir()
        return removed

    def write_derived(
        self, source_sha256: str, recipe_hash: str, ext: str, data: bytes
    ) -> tuple[Path, str]:
        """Write a post-processed copy atomically; return ``(path, sha256)``."""
        path = self.derived_path(source_sha256, recipe_hash, ext)
        write_atomic(path, data)
        return path, hashlib.sha256(data).hexdigest()
