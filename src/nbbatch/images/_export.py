"""Export a task, a batch or a selection: a ZIP or a folder, with safe names and a manifest.

Names inside the export never contain text as typed: they are built as
``0007_red-car_3fa2c1.png`` (task order, a slug of the prompt, a short hash), match
``^[A-Za-z0-9._-]{1,100}$``, are never a reserved Windows name and are unique (even on
case-insensitive file systems). The prompts, parameters, seeds, lineage and source file
names go, exactly as they were, into ``manifest.json``.

Exports stream: a ZIP is written to a temp file beside the target and renamed into place
(a crash leaves no half archive under the real name), image files are copied from disk
in blocks, and optional post-processing runs in a thread pool with a bounded number of
results in flight — memory stays flat whatever the batch size.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError, StorageError
from ..core._model import GeneratedImage, Task
from ._decode import DEFAULT_LIMITS, ImageLimits

if TYPE_CHECKING:
    from ._postprocess import Pipeline, Step

__all__ = [
    "build_manifest",
    "export_folder",
    "export_zip",
    "export_zip_async",
    "safe_name",
    "slugify",
]

_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(10)}
    | {f"LPT{i}" for i in range(10)}
)
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
MAX_NAME = 100
MANIFEST = "manifest.json"
_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}


def slugify(text: str, max_len: int = 40) -> str:
    """Lower-case ASCII words joined by ``-``; empty when nothing readable is left."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:max_len].rstrip("-")


def _is_reserved(name: str) -> bool:
    # Windows reserves these base names whatever the extension ("con.tar.png" too).
    return name.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED


def safe_name(stem: str, ext: str, used: set[str]) -> str:
    """Make ``stem.ext`` safe and unique within ``used`` (which it updates).

    Any text is accepted: directory parts are dropped, the rest is transliterated to
    ASCII, anything outside ``[A-Za-z0-9._-]`` becomes ``-``, leading and trailing dots
    go, reserved Windows names get a prefix, the length is capped at 100 and a counter
    keeps names unique (``used`` holds lower-cased names).
    """
    clean_ext = re.sub(r"[^a-z0-9]", "", ext.lower())[:8] or "bin"
    last = re.split(r"[\\/]", stem)[-1]  # drop directory components (``..``, ``/etc``)
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFC", last))
    ascii_text = folded.encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text)
    base = re.sub(r"\.{2,}", ".", base).strip(".- _")
    if not base:
        base = "image"
    if _is_reserved(base):
        base = f"image-{base}"
    room = MAX_NAME - len(clean_ext) - 1
    name = f"{base[:room].rstrip('.')}.{clean_ext}"
    counter = 2
    while name.lower() in used:
        suffix = f"-{counter}"
        name = f"{base[: room - len(suffix)].rstrip('.')}{suffix}.{clean_ext}"
        counter += 1
    used.add(name.lower())
    if not SAFE_NAME.match(name) or _is_reserved(name):  # pragma: no cover - by construction
        raise ConfigError(f"internal error: generated an unsafe export name {name!r}")
    return name


@dataclass
class _Entry:
    task: Task
    image: GeneratedImage
    name: str
    format: str


def _plan(tasks: Sequence[Task], pipeline: Pipeline | None) -> list[_Entry]:
    used: set[str] = {MANIFEST}
    plan = []
    for task in tasks:
        slug = slugify(task.prompt) or "image"
        for im in task.images:
            fmt = pipeline.output_format(im.format.upper()) if pipeline else im.format.upper()
            ext = _EXT.get(fmt) or im.path.suffix.lstrip(".")
            extra = f"-{im.index + 1}" if len(task.images) > 1 else ""
            stem = f"{task.order + 1:04d}{extra}_{slug}_{im.sha256[:6]}"
            plan.append(_Entry(task, im, safe_name(stem, ext, used), fmt))
    return plan


