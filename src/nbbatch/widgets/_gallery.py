"""``Gallery``: the lightbox of a batch's results (one anywidget, a modal ``<dialog>``).

Wire protocol (custom messages, the same request/reply rules as the grid: every request
carries a ``uuid`` and gets exactly one ``{"type": "reply", "uuid", "ok", ...}``, with
``error`` in words when ``ok`` is false):

page → kernel
    ``hello``                         strings, the batch name, the count of done tasks
    ``task {id?, step, across?}``     a done task and where it is among the done tasks;
                                      ``step`` is 0 (this one), ±1 (wrapping) or
                                      ``"first"``; no ``id``: the first done task. Opened
                                      with ``show(..., cells=...)`` (a Compare cell) and
                                      the task one of those cells: ``step`` ±1 moves to
                                      the same column of the previous / next row,
                                      ``across`` ±1 to the same row's previous / next
                                      column (cells with images only, wrapping), and the
                                      answer has ``cell {row, rows, column, columns,
                                      label}``
    ``image {id, index}``             the original file (1 binary buffer) and its mime type
    ``thumbs {id}``                   WebP thumbnails of the task's images, in order
    ``star {id, index, starred}``     ``batch.star(image, starred)``
    ``download_image {id, index}``    the original file (buffer) and a safe file name
    ``zip {scope, id?, ids?}``        scope ``task`` | ``batch`` | ``starred`` | ``tasks``:
                                      built off the loop; answers ``{job, name, size,
                                      chunks}`` or, above ``zip_limit``, ``{path}`` of the
                                      file written next to the notebook
    ``chunk {job, index}``            one ≤ 4 MiB piece of that ZIP (binary buffer); the job
                                      is dropped after its last piece or ``zip_done {job}``
    ``derive {id, index, prompt}``    ``batch.derive(image, prompt)``; answers the child id
    ``remix {id, index}``             ``batch.remix(image)``; answers the new task's id
    ``contact_sheet {scope, id?}``    a PNG grid of the task's (batch's, starred) images,
                                      made off the loop (1 binary buffer)
    ``pp_scopes {id}``                image counts of the post-process scopes
    ``postprocess {scope, id, index?, form, job}``  scope ``image`` | ``task`` |
                                      ``selection`` (the connected grids' selection) |
                                      ``batch``: new files in the workspace's derived/
                                      (never over the originals), made off the loop;
                                      answers ``{count, label, text, first}`` or, for a
                                      field it refuses, ``{invalid: field, error}``
    ``derived {id, index, key}``      a post-processed copy's file (buffer), a safe name
    ``zip {scope, ..., form}``        with ``form``: a ZIP of those copies + manifest
kernel → page (unsolicited)
    ``changed {ids}``                 these tasks changed (stars, status, children,
                                      copies): the page asks again for the one it shows
    ``pp_progress {job, done, total}``  how far a post-process got
    ``notice {level, text}``          an error in words

Every request carries the page view's ``view`` id. Synced traits are small: ``lang``,
``task_id`` / ``image_index`` (what is shown), ``shown``, ``opened`` (a counter Python
bumps so ``open()`` reaches the page even when it asks for what is already shown) and
``opened_view`` (the one view that opens: a studio displayed twice has two). Images and
prompts only travel as messages.
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import traitlets

from nbbatch.core._model import GeneratedImage, Task, TaskStatus
from nbbatch.engine import Batch
from nbbatch.errors import ConfigError
from nbbatch.images import Pipeline, contact_sheet, derived_images, export_zip, postprocess
from nbbatch.images._export import safe_name, slugify

from ._hub import Hub, hub_for
from ._i18n import catalogue, tr
from ._panel import Panel
from ._postform import ASPECTS, POSITIONS, FormError, pipeline_from, recipe_label
from ._words import UserFacingError, clip

__all__ = ["CHUNK_BYTES", "ZIP_LIMIT", "CellMap", "Gallery"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
#: one binary message to the browser; the server drops messages of 10 MiB and more
CHUNK_BYTES = 4 * 1024 * 1024
#: a ZIP above this is written next to the notebook instead of into browser memory
ZIP_LIMIT = 1_000_000_000
_THUMB_SIZE = 160  # px on the longer side: 80 css px at 2x density
_MAX_LINKS = 50  # children listed in the info panel
_JOB_TTL = 3600.0  # seconds a ZIP waits on disk for its pieces to be fetched
_SHEET_CELL = 384  # px per image on a contact sheet
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}


class _Job:
    """A ZIP waiting on disk to be fetched in pieces."""

    def __init__(self, path: pathlib.Path, folder: pathlib.Path) -> None:
        self.path = path
        self.folder = folder
        self.size = path.stat().st_size
        self.chunks = max(1, -(-self.size // CHUNK_BYTES))
        self.created = time.monotonic()

    def read(self, index: int) -> bytes:
        with self.path.open("rb") as fh:
            fh.seek(index * CHUNK_BYTES)
            return fh.read(CHUNK_BYTES)

    def drop(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ZipJobs:
    """ZIPs built off the loop for one widget and handed to its page in pieces.

    The gallery and the grid (its "Download ZIP" of the selection) both use one: ``start``
    answers ``{job, name, size, chunks}`` (or ``{path}`` of a file written next to the
    notebook when it is above ``owner.zip_limit``), ``chunk`` one piece, ``done`` drops it.
    """

    def __init__(self, owner: Any) -> None:
        self._owner = owner
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def start(
        self,
        uid: object,
        tasks: Sequence[Task],
        stem: str,
        *,
        steps: Pipeline | None = None,
    ) -> dict[str, Any]:
        if not any(t.images for t in tasks):
            raise UserFacingError("nothing_to_zip")
        owner = self._owner
        batch: Batch = owner.batch
        file_name = safe_name(stem, "zip", set())
        estimate = sum(_size(im.path) for t in tasks for im in t.images)
        info = {"id": batch.id, "name": batch.name}
        too_big = estimate > owner.zip_limit
        target_dir = owner.save_dir or pathlib.Path.cwd()
        # post-processed copies come from (and stay in) the workspace's derived/ folder
        options: dict[str, Any] = {"steps": steps, "cache": True} if steps else {}

        abandoned = threading.Event()  # the page stopped waiting (cancel_request)

        def work() -> dict[str, Any]:
            self._drop_stale()
            if too_big:
                # Too big for browser memory: next to the notebook, under a new name.
                target = _free_name(target_dir, file_name)
                export_zip(tasks, target, batch=info, **options)
                return {"path": str(target.resolve()), "size": target.stat().st_size}
            folder = pathlib.Path(tempfile.mkdtemp(prefix="nbbatch-zip-"))
            try:
                path = export_zip(tasks, folder / file_name, batch=info, **options)
                job = _Job(path, folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            if abandoned.is_set():  # nobody will fetch it: no temporary ZIP left behind
                job.drop()
                return {}
            key = f"z{id(job):x}{int(job.created * 1000) % 100000}"
            with self._lock:
                self._jobs[key] = job
            return {"job": key, "name": file_name, "size": job.size, "chunks": job.chunks}

        reply = owner._reply
        deferred: dict[str, Any] = owner._off_loop(
            uid, "doing_zip", work, lambda body: reply(uid, True, body), cancelled=abandoned.set
        )
        return deferred

    def chunk(self, content: dict[str, Any]) -> dict[str, Any]:
        key = content.get("job")
        index = content.get("index")
        with self._lock:
            job = self._jobs.get(key) if isinstance(key, str) else None
        if job is None or not isinstance(index, int) or not 0 <= index < job.chunks:
            raise UserFacingError("zip_gone")
        uid = content.get("uuid")
        owner = self._owner

        def reply(data: bytes) -> None:
            last = index == job.chunks - 1
            if last:
                self._drop(str(key))
            owner._reply(uid, True, {"index": index, "last": last}, [data])

        deferred: dict[str, Any] = owner._off_loop(uid, "doing_zip", lambda: job.read(index), reply)
        return deferred

    def done(self, content: dict[str, Any]) -> None:
        key = content.get("job")
        if isinstance(key, str):
            self._drop(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def drop_all(self) -> None:
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            job.drop()

    def _drop_stale(self) -> None:
        # a page closed halfway through a download never says so: its ZIP goes later
        cutoff = time.monotonic() - _JOB_TTL
        with self._lock:
            stale = [k for k, job in self._jobs.items() if job.created < cutoff]
        for key in stale:
            self._drop(key)

    def _drop(self, key: str) -> None:
        with self._lock:
            job = self._jobs.pop(key, None)
        if job is not None:
            job.drop()


class CellMap:
    """What a gallery opened from a table browses: task ids in rows × columns.

    ``rows[r][c]`` is the task of row ``r`` in column ``c`` (None: no such cell),
    ``labels[c]`` the column's name (the gallery's caption). The Compare view hands its
    rows × configurations to :meth:`Gallery.show`, so ←/→ move across configurations of
    one task and ↑/↓ to the same configuration of the previous / next task.
    """

    def __init__(self, rows: Sequence[Sequence[str | None]], labels: Sequence[str]) -> None:
        self.rows = [list(r) for r in rows]
        self.labels = list(labels)
        if any(len(r) != len(self.labels) for r in self.rows):
            raise ConfigError("every row of a cell map has one cell per label")
        self._where = {
            task_id: (r, c)
            for r, ids in enumerate(self.rows)
            for c, task_id in enumerate(ids)
            if task_id is not None
        }

    def where(self, task_id: str) -> tuple[int, int] | None:
        """``(row, column)`` of a task, or None when it is not a cell."""
        return self._where.get(task_id)

    def move(
        self, task_id: str, *, down: int, across: int, has_images: Callable[[str], bool]
    ) -> str | None:
        """The nearest cell from ``task_id`` ``down`` rows / ``across`` columns on (one
        of them ±1, wrapping) whose task ``has_images``; None when no other one has."""
        at = self.where(task_id)
        if at is None:
            return None
        r, c = at
        n = len(self.rows) if down else len(self.labels)
        for k in range(1, n):
            rr = (r + down * k) % len(self.rows)
            cc = (c + across * k) % len(self.labels)
            found = self.rows[rr][cc]
            if found is not None and has_images(found):
                return found
        return None

    def caption(self, task_id: str) -> dict[str, Any] | None:
        at = self.where(task_id)
        if at is None:
            return None
        r, c = at
        return {
            "row": r,
            "rows": len(self.rows),
            "column": c,
            "columns": len(self.labels),
            "label": self.labels[c],
        }


class Gallery(Panel):
    """A lightbox over the done tasks of ``batch``: look, step, star, download, rework.

    Display it (or use ``studio.gallery``), then click a result in the grid or call
    ``gallery.show(task, image=0)``. ``zip_limit`` (bytes) is the largest ZIP handed to
    the browser; bigger ones are written to ``save_dir`` (default: the notebook's folder,
    the kernel's working directory) and their path is shown.
    """

    _esm = _STATIC / "gallery.js"
    _css = _STATIC / "gallery.css"

    _shows_notices = True
    # what the lightbox shows, as the page moves through it (nothing else)
    _page_writable: ClassVar[Mapping[str, Callable[[Any], bool]]] = {
        "shown": lambda v: isinstance(v, bool),
        "task_id": lambda v: isinstance(v, str) and len(v) <= 64,
        "image_index": lambda v: type(v) is int and 0 <= v < 10_000,
    }

    task_id = traitlets.Unicode("").tag(sync=True)
    image_index = traitlets.Int(0).tag(sync=True)
    shown = traitlets.Bool(False).tag(sync=True)
    opened = traitlets.Int(0).tag(sync=True)
    #: the page view that asked to open (a studio shown twice has two); "" = any view
    opened_view = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        batch: Batch,
        *,
        lang: str | None = None,
        zip_limit: int = ZIP_LIMIT,
        save_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(batch, Batch):
            raise TypeError(f"Gallery needs an nbbatch.Batch, got {type(batch).__name__}")
        super().__init__(lang=lang, **kwargs)
        self._batch = batch
        self._hub: Hub = hub_for(batch)
        self.zip_limit = int(zip_limit)
        self.save_dir = pathlib.Path(save_dir) if save_dir is not None else None
        self._zips = ZipJobs(self)
        self._grids: weakref.WeakSet[Any] = weakref.WeakSet()
        self._last_view = ""
        #: the page views that said hello and not bye, oldest first
        self._views: list[str] = []
        self._changed: set[str] = set()
        self._flush_pending = False
        #: what the page browses when it was opened from a table's cell (see CellMap)
        self.cells: CellMap | None = None
        self._handle(
            {
                "hello": ("doing_request", self._on_hello),
                "bye": ("doing_request", self._on_bye),
                "task": ("doing_gallery_task", self._on_task),
                "image": ("doing_gallery_image", self._on_image),
                "thumbs": ("doing_thumbs", self._on_thumbs),
                "star": ("doing_star", self._on_star),
                "download_image": ("doing_download", self._on_download_image),
                "zip": ("doing_zip", self._on_zip),
                "chunk": ("doing_zip", self._on_chunk),
                "zip_done": ("doing_zip", self._on_zip_done),
                "derive": ("doing_derive", self._on_derive),
                "remix": ("doing_remix", self._on_remix),
                "contact_sheet": ("doing_sheet", self._on_contact_sheet),
                "pp_scopes": ("doing_postprocess", self._on_pp_scopes),
                "postprocess": ("doing_postprocess", self._on_postprocess),
                "derived": ("doing_download", self._on_derived),
            }
        )
        self._hub.attach(self)  # what changed in the batch reaches the page through the hub

    def _repr_detail(self) -> str:
        done = sum(1 for t in self._batch.tasks if t.images)
        return f"batch {self._batch.name!r} · {done} tasks with images"

    # ----------------------------------------------------------- public API
    @property
    def batch(self) -> Batch:
        return self._batch

    def show(
        self,
        task: Task | str | int,
        image: int = 0,
        *,
        view: str | None = None,
        cells: CellMap | None = None,
    ) -> None:
        """Show ``task``'s image number ``image`` (0-based) in the lightbox.

        ``view`` names the page view that opens; without it (the grid's click, or code)
        the view used last opens, else the one shown last, so a studio shown twice opens
        one dialog, not two. ``cells`` (a :class:`CellMap`, the Compare view's): the
        arrows browse those cells instead of the done tasks until the gallery is next
        opened without it.
        """
        t = self._resolve(task)
        if not t.images:
            raise ConfigError(f"task {t.id} has no images yet ({t.status.value}); open a done task")
        if not 0 <= image < len(t.images):
            raise ConfigError(
                f"task {t.id} has {len(t.images)} image(s); image={image} is not one of them"
            )
        self.cells = cells
        with self.hold_sync():
            self.opened_view = view if view is not None else self._open_in()
            self.task_id = t.id
            self.image_index = image
            self.shown = True
            self.opened += 1

    def hide(self) -> None:
        """Close the lightbox (the page also closes it with Escape)."""
        self.shown = False

    @property
    def current(self) -> GeneratedImage | None:
        """The image the lightbox shows (or showed last), or None."""
        try:
            t = self._hub.task(self.task_id)
        except KeyError:
            return None
        return t.images[self.image_index] if 0 <= self.image_index < len(t.images) else None

    def connect(self, grid: Any) -> None:
        """Let ``grid`` (a TaskGrid / BatchStudio of the same batch) open this gallery."""
        if grid.batch is not self._batch:
            raise ConfigError("the grid shows another batch than this gallery")
        grid._gallery_hooks.append(self.show)
        self._grids.add(grid)

    def close(self) -> None:
        hub = getattr(self, "_hub", None)  # close() also runs from __del__ of a failed init
        if hub is not None:
            hub.detach(self)
        zips = getattr(self, "_zips", None)
        if zips is not None:
            zips.drop_all()
        super().close()

    # ----------------------------------------------------------- hub sink
    # A task the page may show changed (stars, a child added, a run finishing): tell it
    # once per loop turn, by id (with its parent: the parent lists its children); it
    # asks again for what it shows. "*": anything may have changed.
    def _hub_rows(self, ids: Iterable[str], *, full: bool) -> None:
        changed = []
        for task_id in ids:
            changed.append(task_id)
            try:
                parent = self._hub.task(task_id).parent_id
            except KeyError:
                parent = None
            if parent:
                changed.append(parent)
        self._mark(changed)

    def _hub_labels(self, ids: Sequence[str]) -> None:
        """Running tasks' words changed (a batch API job moved on): the gallery shows
        finished tasks' images only, so there is nothing to tell its page."""

    def _hub_structure(self, added: Sequence[str] = ()) -> None:
        if added:  # a new task (a derived child: its parent lists it)
            self._hub_rows(added, full=True)
        else:  # removed or reordered
            self._mark(["*"])

    def _hub_all_rows(self) -> None:
        self._mark(["*"])

    def _hub_summary(self) -> None:
        pass

    def _hub_run_state(self, state: str) -> None:
        pass

    def _mark(self, ids: Iterable[str]) -> None:
        self._changed.update(ids)
        if self._flush_pending:
            return
        self._flush_pending = True
        loop = self._hub.loop
        if loop is not None and loop.is_running():
            loop.call_soon(self._flush_changed)
        else:
            self._flush_changed()

    def _flush_changed(self) -> None:
        self._flush_pending = False
        ids, self._changed = sorted(self._changed), set()
        if ids:
            try:
                self._post({"type": "changed", "ids": ids})
            except Exception:
                log.exception("nbbatch gallery: could not tell the page about changes")

    # ----------------------------------------------------------- plumbing
    def _on_msg(self, _widget: object, content: object, buffers: Sequence[Any]) -> None:
        if isinstance(content, dict):
            view, kind = content.get("view"), content.get("type")
            # the view the person used last opens the dialog (hello: every view, on start)
            if isinstance(view, str) and kind in self._handlers:
                if kind == "hello":
                    if view[:40] in self._views:
                        self._views.remove(view[:40])
                    self._views.append(view[:40])
                elif kind != "bye":
                    self._last_view = view[:40]
        super()._on_msg(_widget, content, buffers)

    def _resolve(self, task: Task | str | int) -> Task:
        if isinstance(task, Task):
            return self._hub.task(task.id)
        if isinstance(task, int) and not isinstance(task, bool):
            return self._batch.tasks[task]
        return self._hub.task(task)

    def _image(self, content: dict[str, Any]) -> tuple[Task, GeneratedImage]:
        task = self._hub.task(content.get("id"))
        index = content.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise UserFacingError("bad_request", type=str(content.get("type")))
        for im in task.images:
            if im.index == index:
                return task, im
        raise UserFacingError("image_gone")

    def _done(self) -> list[Task]:
        return [t for t in self._batch.tasks if t.status is TaskStatus.SUCCEEDED and t.images]

    # ----------------------------------------------------------- handlers
    def _open_in(self) -> str:
        """The view that opens when none is named: the one used last, else shown last."""
        if self._last_view and (self._last_view in self._views or not self._views):
            return self._last_view
        return self._views[-1] if self._views else ""

    def _on_bye(self, content: dict[str, Any]) -> dict[str, Any]:
        view = content.get("view")
        if isinstance(view, str) and view[:40] in self._views:
            self._views.remove(view[:40])
        return {}

    def _on_hello(self, content: dict[str, Any]) -> dict[str, Any]:
        return {
            "strings": catalogue(self.lang, "gallery"),
            "batch": self._batch.name,
            "done": self._hub.figures().shown,  # kept by the hub: no pass over every task
        }

    def _on_task(self, content: dict[str, Any]) -> dict[str, Any]:
        done = self._done()
        if not done:
            return {"task": None, "pos": 0, "count": 0}
        wanted = content.get("id")
        step = content.get("step", 0)
        if step == "first" or not wanted:  # the launcher: the done tasks, in order
            self.cells = None
        elif self.cells is not None and self.cells.where(str(wanted)) is not None:
            return self._on_cell(str(wanted), step, content.get("across", 0), len(done))
        ids = [t.id for t in done]
        if step == "first" or not wanted:
            pos = 0
        elif wanted in ids:
            pos = ids.index(str(wanted))
            if step in (1, -1):
                pos = (pos + int(step)) % len(done)
        else:
            # Not (or no longer) done, e.g. a lineage link to a waiting child: show it
            # when it has images, else say so.
            task = self._hub.task(wanted)
            if not task.images:
                raise UserFacingError("not_done_yet", n=self._hub.index().get(task.id, 0) + 1)
            return {"task": self._describe(task), "pos": None, "count": len(done)}
        return {"task": self._describe(done[pos]), "pos": pos, "count": len(done)}

    def _on_cell(self, wanted: str, step: object, across: object, count: int) -> dict[str, Any]:
        # opened from a table's cell: the arrows move across its rows × columns
        cells = self.cells
        assert cells is not None

        def has_images(task_id: str) -> bool:
            try:
                return bool(self._hub.task(task_id).images)
            except KeyError:  # removed from the batch
                return False

        def unit(value: object) -> int:
            return value if type(value) is int and value in (1, -1) else 0

        down, side = unit(step), unit(across)
        shown = wanted
        if down or side:
            moved = cells.move(wanted, down=down, across=0 if down else side, has_images=has_images)
            shown = moved if moved is not None else wanted
        task = self._hub.task(shown)
        if not task.images:
            raise UserFacingError("not_done_yet", n=self._hub.index().get(task.id, 0) + 1)
        return {
            "task": self._describe(task),
            "pos": None,
            "count": count,
            "cell": cells.caption(shown),
        }

    def _describe(self, task: Task) -> dict[str, Any]:
        index = self._hub.index()

        def link(t: Task) -> dict[str, Any]:
            return {
                "id": t.id,
                "n": index.get(t.id, 0) + 1,
                "p": clip(t.prompt, 120),
                "st": t.status.value,
                "ni": len(t.images),
            }

        parent = self._batch.parent_of(task)
        children = self._batch.children_of(task)
        params = task.params.to_dict()
        params.pop("negative_prompt", None)
        first = task.images[0] if task.images else None
        provider = task.provider or (first.params.get("provider") if first else None)
        return {
            "id": task.id,
            "n": index.get(task.id, 0) + 1,
            "total": len(self._batch.tasks),
            "prompt": task.prompt,
            "negative": task.params.negative_prompt,
            "params": params,
            "provider": provider,
            "duration": None if task.duration is None else round(task.duration, 2),
            "attempts": task.attempts,
            "status": task.status.value,
            "parent": link(parent) if parent is not None else None,
            "children": [link(c) for c in children[:_MAX_LINKS]],
            "more_children": max(0, len(children) - _MAX_LINKS),
            "images": [
                {
                    "index": im.index,
                    "w": im.width,
                    "h": im.height,
                    "format": im.format,
                    "seed": im.seed,
                    "starred": im.starred,
                    "key": im.sha256,
                    "copies": self._copies(im),
                }
                for im in task.images
            ],
        }

    def _copies(self, image: GeneratedImage) -> list[dict[str, Any]]:
        # a few small sidecar files per image (the derived/ folder of its hash)
        try:
            found = derived_images(image)
        except Exception as exc:  # an unreadable folder: the image shows without them
            log.warning("nbbatch gallery: derived copies of %s: %s", image.sha256[:12], exc)
            return []
        return [
            {
                "key": d.sha256,
                "label": recipe_label(d.recipe, self.lang),
                "w": d.width,
                "h": d.height,
                "format": d.format,
            }
            for d in found
        ]

    def _on_image(self, content: dict[str, Any]) -> dict[str, Any]:
        _, image = self._image(content)
        uid = content.get("uuid")
        mime = _MIME.get(image.format.upper(), "application/octet-stream")
        return self._off_loop(
            uid,
            "doing_gallery_image",
            image.read_bytes,
            lambda data: self._reply(uid, True, {"mime": mime, "size": len(data)}, [data]),
        )

    def _on_thumbs(self, content: dict[str, Any]) -> dict[str, Any]:
        task = self._hub.task(content.get("id"))
        images = list(task.images)
        uid = content.get("uuid")
        thumbs = self._hub.thumbs

        def work() -> list[bytes | None]:
            out: list[bytes | None] = []
            for im in images:
                try:
                    out.append(thumbs.get_bytes(im, _THUMB_SIZE))
                except Exception as exc:  # a missing or broken file: show the others
                    log.warning("nbbatch gallery: no thumbnail for %s: %s", im.sha256[:12], exc)
                    out.append(None)
            return out

        def reply(found: list[bytes | None]) -> None:
            sent = [im.index for im, b in zip(images, found, strict=True) if b is not None]
            self._reply(uid, True, {"indexes": sent}, [b for b in found if b is not None])

        return self._off_loop(uid, "doing_thumbs", work, reply)

    def _on_star(self, content: dict[str, Any]) -> dict[str, Any]:
        _, image = self._image(content)
        starred = content.get("starred")
        if not isinstance(starred, bool):
            raise UserFacingError("bad_request", type="star")
        return {"starred": self._batch.star(image, starred).starred}

    def _on_download_image(self, content: dict[str, Any]) -> dict[str, Any]:
        task, image = self._image(content)
        uid = content.get("uuid")
        name = image_file_name(task, image)
        mime = _MIME.get(image.format.upper(), "application/octet-stream")
        return self._off_loop(
            uid,
            "doing_download",
            image.read_bytes,
            lambda data: self._reply(uid, True, {"name": name, "mime": mime}, [data]),
        )

    def _zip_tasks(self, content: dict[str, Any]) -> tuple[list[Task], str]:
        scope = content.get("scope")
        name = slugify(self._batch.name) or "batch"
        if scope == "task":
            task = self._hub.task(content.get("id"))
            n = self._hub.index().get(task.id, 0) + 1
            return [task], f"{name}_task-{n:04d}_{slugify(task.prompt, 30) or 'images'}"
        if scope == "batch":
            return [t for t in self._batch.tasks if t.images], name
        if scope == "starred":
            return [t for t in self._batch.tasks if t.starred], f"{name}_starred"
        if scope == "tasks":
            raw = content.get("ids")
            if not isinstance(raw, list) or not raw:
                raise UserFacingError("nothing_selected")
            return [self._hub.task(i) for i in raw], f"{name}_selection"
        raise UserFacingError("bad_request", type=f"zip {scope!r}")

    def _on_zip(self, content: dict[str, Any]) -> dict[str, Any]:
        form = content.get("form")
        if form is None:
            tasks, stem = self._zip_tasks(content)
            return self._zips.start(content.get("uuid"), tasks, stem)
        # the results of a post-process: the same recipe, taken from derived/
        try:
            pipeline = pipeline_from(form, self.lang)
        except FormError as exc:
            raise UserFacingError("pp_no_step") from exc
        tasks, _, stem = self._pp_sources(content)
        label = slugify(recipe_label(pipeline.recipe(), "en"), 30)
        return self._zips.start(content.get("uuid"), tasks, f"{stem}_{label}", steps=pipeline)

    def _on_chunk(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._zips.chunk(content)

    def _on_zip_done(self, content: dict[str, Any]) -> None:
        self._zips.done(content)

    def _on_derive(self, content: dict[str, Any]) -> dict[str, Any]:
        _, image = self._image(content)
        prompt = content.get("prompt")
        if not isinstance(prompt, str):
            raise UserFacingError("bad_request", type="derive")
        child = self._batch.derive(image, prompt)
        runner = self._batch.runner
        live = runner is not None and runner.accepting
        n = self._hub.index().get(child.id, len(self._batch.tasks) - 1) + 1
        key = "derived_running" if live else "derived_waiting"
        return {"id": child.id, "n": n, "text": tr(self.lang, key, n=n)}

    def _on_remix(self, content: dict[str, Any]) -> dict[str, Any]:
        _, image = self._image(content)
        task = self._batch.remix(image)
        n = self._hub.index().get(task.id, len(self._batch.tasks) - 1) + 1
        return {"id": task.id, "n": n, "text": tr(self.lang, "remixed", n=n)}

    def _on_contact_sheet(self, content: dict[str, Any]) -> dict[str, Any]:
        tasks, stem = self._zip_tasks(content)
        images = [im for t in tasks for im in t.images]
        if not images:
            raise UserFacingError("nothing_to_zip")
        uid = content.get("uuid")
        name = safe_name(f"{stem}_contact-sheet", "png", set())
        title = tasks[0].prompt if len(tasks) == 1 else self._batch.name

        def work() -> tuple[bytes, int, int]:
            sheet = contact_sheet(tasks, cell=_SHEET_CELL, title=title)
            buf = io.BytesIO()
            sheet.save(buf, "PNG", optimize=False)
            return buf.getvalue(), sheet.width, sheet.height

        def reply(made: tuple[bytes, int, int]) -> None:
            data, w, h = made
            body = {"name": name, "mime": "image/png", "w": w, "h": h}
            self._reply(uid, True, body, [data])

        return self._off_loop(uid, "doing_sheet", work, reply)

    # ----------------------------------------------------------- post-processing
    def _selected(self) -> list[Task]:
        chosen: set[str] = set()
        for grid in list(self._grids):
            chosen.update(grid.selection)
        return [t for t in self._batch.tasks if t.id in chosen]

    def _on_pp_scopes(self, content: dict[str, Any]) -> dict[str, Any]:
        """How many images each scope of the form holds (the form shows them)."""
        task = self._hub.task(content.get("id"))
        selected = self._selected()
        return {
            "task": len(task.images),
            "selection": len(selected),
            "selection_images": sum(len(t.images) for t in selected),
            "batch": sum(len(t.images) for t in self._batch.tasks),
            "aspects": list(ASPECTS),
            "positions": list(POSITIONS),
        }

    def _pp_sources(self, content: dict[str, Any]) -> tuple[list[Task], list[GeneratedImage], str]:
        scope = content.get("scope")
        name = slugify(self._batch.name) or "batch"
        if scope == "image":
            task, image = self._image(content)
            return [task], [image], image_file_name(task, image).rsplit(".", 1)[0]
        if scope == "task":
            tasks, stem = self._zip_tasks({"scope": "task", "id": content.get("id")})
        elif scope == "selection":
            tasks, stem = self._selected(), f"{name}_selection"
            if not tasks:
                raise UserFacingError("pp_no_selection")
        elif scope == "batch":
            tasks, stem = [t for t in self._batch.tasks if t.images], name
        else:
            raise UserFacingError("bad_request", type=f"postprocess {scope!r}")
        images = [im for t in tasks for im in t.images]
        if not images:
            raise UserFacingError("pp_nothing")
        return tasks, images, stem

    def _on_postprocess(self, content: dict[str, Any]) -> dict[str, Any]:
        """Make the derived copies (off the loop), telling the page how far it got."""
        try:
            pipeline = pipeline_from(content.get("form"), self.lang)
        except FormError as exc:
            return {"invalid": exc.field, "error": exc.text}
        tasks, images, _ = self._pp_sources(content)
        uid = content.get("uuid")
        job = str(content.get("job") or "")[:40]
        loop = self._hub.loop
        step = max(1, len(images) // 50)  # at most ~50 progress messages

        def progress(done: int, total: int) -> None:
            if done % step and done != total:
                return
            msg = {"type": "pp_progress", "job": job, "done": done, "total": total}
            if loop is not None and loop.is_running():
                loop.call_soon_threadsafe(self._post, msg)
            else:
                self._post(msg)

        def work() -> list[Any]:
            return postprocess(images, pipeline, progress=progress)

        def reply(made: list[Any]) -> None:
            label = recipe_label(pipeline.recipe(), self.lang)
            body = {
                "count": len(made),
                "label": label,
                "text": tr(self.lang, "pp_done", n=len(made), label=label),
                "form": content.get("form"),
                "first": {"id": images[0].task_id, "index": images[0].index, "key": made[0].sha256},
            }
            self._reply(uid, True, body)
            # the copies are listed with their images: the page asks again for its task
            self._changed.update(t.id for t in tasks)
            self._flush_changed()

        return self._off_loop(uid, "doing_postprocess", work, reply)

    def _derived_copy(self, content: dict[str, Any]) -> tuple[Task, GeneratedImage, Any]:
        task, image = self._image(content)
        key = content.get("key")
        for d in derived_images(image):
            if d.sha256 == key:
                return task, image, d
        raise UserFacingError("pp_gone")

    def _on_derived(self, content: dict[str, Any]) -> dict[str, Any]:
        """A derived copy's file (to show, or to download under a safe name)."""
        task, image, copy = self._derived_copy(content)
        uid = content.get("uuid")
        stem = image_file_name(task, image).rsplit(".", 1)[0]
        ext = _EXT.get(copy.format, "png")
        name = safe_name(f"{stem}_{slugify(recipe_label(copy.recipe, 'en'), 40)}", ext, set())
        mime = _MIME.get(copy.format, "application/octet-stream")
        body = {"name": name, "mime": mime, "w": copy.width, "h": copy.height}
        body["label"] = recipe_label(copy.recipe, self.lang)
        return self._off_loop(
            uid,
            "doing_download",
            copy.read_bytes,
            lambda data: self._reply(uid, True, body, [data]),
        )


def image_file_name(task: Task, image: GeneratedImage) -> str:
    """``0004-2_a-red-fox-in-snow_3fa2c1.png``: order, image number, prompt slug, hash."""
    ext = _EXT.get(image.format.upper()) or image.path.suffix.lstrip(".") or "png"
    stem = f"{task.order + 1:04d}-{image.index + 1}_{slugify(task.prompt) or 'image'}"
    return safe_name(f"{stem}_{image.sha256[:6]}", ext, set())


def _size(path: pathlib.Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _free_name(folder: pathlib.Path, name: str) -> pathlib.Path:
    target = folder / name
    stem, dot, ext = name.rpartition(".")
    n = 2
    while target.exists():
        target = folder / f"{stem}-{n}{dot}{ext}"
        n += 1
    return target
