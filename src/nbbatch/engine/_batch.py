"""A batch: an ordered list of tasks journaled in a workspace, how to edit it and run it.

Every change goes the same way — checked, journaled, then announced — whether a notebook
cell, the CLI or the studio makes it: ``add``, ``edit``, ``remove``, ``move``,
``duplicate``, ``retry``, ``derive``, ``remix`` and ``star`` write the journal first and
then emit one event (``TaskAdded``, ``TaskChanged``, ``TaskRemoved``, ``TasksReordered``).
While a run is active it takes those changes as they come: added and retried tasks join it, an
edited queued task keeps its place and is sent as edited, a removed one is never sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._aio import run_blocking
from ..core._errors import ConfigError, HeldElsewhereError, NotFoundError, TaskStateError
from ..core._events import (
    Event,
    TaskAdded,
    TaskChanged,
    TaskRemoved,
    TasksReordered,
    TaskSucceeded,
)
from ..core._model import GeneratedImage, Params, Reference, Task, TaskStatus, check_prompt
from ..core._names import warn_renamed
from ..core._retry import TASK_RETRY, RetryPolicy
from ..images._export import export_zip
from ..images._metadata import task_from_image
from ..providers._base import Provider
from ..providers._registry import get_provider
from ._history import batch_status
from ._html import batch_html, task_html
from ._ledger import task_cost
from ._pace import PaceOptions, journaled_budget, save_budget
from ._runner import DEFAULT_ATTEMPT_TIMEOUT, Runner
from ._settings import RunDefaults, load_settings
from ._store import BatchRecord, RunHolder, Workspace, bulk_objects, new_ids

if TYPE_CHECKING:
    import pandas

__all__ = ["Batch"]

log = logging.getLogger("nbbatch")

_closing: set[asyncio.Future[None]] = set()  # keeps close() calls alive until they end
_RUNNABLE = frozenset({TaskStatus.IDLE, TaskStatus.QUEUED, TaskStatus.INTERRUPTED})
_RETRYABLE = _RUNNABLE | {TaskStatus.FAILED, TaskStatus.CANCELLED}
_EDITABLE = frozenset(
    {
        TaskStatus.IDLE,
        TaskStatus.QUEUED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.INTERRUPTED,
    }
)
_RETRY_FROM = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED})

TaskRef = Task | str


@dataclass
class _Subscription:
    fn: Callable[[Event], None]
    loop: asyncio.AbstractEventLoop | None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _deliver(fn: Callable[[Event], None], event: Event) -> None:
    try:
        fn(event)
    except Exception:
        log.exception("an nbbatch event subscriber raised; nothing else is affected")


class Batch:
    """Tasks that run together; results stay in the workspace after the kernel dies.

    Make one with :meth:`create`, reopen one with :meth:`load`. ``await batch.run("demo")``
    runs it in a notebook, ``batch.start()`` runs it in the background and returns a
    handle, ``batch.run_sync()`` is for scripts. ``add``/``edit``/``remove``/``move``/
    ``duplicate``/``retry``/``derive``/``remix`` change it, also while it runs.

    ``batch.runner`` is its run in this kernel (the :class:`Runner` that ``start``
    returns): the live one, or the last one that ended (``runner.done``); None before
    any run.
    """

    def __init__(
        self,
        workspace: Workspace,
        id: str,
        name: str,
        tasks: list[Task],
        *,
        provider: str | None = None,
        created_at: float = 0.0,
    ) -> None:
        self.workspace = workspace
        self.id = id
        self.name = name
        self.tasks = tasks
        self.provider = provider
        self.created_at = created_at
        self.runner: Runner | None = None
        self._subscriptions: list[_Subscription] = []
        self._lock = threading.RLock()  # edits may come from a run_sync worker thread
        for t in tasks:
            self._attach(t)

    @classmethod
    def _from_record(cls, workspace: Workspace, record: BatchRecord) -> Batch:
        return cls(
            workspace,
            record.id,
            record.name,
            record.tasks,
            provider=record.provider,
            created_at=record.created_at,
        )

    # ----------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        tasks: Iterable[Task | str],
        *,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        params: Params | None = None,
        name: str | None = None,
        provider: str | None = None,
        allow_empty: bool = False,
    ) -> Batch:
        """Journal a new batch in ``workspace`` (default: ``./nbbatch-workspace``).

        Prompts become tasks with ``params``; ``provider`` is remembered for ``resume``.
        No tasks is a mistake unless ``allow_empty`` (a studio that fills it later).
        """
        ws = _workspace(workspace)
        base = params or Params()
        items = list(tasks)
        with bulk_objects():
            ids = new_ids(sum(1 for t in items if not isinstance(t, Task)))
            made = [
                t if isinstance(t, Task) else Task(prompt=t, params=base, id=ids.pop())
                for t in items
            ]
            for t in made:
                _check_references(ws, t.references, task_id=t.id)
            record = ws.insert_batch(
                made, name=name, params=base, provider=provider, allow_empty=allow_empty
            )
            return cls._from_record(ws, record)

    @classmethod
    def load(
        cls, batch_id: str, workspace: Workspace | str | os.PathLike[str] | None = None
    ) -> Batch:
        """Reopen a batch (a unique id prefix is enough)."""
        ws = _workspace(workspace)
        record = ws.load_batch(batch_id)
        with bulk_objects():  # attaching touches every task and image
            return cls._from_record(ws, record)

    def held_elsewhere(self) -> list[RunHolder]:
        """Live runs of *other* processes (other kernels) holding tasks of this batch.

        Each ``RunHolder`` has ``pid``, ``host``, ``run_id``, ``claimed_at`` and
        ``task_ids`` (queued or running there); ``describe()`` names it in words. Empty
        when no other kernel is running this batch. Cheap enough to poll.
        """
        return self.workspace.held_elsewhere(batch_id=self.id)

    def _refuse_if_all_held_elsewhere(self, chosen: Sequence[Task]) -> None:
        # Another kernel running this batch must not look like "finished" here: when
        # nothing is left to run but what it holds, say so (issue 26, item 5).
        holders = self.held_elsewhere()
        if not holders:
            return
        held = {i for h in holders for i in h.task_ids}
        if any(t.id not in held and t.status is not TaskStatus.QUEUED for t in chosen):
            return  # some tasks are ours to run; the runner leaves the others alone
        count = len(held)
        who = "; ".join(h.describe() for h in holders)
        raise HeldElsewhereError(
            f"{count} task(s) of batch {self.id} are being run by another kernel ({who}); "
            "nothing was started here. batch.follow() shows them here as they finish; "
            "stop that run there to run them here.",
            holders=tuple(holders),
            task_ids=tuple(sorted(held)),
        )

    async def afollow(
        self,
        interval: float = 1.0,
        *,
        timeout: float | None = None,
        on_change: Callable[[list[Task]], None] | None = None,
    ) -> Batch:
        """Follow another kernel's run of this batch from the journal until it ends.

        Re-reads the batch every ``interval`` seconds while :meth:`held_elsewhere` finds
        a live run of another process, then once more; returns the batch. After each
        read, ``on_change(tasks)`` gets the tasks whose status or images changed (a view
        redraws them). ``timeout`` (seconds) raises ``TimeoutError`` if that run is still
        going by then.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        seen = {t.id: (t.status, len(t.images)) for t in self.tasks}
        while True:
            holders = await asyncio.to_thread(self.held_elsewhere)
            await asyncio.to_thread(self.refresh)
            if on_change is not None:
                changed = [t for t in self.tasks if seen.get(t.id) != (t.status, len(t.images))]
                seen = {t.id: (t.status, len(t.images)) for t in self.tasks}
                if changed:
                    on_change(changed)
            if not holders:
                return self
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(
                    f"another kernel is still running {sum(len(h.task_ids) for h in holders)} "
                    f"task(s) of batch {self.id} after {timeout:g} s"
                )
            await asyncio.sleep(interval)

    def follow(
        self,
        interval: float = 1.0,
        *,
        timeout: float | None = None,
        on_change: Callable[[list[Task]], None] | None = None,
    ) -> Batch:
        """:meth:`afollow` for scripts (blocks until the other kernel's run ends)."""
        return run_blocking(lambda: self.afollow(interval, timeout=timeout, on_change=on_change))

    def refresh(self) -> Batch:
        """Re-read the tasks from the workspace (e.g. after another process ran them)."""
        with self._lock:
            self.tasks = self.workspace.load_batch(self.id).tasks
            for t in self.tasks:
                self._attach(t)
        return self

    # ----------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, key: int | str) -> Task:
        if isinstance(key, int):
            return self.tasks[key]
        for t in self.tasks:
            if t.id == key:
                return t
        raise KeyError(
            f"batch {self.id} has no task {key!r}: use a task id from batch.tasks "
            f"(e.g. batch.tasks[0].id) or a position 0-{len(self.tasks) - 1}"
            if self.tasks
            else f"batch {self.id} has no task {key!r}: it has no tasks yet"
        )

    def index(self, task: TaskRef) -> int:
        """Position of ``task`` in the batch (0-based)."""
        wanted = task if isinstance(task, str) else task.id
        for i, t in enumerate(self.tasks):
            if t.id == wanted:
                return i
        raise NotFoundError(f"task {wanted} is not in batch {self.id}", task_id=wanted)

    @property
    def images(self) -> list[GeneratedImage]:
        """Every generated image, in task order."""
        return [im for t in self.tasks for im in t.images]

    @property
    def succeeded(self) -> list[Task]:
        return [t for t in self.tasks if t.status is TaskStatus.SUCCEEDED]

    @property
    def failed(self) -> list[Task]:
        return [t for t in self.tasks if t.status is TaskStatus.FAILED]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks:
            out[t.status.value] = out.get(t.status.value, 0) + 1
        return out

    @property
    def status(self) -> str:
        return batch_status(self.counts)

    @property
    def _live_run(self) -> Runner | None:
        """The run that can still take changes, or None."""
        runner = self.runner
        return runner if runner is not None and runner.accepting else None

    @property
    def live_run(self) -> Runner | None:
        """Deprecated: ``batch.runner`` (it takes changes while ``runner.accepting``)."""
        warn_renamed("Batch.live_run", "Batch.runner (and runner.accepting)")
        return self._live_run

    def _repr_html_(self) -> str:
        """Name, a bar of the status counts and the first thumbnails (``engine/_html.py``)."""
        return batch_html(self.id, self.name, self.tasks)

    def task_html(self, task: Task) -> str:
        """How ``task`` shows itself in a notebook (``Task._repr_html_`` asks its batch)."""
        return task_html(task)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"<Batch {self.id} {self.name!r}: {len(self.tasks)} tasks ({counts})>"

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per task: prompt, status, attempts, error (and its kind), duration, params,
        seed and path of the first image, ``cost`` and its ``cost_basis`` (``"usage"`` or
        ``"price table"``, see ``engine/_ledger.py``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError("to_dataframe needs pandas: pip install 'nbbatch[pandas]'") from None
        rows = []
        prices, token_prices = _price_tables(self)
        for t in self.tasks:
            first = t.images[0] if t.images else None
            cost = task_cost(
                [im.params for im in t.images], prices, token_prices, provider=self.provider
            )
            row: dict[str, Any] = {
                "task_id": t.id,
                "order": t.order,
                "prompt": t.prompt,
                "status": t.status.value,
                "attempts": t.attempts,
                "error": t.error,
                "error_kind": t.error_kind,
                "n_images": len(t.images),
                "seed": first.seed if first else t.params.seed,
                "image_path": str(first.path) if first else None,
                "duration_s": t.duration,
                "parent_id": t.parent_id,
                "cost": cost.amount,
                "cost_basis": cost.basis,
            }
            for key, value in t.params.to_dict().items():
                if key != "seed":
                    row[f"param_{key}"] = value
            rows.append(row)
        return pd.DataFrame(rows).set_index("task_id")

    def export_zip(
        self, path: str | os.PathLike[str], *, tasks: Iterable[Task] | None = None
    ) -> Path:
        """ZIP of the images (of ``tasks``, default all) with ``manifest.json``."""
        return export_zip(
            self.tasks if tasks is None else tasks,
            path,
            batch={"id": self.id, "name": self.name},
        )

    # ----------------------------------------------------------- lineage
    def parent_of(self, task: Task) -> Task | None:
        if task.parent_id is None:
            return None
        return next((t for t in self.tasks if t.id == task.parent_id), None)

    def children_of(self, task: Task) -> list[Task]:
        return [t for t in self.tasks if t.parent_id == task.id]

    def lineage(self, task: TaskRef) -> list[Task]:
        """The family of ``task``: its ancestors (oldest first), itself, then every task
        derived from it, depth first in batch order."""
        me = self._task(task)
        chain: list[Task] = []
        seen = {me.id}
        up = self.parent_of(me)
        while up is not None and up.id not in seen:  # a cycle cannot be made, but be safe
            chain.insert(0, up)
            seen.add(up.id)
            up = self.parent_of(up)
        chain.append(me)

        def down(t: Task) -> None:
            for child in self.children_of(t):
                if child.id not in seen:
                    seen.add(child.id)
                    chain.append(child)
                    down(child)

        down(me)
        return chain

    # ----------------------------------------------------------- changes
    def add(self, tasks: Iterable[Task | str], *, params: Params | None = None) -> list[Task]:
        """Append tasks (prompts use ``params``); a live run picks them up at once."""
        made = [
            t if isinstance(t, Task) else Task(prompt=t, params=params or Params()) for t in tasks
        ]
        return self._insert(made, at=None)

    def duplicate(self, task: TaskRef) -> Task:
        """A new waiting copy of ``task`` (prompt, params, references), right after it."""
        src = self._task(task)
        copy = Task(
            prompt=src.prompt,
            params=src.params,
            references=list(src.references),
            provider=src.provider,
            parent_id=src.parent_id,
        )
        return self._insert([copy], at=self.index(src) + 1)[0]

    def derive(self, image: GeneratedImage, prompt: str, **params: Any) -> Task:
        """A child task that reworks ``image`` with ``prompt`` (img2img / edit).

        The image becomes its reference, its ``parent_id`` is the image's task, its
        params are the parent's with ``params`` applied (e.g. ``strength=0.6``). It is
        appended to the batch, and joins a live run at once.
        """
        parent = self._task(image.task_id)
        ref = self.workspace.reference_from_image(image)
        changes: dict[str, Any] = {"seed": None, **params}
        child = Task(
            prompt=prompt,
            params=_params_with(parent.params, changes),
            references=[ref],
            provider=parent.provider,
            parent_id=parent.id,
        )
        return self._insert([child], at=None)[0]

    def remix(self, source: GeneratedImage | str | os.PathLike[str] | bytes) -> Task:
        """A new task from an image's embedded prompt and params, to edit before running.

        Works on images made by nbbatch, AUTOMATIC1111/Forge, ComfyUI and SwarmUI (see
        :func:`nbbatch.task_from_image`); an nbbatch image keeps its lineage.
        """
        task = task_from_image(source)
        if task.parent_id is not None and all(t.id != task.parent_id for t in self.tasks):
            task.parent_id = None  # made in another batch: no parent to point at here
        return self._insert([task], at=None)[0]

    def edit(
        self,
        task: TaskRef,
        *,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        params: Params | Mapping[str, Any] | None = None,
        references: Sequence[Reference] | None = None,
    ) -> Task:
        """Change a task that is not running or done; returns it.

        Validated like creation (empty or huge prompt, bad params, unknown reference):
        on error nothing changes. A queued task keeps its place in a live run and is
        sent as edited. ``negative_prompt=""`` clears it.
        """
        with self._lock:
            t = self._task(task)
            if t.status not in _EDITABLE:
                raise TaskStateError(_not_editable(t), task_id=t.id)
            new_prompt = t.prompt if prompt is None else check_prompt(prompt, task_id=t.id)
            new_params = t.params
            if params is not None:
                new_params = params if isinstance(params, Params) else Params.from_dict(params)
            if negative_prompt is not None:
                new_params = new_params.replace(negative_prompt=negative_prompt.strip() or None)
            new_refs = t.references if references is None else list(references)
            _check_references(self.workspace, new_refs, task_id=t.id)
            changed = tuple(
                name
                for name, old, new in (
                    ("prompt", t.prompt, new_prompt),
                    ("params", t.params, new_params),
                    ("references", t.references, new_refs),
                )
                if old != new
            )
            if not changed:
                return t
            runner = self._live_run
            if runner is not None and t.status is TaskStatus.QUEUED:
                trial = dataclasses.replace(t, prompt=new_prompt, params=new_params)
                trial.references = new_refs
                runner.validate(trial)  # the run's provider must be able to send it
            old_values = (t.prompt, t.params, t.references)
            t.prompt, t.params, t.references = new_prompt, new_params, new_refs
            try:
                self.workspace.save_task(t)
            except BaseException:
                t.prompt, t.params, t.references = old_values
                raise
        self._emit(TaskChanged(t, changed, batch_id=self.id))
        return t

    def remove(self, *tasks: TaskRef) -> None:
        """Delete tasks from the batch; running ones are refused (cancel them first).

        Succeeded tasks may go: their image files stay until no row uses them. A queued
        task of a live run is dropped from it and never sent.
        """
        with self._lock:
            doomed = [self._task(t) for t in tasks]
            for t in doomed:
                if t.status is TaskStatus.RUNNING:
                    raise TaskStateError(
                        f"task {t.id} is running; cancel it first (run.cancel(task_id)), "
                        "then delete it",
                        task_id=t.id,
                    )
            if not doomed:
                return
            ids = [t.id for t in doomed]
            self.workspace.remove_tasks(ids)
            runner = self.runner
            if runner is not None and not runner.done:
                runner.discard(ids)
            gone = set(ids)
            self.tasks = [t for t in self.tasks if t.id not in gone]
        for t in doomed:
            t._owner = None
            self._emit(TaskRemoved(t.id, batch_id=self.id))

    def move(self, task: TaskRef, index: int) -> None:
        """Put ``task`` at position ``index`` (0-based; negative counts from the end).

        A live run dispatches its queued tasks in the new order from now on.
        """
        with self._lock:
            t = self._task(task)
            n = len(self.tasks)
            if not isinstance(index, int) or isinstance(index, bool):
                raise ConfigError(f"index must be a whole number, got {index!r}")
            target = index + n if index < 0 else index
            if not 0 <= target < n:
                raise ConfigError(f"index {index} is outside the batch (0 to {n - 1})")
            old = self.index(t)
            if old == target:
                return
            order = list(self.tasks)
            order.insert(target, order.pop(old))
            changes = [(x.id, i) for i, x in enumerate(order) if x.order != i]
            self.workspace.set_orders(changes)
            for i, x in enumerate(order):
                x.order = i
            self.tasks = order
            runner = self.runner
            if runner is not None and not runner.done:
                runner.reorder()
        self._emit(TasksReordered(tuple(x.id for x in order), batch_id=self.id))

    def retry(self, task: TaskRef) -> Task:
        """Make a failed, cancelled or interrupted task runnable again.

        With a live run it joins that run at once; otherwise it waits for the next start.
        """
        t = self._task(task)
        if t.status not in _RETRY_FROM:
            raise TaskStateError(
                f"task {t.id} is {_label(t.status)}; only failed, cancelled or interrupted "
                "tasks can be retried",
                task_id=t.id,
            )
        runner = self._live_run
        if runner is not None:
            runner.retry(t)  # announces TaskQueued itself
            return t
        with self._lock:
            t.transition(TaskStatus.IDLE)
            self.workspace.save_status(t)
        self._emit(TaskChanged(t, ("status", "error"), batch_id=self.id))
        return t

    def star(self, image: GeneratedImage, starred: bool = True) -> GeneratedImage:
        """Mark ``image`` as a keeper (``starred=False`` unmarks it); journaled.

        ``task.starred`` is true while any of its images is; announced as
        ``TaskChanged(fields=("starred",))``. Returns the batch's own image object.
        """
        with self._lock:
            task = self._task(image.task_id)
            mine = next((im for im in task.images if im.index == image.index), None)
            if mine is None:
                raise NotFoundError(
                    f"image {image.index} of task {task.id} is not in batch {self.id}",
                    task_id=task.id,
                )
            starred = bool(starred)
            if mine.starred == starred:
                return mine
            self.workspace.set_starred(task.id, mine.index, starred)
            mine.starred = starred
            if image is not mine:
                image.starred = starred
        self._emit(TaskChanged(task, ("starred",), batch_id=self.id))
        return mine

    def set_budget(self, budget: float | None) -> None:
        """The batch's budget (journaled; ``None`` removes it). A live run takes it at
        once (a run paused on its budget resumes when the new one allows more)."""
        runner = self.runner
        if runner is not None and not runner.done:
            runner.set_budget(budget)
            return
        PaceOptions(budget=budget)  # checked
        kept = journaled_budget(self.workspace, self.id) or {}
        kept["budget"] = budget
        save_budget(self.workspace, self.id, kept)

    def rename(self, name: str) -> str:
        """Give the batch a new name (journaled; what History and exports show)."""
        with self._lock:
            self.name = self.workspace.rename_batch(self.id, name)
        return self.name

    def run_next(self, task: TaskRef) -> None:
        """Send ``task`` before the other queued ones of the live run."""
        runner = self._live_run
        if runner is None:
            raise ConfigError("nothing is running: start the batch first")
        runner.run_next(self._task(task).id)

    # ----------------------------------------------------------- events
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every event of this batch (changes and runs); returns an unsubscribe.

        ``fn`` is called on the thread of the event loop running here now (a notebook's
        kernel loop); events of a run in a worker thread are handed over to it.
        """
        sub = _Subscription(fn, _running_loop())
        self._subscriptions.append(sub)

        def unsubscribe() -> None:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)

        return unsubscribe

    def _emit(self, event: Event) -> None:
        if isinstance(event, TaskSucceeded):
            for im in event.images:  # made by the runner: let image.edit(...) find us
                im._owner = self
        here = _running_loop()
        for sub in tuple(self._subscriptions):
            loop = sub.loop
            if loop is None or loop is here or loop.is_closed():
                _deliver(sub.fn, event)
                continue
            try:
                loop.call_soon_threadsafe(_deliver, sub.fn, event)
            except RuntimeError:  # the loop closed meanwhile: nobody waits there
                _deliver(sub.fn, event)

    # ----------------------------------------------------------- running
    def runnable(self, *, retry_failed: bool = False) -> list[Task]:
        """Tasks a start would queue: idle, queued and interrupted (+ failed/cancelled)."""
        # by the members' values: an Enum member hashes through a Python call, and this
        # runs on the event loop over every task (100,000: ~70 ms -> a few)
        wanted = {s._value_ for s in (_RETRYABLE if retry_failed else _RUNNABLE)}
        return [t for t in self.tasks if t.status._value_ in wanted]

    def start(
        self,
        provider: str | Provider = "demo",
        *,
        concurrency: int | None = None,
        concurrency_cap: int | None = None,
        retry: RetryPolicy | int | None = None,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        retry_failed: bool = False,
        tasks: Sequence[Task | str] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        providers: Mapping[str, str | Provider] | None = None,
        batch_api: bool | Mapping[str, Any] = False,
        budget: float | None = None,
        prices: Mapping[str, float] | None = None,
        allow_unknown_prices: bool = False,
        deadline: object = None,
        start_at: object = None,
        priority: str = "normal",
    ) -> Runner:
        """Start running in the background on the current event loop; return the handle.

        ``batch_api=True`` sends the tasks through the provider's batch API (OpenAI:
        half price, results within 24 h) and collects the batch's tasks already
        submitted there; see README, "Provider batch APIs".

        The handle has ``pause()``, ``resume()``, ``cancel(task_id)``, ``cancel_pending()``,
        ``stop()``, ``run_next(task_id)``, ``retry(task)``, ``set_concurrency(n)``,
        ``progress()`` and ``await wait()``. Needs a running loop (a notebook cell has
        one). ``concurrency_cap`` raises the highest allowed concurrency (default 10 or
        ``$NBBATCH_MAX_CONCURRENCY``); ``providers`` serves tasks whose
        ``task.provider`` names another provider. The run goes on until no runnable task
        is left, including tasks added or retried while it runs. ``concurrency`` and
        ``retry`` default to the saved run defaults (``Settings.run``: 3 and 2 unless
        changed).

        While any run is going on, the objects that existed when it started are set
        aside from the garbage collector (``gc.freeze()``) so that full collections do
        not hold the event loop; the last run to end hands them back (``gc.unfreeze()``).
        Cycles among those older objects are collected then, not during the run.

        Spend and pace (README, "Spend and pace"): ``budget`` (money, in the currency of
        the price table; ``prices`` for this run win over ``Settings.prices``) pauses the
        run before a request would pass it, and is journaled for the batch;
        ``allow_unknown_prices`` lets tasks without a price run under it. ``deadline``
        and ``start_at`` (a datetime, seconds from now, or ``"07:00"``) bound when
        requests start; ``priority`` (``"high"``, ``"normal"``, ``"low"``) orders runs
        sharing an endpoint.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "batch.start() needs a running event loop (a notebook cell has one); "
                "in a script use batch.run_sync(...)"
            ) from None
        if self.runner is not None and not self.runner.done:
            raise RuntimeError(f"batch {self.id} is already running; pause or stop it first")
        if tasks is None:
            chosen = self.runnable(retry_failed=retry_failed)
        else:
            chosen = [self._task(t) for t in tasks]
        self._refuse_if_all_held_elsewhere(chosen)
        owned: list[Provider] = []
        prov = get_provider(provider, **dict(provider_options or {}))
        if not isinstance(provider, Provider):
            owned.append(prov)
        extra: dict[str, Provider] = {}
        for name, value in (providers or {}).items():
            extra[name] = get_provider(value)
            if not isinstance(value, Provider):
                owned.append(extra[name])
        if concurrency is None or retry is None:
            defaults = _run_defaults()
            concurrency = defaults.concurrency if concurrency is None else concurrency
            retry = defaults.retries if retry is None else retry
        policy = (
            dataclasses.replace(TASK_RETRY, max_retries=retry) if isinstance(retry, int) else retry
        )
        make: Callable[..., Runner] = Runner
        if batch_api:  # through the provider's batch API (engine/_batchapi.py)
            from ._batchapi import runner_factory

            make = runner_factory(self.tasks, prov, batch_api)
        runner = make(
            self.workspace,
            chosen,
            prov,
            concurrency=concurrency,
            concurrency_cap=concurrency_cap,
            retry=policy,
            attempt_timeout=attempt_timeout,
            subscribers=[self._emit],
            batch_id=self.id,
            providers=extra,
            owned=owned,  # what we built, we close when the run ends
            pace=PaceOptions(
                budget=budget,
                prices=prices,
                allow_unknown_prices=allow_unknown_prices,
                deadline=deadline,
                start_at=start_at,
                priority=priority,
                batch_name=self.name,
            ),
        )
        try:
            runner.start()
        except BaseException:
            for p in owned:  # nothing ran: do not leave their connections open
                closing = asyncio.ensure_future(p.aclose())
                _closing.add(closing)
                closing.add_done_callback(_closing.discard)
            raise
        self.runner = runner
        if self.provider is None:
            # A batch made without a provider (a studio's) remembers what first ran it:
            # History shows it, stats count its failures there, `nbbatch resume` uses it.
            self.provider = self.workspace.remember_provider(self.id, prov.name)
        return runner

    async def run_async(
        self,
        provider: str | Provider = "demo",
        *,
        concurrency: int | None = None,
        concurrency_cap: int | None = None,
        retry: RetryPolicy | int | None = None,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        retry_failed: bool = False,
        tasks: Sequence[Task | str] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        providers: Mapping[str, str | Provider] | None = None,
        batch_api: bool | Mapping[str, Any] = False,
        **pace: Any,
    ) -> Batch:
        """Run until no runnable task is left (same options as :meth:`start`, including
        ``budget``, ``prices``, ``allow_unknown_prices``, ``deadline``, ``start_at`` and
        ``priority``).

        ``await batch.run_async(...)`` in a notebook; :meth:`run_sync` blocks instead.
        Like :meth:`start`, the run sets the objects older than it aside from the
        garbage collector (``gc.freeze()``) until the last run ends.
        """
        runner = self.start(
            provider,
            concurrency=concurrency,
            concurrency_cap=concurrency_cap,
            retry=retry,
            attempt_timeout=attempt_timeout,
            retry_failed=retry_failed,
            tasks=tasks,
            provider_options=provider_options,
            providers=providers,
            batch_api=batch_api,
            **pace,
        )
        try:
            await runner.pace.wait()  # a run its budget or deadline paused ends here
        except asyncio.CancelledError:
            # The awaiting cell was interrupted: stop cleanly (in-flight -> interrupted).
            runner.stop()
            await asyncio.shield(runner.wait())
            raise
        return self

    async def run(self, provider: str | Provider = "demo", **options: Any) -> Batch:
        """``await batch.run(...)``: the same as :meth:`run_async` (same options).

        Under the naming rule (README, "Names") ``run`` will become the blocking call
        that :meth:`run_sync` is today; until then it stays the coroutine, so that the
        ``await batch.run(...)`` of existing notebooks keeps working.
        """
        return await self.run_async(provider, **options)

    def run_sync(
        self,
        provider: str | Provider = "demo",
        *,
        concurrency: int | None = None,
        concurrency_cap: int | None = None,
        retry: RetryPolicy | int | None = None,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        retry_failed: bool = False,
        tasks: Sequence[Task | str] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        providers: Mapping[str, str | Provider] | None = None,
        batch_api: bool | Mapping[str, Any] = False,
        **pace: Any,
    ) -> Batch:
        """Blocking run for scripts. In a notebook prefer ``await batch.run(...)``.

        When an event loop is already running in this thread (a notebook), the run goes
        to a worker thread with its own loop and this call blocks the cell until it ends;
        subscribers still receive the events on this thread's loop, after the cell.
        """
        return run_blocking(
            lambda: self.run_async(
                provider,
                concurrency=concurrency,
                concurrency_cap=concurrency_cap,
                retry=retry,
                attempt_timeout=attempt_timeout,
                retry_failed=retry_failed,
                tasks=tasks,
                provider_options=provider_options,
                providers=providers,
                batch_api=batch_api,
                **pace,
            ),
            note_if_loop=(
                "run_sync() called while an event loop is running: running the batch in a "
                "worker thread and blocking this cell. Use `await batch.run(...)` or "
                "`batch.start(...)` to keep the notebook responsive."
            ),
        )

    # ----------------------------------------------------------- internals
    def _task(self, task: TaskRef) -> Task:
        wanted = task if isinstance(task, str) else task.id
        for t in self.tasks:
            if t.id == wanted:
                return t
        raise NotFoundError(f"task {wanted} is not in batch {self.id}", task_id=wanted)

    def _attach(self, task: Task) -> None:
        task._owner = self
        for im in task.images:
            im._owner = self

    def _insert(self, made: list[Task], *, at: int | None) -> list[Task]:
        """Journal new tasks at position ``at`` (None: the end), announce, join a run."""
        if not made:
            return []
        with self._lock:
            for t in made:
                if t.batch_id not in (None, self.id):
                    raise ConfigError(f"task {t.id} already belongs to batch {t.batch_id}")
                if t.status is not TaskStatus.IDLE:
                    raise TaskStateError(
                        f"task {t.id} is {_label(t.status)}; only new (waiting) tasks can be "
                        "added — use batch.duplicate(task) to copy a finished one",
                        task_id=t.id,
                    )
                _check_references(self.workspace, t.references, task_id=t.id)
            position = len(self.tasks) if at is None else max(0, min(at, len(self.tasks)))
            if position == len(self.tasks):
                first = max((t.order for t in self.tasks), default=-1) + 1
            else:
                first = self.tasks[position].order
            for i, t in enumerate(made):
                t.order = first + i
            self.workspace.add_tasks(self.id, made)
            for later in self.tasks[position:]:
                later.order += len(made)  # the journal shifted them the same way
            self.tasks[position:position] = made
            for t in made:
                self._attach(t)
        for i, t in enumerate(made):
            self._emit(TaskAdded(t, position + i, batch_id=self.id))
        runner = self._live_run
        if runner is not None:
            runner.add(made)
        return made