def build_manifest(
    tasks: Sequence[Task],
    files: dict[tuple[str, int], str],
    *,
    file_hashes: dict[tuple[str, int], str] | None = None,
    postprocess: list[dict[str, Any]] | None = None,
    **batch_info: Any,
) -> dict[str, Any]:
    """The ``manifest.json`` document: what each exported file is and where it came from."""
    children: dict[str, list[str]] = collections.defaultdict(list)
    for t in tasks:
        if t.parent_id:
            children[t.parent_id].append(t.id)
    images = []
    for task in tasks:
        for im in task.images:
            name = files.get((task.id, im.index))
            if name is None:
                continue
            images.append(
                {
                    "file": name,
                    "task_id": task.id,
                    "task_order": task.order,
                    "image_index": im.index,
                    "prompt": task.prompt,
                    "original_prompt": task.original_prompt,
                    "negative_prompt": task.params.negative_prompt,
                    "seed": im.seed,
                    "width": im.width,
                    "height": im.height,
                    "format": im.format,
                    # the stored original (content address in the workspace)
                    "sha256": im.sha256,
                    "source_file": f"images/{im.sha256[:2]}/{im.path.name}",
                    "file_sha256": (file_hashes or {}).get((task.id, im.index), im.sha256),
                    "params": dict(im.params),
                    "provider": task.provider or im.params.get("provider"),
                    "batch_id": task.batch_id,
                    "parent_id": task.parent_id,
                    "children": children.get(task.id, []),
                    "references": [r.to_dict() for r in task.references],
                    "attempts": task.attempts,
                    "created_at": im.created_at,
                    "started_at": task.started_at,
                    "finished_at": task.finished_at,
                }
            )
    return {
        "format": "nbbatch-export/2",
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **batch_info,
        "postprocess": postprocess,
        "images": images,
        "tasks": [t.to_record() for t in tasks],
    }


def _pipeline(steps: Pipeline | Iterable[Step] | None) -> Pipeline | None:
    if steps is None:
        return None
    from ._postprocess import Pipeline

    pipeline = steps if isinstance(steps, Pipeline) else Pipeline(steps)
    return pipeline if pipeline.steps else None


def _produce(
    plan: Sequence[_Entry],
    pipeline: Pipeline | None,
    limits: ImageLimits,
    max_workers: int | None,
    cache: bool = False,
) -> Iterator[tuple[_Entry, bytes | None]]:
    """Yield each entry with its processed bytes (``None``: copy the stored file as is).

    Post-processing runs ahead in a thread pool, but never more than ``2 × workers``
    results wait in memory. With ``cache`` each result is the workspace's derived copy
    (made by :func:`postprocess` when it is not there yet).
    """
    if pipeline is None:
        for entry in plan:
            yield entry, None
        return
    workers = max_workers or min(4, os.cpu_count() or 2)

    def work(entry: _Entry) -> bytes:
        if cache:
            from ._postprocess import postprocess

            return postprocess(entry.image, pipeline, limits=limits)[0].read_bytes()
        data = entry.image.read_bytes()
        out, _ = pipeline.run(data, limits=limits, source_sha256=entry.image.sha256)
        return out

    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="nbbatch-export") as ex:
        pending: collections.deque[tuple[_Entry, concurrent.futures.Future[bytes]]]
        pending = collections.deque()
        it = iter(plan)
        try:
            for entry in it:
                pending.append((entry, ex.submit(work, entry)))
                if len(pending) >= 2 * workers:
                    done_entry, fut = pending.popleft()
                    yield done_entry, fut.result()
            while pending:
                done_entry, fut = pending.popleft()
                yield done_entry, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


class _MissingSource(Exception):
    def __init__(self, path: Path) -> None:
        self.path = path


def _check_source(entry: _Entry) -> None:
    if not entry.image.path.is_file():
        raise _MissingSource(entry.image.path)


def _storage_error(target: Path, exc: OSError | _MissingSource) -> StorageError:
    if isinstance(exc, _MissingSource):
        return StorageError(
            f"an image file is missing from the workspace ({exc.path}); reopen the "
            "workspace to repair it, then export again"
        )
    return StorageError(f"could not write {str(target)!r}: {exc.strerror or exc}")


