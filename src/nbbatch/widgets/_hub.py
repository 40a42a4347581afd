"""One hub per batch: subscribes to its events once and tells every widget what changed.

The engine delivers events on the loop thread (a run under ``run_sync`` in a worker
thread is marshalled onto it here too, in case an event arrives from elsewhere). The hub
does no I/O and sends nothing itself: it only marks, in each attached widget, which rows,
which structure and which counters are dirty; each widget's coalescer decides when to send.
Several widgets on one batch (a studio and a ``TaskGrid``, or the same studio displayed
twice) share the hub, so the batch is subscribed to once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import nbbatch.events as events
from nbbatch.core._model import Task, TaskStatus
from nbbatch.engine import Batch
from nbbatch.engine._pace import wall_clock
from nbbatch.images import ThumbnailCache

from . import _rows
from ._tally import Tally

__all__ = ["Hub", "Sink", "hub_for"]

log = logging.getLogger("nbbatch")

_TASK_ID = operator.attrgetter("id")

#: thumbnail sources remembered for the browser (keys it was sent in rows)
_MAX_SOURCES = 4096

# Only status, percent and attempts change: a patch carries all of it.
_STATUS_ONLY = (events.TaskQueued, events.TaskStarted, events.TaskProgress, events.TaskRetrying)
# More changed (error text, images, prompt): the page re-reads the row if it shows it.
_ROW_FULL = (
    events.TaskSucceeded,
    events.TaskFailed,
    events.TaskCancelled,
    events.TaskInterrupted,
    events.TaskChanged,
)
_STRUCTURE = (events.TaskAdded, events.TaskRemoved, events.TasksReordered)


class Sink(Protocol):
    """What a widget offers the hub (all called on the loop thread; private names: they
    are plumbing, not the widget's public face)."""

    def _hub_rows(self, ids: Iterable[str], *, full: bool) -> None: ...
    def _hub_labels(self, ids: Sequence[str]) -> None: ...
    def _hub_structure(self, added: Sequence[str]) -> None: ...
    def _hub_all_rows(self) -> None: ...
    def _hub_summary(self) -> None: ...
    def _hub_run_state(self, state: str) -> None: ...


class Hub:
    def __init__(self, batch: Batch, loop: asyncio.AbstractEventLoop | None) -> None:
        self._batch = weakref.ref(batch)
        self.batch_id = batch.id
        self.loop = loop
        self._thread = threading.get_ident()
        self._sinks: weakref.WeakSet[Any] = weakref.WeakSet()
        self.thumbs = ThumbnailCache(batch.workspace)
        self._sources: collections.OrderedDict[str, Any] = collections.OrderedDict()
        #: bumped when tasks are added, removed or reordered
        self.structure_version = 0
        #: bumped when any status changes / any prompt changes (filtered views depend on them)
        self.status_version = 0
        self.content_version = 0
        self._index: dict[str, int] | None = None
        self._index_version = -1
        #: the summary's figures, moved by each event instead of recounted per summary
        self.tally = Tally(batch.tasks)
        # run clock (for elapsed and images/min)
        self._run_started: float | None = None
        self._run_ended: float | None = None
        self._run_images = 0
        #: time spent in the batch's earlier runs (shown with the run's own: a retry of
        #: one task after a long run does not bring "elapsed" back to 0:00)
        self._runs_before = 0.0
        self.clock: Callable[[], float] = time.monotonic
        self._unsubscribe = batch.subscribe(self._on_event)

    # ----------------------------------------------------------- wiring
    @property
    def batch(self) -> Batch:
        batch = self._batch()
        if batch is None:  # pragma: no cover - widgets hold the batch while they live
            raise RuntimeError("the batch of this widget is gone")
        return batch

    def attach(self, sink: Sink) -> None:
        self._sinks.add(sink)

    def detach(self, sink: Sink) -> None:
        self._sinks.discard(sink)

    def _on_event(self, event: events.Event) -> None:
        # The batch delivers on the loop thread it was subscribed from; this guard only
        # matters for a hub made outside a loop and fed from elsewhere.
        if self.loop is not None and threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._handle, event)
        else:
            self._handle(event)

    def _handle(self, event: events.Event) -> None:
        try:
            self._route(event)
        except Exception:  # an event must never break the run that emitted it
            log.exception("nbbatch widget: could not apply %s", type(event).__name__)

    def _route(self, event: events.Event) -> None:
        sinks = list(self._sinks)
        if isinstance(event, (*_STATUS_ONLY, *_ROW_FULL, events.TaskAdded)):
            self.tally.update((event.task,))
        elif isinstance(event, events.TaskRemoved):
            self.tally.remove(event.task_id)
        if isinstance(event, (*_STATUS_ONLY, *_ROW_FULL)):
            self.status_version += 1
            if isinstance(event, events.TaskChanged):
                self.content_version += 1
            if isinstance(event, events.TaskSucceeded):
                self._run_images += len(event.images)
            # a task sent to a batch API starts with its label ("queued at OpenAI")
            full = isinstance(event, _ROW_FULL) or (
                isinstance(event, events.TaskStarted) and event.task.error_kind == "batch_api"
            )
            for s in sinks:
                s._hub_rows((event.task.id,), full=full)
        elif isinstance(event, _STRUCTURE):
            self.structure_version += 1
            added = (event.task.id,) if isinstance(event, events.TaskAdded) else ()
            for s in sinks:
                s._hub_structure(added)
        elif isinstance(event, events.RemoteJobChanged):
            # a batch API job moved on: only the words of its running rows changed ("in
            # progress at OpenAI"), not their status, counts or images
            ids = [t.id for t in event.tasks]
            for s in sinks:
                s._hub_labels(ids)
        elif isinstance(event, events.RunStateChanged):
            state = str(event.state)
            self._clock_run(state)
            if state in ("stopped", "finished"):
                # a stopped run sends its queued tasks back to idle without an event each
                self.tally.stale = True
            # Stopping sends queued tasks back to idle without one event each: repaint
            # every row on screen from the tasks themselves.
            self.status_version += 1
            for s in sinks:
                s._hub_run_state(state)
                s._hub_all_rows()
        for s in sinks:
            s._hub_summary()

    def _clock_run(self, state: str) -> None:
        now = self.clock()
        # A run announces "running" before the batch names it as its runner, and again
        # on every resume: a new run is one that starts after the last one ended.
        if state == "running" and (self._run_started is None or self._run_ended is not None):
            if self._run_started is not None and self._run_ended is not None:
                self._runs_before += max(0.0, self._run_ended - self._run_started)
            self._run_started = now
            self._run_ended = None
        elif state in ("finished", "stopped") and self._run_started is not None:
            self._run_ended = now

    # ----------------------------------------------------------- queries
    def live_runner(self) -> Any:
        runner = self.batch.runner
        return runner if runner is not None and not runner.done else None

    def run_state(self) -> str:
        """The live run's state, else how the last run ended ("idle" before any run)."""
        runner = self.batch.runner
        return str(runner.state) if runner is not None else "idle"

    def index(self) -> dict[str, int]:
        """Task id -> position in the batch (0-based), rebuilt after structural changes."""
        if self._index is None or self._index_version != self.structure_version:
            tasks = self.batch.tasks
            self._index = dict(zip(map(_TASK_ID, tasks), range(len(tasks)), strict=True))
            self._index_version = self.structure_version
        return self._index

    def task(self, task_id: object) -> Task:
        """The task with this id (a KeyError when it is gone: the page shows "deleted")."""
        if not isinstance(task_id, str):
            raise KeyError(task_id)
        pos = self.index().get(task_id)
        tasks = self.batch.tasks
        if pos is None or pos >= len(tasks) or tasks[pos].id != task_id:
            self._index = None  # changed behind our back (e.g. before the events existed)
            pos = self.index().get(task_id)
            if pos is None:
                raise KeyError(task_id)
        return tasks[pos]

    def remember_sources(self, task: Task) -> None:
        for key, source in _rows.thumb_sources(task):
            self._sources[key] = source
            self._sources.move_to_end(key)
        while len(self._sources) > _MAX_SOURCES:
            self._sources.popitem(last=False)

    def source(self, key: str) -> Any:
        return self._sources.get(key)

    def refreshed(self, changed: Iterable[Task] = ()) -> None:
        """The batch re-read its tasks from the journal (``Batch.refresh``, following
        another kernel's run): count again and repaint what is on screen."""
        self._index = None
        self.tally.stale = True
        # new task objects, maybe other tasks: every view is rebuilt, the pages ask again
        self.structure_version += 1
        self.status_version += 1
        self.content_version += 1
        for s in list(self._sinks):
            s._hub_structure(())
            s._hub_summary()

    def figures(self) -> Tally:
        """The tally, counted again first when something changed without events."""
        tally = self.tally
        tasks = self.batch.tasks
        if tally.stale or tally.total != len(tasks):
            tally.recount(tasks)
        return tally

    def summary(self) -> dict[str, Any]:
        tally = self.figures()
        counts = {status: tally.counts[TaskStatus(status)] for status in _rows.STATUSES}
        runner = self.live_runner()
        eta = None
        pace = None  # what holds the run back, in words (deadline, rate limits, ...)
        paused_reason = None
        deadline = None
        if runner is not None:
            eta = runner.progress().eta
            deadline = _clock_time(runner.pace.deadline)
            paused_reason = runner.paused_reason
            # the deadline ahead is "deadline" (its own place in the toolbar), not also here
            pace = runner.pace.describe(deadline=False)
            if pace == paused_reason:
                pace = None  # said once, as the reason of the pause
        elif self.batch.runner is not None and str(self.batch.runner.state) == "stopped":
            # a run that stopped by itself says why (a refused key, a batch API job gone)
            paused_reason = getattr(self.batch.runner, "stop_reason", None)
        elapsed = None
        ipm = None
        if self._run_started is not None:
            end = self._run_ended if self._run_ended is not None else self.clock()
            elapsed = self._runs_before + max(0.0, end - self._run_started)
            if elapsed >= 3.0 and self._run_images:
                ipm = round(self._run_images * 60.0 / elapsed, 1)
        done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
        done += counts["interrupted"]
        return {
            "total": tally.total,
            "counts": counts,
            "done": done,
            "images": tally.images,
            "refs": tally.refs,
            "starred": tally.starred,
            "elapsed": None if elapsed is None else round(elapsed, 1),
            "ticking": runner is not None and self._run_ended is None,
            "eta": None if eta is None else round(eta, 1),
            "ipm": ipm,
            "paused_reason": paused_reason,
            "pace": pace,
            "deadline": deadline,
        }


def _clock_time(moment: float | None) -> str | None:
    """A deadline as the toolbar shows it: "07:00" today, "2026-12-08 07:00" otherwise."""
    if moment is None:
        return None
    when = datetime.fromtimestamp(moment)
    same_day = when.date() == datetime.fromtimestamp(wall_clock()).date()
    return when.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")


_HUBS: weakref.WeakKeyDictionary[Batch, Hub] = weakref.WeakKeyDictionary()


def hub_for(batch: Batch) -> Hub:
    """The hub of ``batch`` (made on first use; it lives as long as the batch)."""
    hub = _HUBS.get(batch)
    if hub is None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        hub = _HUBS[batch] = Hub(batch, loop)
    return hub