def _price_tables(batch: Batch) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """The per-image and token price tables a batch's cost is read with."""
    from ._pace import Pace

    saved = journaled_budget(batch.workspace, batch.id) or {}
    prices = saved.get("prices") if isinstance(saved.get("prices"), dict) else None
    return Pace._tables(prices)


def _run_defaults() -> RunDefaults:
    """The saved run defaults; the built-in ones when the settings file cannot be read."""
    try:
        return load_settings().run
    except ConfigError as exc:
        log.warning("nbbatch: the saved run defaults cannot be read (%s); using 3 and 2", exc)
        return RunDefaults()


def _params_with(base: Params, changes: Mapping[str, Any]) -> Params:
    data = base.to_dict()
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return Params.from_dict(data)


def _check_references(
    ws: Workspace, references: Sequence[Reference], *, task_id: str | None
) -> None:
    for r in references:
        if not isinstance(r, Reference):
            raise ConfigError(
                f"references must be Reference objects (from workspace.add_reference), got "
                f"{type(r).__name__}",
                task_id=task_id,
            )
        if not ws.has_input(r.sha256):
            raise NotFoundError(
                f"reference {r.name!r} is not in workspace {str(ws.path)!r}; add it with "
                "workspace.add_reference(path) first",
                task_id=task_id,
            )


_LABELS = {
    TaskStatus.IDLE: "waiting",
    TaskStatus.QUEUED: "queued",
    TaskStatus.RUNNING: "running",
    TaskStatus.SUCCEEDED: "done",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
    TaskStatus.INTERRUPTED: "interrupted",
}


def _label(status: TaskStatus) -> str:
    return _LABELS[status]


def _not_editable(t: Task) -> str:
    if t.status is TaskStatus.RUNNING:
        return (
            f"task {t.id} is running and cannot be edited; cancel it first "
            "(run.cancel(task_id)), then edit it"
        )
    return (
        f"task {t.id} is done and cannot be edited; make a new task instead: "
        "batch.duplicate(task) copies it, image.edit(prompt) reworks one of its images"
    )


def _workspace(ws: Workspace | str | os.PathLike[str] | None) -> Workspace:
    if isinstance(ws, Workspace):
        return ws
    # One workspace per folder per process: no new connection and lock per batch.
    return Workspace.shared(ws)
