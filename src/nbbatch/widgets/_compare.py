"""``CompareView``: a comparison as a table — rows are tasks, columns configurations.

``CompareView(cmp)`` shows the comparison's table (the ``ComparePanel`` anywidget) with
a gallery beside it: each cell is its thumbnail with the time and cost under it, each
column header the configuration with its totals; a click on a cell opens its image in
the gallery, ``Pick`` stars it as the row's winner. The table is virtualised: the page
asks for the rows it shows (with their thumbnails, as binary buffers) and asks again
when the kernel says the comparison changed (a cell finished, a star) — at most a few
times a second.

Wire protocol (the request/reply rules of every panel: a ``uuid`` each, one reply):

page → kernel
    ``hello``                  strings, the columns with their totals (``spent``: the
                               cost), the row count
    ``rows {start, count}``    those rows: prompt, and per column status, ``took``
                               (seconds), ``spent`` (cost), images, starred, error;
                               one WebP thumbnail per cell with an image (buffers, in
                               order; ``thumb`` is its index)
    ``open {row, column}``     shows the cell's image in the gallery, which then
                               browses the table: ←/→ the row's configurations, ↑/↓
                               the column's tasks (``Gallery.show(..., cells=)``)
    ``pick {row, column}``     stars the cell's first image as the row's winner
    ``run {retry_failed}``     starts a run of the cells not done (``cmp.start()``;
                               with ``retry_failed`` the failed ones too)
    ``configurations``         the saved provider configurations to compare (and the
                               offline ``demo``)
    ``create {prompts, configurations}``   a new comparison of those prompts (one a
                               line) on those saved configurations, in the same
                               workspace; the table switches to it (``reset``)
kernel → page (unsolicited)
    ``changed``                the comparison changed: ask again for what is shown
    ``reset``                  another comparison is shown: start again

Synced traits: ``lang``, ``rows`` and ``columns`` (counts). Prompts and images travel
as messages only.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Callable
from typing import Any

import ipywidgets  # type: ignore[import-untyped]  # (no stubs; only Box layout used)
import traitlets

from nbbatch.engine import Comparison, load_settings
from nbbatch.errors import NbbatchError
from nbbatch.events import Event
from nbbatch.images import ThumbnailCache

from ._gallery import CellMap, Gallery
from ._i18n import catalogue
from ._panel import Panel
from ._words import UserFacingError

__all__ = ["ComparePanel", "CompareView"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
_THUMB_SIZE = 192  # px on the longer side: 96 css px at 2x density
_MAX_ROWS = 100  # per request
_CHANGED_EVERY = 0.3  # seconds between "changed" messages while cells finish
_MAX_PROMPTS = 1000  # a form's new comparison: at most this many tasks ...
_MAX_CONFIGURATIONS = 12  # ... on at most this many configurations


class ComparePanel(Panel):
    """The table of a :class:`~nbbatch.engine.Comparison` (see the module docstring)."""

    _esm = _STATIC / "compare.js"
    _css = _STATIC / "compare.css"

    rows = traitlets.Int(0).tag(sync=True)
    columns = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        comparison: Comparison,
        *,
        gallery: Gallery | None = None,
        lang: str | None = None,
        on_switch: Callable[[Comparison], Gallery | None] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(comparison, Comparison):
            raise TypeError(
                f"ComparePanel needs an nbbatch Comparison, got {type(comparison).__name__}"
            )
        super().__init__(
            lang=lang,
            rows=len(comparison),
            columns=len(comparison.configurations),
            **kwargs,
        )
        self.comparison = comparison
        self.gallery = gallery
        self._on_switch = on_switch
        self.thumbs = ThumbnailCache(comparison.workspace)
        self._pending: asyncio.TimerHandle | None = None
        self._unsubscribe = comparison.batch.subscribe(self._on_event)
        self._handle(
            {
                "hello": ("doing_request", self._on_hello),
                "rows": ("doing_request", self._on_rows),
                "open": ("doing_request", self._on_open),
                "pick": ("doing_request", self._on_pick),
                "run": ("doing_request", self._on_run),
                "configurations": ("doing_request", self._on_configurations),
                "create": ("doing_request", self._on_create),
            }
        )

    def _repr_detail(self) -> str:
        return f"comparison {self.comparison.id}"

    def close(self) -> None:
        unsubscribe = getattr(self, "_unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe()
        if getattr(self, "_pending", None) is not None:
            self._pending.cancel()  # type: ignore[union-attr]
        super().close()

    # ----------------------------------------------------------- changes
    def _on_event(self, event: Event) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            self.changed()
            return
        if self._pending is None:  # coalesce: one message per interval at most
            self._pending = loop.call_later(_CHANGED_EVERY, self._flush)

    def _flush(self) -> None:
        self._pending = None
        self.changed()

    def changed(self) -> None:
        """Tell the page to ask again for the rows it shows."""
        if getattr(self, "comm", None) is not None:
            self._post({"type": "changed", "columns": self._columns()})

    # ----------------------------------------------------------- data
    def _columns(self) -> list[dict[str, Any]]:
        return [
            {
                "name": r["configuration"],
                "provider": r["provider"],
                "model": r["model"],
                "cells": r["cells"],
                "succeeded": r["succeeded"],
                "failed": r["failed"],
                "median_seconds": r["median_seconds"],
                "spent": r["cost"],
            }
            for r in self.comparison.summary_rows()
        ]

    def _cell(self, row: int, column: int) -> Any:
        cmp = self.comparison
        if not isinstance(row, int) or not 0 <= row < len(cmp):
            raise UserFacingError("bad_request", type="row")
        if not isinstance(column, int) or not 0 <= column < len(cmp.configurations):
            raise UserFacingError("bad_request", type="column")
        return cmp.cell(row, column)

    # ----------------------------------------------------------- handlers
    def _on_hello(self, content: dict[str, Any]) -> dict[str, Any]:
        return {
            "strings": catalogue(self.lang, "compare"),
            "columns": self._columns(),
            "rows": len(self.comparison),
            "name": self.comparison.name,
        }

    def _on_rows(self, content: dict[str, Any]) -> dict[str, Any]:
        start, count = content.get("start"), content.get("count")
        if not isinstance(start, int) or not isinstance(count, int) or start < 0 or count < 0:
            raise UserFacingError("bad_request", type="rows")
        cmp = self.comparison
        stop = min(len(cmp), start + min(count, _MAX_ROWS))
        uid = content.get("uuid")
        # what the loop owns (the tasks) is read here; files are read off the loop
        columns = cmp.columns
        cells = cmp.cells(range(start, stop))
        found = {
            (c.row, c.configuration): (c, r)
            for c, r in zip(cells, cmp._records(cells=cells), strict=True)
        }
        wanted: list[tuple[int, str, list[dict[str, Any]], list[Any]]] = []
        for row in range(start, stop):
            shown: list[dict[str, Any]] = []
            images: list[Any] = []
            prompt = ""
            for name in columns:
                if (row, name) not in found:  # its task was removed from the batch
                    shown.append({"status": "removed", "images": 0})
                    images.append(None)
                    continue
                cell, rec = found[(row, name)]
                prompt = cell.task.prompt
                images.append(cmp._chosen_image(cell.task))
                shown.append(
                    {
                        "status": rec["status"],
                        "took": rec["seconds"],
                        "spent": rec["cost"],
                        "images": rec["n_images"],
                        "starred": rec["starred"],
                        "error": rec["error"],
                        "score": rec["score"],
                    }
                )
            wanted.append((row, prompt, shown, images))

        def work() -> tuple[list[dict[str, Any]], list[bytes]]:
            out, buffers = [], []
            for row, prompt, shown, images in wanted:
                for cell, image in zip(shown, images, strict=True):
                    cell["thumb"] = None
                    if image is None:
                        continue
                    try:
                        buffers.append(self.thumbs.get_bytes(image, _THUMB_SIZE))
                        cell["thumb"] = len(buffers) - 1
                    except Exception as exc:  # a missing file: the cell says so
                        log.warning("nbbatch compare: no thumbnail for %s: %s", image.path, exc)
                out.append({"row": row, "prompt": prompt, "cells": shown})
            return out, buffers

        def reply(result: tuple[list[dict[str, Any]], list[bytes]]) -> None:
            rows, buffers = result
            self._reply(uid, True, {"start": start, "rows": rows}, buffers)

        return self._off_loop(uid, "doing_request", work, reply)

    def _on_open(self, content: dict[str, Any]) -> dict[str, Any]:
        cell = self._cell(content.get("row"), content.get("column"))  # type: ignore[arg-type]
        if not cell.task.images:
            raise UserFacingError("cmp_no_image")
        if self.gallery is None:
            raise UserFacingError("cmp_no_gallery")
        image = self.comparison._chosen_image(cell.task)
        self.gallery.show(cell.task, image.index if image is not None else 0, cells=self.cell_map())
        return {"task": cell.task.id}

    def cell_map(self) -> CellMap:
        """The comparison's rows × configurations as the gallery browses them: ←/→ the
        configurations of one task, ↑/↓ the same configuration of the other tasks."""
        cmp = self.comparison
        columns = cmp.columns
        rows: list[list[str | None]] = [[None] * len(columns) for _ in range(len(cmp))]
        for cell in cmp.cells():
            rows[cell.row][columns.index(cell.configuration)] = cell.task.id
        return CellMap(rows, columns)

    def _on_pick(self, content: dict[str, Any]) -> dict[str, Any]:
        cell = self._cell(content.get("row"), content.get("column"))  # type: ignore[arg-type]
        if not cell.task.images:
            raise UserFacingError("cmp_no_image")
        self.comparison.pick(cell.row, cell.configuration)
        return {"task": cell.task.id}

    def _on_run(self, content: dict[str, Any]) -> dict[str, Any]:
        cmp = self.comparison
        runner = cmp.runner
        if runner is not None and not runner.done:
            raise UserFacingError("cmp_running")
        retry_failed = content.get("retry_failed") is True
        if not cmp.batch.runnable(retry_failed=retry_failed):
            raise UserFacingError("cmp_nothing")
        cmp.start(retry_failed=retry_failed)
        self.changed()
        return {"started": True}

    def _on_configurations(self, content: dict[str, Any]) -> dict[str, Any]:
        return {"configurations": _saved_configurations()}

    def _on_create(self, content: dict[str, Any]) -> dict[str, Any]:
        text, names = content.get("prompts"), content.get("configurations")
        if not isinstance(text, str) or not isinstance(names, list):
            raise UserFacingError("bad_request", type="create")
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise UserFacingError("cmp_no_prompts")
        if len(prompts) > _MAX_PROMPTS:
            raise UserFacingError("cmp_too_many_prompts", n=len(prompts), max=_MAX_PROMPTS)
        known = {c["name"] for c in _saved_configurations()}
        chosen = [n for n in names if isinstance(n, str) and n in known]
        if not chosen or len(chosen) != len(names):
            raise UserFacingError("cmp_pick_configurations")
        if len(chosen) > _MAX_CONFIGURATIONS:
            raise UserFacingError("cmp_pick_configurations")
        old = self.comparison
        runner = old.runner
        if runner is not None and not runner.done:
            raise UserFacingError("cmp_running")
        made = Comparison.create(prompts, chosen, workspace=old.workspace)
        self.show(made)
        return {"id": made.id}

    def show(self, comparison: Comparison) -> None:
        """Show another comparison (the page starts again)."""
        self._unsubscribe()
        self.comparison = comparison
        self._unsubscribe = comparison.batch.subscribe(self._on_event)
        if self._on_switch is not None:
            self.gallery = self._on_switch(comparison)
        self.rows, self.columns = len(comparison), len(comparison.configurations)
        if getattr(self, "comm", None) is not None:
            self._post({"type": "reset"})


def _saved_configurations() -> list[dict[str, Any]]:
    """The saved provider configurations (never a key), and the offline demo."""
    try:
        saved = list(load_settings().providers.values())
    except NbbatchError as exc:
        log.warning("nbbatch compare: the saved settings cannot be read: %s", exc)
        saved = []
    out = [{"name": c.name, "provider": c.provider, "model": c.model} for c in saved]
    if not any(c["name"] == "demo" for c in out):
        out.append({"name": "demo", "provider": "demo", "model": None})
    return out


class CompareView(ipywidgets.VBox):  # type: ignore[misc]  # (untyped base)
    """A comparison's table with a gallery: ``CompareView(cmp)`` as a cell's last line.

    ``view.table`` is the :class:`ComparePanel`, ``view.gallery`` the
    :class:`~nbbatch.widgets.Gallery` of the comparison's batch that a cell's click opens.
    """

    def __init__(self, comparison: Comparison, *, lang: str | None = None) -> None:
        self.comparison = comparison
        self._lang = lang
        self.gallery = Gallery(comparison.batch, lang=lang)
        self.table = ComparePanel(
            comparison, gallery=self.gallery, lang=lang, on_switch=self._switched
        )
        super().__init__([self.table, self.gallery])

    def _switched(self, comparison: Comparison) -> Gallery:
        # the table shows another comparison (its "New comparison" form): a gallery of it
        old = self.gallery
        self.comparison = comparison
        self.gallery = Gallery(comparison.batch, lang=self._lang)
        self.children = [self.table, self.gallery]
        old.close()
        return self.gallery

    def close(self) -> None:
        self.table.close()
        self.gallery.close()
        super().close()
