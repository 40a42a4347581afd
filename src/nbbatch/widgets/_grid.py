"""``TaskGrid`` and ``BatchStudio``: one anywidget each, Python holds the truth.

Wire protocol (custom messages; every request from the page carries a ``uuid`` and gets
exactly one ``{"type": "reply", "uuid", "ok", ...}`` back, with ``error`` in words when
``ok`` is false):

page → kernel
    ``hello``                       snapshot: strings of the language, counts, last notice
    ``rows {start, end, filter, query}``   the rows of the visible window (≤ 400)
    ``thumbs {keys}``               thumbnails (WebP) as binary buffers, in ``keys`` order
    ``select {op, id?, anchor?, filter?, query?}``  op: set | toggle | range | all | none
    ``edit {id, prompt}``, ``delete {ids}``, ``move {id, index}``, ``duplicate {id}``,
    ``retry {ids}``, ``run_next {ids}``, ``cancel {id}``
    ``run_all``, ``pause``, ``resume``, ``stop``, ``retry_failed``, ``delete_selected``,
    ``retry_selected``, ``run_next_selected``, ``set_provider {name}``,
    ``set_concurrency {value}``
    ``open_gallery {id, index, view?}``  ``view``: the gallery view beside this grid view
    ``zip_selected``, ``chunk {job, index}``, ``zip_done {job}``  the selected tasks'
    images and manifest.json as a ZIP, fetched in pieces (as the gallery's ZIPs)
    (``filter`` is ``all``, ``starred`` or a status)
kernel → page (unsolicited, coalesced to ≤ 5 a second)
    ``patch {summary, rows?, full?, invalidate?}``  ``rows`` are ``[id, status, pct,
    attempts, images, full]`` for rows the page was sent; ``full`` are whole rows (as in
    a ``rows`` reply) of tasks on screen that got a result or an error;
    ``invalidate`` means "ask for your window again"
    ``notice {level, text}``        an error or hint in words

Synced traits are only small state: ``lang``, ``studio``, ``count``, ``selection`` (ids),
``run_state``, ``provider_name``, ``providers`` and ``concurrency``. Prompts, rows and
images never become traits, because widget state may be saved into the notebook file.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import pathlib
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

# The widgets sit on top: they use the engine's and the core's faces, never the package
# root (which imports everything, the widgets included).
from nbbatch.core._model import GeneratedImage, Task
from nbbatch.engine import Batch, ProviderConfig, Workspace, load_settings
from nbbatch.errors import ConfigError, NbbatchError
from nbbatch.providers import available_providers

from . import _rows
from ._coalesce import Coalescer, LoopScheduler, Scheduler
from ._dispatch import DEFERRED as _DEFERRED
from ._dispatch import answer
from ._gallery import ZIP_LIMIT, ZipJobs, run_off_loop
from ._hub import Hub, hub_for
from ._i18n import catalogue, resolve_lang, tr
from ._protocol import Row, status_sets
from ._words import UserFacingError, describe

if TYPE_CHECKING:
    from ._gallery import Gallery
    from ._history import History

__all__ = ["BatchStudio", "TaskGrid"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
_MAX_ROWS = 400  # per request: a tall screen shows ~30; the page asks with overscan
_MAX_THUMBS = 64  # per request
_WINDOW = 1200  # row ids remembered as "on some screen" for patches
_SCREEN = 150  # the most recently sent rows: finished ones among them are sent whole
THUMB_SIZE = 96  # px on the longer side: 48 css px at 2x density
_FILTERS = frozenset({"all", "starred", *_rows.STATUSES})

_Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


class TaskGrid(anywidget.AnyWidget):
    """The tasks of a batch as a virtualised, editable grid (works on its own too).

    ``TaskGrid(batch)`` shows one row per task, updates live while the batch runs and
    sends edits, deletes, moves and retries through the batch's own API.
    """

    _esm = _STATIC / "studio.js"
    _css = _STATIC / "studio.css"

    lang = traitlets.Unicode("en").tag(sync=True)
    studio = traitlets.Bool(False).tag(sync=True)
    count = traitlets.Int(0).tag(sync=True)
    selection = traitlets.List(traitlets.Unicode()).tag(sync=True)
    run_state = traitlets.Unicode("idle").tag(sync=True)
    provider_name = traitlets.Unicode("").tag(sync=True)
    providers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    concurrency = traitlets.Int(3).tag(sync=True)

    def __init__(
        self,
        batch: Batch,
        *,
        lang: str | None = None,
        _clock: Callable[[], float] | None = None,
        _scheduler: Scheduler | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(batch, Batch):
            raise TypeError(f"TaskGrid needs an nbbatch.Batch, got {type(batch).__name__}")
        super().__init__(lang=resolve_lang(lang), count=len(batch.tasks), **kwargs)
        self._batch = batch
        self._hub: Hub = hub_for(batch)
        scheduler = _scheduler
        if scheduler is None and self._hub.loop is not None:
            scheduler = LoopScheduler(self._hub.loop)
        self._coalescer = Coalescer(
            self._flush, scheduler=scheduler, clock=_clock or time.monotonic
        )
        self._dirty_rows: dict[str, bool] = {}
        self._dirty_structure = False
        self._dirty_all = False
        self._window: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._screen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._filtered = False
        self._view_key: tuple[Any, ...] | None = None
        self._view: Sequence[Task] = ()
        self._notice: dict[str, str] | None = None
        self._jobs: set[asyncio.Future[Any]] = set()
        #: messages and bytes sent to the page (benchmark and tests read them)
        self.sent_messages = 0
        self.sent_bytes = 0
        self.run_state = self._hub.run_state()
        self._handlers: dict[str, tuple[str, _Handler]] = {
            "hello": ("doing_request", self._on_hello),
            "rows": ("doing_rows", self._on_rows),
            "thumbs": ("doing_thumbs", self._on_thumbs),
            "select": ("doing_select", self._on_select),
            "edit": ("doing_edit", self._on_edit),
            "delete": ("doing_delete", self._on_delete),
            "delete_selected": ("doing_delete", self._on_delete_selected),
            "move": ("doing_move", self._on_move),
            "duplicate": ("doing_duplicate", self._on_duplicate),
            "retry": ("doing_retry", self._on_retry),
            "retry_selected": ("doing_retry", self._on_retry_selected),
            "run_next": ("doing_run_next", self._on_run_next),
            "run_next_selected": ("doing_run_next", self._on_run_next_selected),
            "cancel": ("doing_cancel", self._on_cancel),
            "open_gallery": ("doing_open_gallery", self._on_open_gallery),
            "zip_selected": ("doing_zip", self._on_zip_selected),
            "chunk": ("doing_zip", lambda c: self._zips.chunk(c)),
            "zip_done": ("doing_zip", lambda c: self._zips.done(c)),
        }
        #: called with (task, image index) when the page asks to open a result in a
        #: gallery (a click on a done row's thumbnail, Enter on a done row), and with
        #: ``view=`` (the gallery view beside the clicked grid) when the page names one
        self.gallery_hooks: list[Callable[..., None]] = []
        #: a ZIP of the selected tasks' images ("Download selected"), fetched in pieces
        self.zip_limit = ZIP_LIMIT
        self.save_dir: pathlib.Path | None = None
        self._zips = ZipJobs(self)
        self._hub.attach(self)
        self.on_msg(self._on_msg)

    # ----------------------------------------------------------- public API
    @property
    def batch(self) -> Batch:
        return self._batch

    @property
    def tasks(self) -> list[Task]:
        return list(self._batch.tasks)

    @property
    def selected(self) -> list[Task]:
        """The selected tasks, in batch order."""
        chosen = set(self.selection)
        return [t for t in self._batch.tasks if t.id in chosen]

    @property
    def results(self) -> list[GeneratedImage]:
        return list(self._batch.images)

    @property
    def run(self) -> Any:
        """The live run (``nbbatch.Runner``) or None."""
        return self._hub.live_runner()

    def close(self) -> None:
        hub = getattr(self, "_hub", None)  # close() also runs from __del__ of a failed init
        if hub is not None:
            hub.detach(self)
        zips = getattr(self, "_zips", None)
        if zips is not None:
            zips.drop_all()
        super().close()

    def _rebind(self, batch: Batch) -> None:
        """Show ``batch`` instead: its hub, fresh views, no selection; the page restarts."""
        self._hub.detach(self)
        self._batch = batch
        self._hub = hub_for(batch)
        self._dirty_rows = {}
        self._dirty_structure = self._dirty_all = False
        self._window.clear()
        self._screen.clear()
        self._filtered = False
        self._view_key = None
        self._view = ()
        self._notice = None
        self.selection = []
        self.count = len(batch.tasks)
        self.run_state = self._hub.run_state()
        self._hub.attach(self)
        self._post({"type": "reset"})

    # ----------------------------------------------------------- hub sink
    def hub_rows(self, ids: Iterable[str], *, full: bool) -> None:
        for i in ids:
            self._dirty_rows[i] = self._dirty_rows.get(i, False) or full
        self._coalescer.poke()

    def hub_structure(self) -> None:
        self._dirty_structure = True
        self._coalescer.poke()

    def hub_all_rows(self) -> None:
        self._dirty_all = True
        self._coalescer.poke()

    def hub_summary(self) -> None:
        self._coalescer.poke()

    def hub_run_state(self, state: str) -> None:
        self.run_state = state

    # ----------------------------------------------------------- sending
    def _post(self, content: dict[str, Any], buffers: Sequence[bytes] | None = None) -> None:
        self.sent_messages += 1
        self.sent_bytes += _approx_size(content) + sum(len(b) for b in buffers or ())
        self.send(content, buffers=list(buffers) if buffers else None)

    def _flush(self) -> None:
        try:
            self._flush_inner()
        except Exception:
            log.exception("nbbatch widget: could not send an update to the page")

    def _flush_inner(self) -> None:
        msg: dict[str, Any] = {"type": "patch"}
        rows_dirty = bool(self._dirty_rows) or self._dirty_all
        if self._dirty_structure or (self._filtered and rows_dirty):
            msg["invalidate"] = True
            if self._dirty_structure:
                self.count = len(self._batch.tasks)
                if self.selection:
                    known = self._hub.index()
                    kept = [i for i in self.selection if i in known]
                    if len(kept) != len(self.selection):
                        self.selection = kept
        elif rows_dirty:
            ids = list(self._window) if self._dirty_all else self._dirty_rows
            rows = []
            whole = []
            index = self._hub.index()
            for task_id in ids:
                if task_id not in self._window:
                    continue  # not on any screen: the page asks when it scrolls there
                try:
                    task = self._hub.task(task_id)
                except KeyError:
                    continue
                full = self._dirty_rows.get(task_id, False)
                if full and task_id in self._screen:
                    # on screen and more than the status changed (a result, an error):
                    # send the row itself rather than make the page ask for it
                    whole.append(self._row(task, index))
                    self._hub.remember_sources(task)
                else:
                    rows.append(_rows.patch(task, full))
            if rows:
                msg["rows"] = rows
            if whole:
                msg["full"] = whole
        self._dirty_rows = {}
        self._dirty_structure = False
        self._dirty_all = False
        msg["summary"] = self._hub.summary()
        self._post(msg)

    def notify(self, text: str, level: str = "error") -> None:
        """Show ``text`` in the widget (kept for views that render later)."""
        self._notice = {"level": level, "text": text}
        self._post({"type": "notice", **self._notice})

    # ----------------------------------------------------------- receiving
    def _on_msg(self, _widget: object, content: object, buffers: Sequence[Any]) -> None:
        answer(content, self._handlers, lang=self.lang, reply=self._reply, notify=self.notify)

    def _reply(self, uid: object, ok: bool, body: dict[str, Any], buffers: Any = None) -> None:
        self._post({"type": "reply", "uuid": uid, "ok": ok, **body}, buffers)

    # ----------------------------------------------------------- views and rows
    def _view_for(self, filt: str, query: str) -> Sequence[Task]:
        hub = self._hub
        tasks = self._batch.tasks
        key = (
            hub.structure_version,
            len(tasks),
            hub.status_version if filt != "all" else -1,
            hub.content_version if query else -1,
            filt,
            query,
        )
        if key != self._view_key:
            if filt == "all" and not query:
                self._view = tasks
            else:
                needle = query.casefold()
                self._view = [
                    t
                    for t in tasks
                    if (
                        filt == "all" or t.status.value == filt or (filt == "starred" and t.starred)
                    )
                    and (not needle or needle in t.prompt.casefold())
                ]
            self._view_key = key
        return self._view

    def _filter_args(self, content: dict[str, Any]) -> tuple[str, str]:
        filt = content.get("filter") or "all"
        query = content.get("query") or ""
        if not isinstance(filt, str) or filt not in _FILTERS or not isinstance(query, str):
            raise UserFacingError("bad_request", type=str(content.get("type")))
        return filt, query.strip()[:200]

    def _on_hello(self, content: dict[str, Any]) -> dict[str, Any]:
        self._coalescer.flush_now()  # nothing older than the snapshot arrives after it
        self.count = len(self._batch.tasks)
        self.run_state = self._hub.run_state()
        return {
            "strings": catalogue(self.lang, "studio"),
            "summary": self._hub.summary(),
            "notice": self._notice,
            "batch": self._batch_head(),
            "statuses": status_sets(),  # the page's status sets come from here
        }

    def _batch_head(self) -> dict[str, str]:
        return {"id": self._batch.id, "name": self._batch.name}

    def _batch_renamed(self) -> None:
        """The batch shown got a new name (History's Rename): the toolbar shows it."""
        self._post({"type": "batch", "batch": self._batch_head()})

    def _on_rows(self, content: dict[str, Any]) -> dict[str, Any]:
        filt, query = self._filter_args(content)
        self._filtered = filt != "all" or bool(query)
        view = self._view_for(filt, query)
        start = max(0, _int(content.get("start"), 0))
        end = min(len(view), _int(content.get("end"), start + 50), start + _MAX_ROWS)
        index = self._hub.index()
        rows = []
        for task in view[start:end]:
            rows.append(self._row(task, index))
            self._hub.remember_sources(task)
            for seen in (self._window, self._screen):
                seen[task.id] = None
                seen.move_to_end(task.id)
        while len(self._window) > _WINDOW:
            self._window.popitem(last=False)
        while len(self._screen) > _SCREEN:
            self._screen.popitem(last=False)
        return {"start": start, "total": len(view), "rows": rows}

    def _row(self, task: Task, index: dict[str, int]) -> Row:
        parent = None
        if task.parent_id is not None:
            try:
                parent = self._hub.task(task.parent_id)
            except KeyError:
                parent = None  # deleted: the row shows its reference as any other
        row = _rows.row(task, index.get(task.id, 0) + 1, self.lang, parent=parent)
        if "pa" in row:
            row["pa"]["n"] = index.get(row["pa"]["id"], 0) + 1
        return row

    def _on_thumbs(self, content: dict[str, Any]) -> dict[str, Any]:
        raw = content.get("keys")
        keys = [k for k in raw if isinstance(k, str)][:_MAX_THUMBS] if isinstance(raw, list) else []
        uid = content.get("uuid")
        hub = self._hub

        def work() -> list[bytes | None]:
            out: list[bytes | None] = []
            for key in keys:
                source = hub.source(key)
                if source is None:
                    out.append(None)
                    continue
                try:
                    out.append(hub.thumbs.get_bytes(source, THUMB_SIZE))
                except Exception as exc:  # a missing or broken file: show the rest
                    log.warning("nbbatch widget: no thumbnail for %s: %s", key[:12], exc)
                    out.append(None)
            return out

        def reply(found: list[bytes | None]) -> None:
            sent = [k for k, b in zip(keys, found, strict=True) if b is not None]
            missing = [k for k, b in zip(keys, found, strict=True) if b is None]
            buffers = [b for b in found if b is not None]
            self._reply(uid, True, {"keys": sent, "missing": missing}, buffers)

        loop = hub.loop
        if loop is None or not loop.is_running():
            reply(work())
            return _DEFERRED
        # Thumbnails decode and encode images: off the loop, so the run keeps going.
        future = loop.run_in_executor(None, work)

        def done(f: asyncio.Future[list[bytes | None]]) -> None:
            self._jobs.discard(f)
            try:
                reply(f.result())
            except Exception as exc:
                self._reply(uid, False, {"error": describe(exc, self.lang, "doing_thumbs")})

        self._jobs.add(future)
        future.add_done_callback(done)
        return _DEFERRED

    # ----------------------------------------------------------- selection
    def _on_select(self, content: dict[str, Any]) -> None:
        op = content.get("op")
        current = list(self.selection)
        if op == "none":
            self.selection = []
            return
        if op == "all":
            self.selection = [t.id for t in self._view_for(*self._filter_args(content))]
            return
        task = self._hub.task(content.get("id"))
        if op == "set":
            self.selection = [task.id]
        elif op == "toggle":
            self.selection = (
                [i for i in current if i != task.id] if task.id in current else [*current, task.id]
            )
        elif op == "range":
            view = self._view_for(*self._filter_args(content))
            ids = [t.id for t in view]
            anchor = content.get("anchor")
            if anchor not in ids:
                self.selection = [task.id]
                return
            a, b = sorted((ids.index(str(anchor)), ids.index(task.id)))
            chosen = set(current)
            self.selection = [*current, *(i for i in ids[a : b + 1] if i not in chosen)]
        else:
            raise UserFacingError("bad_request", type=f"select {op!r}")

    def _ids(self, content: dict[str, Any]) -> list[Task]:
        raw = content.get("ids")
        if not isinstance(raw, list) or not raw:
            raise UserFacingError("nothing_selected")
        return [self._hub.task(i) for i in raw]

    def _selected_tasks(self) -> list[Task]:
        tasks = self.selected
        if not tasks:
            raise UserFacingError("nothing_selected")
        return tasks

    # ----------------------------------------------------------- editing
    def _on_edit(self, content: dict[str, Any]) -> None:
        task = self._hub.task(content.get("id"))
        prompt = content.get("prompt")
        if not isinstance(prompt, str):
            raise UserFacingError("bad_request", type="edit")
        self._batch.edit(task, prompt=prompt)
        self.hub_rows((task.id,), full=True)

    def _on_delete(self, content: dict[str, Any]) -> None:
        self._delete(self._ids(content))

    def _on_delete_selected(self, content: dict[str, Any]) -> None:
        self._delete(self._selected_tasks())

    def _delete(self, tasks: list[Task]) -> None:
        self._batch.remove(*tasks)
        gone = {t.id for t in tasks}
        self.selection = [i for i in self.selection if i not in gone]
        self.hub_structure()

    def _on_move(self, content: dict[str, Any]) -> None:
        task = self._hub.task(content.get("id"))
        index = _int(content.get("index"), -1)
        if index < 0:
            raise UserFacingError("bad_request", type="move")
        self._batch.move(task, min(index, len(self._batch.tasks) - 1))
        self.hub_structure()

    def _on_duplicate(self, content: dict[str, Any]) -> None:
        self._batch.duplicate(self._hub.task(content.get("id")))
        self.hub_structure()

    def _on_cancel(self, content: dict[str, Any]) -> None:
        runner = self._hub.live_runner()
        if runner is not None:
            runner.cancel(self._hub.task(content.get("id")).id)

    def _on_zip_selected(self, content: dict[str, Any]) -> dict[str, Any]:
        from nbbatch.images._export import slugify

        stem = f"{slugify(self._batch.name) or 'batch'}_selection"
        return self._zips.start(content.get("uuid"), self._selected_tasks(), stem)

    def _off_loop(self, uid: object, action: str, work: Any, reply: Any) -> dict[str, Any]:
        run_off_loop(self, uid, action, work, reply)  # ZipJobs' work, answered later
        return _DEFERRED

    def _on_open_gallery(self, content: dict[str, Any]) -> None:
        task = self._hub.task(content.get("id"))
        if not self.gallery_hooks:
            raise UserFacingError("no_gallery")
        index = _int(content.get("index"), 0)
        view = content.get("view")
        for hook in self.gallery_hooks:
            if isinstance(view, str) and view:
                # the gallery view beside the grid view that was clicked (a studio shown
                # twice has two of each): only that one opens its dialog
                hook(task, index, view=view[:40])
            else:
                hook(task, index)

    # ----------------------------------------------------------- running
    def _on_retry(self, content: dict[str, Any]) -> None:
        self._retry(self._ids(content))

    def _on_retry_selected(self, content: dict[str, Any]) -> None:
        self._retry([t for t in self._selected_tasks() if t.status.value in _rows.RETRYABLE])

    def _retry(self, tasks: list[Task]) -> None:
        tasks = [t for t in tasks if t.status.value in _rows.RETRYABLE]
        if not tasks:
            raise UserFacingError("nothing_failed")
        if self._hub.live_runner() is not None:
            for t in tasks:  # joins the live run
                self._batch.retry(t)
            self.hub_rows([t.id for t in tasks], full=True)
        else:
            self._start(tasks)

    def _on_run_next(self, content: dict[str, Any]) -> None:
        self._run_next(self._ids(content))

    def _on_run_next_selected(self, content: dict[str, Any]) -> None:
        self._run_next(self._selected_tasks())

    def _run_next(self, tasks: list[Task]) -> None:
        for t in tasks:  # the run serves its "next" list first come, first served
            if t.status.value == "queued":
                self._batch.run_next(t)

    def _run_ended(self) -> None:
        """A watched run ended (the studio's History lists it anew)."""

    def _start(self, tasks: list[Task] | None = None) -> Any:
        """Start a run (of ``tasks``, default every runnable one) and watch it."""
        raise UserFacingError("nothing_to_run")  # only a studio knows the provider

    def _watch(self, runner: Any, owned: Sequence[Any] = ()) -> None:
        """Show in the widget what would otherwise vanish: an exception of the run."""
        self.run_state = str(runner.state)
        job = asyncio.ensure_future(runner.wait())
        self._jobs.add(job)

        def done(f: asyncio.Future[Any]) -> None:
            self._jobs.discard(f)
            for p in owned:  # providers built from saved settings for this run
                closing = asyncio.ensure_future(p.aclose())
                self._jobs.add(closing)
                closing.add_done_callback(self._jobs.discard)
            self.run_state = self._hub.run_state()
            self._run_ended()
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                return
            log.error("nbbatch studio: the run ended with an error", exc_info=exc)
            if isinstance(exc, NbbatchError):
                self.notify(tr(self.lang, "run_error", message=describe(exc, self.lang)))
            else:  # its text may hold anything (URLs, payloads): the type, and the log
                self.notify(tr(self.lang, "run_crashed", kind=type(exc).__name__))

        job.add_done_callback(done)


class BatchStudio(TaskGrid):
    """The batch studio: run toolbar, batch progress, provider picker and the task grid.

    ``BatchStudio(batch)`` attaches to a batch made in Python (re-displaying it or
    reloading the page re-attaches to the same live state); ``BatchStudio()`` starts a new
    batch in ``workspace``. ``provider`` is a registered name, the name of a saved
    configuration (``nbbatch.save_settings``) or a ``Provider`` object.
    """

    def __init__(
        self,
        batch: Batch | None = None,
        *,
        provider: Any = None,
        llm: Any = None,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        concurrency: int | None = None,
        lang: str | None = None,
        inputs: bool = False,
        **kwargs: Any,
    ) -> None:
        if batch is None:
            batch = Batch.create([], workspace=workspace, allow_empty=True)
        #: what was given in code wins over the settings panel (``inputs=True``)
        self.provider_given = provider is not None
        self.concurrency_given = concurrency is not None
        provider = "demo" if provider is None else provider
        concurrency = 3 if concurrency is None else concurrency
        #: retries per task for "Run all" (None: the engine's default policy)
        self.retries: int | None = None
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError("concurrency must be a whole number from 1 to 10")
        if not 1 <= concurrency <= 10:
            raise ConfigError(f"concurrency must be from 1 to 10, got {concurrency}")
        self._provider: Any = provider
        self._provider_obj: Any = None if isinstance(provider, str) else provider
        #: the planner's LLM settings (used by the prompt panel)
        self.llm = llm
        self._gallery: Gallery | None = None
        self._history: History | None = None
        #: batches this studio has shown, by id (opening one again reuses its object)
        self._batches: weakref.WeakValueDictionary[str, Batch] = weakref.WeakValueDictionary()
        self._box: Any = None
        super().__init__(batch, lang=lang, studio=True, concurrency=concurrency, **kwargs)
        self.provider_name = provider if isinstance(provider, str) else str(provider.name)
        self.providers = _provider_names(self.provider_name)
        self._handlers.update(
            {
                "run_all": ("doing_run_all", self._on_run_all),
                "pause": ("doing_pause", self._on_pause),
                "resume": ("doing_resume", self._on_resume),
                "stop": ("doing_stop", self._on_stop),
                "retry_failed": ("doing_retry", self._on_retry_failed),
                "set_provider": ("doing_provider", self._on_set_provider),
                "set_concurrency": ("doing_concurrency", self._on_set_concurrency),
                "open_history": ("doing_hist_open", self._on_open_history),
            }
        )
        self._batches[batch.id] = batch

        #: with ``inputs=True``: ``.upload`` and ``.prompt`` shown above the grid
        self.inputs: Any = None
        if inputs:
            from ._compose import attach_inputs

            self.inputs = attach_inputs(self)

    @property
    def gallery(self) -> Gallery:
        """The studio's lightbox (``studio.gallery.open(task, image=0)``), shown with it."""
        if self._gallery is None:
            from ._gallery import Gallery

            self._gallery = Gallery(self._batch, lang=self.lang)
            self._gallery.connect(self)
        return self._gallery

    def _on_open_gallery(self, content: dict[str, Any]) -> None:
        self.gallery  # noqa: B018 - composed on first use (displaying the studio does it too)
        super()._on_open_gallery(content)

    # ----------------------------------------------------------- history
    @property
    def history(self) -> History:
        """The studio's History dialog (``studio.history.open()``), shown with it."""
        if self._history is None:
            from ._history import History

            self._history = History(studio=self, lang=self.lang)
        return self._history

    def _on_open_history(self, content: dict[str, Any]) -> None:
        self.history.open()

    def _run_ended(self) -> None:
        if self._history is not None:
            self._history.changed()

    def open_batch(self, batch: Batch | str) -> Batch:
        """Show another batch of the workspace (an id, a unique id prefix, or a Batch).

        The grid, progress, gallery and prompt panel all switch to it; refused while a run
        of the batch shown is live (pause is not enough: stop it, or wait for it to end).
        """
        if self._hub.live_runner() is not None:
            raise ConfigError(
                f"batch {self._batch.id} is running; stop it or let it finish before "
                "opening another batch"
            )
        if not isinstance(batch, Batch):
            batch = self._known_batch(batch) or Batch.load(batch, self._batch.workspace)
        elif batch.workspace.path.resolve() != self._batch.workspace.path.resolve():
            raise ConfigError(
                f"batch {batch.id} is in workspace {str(batch.workspace.path)!r}; this "
                f"studio shows {str(self._batch.workspace.path)!r} (make a BatchStudio for it)"
            )
        self._show(batch)
        return batch

    def _known_batch(self, batch_id: str) -> Batch | None:
        return self._batches.get(batch_id)

    def _forget_batch(self, batch_id: str) -> None:
        self._batches.pop(batch_id, None)

    def _show(self, batch: Batch) -> None:
        if batch is self._batch:
            return
        self._batches[batch.id] = batch
        recorded = batch.provider
        if recorded and recorded in self.providers and recorded != self.provider_name:
            # Resume goes on with what the batch ran on, when this studio offers it (as
            # the provider picker would choose it).
            obj = self._provider_obj
            self._provider = obj if obj is not None and recorded == str(obj.name) else recorded
            self.provider_name = recorded
        self._rebind(batch)
        if self._gallery is not None:
            from ._gallery import Gallery

            old = self._gallery
            if old.open in self.gallery_hooks:
                self.gallery_hooks.remove(old.open)
            self._gallery = Gallery(batch, lang=self.lang)
            self._gallery.connect(self)
            if self._box is not None:
                self._box.children = [
                    self._gallery if child is old else child for child in self._box.children
                ]
            old.close()
        if self.inputs is not None:
            self.inputs.prompt.batch = batch
            self.inputs.upload.remix_into = batch  # a remixed drop lands in the batch shown
        if self._history is not None:
            self._history.current = batch.id

    def _open_from_history(
        self, batch_id: str, what: str, done: Callable[[BaseException | None], None]
    ) -> None:
        """History's Open / Resume / Retry failed: load off the loop, then switch and run."""
        if self._hub.live_runner() is not None and batch_id != self._batch.id:
            done(UserFacingError("hist_busy"))
            return

        def switch(batch: Batch) -> None:
            try:
                if self._hub.live_runner() is not None and batch is not self._batch:
                    raise UserFacingError("hist_busy")
                self._show(batch)
                if what == "resume":
                    if self._hub.live_runner() is None:
                        self._start()
                elif what == "retry_failed":
                    self._on_retry_failed({})
            except Exception as exc:
                done(exc)
                return
            done(None)

        known = self._known_batch(batch_id)
        loop = self._hub.loop
        if known is not None or loop is None or not loop.is_running():
            try:
                batch = known or Batch.load(batch_id, self._batch.workspace)
            except Exception as exc:
                done(exc)
                return
            switch(batch)
            return
        # Reading a large batch takes a while: off the loop, so runs elsewhere go on.
        future = loop.run_in_executor(None, Batch.load, batch_id, self._batch.workspace)

        def loaded(f: asyncio.Future[Batch]) -> None:
            self._jobs.discard(f)
            try:
                batch = f.result()
            except Exception as exc:
                done(exc)
                return
            switch(self._known_batch(batch_id) or batch)

        self._jobs.add(future)
        future.add_done_callback(loaded)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # The gallery is its own widget: it is displayed in the same output, under the
        # studio (its dialog opens over the page, wherever its output sits); with
        # ``inputs=True`` the settings bar, upload and prompt panels sit above the grid.
        if self._box is None:
            import ipywidgets  # type: ignore[import-untyped]

            top = self.inputs.layout if self.inputs is not None else self
            self._box = ipywidgets.VBox([top, self.gallery, self.history])
            self._box.add_class("nbb-studio-box")
        return self._box._repr_mimebundle_(**kwargs)

    @property
    def provider(self) -> Any:
        """What "Run all" runs on: a provider name, a configuration name, a
        ``ProviderConfig`` (built for each run) or a Provider."""
        return self._provider

    def use_provider(self, provider: Any) -> None:
        """Run on ``provider`` from the next "Run all" (the settings panel's Save calls
        this with the saved ``ProviderConfig``); the picker offers it from now on."""
        name = provider if isinstance(provider, str) else str(provider.name)
        self._provider = provider
        self._provider_obj = None if isinstance(provider, str) else provider
        self.providers = list(dict.fromkeys([name, *_provider_names(name)]))
        self.provider_name = name

    def start(self) -> Any:
        """Run every runnable task in the background, as "Run all" does; returns the run."""
        runner = self._hub.live_runner()
        if runner is not None:
            return runner
        return self._start()

    # ----------------------------------------------------------- handlers
    def _on_run_all(self, content: dict[str, Any]) -> None:
        runner = self._hub.live_runner()
        if runner is not None:
            if str(runner.state) == "paused":
                runner.resume()
                return
            raise UserFacingError("already_running")
        self._start()

    def _on_pause(self, content: dict[str, Any]) -> None:
        runner = self._hub.live_runner()
        if runner is not None:
            runner.pause()

    def _on_resume(self, content: dict[str, Any]) -> None:
        runner = self._hub.live_runner()
        if runner is not None:
            runner.resume()

    def _on_stop(self, content: dict[str, Any]) -> None:
        runner = self._hub.live_runner()
        if runner is not None:
            runner.stop()

    def _on_retry_failed(self, content: dict[str, Any]) -> None:
        failed = [t for t in self._batch.tasks if t.status.value == "failed"]
        if not failed:
            raise UserFacingError("nothing_failed")
        self._retry(failed)

    def _on_set_provider(self, content: dict[str, Any]) -> None:
        name = content.get("name")
        if not isinstance(name, str) or name not in self.providers:
            raise UserFacingError("bad_request", type="set_provider")
        obj = self._provider_obj
        self._provider = obj if obj is not None and name == str(obj.name) else name
        self.provider_name = name

    def _on_set_concurrency(self, content: dict[str, Any]) -> None:
        value = max(1, min(10, _int(content.get("value"), self.concurrency)))
        runner = self._hub.live_runner()
        if runner is not None:
            runner.set_concurrency(value)
        self.concurrency = value

    # ----------------------------------------------------------- running
    def _start(self, tasks: list[Task] | None = None) -> Any:
        if tasks is None and not self._batch.runnable():
            raise UserFacingError("nothing_to_run")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UserFacingError("needs_loop") from None
        provider, owned = self._build_provider()
        try:
            runner = self._batch.start(
                provider, concurrency=self.concurrency, retry=self.retries, tasks=tasks
            )
        except BaseException:
            for p in owned:
                closing = asyncio.ensure_future(p.aclose())
                self._jobs.add(closing)
                closing.add_done_callback(self._jobs.discard)
            raise
        self._watch(runner, owned)
        self.hub_all_rows()
        return runner

    def _build_provider(self) -> tuple[Any, list[Any]]:
        """A saved configuration is built here (and closed after the run); names go as is."""
        p = self._provider
        if isinstance(p, ProviderConfig):  # from the settings panel: its key included
            built = p.build()
            return built, [built]
        if not isinstance(p, str):
            return p, []
        try:
            settings = load_settings()
        except NbbatchError:
            return p, []
        if p in settings.providers and p not in available_providers():
            built = settings.get(p).build()
            return built, [built]
        return p, []


def _provider_names(current: str) -> list[str]:
    names = list(available_providers())
    try:
        names.extend(c.name for c in load_settings())
    except NbbatchError as exc:
        log.warning("nbbatch studio: saved provider settings unreadable: %s", exc)
    if current not in names:
        names.insert(0, current)
    return list(dict.fromkeys(names))


def _int(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default


def _approx_size(content: dict[str, Any]) -> int:
    import json

    try:
        return len(json.dumps(content, separators=(",", ":"), default=str))
    except (TypeError, ValueError):
        return 0
