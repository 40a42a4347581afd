"""``TaskGrid``: the tasks of a batch as a grid (one anywidget); Python holds the truth.

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
    ``set_concurrency {value}``, ``set_budget {value}``, ``set_deadline {value}``,
    ``set_run_mode {batch_api}``
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

import collections
import logging
import pathlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import traitlets

# The widgets sit on top: they use the engine's and the core's faces, never the package
# root (which imports everything, the widgets included).
from nbbatch.core._model import GeneratedImage, Task
from nbbatch.engine import Batch
from nbbatch.errors import NbbatchError
from nbbatch.images._export import slugify

from . import _rows
from ._coalesce import Coalescer, LoopScheduler, Scheduler
from ._gallery import ZIP_LIMIT, ZipJobs
from ._hub import Hub, hub_for
from ._i18n import catalogue, tr
from ._panel import Panel
from ._protocol import Row, status_sets
from ._session import StudioSession, provider_label
from ._words import UserFacingError, describe

__all__ = ["TaskGrid"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
_MAX_ROWS = 400  # per request: a tall screen shows ~30; the page asks with overscan
_MAX_THUMBS = 64  # per request
_WINDOW = 1200  # row ids remembered as "on some screen" for patches
_SCREEN = 150  # the most recently sent rows: finished ones among them are sent whole
THUMB_SIZE = 96  # px on the longer side: 48 css px at 2x density
_FILTERS = frozenset({"all", "starred", *_rows.STATUSES})


class TaskGrid(Panel):
    """The tasks of a batch as a virtualised, editable grid (works on its own too).

    ``TaskGrid(batch)`` shows one row per task, updates live while the batch runs and
    sends edits, deletes, moves and retries through the batch's own API (a retry runs on
    the provider the batch ran on). In a ``BatchStudio`` it is the studio's grid and
    shows the run toolbar of the studio's session.
    """

    _esm = _STATIC / "studio.js"
    _css = _STATIC / "studio.css"

    _shows_notices = True

    studio = traitlets.Bool(False).tag(sync=True)
    count = traitlets.Int(0).tag(sync=True)
    selection = traitlets.List(traitlets.Unicode()).tag(sync=True)
    run_state = traitlets.Unicode("idle").tag(sync=True)
    provider_name = traitlets.Unicode("").tag(sync=True)
    providers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: display names of ``providers`` (the catalogue's labels), in the same order
    provider_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    concurrency = traitlets.Int(3).tag(sync=True)
    #: the provider's own limit on requests at once (0: none), shown beside concurrency
    concurrency_limit = traitlets.Int(0).tag(sync=True)
    #: tasks another kernel's run holds (0: none): the toolbar says so and Run waits
    held_elsewhere = traitlets.Int(0).tag(sync=True)
    #: the run modes offered (``RunModes``: the price of an image now and through the
    #: batch API, None: unknown), or {} when the provider has no batch API
    run_modes = traitlets.Dict().tag(sync=True)
    #: "Run all" goes through the provider's batch API
    batch_api = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        batch: Batch | None = None,
        *,
        lang: str | None = None,
        session: StudioSession | None = None,
        _clock: Callable[[], float] | None = None,
        _scheduler: Scheduler | None = None,
        **kwargs: Any,
    ) -> None:
        if session is None:
            if not isinstance(batch, Batch):
                raise TypeError(f"TaskGrid needs an nbbatch.Batch, got {type(batch).__name__}")
            session = StudioSession(batch)
            toolbar = False
        else:
            toolbar = True
            if batch is not None and batch is not session.batch:
                raise TypeError("TaskGrid: give the batch or the session, not both")
            batch = session.batch
        super().__init__(lang=lang, count=len(batch.tasks), studio=toolbar, **kwargs)
        self._session = session
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
        self._state_pending: str | None = None  # sent after the next patch
        self.run_state = self._hub.run_state()
        self._follow_provider()
        self.concurrency = session.concurrency
        self.held_elsewhere = session.held_elsewhere
        self._handle(
            {
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
                "run_all": ("doing_run_all", self._on_run_all),
                "pause": ("doing_pause", lambda c: self._session.pause()),
                "resume": ("doing_resume", lambda c: self._session.resume()),
                "stop": ("doing_stop", lambda c: self._session.stop()),
                "retry_failed": ("doing_retry", self._on_retry_failed),
                "set_provider": ("doing_provider", self._on_set_provider),
                "set_concurrency": ("doing_concurrency", self._on_set_concurrency),
                "set_budget": ("doing_budget", lambda c: self._session.set_budget(c.get("value"))),
                "set_deadline": (
                    "doing_deadline",
                    lambda c: self._session.set_deadline(c.get("value")),
                ),
                "set_run_mode": ("doing_run_mode", self._on_set_run_mode),
                "open_history": ("doing_hist_open", self._on_open_history),
            }
        )
        # called with (task, image index) when the page asks to open a result in a
        # gallery (a click on a done row's thumbnail, Enter on a done row), and with
        # ``view=`` (the gallery view beside the clicked grid) when the page names one
        self._gallery_hooks: list[Callable[..., None]] = []
        # what the empty grid says instead of "add some from Python" (a catalogue key)
        self._empty_key: str | None = None
        # what the toolbar's History button opens (a studio's History dialog)
        self._history_hook: Callable[[], None] | None = None
        #: a ZIP of the selected tasks' images ("Download selected"), fetched in pieces
        self.zip_limit = ZIP_LIMIT
        self.save_dir: pathlib.Path | None = None
        self._zips = ZipJobs(self)
        self._hub.attach(self)
        self._unfollow = session.subscribe(self._session_changed)

    def _repr_detail(self) -> str:
        return f"batch {self._batch.name!r} · {len(self._batch.tasks)} tasks · {self.run_state}"

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
        unfollow = getattr(self, "_unfollow", None)
        if unfollow is not None:
            unfollow()
        super().close()

    # ----------------------------------------------------------- the session
    @property
    def session(self) -> StudioSession:
        """What runs and what is shown (a studio's, or this grid's own)."""
        return self._session

    def _follow_provider(self) -> None:
        names = self._session.providers
        with self.hold_sync():
            self.providers = names
            self.provider_labels = [provider_label(n) for n in names]
            self.provider_name = self._session.provider_name
            self.concurrency_limit = self._session.provider_limit() or 0
            self.run_modes = self._session.run_mode_prices() or {}
            self.batch_api = self._session.batch_api

    def _session_changed(self, what: str, value: Any) -> None:
        if what == "batch":
            self._rebind(value)
        elif what == "renamed":
            self._batch_renamed()
        elif what == "provider":
            self._follow_provider()
        elif what == "concurrency":
            self.concurrency = int(value)
        elif what == "held":
            self.held_elsewhere = int(value)
        elif what == "run_mode":
            self.batch_api = bool(value)
        elif what == "refreshed":
            self._hub.refreshed(value)
        elif what == "held_ended":
            if value is None:
                self.notify(tr(self.lang, "held_elsewhere_ended"), "info")
            else:
                message = describe(value, self.lang)
                self.notify(tr(self.lang, "held_elsewhere_lost", message=message))
        elif what == "run":
            self.run_state = str(value.state)
            self._hub_all_rows()
        elif what == "run_ended":
            self._show_state(self._hub.run_state())
            exc = value
            if exc is None:
                return
            if isinstance(exc, NbbatchError):
                self.notify(tr(self.lang, "run_error", message=describe(exc, self.lang)))
            else:  # its text may hold anything (URLs, payloads): the type, and the log
                self.notify(tr(self.lang, "run_crashed", kind=type(exc).__name__))

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
    def _hub_rows(self, ids: Iterable[str], *, full: bool) -> None:
        for i in ids:
            self._dirty_rows[i] = self._dirty_rows.get(i, False) or full
        self._coalescer.poke()

    def _hub_labels(self, ids: Sequence[str]) -> None:
        # the row's text changed: on screen it is sent whole, elsewhere re-read when shown
        self._hub_rows(ids, full=True)

    def _hub_structure(self, added: Sequence[str] = ()) -> None:
        self._dirty_structure = True
        self._coalescer.poke()

    def _hub_all_rows(self) -> None:
        self._dirty_all = True
        self._coalescer.poke()

    def _hub_summary(self) -> None:
        self._coalescer.poke()

    def _hub_run_state(self, state: str) -> None:
        self._show_state(state)

    def _show_state(self, state: str) -> None:
        """A run's end reaches the page with (just after) the patch of its last results:
        "Finished" never shows beside tasks still completing. Other states at once."""
        if state in ("finished", "stopped"):
            self._state_pending = state
            self._coalescer.poke()
        else:
            self._state_pending = None
            self.run_state = state

    # ----------------------------------------------------------- sending
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
                    whole.append(self._row(task, index.get(task.id, 0) + 1))
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
        if self._state_pending is not None:
            self.run_state, self._state_pending = self._state_pending, None

    # ----------------------------------------------------------- views and rows
    def _view_for(self, filt: str, query: str) -> Sequence[Task]:
        hub = self._hub
        tasks = self._batch.tasks
        if filt == "all" and not query:
            return tasks  # the batch's own list (Batch.refresh replaces it)
        key = (
            hub.structure_version,
            len(tasks),
            hub.status_version if filt != "all" else -1,
            hub.content_version if query else -1,
            filt,
            query,
        )
        if key != self._view_key:
            needle = query.casefold()
            self._view = [
                t
                for t in tasks
                if (filt == "all" or t.status.value == filt or (filt == "starred" and t.starred))
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
        strings = catalogue(self.lang, "studio")
        if self._empty_key is not None:  # a studio with a prompt panel above the grid
            strings = {**strings, "empty": strings[self._empty_key]}
        return {
            "strings": strings,
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
        # the whole batch in order: a row's number is its place, no index needed (the
        # index of a 100,000-task batch takes a pass over every task)
        index = self._hub.index() if self._filtered else None
        rows = []
        for i, task in enumerate(view[start:end]):
            number = index.get(task.id, 0) + 1 if index is not None else start + 1 + i
            rows.append(self._row(task, number))
            self._hub.remember_sources(task)
            for seen in (self._window, self._screen):
                seen[task.id] = None
                seen.move_to_end(task.id)
        while len(self._window) > _WINDOW:
            self._window.popitem(last=False)
        while len(self._screen) > _SCREEN:
            self._screen.popitem(last=False)
        return {"start": start, "total": len(view), "rows": rows}

    def _row(self, task: Task, number: int) -> Row:
        parent = None
        if task.parent_id is not None:
            try:
                parent = self._hub.task(task.parent_id)
            except KeyError:
                parent = None  # deleted: the row shows its reference as any other
        row = _rows.row(task, number, self.lang, parent=parent)
        if "pa" in row:
            row["pa"]["n"] = self._hub.index().get(row["pa"]["id"], 0) + 1
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

        # Thumbnails decode and encode images: off the loop, so the run keeps going.
        return self._off_loop(uid, "doing_thumbs", work, reply)

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
        self._hub_rows((task.id,), full=True)

    def _on_delete(self, content: dict[str, Any]) -> None:
        self._delete(self._ids(content))

    def _on_delete_selected(self, content: dict[str, Any]) -> None:
        self._delete(self._selected_tasks())

    def _delete(self, tasks: list[Task]) -> None:
        self._batch.remove(*tasks)
        gone = {t.id for t in tasks}
        self.selection = [i for i in self.selection if i not in gone]
        self._hub_structure()

    def _on_move(self, content: dict[str, Any]) -> None:
        task = self._hub.task(content.get("id"))
        index = _int(content.get("index"), -1)
        if index < 0:
            raise UserFacingError("bad_request", type="move")
        self._batch.move(task, min(index, len(self._batch.tasks) - 1))
        self._hub_structure()

    def _on_duplicate(self, content: dict[str, Any]) -> None:
        self._batch.duplicate(self._hub.task(content.get("id")))
        self._hub_structure()

    def _on_cancel(self, content: dict[str, Any]) -> None:
        self._session.cancel(self._hub.task(content.get("id")))

    def _on_zip_selected(self, content: dict[str, Any]) -> dict[str, Any]:
        stem = f"{slugify(self._batch.name) or 'batch'}_selection"
        return self._zips.start(content.get("uuid"), self._selected_tasks(), stem)

    def _on_open_gallery(self, content: dict[str, Any]) -> None:
        task = self._hub.task(content.get("id"))
        if not self._gallery_hooks:
            raise UserFacingError("no_gallery")
        index = _int(content.get("index"), 0)
        view = content.get("view")
        for hook in self._gallery_hooks:
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
        self._retry(self._selected_tasks())

    def _retry(self, tasks: list[Task]) -> None:
        retried = self._session.retry(tasks)
        self._hub_rows([t.id for t in retried], full=True)

    def _on_run_next(self, content: dict[str, Any]) -> None:
        self._session.run_next(self._ids(content))

    def _on_run_next_selected(self, content: dict[str, Any]) -> None:
        self._session.run_next(self._selected_tasks())

    def _on_run_all(self, content: dict[str, Any]) -> None:
        self._session.run_all(budget=content.get("budget"), deadline=content.get("deadline"))

    def _on_retry_failed(self, content: dict[str, Any]) -> None:
        self._session.retry_failed()

    def _on_set_provider(self, content: dict[str, Any]) -> None:
        self._session.choose_provider(content.get("name"))  # type: ignore[arg-type]

    def _on_set_concurrency(self, content: dict[str, Any]) -> None:
        self._session.set_concurrency(_int(content.get("value"), self._session.concurrency))

    def _on_set_run_mode(self, content: dict[str, Any]) -> None:
        on = content.get("batch_api")
        if not isinstance(on, bool):
            raise UserFacingError("bad_request", type="set_run_mode")
        self._session.set_batch_api(on)

    def _on_open_history(self, content: dict[str, Any]) -> None:
        if self._history_hook is None:
            raise UserFacingError("hist_no_studio")
        self._history_hook()


def _int(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default
