"""ZIP export with safe generated names and a manifest of the real prompts.

Names inside the archive never contain text as typed: they are built as
``0007_red-car_3fa2c1.png`` (task order, a slug of the prompt, a short hash), match
``^[A-Za-z0-9._-]{1,100}$`` and are unique. The prompts, parameters, seeds and lineage
go, exactly as they were, into ``manifest.json`` (reliability.md §B6). The archive is
written to a temp file beside the target and renamed into place; image files are
streamed from disk, never held in memory together.
"""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._errors import ConfigError, StorageError
from ._model import Task

__all__ = ["build_manifest", "export_zip", "safe_name", "slugify"]

_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
MAX_NAME = 100


def slugify(text: str, max_len: int = 40) -> str:
    """Lower-case ASCII words joined by ``-``; empty when nothing readable is left."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:max_len].rstrip("-")


def safe_name(stem: str, ext: str, used: set[str]) -> str:
    """Make ``stem.ext`` safe and unique within ``used`` (which it updates)."""
    clean_ext = re.sub(r"[^a-z0-9]", "", ext.lower())[:8] or "bin"
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".- ")
    if not base or base.split(".")[0].upper() in _WINDOWS_RESERVED:
        base = f"image-{base}" if base else "image"
    base = base[: MAX_NAME - len(clean_ext) - 6]
    name = f"{base}.{clean_ext}"
    counter = 2
    while name.lower() in used:
        name = f"{base}-{counter}.{clean_ext}"
        counter += 1
    used.add(name.lower())
    assert _SAFE.match(name), name
    return name


def build_manifest(
    tasks: Sequence[Task], files: dict[tuple[str, int], str], **batch_info: Any
) -> dict[str, Any]:
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
                    "image_index": im.index,
                    "prompt": task.prompt,
                    "original_prompt": task.original_prompt,
                    "negative_prompt": task.params.negative_prompt,
                    "seed": im.seed,
                    "width": im.width,
                    "height": im.height,
                    "format": im.format,
                    "sha256": im.sha256,
                    "params": dict(im.params),
                    "parent_id": task.parent_id,
                    "references": [r.name for r in task.references],
                }
            )
    return {
        "format": "nbbatch-export/1",
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **batch_info,
        "images": images,
        "tasks": [t.to_record() for t in tasks],
    }


def export_zip(tasks: Iterable[Task], path: str | os.PathLike[str], **batch_info: Any) -> Path:
    """Write the images of ``tasks`` and ``manifest.json`` to the ZIP at ``path``."""
    target = Path(path)
    if target.suffix.lower() != ".zip":
        raise ConfigError(f"export path should end in .zip, got {str(target)!r}")
    chosen = list(tasks)
    used: set[str] = {"manifest.json"}
    files: dict[tuple[str, int], str] = {}
    tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for task in chosen:
                slug = slugify(task.prompt) or "image"
                for im in task.images:
                    stem = f"{task.order + 1:04d}_{slug}_{im.sha256[:6]}"
                    name = safe_name(stem, im.path.suffix.lstrip("."), used)
                    # PNG/JPEG/WebP are compressed already: storing them is faster and
                    # barely larger.
                    zf.write(im.path, name)
                    files[(task.id, im.index)] = name
            manifest = build_manifest(chosen, files, **batch_info)
            zf.writestr(
                "manifest.json",
                json.dumps(manifest, ensure_ascii=False, indent=2),
                compress_type=zipfile.ZIP_DEFLATED,
            )
        os.replace(tmp, target)
    except FileNotFoundError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(
            f"an image file is missing from the workspace ({exc.filename}); reopen the "
            "workspace to repair it, then export again"
        ) from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"could not write {str(target)!r}: {exc.strerror or exc}") from None
    return target