def export_zip(
    tasks: Iterable[Task],
    path: str | os.PathLike[str],
    *,
    steps: Pipeline | Iterable[Step] | None = None,
    max_workers: int | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    cache: bool = False,
    **batch_info: Any,
) -> Path:
    """Write the images of ``tasks`` and ``manifest.json`` to the ZIP at ``path``.

    ``steps`` post-processes each image on the way out (e.g. ``[Resize(1024),
    ConvertFormat("jpeg", quality=90)]``); the workspace copies are not touched.
    ``cache=True`` takes the post-processed copies from the workspace's ``derived/``
    folder (as :func:`postprocess` stores them) and keeps the ones it makes there.
    ``batch_info`` keywords are copied into the manifest.
    """
    target = Path(path)
    if target.suffix.lower() != ".zip":
        raise ConfigError(f"export path should end in .zip, got {str(target)!r}")
    chosen = list(tasks)
    pipeline = _pipeline(steps)
    plan = _plan(chosen, pipeline)
    files: dict[tuple[str, int], str] = {}
    hashes: dict[tuple[str, int], str] = {}
    tmp = target.with_name(f".tmp-{target.name}-{uuid.uuid4().hex[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for entry, data in _produce(plan, pipeline, limits, max_workers, cache):
                key = (entry.task.id, entry.image.index)
                # PNG/JPEG/WebP are compressed already: storing them is faster and barely
                # larger. zf.write streams the file in blocks.
                if data is None:
                    _check_source(entry)
                    zf.write(entry.image.path, entry.name)
                else:
                    zf.writestr(entry.name, data)
                    hashes[key] = hashlib.sha256(data).hexdigest()
                files[key] = entry.name
            manifest = build_manifest(
                chosen,
                files,
                file_hashes=hashes,
                postprocess=pipeline.recipe() if pipeline else None,
                **batch_info,
            )
            entry_info = zipfile.ZipInfo(MANIFEST, date_time=time.localtime()[:6])
            entry_info.compress_type = zipfile.ZIP_DEFLATED
            # Streamed into the archive: a 10,000-image manifest is never one big string.
            with zf.open(entry_info, "w") as raw, io.TextIOWrapper(raw, "utf-8") as fh:
                json.dump(manifest, fh, ensure_ascii=False, indent=2, default=str)
        os.replace(tmp, target)
    except (OSError, _MissingSource) as exc:
        tmp.unlink(missing_ok=True)
        raise _storage_error(target, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


async def export_zip_async(
    tasks: Iterable[Task], path: str | os.PathLike[str], **options: Any
) -> Path:
    """:func:`export_zip` in a worker thread (keeps a notebook's event loop free)."""
    return await asyncio.to_thread(export_zip, list(tasks), path, **options)


def export_folder(
    tasks: Iterable[Task],
    folder: str | os.PathLike[str],
    *,
    steps: Pipeline | Iterable[Step] | None = None,
    overwrite: bool = False,
    max_workers: int | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    **batch_info: Any,
) -> Path:
    """Copy the images of ``tasks`` and ``manifest.json`` into ``folder``.

    The folder is created; if it already has files, pass ``overwrite=True`` (files with
    the same names are replaced, others left alone). Every file is written to a temp
    name and renamed, and the manifest is written last: a folder with a manifest is a
    complete export.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{str(target)!r} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ConfigError(
            f"folder {str(target)!r} is not empty; choose another or pass overwrite=True"
        )
    chosen = list(tasks)
    pipeline = _pipeline(steps)
    plan = _plan(chosen, pipeline)
    files: dict[tuple[str, int], str] = {}
    hashes: dict[tuple[str, int], str] = {}
    try:
        target.mkdir(parents=True, exist_ok=True)
        for entry, data in _produce(plan, pipeline, limits, max_workers):
            key = (entry.task.id, entry.image.index)
            final = target / entry.name
            tmp = target / f".tmp-{uuid.uuid4().hex[:12]}"
            try:
                if data is None:
                    _check_source(entry)
                    shutil.copyfile(entry.image.path, tmp)
                else:
                    tmp.write_bytes(data)
                    hashes[key] = hashlib.sha256(data).hexdigest()
                os.replace(tmp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            files[key] = entry.name
        manifest = build_manifest(
            chosen,
            files,
            file_hashes=hashes,
            postprocess=pipeline.recipe() if pipeline else None,
            **batch_info,
        )
        tmp = target / f".tmp-{uuid.uuid4().hex[:12]}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, ensure_ascii=False, indent=2, default=str)
        os.replace(tmp, target / MANIFEST)
    except (OSError, _MissingSource) as exc:
        raise _storage_error(target, exc) from None
    return target
