"""What one grid row (and one row patch) looks like on the wire.

Rows go to the browser only when it asks for them (the visible window). Keys are short
because a 10,000-task batch is scrolled through in thousands of rows; a *patch* — what a
running task sends several times a second — is a small array, well under 200 bytes::

    row:   {"id", "n", "p", "st", "pc", "at", "er", "ek", "pm", "rf", "im", "ni", "np", "pa"}
    patch: [id, status, percent | null, attempts, images, full]

``full`` is 1 when something besides the status changed (prompt, error, images): the
browser then fetches that row again if it is on screen.
"""

from __future__ import annotations

from typing import Any

from nbbatch.core._model import Task, TaskStatus
from nbbatch.engine._batchapi import BATCH_API_KIND, where

from ._i18n import tr
from ._protocol import EDITABLE, RETRYABLE, STATUSES, Row
from ._words import clip

__all__ = [
    "EDITABLE",
    "MAX_REFS",
    "MAX_RESULTS",
    "RETRYABLE",
    "STATUSES",
    "patch",
    "percent",
    "row",
    "thumb_sources",
]

#: thumbnails per row (the row shows that many and "+N" for the rest)
MAX_REFS = 2
MAX_RESULTS = 3

# the status sets are declared with the wire shapes (_protocol) and sent to the page


def percent(task: Task) -> int | None:
    """How far a running task is, or None: not running, or running with no progress
    reported (sent and waiting for the server's answer, or queued on a server the
    provider follows, such as an AUTOMATIC1111 busy with another job). The row then
    says "waiting for the server" instead of a 0 % that nothing measured."""
    if task.status.value != "running" or task.progress is None:
        return None
    return round(max(0.0, min(1.0, task.progress)) * 100)


def params_chip(task: Task, lang: str) -> str:
    """``768×512 · ×2 · seed 5``: what most often differs between tasks."""
    p = task.params
    parts = [p.size.replace("x", "×") if p.size else tr(lang, "default_size")]
    if p.n != 1:
        parts.append(tr(lang, "images_per_task", n=p.n))
    parts.append(tr(lang, "seed", n=p.seed) if p.seed is not None else tr(lang, "random_seed"))
    if p.steps is not None:
        parts.append(f"{p.steps} steps")
    return " · ".join(parts)


def row(task: Task, number: int, lang: str, *, parent: Task | None = None) -> Row:
    """One row; ``parent`` (the task it was derived from) adds ``pa``: which of the
    parent's images is this task's reference, so the row can show it and open it."""
    refs = task.references
    images = task.images
    out: Row = {
        "id": task.id,
        "n": number,
        "p": task.prompt,
        "st": task.status.value,
        "pc": percent(task),
        "at": task.attempts,
        "pm": params_chip(task, lang),
        "rf": [r.sha256 for r in refs[:MAX_REFS]],
        "nr": len(refs),
        "im": [im.sha256 for im in images[:MAX_RESULTS]],
        "ni": len(images),
    }
    if parent is not None and refs:
        first = refs[0].sha256
        for pos, im in enumerate(parent.images):
            if im.sha256 == first:
                # the parent image is the first reference: same bytes, same thumbnail key
                out["pa"] = {"id": parent.id, "i": pos, "k": first}
                break
    if task.params.negative_prompt:
        out["np"] = clip(task.params.negative_prompt, 500)
    if task.error:
        out["er"] = clip(_error_words(task, lang))
        out["ek"] = task.error_kind
    return out


def _error_words(task: Task, lang: str) -> str:
    """The task's error, or where it is at a batch API in the page's language (the
    engine journals that label in English)."""
    text = task.error or ""
    if task.error_kind == BATCH_API_KIND and task.status is TaskStatus.RUNNING:
        found = where(text)
        if found is not None:
            return tr(lang, f"batch_api_{found[0]}", provider=found[1])
    return text


def patch(task: Task, full: bool) -> list[Any]:
    """A :data:`~._protocol.PatchRow` (a JSON array on the wire)."""
    return [task.id, task.status.value, percent(task), task.attempts, len(task.images), int(full)]


def thumb_sources(task: Task) -> list[tuple[str, Any]]:
    """The thumbnails a row shows (references and generated images), by their key."""
    out: list[tuple[str, Any]] = [(r.sha256, r) for r in task.references[:MAX_REFS]]
    out.extend((im.sha256, im) for im in task.images[:MAX_RESULTS])
    return out
