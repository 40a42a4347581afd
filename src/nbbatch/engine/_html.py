"""How a batch and a task show themselves as a notebook cell's last line (``_repr_html_``).

Small on purpose: a name, a bar of the status counts and a strip of the first few
thumbnails (small WebP files from the workspace's thumbnail cache, never the full
images). Every piece of text is escaped: prompts, names and errors come from people,
files and servers.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping, Sequence

from ..core._model import GeneratedImage, Task, TaskStatus
from ..images._thumbs import thumbnail

__all__ = ["STRIP_IMAGES", "THUMB_PX", "batch_html", "task_html"]

log = logging.getLogger(__name__)

#: how many thumbnails the strip shows, and their size in pixels
STRIP_IMAGES = 8
THUMB_PX = 64

#: the bar's colour for each status (the studio's palette, readable on light and dark)
_COLOURS = {
    "succeeded": "#2e9d57",
    "failed": "#d1453b",
    "running": "#2f7fd6",
    "queued": "#8fb8e8",
    "interrupted": "#e0a030",
    "cancelled": "#9a9a9a",
    "idle": "#d5d5d5",
}
_ORDER = list(_COLOURS)
_BOX = (
    "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.4;max-width:720px"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def counts_bar(counts: Mapping[str, int]) -> str:
    """A bar with one segment per status, as wide as its share, and its legend."""
    total = sum(counts.values())
    if not total:
        return '<div style="color:#888">no tasks yet</div>'
    known = [s for s in _ORDER if counts.get(s)]
    others = sorted(s for s in counts if s not in _COLOURS and counts[s])
    segments = "".join(
        f'<div title="{_e(s)}: {counts[s]}" style="width:{100 * counts[s] / total:.2f}%;'
        f'background:{_COLOURS.get(s, "#bbb")}"></div>'
        for s in known + others
    )
    legend = " · ".join(f"{counts[s]} {_e(s)}" for s in known + others)
    return (
        '<div style="display:flex;height:8px;border-radius:4px;overflow:hidden;'
        f'background:#eee;margin:4px 0">{segments}</div>'
        f'<div style="color:#666;font-size:12px">{legend}</div>'
    )


def _thumb(image: GeneratedImage) -> str:
    try:
        data = thumbnail(image, THUMB_PX).read_bytes()
    except Exception as exc:  # a missing or unreadable file must not hide the batch
        log.debug("no thumbnail for %s: %s", image.path, exc)
        return ""
    title = _e(f"task {image.task_id} #{image.index}")
    return (
        f'<img src="data:image/webp;base64,{base64.b64encode(data).decode()}" '
        f'title="{title}" alt="{title}" style="max-width:{THUMB_PX}px;'
        f'max-height:{THUMB_PX}px;border-radius:3px"/>'
    )


def thumb_strip(images: Sequence[GeneratedImage], more: int = 0) -> str:
    """The first images as small thumbnails in a row, and how many more there are."""
    tags = [t for t in (_thumb(im) for im in images) if t]
    if not tags:
        return ""
    rest = f'<span style="color:#888;align-self:center">+{more} more</span>' if more else ""
    return (
        f'<div style="display:flex;gap:4px;flex-wrap:wrap;margin-top:4px">'
        f"{''.join(tags)}{rest}</div>"
    )


def batch_html(batch_id: str, name: str, tasks: Sequence[Task]) -> str:
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.status.value] = counts.get(t.status.value, 0) + 1
    images = [im for t in tasks for im in t.images]
    shown = images[:STRIP_IMAGES]
    title = _e(_short(name, 80)) if name else "<i>unnamed batch</i>"
    return (
        f'<div style="{_BOX}"><b>{title}</b> '
        f'<span style="color:#888">batch {_e(batch_id)} · {_n(len(tasks), "task")} · '
        f"{_n(len(images), 'image')}</span>"
        f"{counts_bar(counts)}{thumb_strip(shown, len(images) - len(shown))}</div>"
    )


def task_html(task: Task) -> str:
    colour = _COLOURS.get(task.status.value, "#bbb")
    badge = (
        f'<span style="background:{colour};color:#fff;border-radius:3px;padding:0 5px;'
        f'font-size:12px">{_e(task.status.value)}</span>'
    )
    facts = [f"task {_e(task.id)}", _n(len(task.images), "image")]
    if task.attempts:
        facts.append(_n(task.attempts, "attempt"))
    if task.provider:
        facts.append(f"provider {_e(task.provider)}")
    error = ""
    if task.status is TaskStatus.FAILED and task.error:
        kind = f"{_e(task.error_kind)}: " if task.error_kind else ""
        error = f'<div style="color:#d1453b">{kind}{_e(_short(task.error, 500))}</div>'
    elif task.error and task.error_kind == "batch_api":  # where it is at the provider
        error = f'<div style="color:#888">{_e(_short(task.error, 200))}</div>'
    shown = task.images[:STRIP_IMAGES]
    return (
        f'<div style="{_BOX}">{badge} {_e(_short(task.prompt, 300))}'
        f'<div style="color:#888;font-size:12px">{" · ".join(facts)}</div>{error}'
        f"{thumb_strip(shown, len(task.images) - len(shown))}</div>"
    )
