"""The asyncio runner: N tasks at a time, pause/resume/cancel, retries, progress, ETA.

One :class:`Runner` drives one run of a batch on the *current* event loop (in a notebook,
the kernel's own), so ``batch.start()`` returns at once and the kernel stays usable. A
dispatcher coroutine hands queued tasks to providers while fewer than ``concurrency``
(and each provider's own cap) are in flight; pausing only stops the hand-out, so
in-flight requests finish and are recorded.

Cancelling has two meanings: a person cancelling a task ends it
``cancelled``; stopping the run, or the process going away, ends in-flight tasks
``interrupted`` — resumable, never silently re-sent.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import gc
import inspect
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..core._aio import lower_thread_priority
from ..core._errors import (
    ConfigError,
    ImageRejectedError,
    MalformedResponseError,
    NbbatchError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StorageError,
    StoreError,
)
from ..core._events import (
    BatchProgress,
    Event,
    RunState,
    RunStateChanged,
    TaskCancelled,
    TaskFailed,
    TaskInterrupted,
    TaskProgress,
    TaskQueued,
    TaskRetrying,
    TaskStarted,
    TaskSucceeded,
)
from ..core._model import Task, TaskStatus
from ..core._retry import TASK_RETRY, Retry, RetryPolicy, retrying
from ..core._secrets import scrub
from ..images._decode import DEFAULT_LIMITS, ImageLimits, trim_to_image, verify_image
from ..images._metadata import embed_metadata, generation_record
from ..providers._base import GenerationRequest, ImageData, InputImage, Provider
from ..providers._endpoint import generate_paced
from ._outage import ServerWait
from ._pace import Pace, PaceOptions
from ._settle import SETTLE_IN_SLICES_FROM, settle_in_slices
from ._store import RunLease, StoredImage, Workspace

__all__ = ["DEFAULT_CONCURRENCY", "Runner", "concurrency_cap"]

log = logging.getLogger("nbbatch")

DEFAULT_CONCURRENCY = 3
#: runs of more tasks than this start in slices that give the event loop back
INCREMENTAL_FROM = 1_000
#: tasks of a large start checked at once by ``start()`` (a problem with them raises there)
_FIRST_CHECKED = 100
#: how long a large start works before it gives the event loop back (seconds)
_SLICE_SECONDS = 0.005
#: at most 4 progress events per second per task reach subscribers
_PROGRESS_INTERVAL = 0.25
_DEFAULT_CAP = 10
#: threads writing images of one run (see Runner.__init__)
_SAVE_THREADS = 4
#: generous outer guard; providers set tighter per-phase HTTP timeouts themselves
DEFAULT_ATTEMPT_TIMEOUT = 900.0

Subscriber = Callable[[Event], None]
_T = TypeVar("_T")
_timeout: Any = getattr(asyncio, "timeout", None)


class _GcHold:
    """Freeze the objects that exist when a run starts, while any run is going on.

    A full collection walks every tracked object of the process, on the event loop,
    whenever a run has allocated enough: 20-40 ms each in a bare benchmark process
    (~40,000 objects), proportionally more in a kernel that has imported a data
    stack. Objects that were alive before the run are not its garbage, so they are set
    aside (``gc.freeze``) until the last run ends; everything new is collected as usual.
    """

    def __init__(self) -> None:
        self._runs = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self._runs == 0:
                gc.freeze()
            self._runs += 1

    def release(self) -> None:
        with self._lock:
            self._runs -= 1
            if self._runs == 0:
                gc.unfreeze()


_gc_hold = _GcHold()


def concurrency_cap() -> int:
    """Highest concurrency allowed: 10, or ``$NBBATCH_MAX_CONCURRENCY`` when set higher."""
    raw = os.environ.get("NBBATCH_MAX_CONCURRENCY")
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ConfigError(
                f"NBBATCH_MAX_CONCURRENCY must be a whole number, got {raw!r}"
            ) from None
    return _DEFAULT_CAP


def check_concurrency(value: object, cap: int | None = None) -> int:
    limit = concurrency_cap() if cap is None else cap
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ConfigError(
            f"concurrency must be a whole number from 1 to {limit}, got {value!r}. "
            "Raise the cap with concurrency_cap=... or NBBATCH_MAX_CONCURRENCY if your "
            "service allows more parallel requests."
        )
    return value


class _Eta:
    """Throughput over the last completions -> seconds left."""

    def __init__(self, window: int = 32) -> None:
        self._stamps: collections.deque[float] = collections.deque(maxlen=window)

    def completed(self, now: float) -> None:
        self._stamps.append(now)

    def estimate(self, remaining: int) -> float | None:
        if remaining == 0:
            return 0.0
        if len(self._stamps) < 2:
            return None
        span = self._stamps[-1] - self._stamps[0]
        if span <= 0:
            return None
        rate = (len(self._stamps) - 1) / span
        return remaining / rate


class Runner:
    """Runs ``tasks`` (already journaled in ``workspace``) against providers.

    Use through :meth:`nbbatch.Batch.start` / ``run`` / ``run_sync``; the methods here are
    the handle a notebook or widget holds while the run goes on.
    """

    def __init__(
        self,
        workspace: Workspace,
        tasks: Sequence[Task],
        provider: Provider,
        *,
        providers: dict[str, Provider] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        concurrency_cap: int | None = None,
        retry: RetryPolicy | None = None,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        image_limits: ImageLimits = DEFAULT_LIMITS,
        subscribers: Iterable[Subscriber] = (),
        batch_id: str | None = None,
        owned: Sequence[Provider] = (),
        clock: Callable[[], float] = time.monotonic,
        pace: PaceOptions | None = None,
    ) -> None:
        self.workspace = workspace
        self.batch_id = batch_id
        self._owned = list(owned)  # providers built for this run: closed when it ends
        self._cap = concurrency_cap
        self.concurrency = check_concurrency(concurrency, concurrency_cap)
        self._clock = clock
        self._last_progress: dict[str, float] = {}  # task id -> when its progress was last told
        self._closing = False  # the dispatcher has ended: nothing can join any more
        self._removed: set[str] = set()
        self.retry_policy = retry or TASK_RETRY
        self.attempt_timeout = attempt_timeout
        self.image_limits = image_limits
        self.provider = provider
        self._providers: dict[str, Provider] = {provider.name: provider}
        self._providers.update(providers or {})
        self._subscribers: list[Subscriber] = list(subscribers)
        self._tasks = list(tasks)
        self._rng = random.Random()
        self.state = RunState.RUNNING
        self._paused = False
        self._stopping = False
        #: why the run stopped by itself (a refused key, ...), in words; None otherwise
        self.stop_reason: str | None = None
        self._queues: dict[str, collections.deque[Task]] = {}
        self._front: dict[str, collections.deque[Task]] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._per_provider: collections.Counter[str] = collections.Counter()
        self._slots: dict[str, str] = {}  # task id -> provider name, while requesting
        self._parked = 0  # tasks waiting for resume before a retry
        # Saves run on the run's own pool (not the loop's default one, shared with every
        # to_thread caller). It stays narrow: besides waiting on fsync each save runs
        # Python code under the GIL (check, metadata), and with one thread per save at
        # concurrency 32 the event loop queued behind up to 32 GIL holders (loop lag p99
        # ~0.5 s while 1024x1024 answers arrived). Four keep several fsyncs in flight.
        self._savers = concurrent.futures.ThreadPoolExecutor(
            max_workers=_SAVE_THREADS,
            thread_name_prefix="nbbatch-save",
            initializer=lower_thread_priority,  # the event loop comes first
        )
        # Journal commits run on one thread of their own, in the order the loop asks for
        # them: a commit waits on the disk (a WAL write, sometimes a checkpoint), and on
        # a busy disk one took 0.1-0.5 s, all of it a stall when made on the loop. The
        # loop still waits for each before it announces the change or sends a request.
        self._journal_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="nbbatch-journal"
        )
        self._gc_held = False
        self._resumed: asyncio.Event | None = None
        self._user_cancelled: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._main: asyncio.Task[None] | None = None
        self._eta = _Eta()
        self._counts: collections.Counter[TaskStatus] = collections.Counter()
        #: highest number of requests in flight at once during this run
        self.max_in_flight = 0
        #: tasks asked for that another live run holds: task id -> its process id
        self.left_to_others: dict[str, int] = {}
        self._lease: RunLease | None = None
        #: the storage error that paused the run (disk full), until it is resumed
        self._storage_problem: str | None = None
        #: tasks whose "running" is being journaled: not sent yet
        self._unsent: set[str] = set()
        #: tasks whose state here is ahead of the journal (it could not be written)
        self._unjournaled: dict[str, Task] = {}
        #: a cancel_pending of many tasks, settling in slices (engine/_settle.py)
        self._bulk: set[asyncio.Task[int]] = set()
        #: budget, deadline, start time, priority, endpoint slots (engine/_pace.py)
        self.pace = Pace(self, pace)
        #: pauses the run while a server does not answer, resumes when it does
        self.server_wait = ServerWait(self)

    # ----------------------------------------------------------- public handle
    def __repr__(self) -> str:
        p = self.progress()
        outcome = f"{p.succeeded} succeeded, {p.failed} failed"
        if p.cancelled:
            outcome += f", {p.cancelled} cancelled or interrupted"
        return (
            f"<Runner of batch {self.batch_id}: {self.state.value}, {p.done} of {p.total} "
            f"done ({outcome}), {p.running} running, {p.queued} queued, "
            f"concurrency {self.concurrency}>"
        )

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn(event)`` for every event; returns a function that unsubscribes."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(fn)

        return unsubscribe

    @property
    def in_flight(self) -> int:
        """How many tasks are running right now (requesting or saving their images)."""
        return len(self._in_flight)

    @property
    def active(self) -> int:
        """Tasks requesting or saving right now (not those held for resume by a pause)."""
        return len(self._in_flight) - self._parked

    @property
    def done(self) -> bool:
        return self._main is not None and self._main.done()

    def pause(self, *, reason: str | None = None) -> None:
        """Start nothing new; requests in flight finish and are recorded.

        ``reason`` says in words why the run paused itself (none: the person paused it).
        """
        if self.state is RunState.RUNNING:
            self._paused = True
            if self._resumed is not None:
                self._resumed.clear()
            for provider in {id(p): p for p in (self.provider, *self._providers.values())}.values():
                provider.pause_pending()  # ComfyUI takes back prompts still queued there
            self._set_state(RunState.PAUSED, reason)

    def resume(self) -> None:
        if self.state is RunState.PAUSED:
            self._storage_problem = None  # a full disk pauses again if it still is
            self._catch_up_journal()
            self._paused = False
            if self._resumed is not None:
                self._resumed.set()
            for provider in {id(p): p for p in (self.provider, *self._providers.values())}.values():
                provider.resume_pending()
            self._set_state(RunState.RUNNING)
            self._poke()

    def set_budget(self, budget: float | None) -> None:
        """A new budget for the batch (journaled); resumes a run paused on its budget."""
        self.pace.set_budget(budget)

    def set_concurrency(self, value: int) -> None:
        """Change how many tasks run at once, effective immediately."""
        self.concurrency = check_concurrency(value, self._cap)
        self._poke()

    def run_next(self, task_id: str | Task) -> None:
        """Move a queued task to the front of its queue."""
        task = self._find(task_id if isinstance(task_id, str) else task_id.id)
        if task.status is not TaskStatus.QUEUED:
            raise ConfigError(f"task {task_id} is {task.status.value}, not queued")
        self._front.setdefault(self._provider_for(task).name, collections.deque()).append(task)
        self._poke()

    @property
    def accepting(self) -> bool:
        """True while the run can still take tasks (added, retried) without a restart."""
        return self._main is not None and not self._closing and not self._stopping

    @property
    def tasks(self) -> list[Task]:
        """The tasks this run has taken on, in the order they joined it."""
        return list(self._tasks)

    def validate(self, task: Task) -> None:
        """Raise if this run's provider for ``task`` could not serve it (nothing is sent)."""
        self._provider_for(task).validate(self._request(task, with_images=False))

    def add(self, tasks: Sequence[Task]) -> list[Task]:
        """Let tasks (already journaled) join the live run; returns the ones that joined.

        Each is claimed in the journal first, so a task another run has queued is left
        to it. After the run has ended (or while it stops) nothing joins: start again.
        """
        if not self.accepting:
            return []
        for t in tasks:
            self.validate(t)
        claimed = self.workspace.claim(tasks, self._lease)
        joined: list[Task] = []
        known = {t.id for t in self._tasks}
        for t in tasks:
            if t.id not in claimed:
                continue
            old = t.status
            t.transition(TaskStatus.QUEUED)
            if t.id in known:
                self._counts[old] -= 1
            else:
                self._tasks.append(t)
                known.add(t.id)
            self._removed.discard(t.id)
            self._counts[TaskStatus.QUEUED] += 1
            self._queue_for(t).append(t)
            joined.append(t)
        self._sort_queues()
        for t in joined:
            self._emit(TaskQueued(t, batch_id=self.batch_id))
        if joined:
            self._emit_progress()
            self._poke()
        return joined

    def retry(self, task: Task | str) -> Task:
        """Run a failed, cancelled or interrupted task again within this run."""
        t = self._find(task) if isinstance(task, str) else task
        if t.status not in (
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            TaskStatus.INTERRUPTED,
            TaskStatus.IDLE,
        ):
            raise ConfigError(
                f"task {t.id} is {t.status.value}; only failed, cancelled, interrupted or "
                "waiting tasks can be retried",
                task_id=t.id,
            )
        if not self.add([t]):
            raise ConfigError(
                f"task {t.id} could not join the run (the run has ended or another run "
                "holds the task); start a new run",
                task_id=t.id,
            )
        return t

    def discard(self, task_ids: Iterable[str]) -> None:
        """Drop queued tasks from the run (they are being removed): they are never sent."""
        drop = set(task_ids)
        for t in [t for t in self._tasks if t.id in drop]:
            if t.status is TaskStatus.RUNNING:
                raise ConfigError(f"task {t.id} is running; cancel it first", task_id=t.id)
            self._removed.add(t.id)
            self._tasks.remove(t)
            self._counts[t.status] -= 1
            job = self._in_flight.get(t.id)
            if job is not None:  # handed out but not started: it must not start
                job.cancel()
        for queue in (*self._queues.values(), *self._front.values()):
            for t in [t for t in queue if t.id in drop]:
                queue.remove(t)
        self._emit_progress()
        self._poke()

    def reorder(self) -> None:
        """Dispatch queued tasks in their (changed) batch order from now on."""
        self._sort_queues()

    def cancel(self, task_id: str) -> None:
        """Cancel one task: queued ones never start, a running one is aborted."""
        task = self._find(task_id)
        if task.status is TaskStatus.QUEUED:
            task.transition(TaskStatus.CANCELLED)
            if task.id in self._in_flight:  # handed out but not started yet
                self._in_flight[task.id].cancel()
            self.workspace.save_status(task)
            self._count(TaskStatus.QUEUED, TaskStatus.CANCELLED)
            self._emit(TaskCancelled(task, batch_id=self.batch_id))
            self._emit_progress()
            self._poke()
        elif task.status is TaskStatus.RUNNING and task.id in self._in_flight:
            self._user_cancelled.add(task.id)
            self._in_flight[task.id].cancel()

    def cancel_pending(self) -> None:
        """Cancel every task that has not started; in-flight ones finish.

        None of them starts after this call. Many of them (from 1,000) are marked and
        journaled cancelled in slices, so the event loop stays responsive; the run ends
        (``await wait()``) once they all are.
        """
        if self._cancel_in_slices():
            return
        pending = [t for t in self._tasks if t.status is TaskStatus.QUEUED]
        for t in pending:
            t.transition(TaskStatus.CANCELLED)
            if t.id in self._in_flight:  # handed out but not started yet
                self._in_flight[t.id].cancel()
        if pending:
            self.workspace.save_statuses(pending)
            self._counts[TaskStatus.QUEUED] -= len(pending)
            self._counts[TaskStatus.CANCELLED] += len(pending)
            for t in pending:
                self._emit(TaskCancelled(t, batch_id=self.batch_id))
            self._emit_progress()
        self._poke()

    def stop(self, *, reason: str | None = None) -> None:
        """Stop now: queued tasks go back to idle, in-flight ones end ``interrupted``.

        Both can be resumed later (``batch.resume()`` / ``nbbatch resume``). ``reason``:
        why the run stopped by itself, in words; it is :attr:`stop_reason` and the
        ``reason`` of the :class:`~nbbatch.events.RunStateChanged` that ends the run (the
        studio's toolbar shows it).
        """
        if self.state in (RunState.FINISHED, RunState.STOPPED):
            return
        if reason is not None and self.stop_reason is None:
            self.stop_reason = reason
        self._stopping = True
        self._set_state(RunState.STOPPING)
        for t in list(self._in_flight.values()):
            t.cancel()
        self._poke()

    async def wait(self) -> None:
        """Wait until the run has finished or stopped."""
        if self._main is None:
            raise RuntimeError("the run has not been started")
        await asyncio.shield(self._main)

    def progress(self) -> BatchProgress:
        c = self._counts
        done = (
            c[TaskStatus.SUCCEEDED]
            + c[TaskStatus.FAILED]
            + c[TaskStatus.CANCELLED]
            + c[TaskStatus.INTERRUPTED]
        )
        remaining = c[TaskStatus.QUEUED] + c[TaskStatus.RUNNING]
        return BatchProgress(
            batch_id=self.batch_id,
            total=len(self._tasks),
            done=done,
            succeeded=c[TaskStatus.SUCCEEDED],
            failed=c[TaskStatus.FAILED],
            cancelled=c[TaskStatus.CANCELLED] + c[TaskStatus.INTERRUPTED],
            running=c[TaskStatus.RUNNING],
            queued=c[TaskStatus.QUEUED],
            eta=self._eta.estimate(remaining),
        )

    # ----------------------------------------------------------- starting
    def start(self) -> asyncio.Task[None]:
        """Queue the tasks and start dispatching on the running loop.

        A run of up to :data:`INCREMENTAL_FROM` tasks is checked, claimed in the journal
        and queued here, so a problem raises at once. A larger one is started in
        slices that give the event loop back every few milliseconds (100,000 tasks held
        a kernel's loop for ~1.8 s): the first tasks are checked here (a problem with
        them raises at once), the rest, the claim (on the journal thread) and the queue
        as the run begins; a problem found then is raised by :meth:`wait`.
        """
        if self._main is not None:
            raise RuntimeError("this run was already started")
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.pace.check(self._tasks)
        self.pace.start()
        if len(self._tasks) <= INCREMENTAL_FROM:
            self._check(self._tasks)
            for _ in self._adopt(self._claim()):
                pass
            self._emit(RunStateChanged(RunState.RUNNING, batch_id=self.batch_id))
            self._main = loop.create_task(self._dispatch(), name=f"nbbatch-run-{self.batch_id}")
            return self._main
        self._check(self._tasks[:_FIRST_CHECKED])
        self._emit(RunStateChanged(RunState.RUNNING, batch_id=self.batch_id))
        self._main = loop.create_task(
            self._dispatch(prepare=_FIRST_CHECKED), name=f"nbbatch-run-{self.batch_id}"
        )
        return self._main

    def _check(self, tasks: Sequence[Task]) -> None:
        """Raise for a task this run could not serve (nothing is claimed or sent)."""
        for task in tasks:
            self._provider_for(task).validate(self._request(task, with_images=False))
            if task.status is TaskStatus.SUCCEEDED:
                raise ConfigError(
                    f"task {task.id} already succeeded; add a new task to generate it again",
                    task_id=task.id,
                )

    def _claim(self, tasks: Sequence[Task] | None = None) -> set[str]:
        """Claim this run's tasks in the journal under a new lease (any thread).

        A task a live run (here or in another process) has queued or running is left to
        it, so no request is ever sent twice by two runs at once; one a dead run left
        behind is repaired first (interrupted or idle), and so claimed again only
        because it was asked for.
        """
        self.workspace.repair_dead_runs()
        lease = self._lease = self.workspace.open_lease()
        try:
            return self.workspace.claim(self._tasks if tasks is None else tasks, lease)
        except BaseException:
            self.workspace.release_lease(lease)
            self._lease = None
            raise

    def _adopt(self, claimed: set[str]) -> Iterator[None]:
        """Queue the claimed tasks; a generator that yields between slices (a small
        run consumes it at once, a large one gives the loop back at each yield)."""
        if len(claimed) == len(self._tasks):
            skipped: list[Task] = []  # the common case, without a pass over every task
        else:
            skipped = [t for t in self._tasks if t.id not in claimed]
        if skipped:
            owners = self.workspace.claimed_elsewhere([t.id for t in skipped])
            self.left_to_others = {t.id: owners.get(t.id, 0) for t in skipped}
            log.warning(
                "%d task(s) are already queued or running in another live run; leaving "
                "them to it: %s",
                len(skipped),
                ", ".join(t.id for t in skipped[:10]),
            )
            self._tasks = [t for t in self._tasks if t.id in claimed]
        since = time.perf_counter()
        for i, t in enumerate(self._tasks[:]):
            if t.status is not TaskStatus.QUEUED:
                t.transition(TaskStatus.QUEUED)
            self._queue_for(t).append(t)
            self._counts[TaskStatus.QUEUED] += 1
            self._emit(TaskQueued(t, batch_id=self.batch_id))
            if i & 31 == 31 and time.perf_counter() - since > _SLICE_SECONDS:
                yield
                since = time.perf_counter()

    async def _prepare(self, checked: int) -> None:
        """The rest of a large start, in slices: check, claim (off the loop), queue."""
        rest = self._tasks[checked:]
        since = time.perf_counter()
        for i in range(0, len(rest), 32):
            self._check(rest[i : i + 32])
            if time.perf_counter() - since > _SLICE_SECONDS:
                await asyncio.sleep(0)
                since = time.perf_counter()
        if self._stopping:
            return  # stopped before anything was claimed
        claimed = await self._journal(self._claim, self._tasks[:])
        for _ in self._adopt(claimed):
            await asyncio.sleep(0)  # the loop serves others between slices
        self._emit_progress()

    # ----------------------------------------------------------- internals
    def _find(self, task_id: str) -> Task:
        for t in self._tasks:
            if t.id == task_id:
                return t
        raise ConfigError(f"task {task_id} is not part of this run")

    def _provider_for(self, task: Task) -> Provider:
        if not task.provider or task.provider == self.provider.name:
            return self.provider
        pinned = self._providers.get(task.provider)
        if pinned is None:
            # Never quietly send a task pinned to one provider (maybe a free one) to
            # another (maybe a paid one).
            raise ConfigError(
                f"task {task.id} asks for provider {task.provider!r} but this run uses "
                f"{self.provider.name!r}; pass providers={{{task.provider!r}: ...}} or clear "
                "task.provider",
                task_id=task.id,
            )
        return pinned

    def _queue_for(self, task: Task) -> collections.deque[Task]:
        return self._queues.setdefault(self._provider_for(task).name, collections.deque())

    def _sort_queues(self) -> None:
        for name, queue in self._queues.items():
            self._queues[name] = collections.deque(sorted(queue, key=lambda t: t.order))

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _set_state(self, state: RunState, reason: str | None = None) -> None:
        self.state = state
        self._emit(RunStateChanged(state, batch_id=self.batch_id, reason=reason))

    def _emit(self, event: Event) -> None:
        for fn in tuple(self._subscribers):
            try:
                fn(event)
            except Exception:
                log.exception("an nbbatch event subscriber raised; the run goes on")

    def _emit_progress(self) -> None:
        if self._subscribers:
            self._emit(self.progress())

    def _count(self, old: TaskStatus, new: TaskStatus) -> None:
        self._counts[old] -= 1
        self._counts[new] += 1

    def _next_ready(self) -> tuple[Task, Provider] | None:
        for name, queue in self._queues.items():
            provider = self._providers.get(name, self.provider)
            cap = provider.max_concurrency
            if cap is not None and self._per_provider[name] >= cap:
                continue
            front = self._front.get(name)
            for source in (front, queue):
                while source:
                    task = source.popleft()
                    if (
                        task.status is TaskStatus.QUEUED
                        and task.id not in self._in_flight
                        and task.id not in self._removed
                    ):
                        return task, provider
        return None

    def _has_pending(self) -> bool:
        return self._counts[TaskStatus.QUEUED] > 0

    async def _dispatch(self, prepare: int | None = None) -> None:
        assert self._wake is not None
        _gc_hold.acquire()  # released by the wind-down, however the run ends
        self._gc_held = True
        try:
            if prepare is not None:
                try:
                    await self._prepare(prepare)
                except BaseException:
                    self._stopping = True  # nothing of a failed start is left queued
                    raise
            while True:
                if self._stopping:
                    break
                # ``concurrency`` bounds provider requests; tasks saving their images no
                # longer hold a slot, but at most ``concurrency`` of them may be saving.
                if (
                    not self._paused
                    and len(self._slots) < self.concurrency
                    and len(self._in_flight) < 2 * self.concurrency
                ):
                    ready = self._next_ready()
                    if ready is not None and self.pace.hold(*ready):  # budget, deadline, slots
                        self._front.setdefault(ready[1].name, collections.deque()).appendleft(
                            ready[0]
                        )
                    elif ready is not None:
                        self._launch(*ready)
                        continue
                if not self._in_flight and not self._has_pending():
                    break
                self._wake.clear()
                await self._wake.wait()
        except asyncio.CancelledError:
            # The loop or the kernel is shutting down under us: treat it as a stop.
            self._stopping = True
            raise
        finally:
            self._closing = True
            # Before anything is awaited: a run whose loop is closed under it gets here by
            # GeneratorExit and cannot await; the collector must not stay frozen then.
            self._release_gc()
            await self._wind_down()

    def _release_gc(self) -> None:
        if self._gc_held:
            self._gc_held = False
            _gc_hold.release()

    async def _wind_down(self) -> None:
        for job in list(self._in_flight.values()):
            job.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        if self._bulk:  # a large cancel_pending still settling: it ends first
            await asyncio.gather(*self._bulk, return_exceptions=True)
        if self._stopping and self._settle_big(TaskStatus.IDLE):
            await settle_in_slices(
                self._tasks[:],
                TaskStatus.IDLE,
                still=lambda t: t.status is TaskStatus.QUEUED,
                moved=self._settled(TaskStatus.IDLE),
                journal=self._journal_rows,
            )
            self._set_state(RunState.STOPPED, self.stop_reason)
        elif self._stopping:
            back = [t for t in self._tasks if t.status is TaskStatus.QUEUED]
            for t in back:
                t.transition(TaskStatus.IDLE)
            if back:
                with contextlib.suppress(NbbatchError):
                    self.workspace.save_statuses(back)
            self._counts[TaskStatus.QUEUED] -= len(back)
            self._counts[TaskStatus.IDLE] += len(back)
            self._set_state(RunState.STOPPED, self.stop_reason)
        else:
            self._set_state(RunState.FINISHED)
        self._catch_up_journal()
        self._emit_progress()
        if self._lease is not None:
            # Every task of this run is settled now: nothing is left for a repair to find.
            if len(self._tasks) >= SETTLE_IN_SLICES_FROM and self._on_own_loop():
                # one lease row per task: 100,000 deletions held the loop ~0.5 s
                await self._journal(self.workspace.release_lease, self._lease)
            else:
                self.workspace.release_lease(self._lease)
        self._savers.shutdown(wait=False)
        self._journal_thread.shutdown(wait=False)
        self._release_gc()
        await self.pace.finish()
        if self._owned:
            for p in self._owned:
                try:
                    await p.aclose()
                except Exception:
                    log.warning("closing provider %s failed", p.name, exc_info=True)

    # ------------------------------------------------ settling many queued tasks at once
    def _settle_big(self, new: TaskStatus) -> bool:
        """Whether the queued tasks are many and this run's loop is the running one, so
        that they can move to ``new`` in slices (``engine/_settle.py``)."""
        return self._counts[TaskStatus.QUEUED] >= SETTLE_IN_SLICES_FROM and self._on_own_loop()

    def _on_own_loop(self) -> bool:
        """Whether this run's loop is the one running here (so its work can be awaited)."""
        if self._main is None:
            return False
        try:
            return asyncio.get_running_loop() is self._main.get_loop()
        except RuntimeError:  # no loop runs here (a coroutine closed after its loop)
            return False

    def _settled(self, new: TaskStatus) -> Callable[[list[Task]], None]:
        def moved(part: list[Task]) -> None:
            self._counts[TaskStatus.QUEUED] -= len(part)
            self._counts[new] += len(part)
            self._emit_progress()

        return moved

    async def _journal_rows(self, part: list[Task], rows: list[tuple[Any, ...]]) -> None:
        try:
            await self._journal(self.workspace.save_status_rows, rows)
        except NbbatchError as exc:  # a full disk: journaled later (catch-up at the end)
            log.warning("the journal cannot be written now: %s", scrub(exc.message))
            self._unjournaled.update((t.id, t) for t in part)

    def _cancel_in_slices(self) -> bool:
        """``cancel_pending`` of many tasks: nothing queued starts from now on (the queues
        are emptied and the tasks handed out but not started are held back), and all of
        them are cancelled in slices on the loop."""
        if self._main is None or self._main.done() or not self._settle_big(TaskStatus.CANCELLED):
            return False
        for queue in (*self._queues.values(), *self._front.values()):
            queue.clear()  # the dispatcher starts none of them
        for handed in list(self._in_flight.values()):
            coro = handed.get_coro()
            if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == "CORO_CREATED":
                handed.cancel()  # handed out, not started: its task is still queued

        def cancelled(t: Task) -> None:
            self._emit(TaskCancelled(t, batch_id=self.batch_id))

        job = asyncio.ensure_future(
            settle_in_slices(
                self._tasks[:],
                TaskStatus.CANCELLED,
                still=lambda t: t.status is TaskStatus.QUEUED,
                moved=self._settled(TaskStatus.CANCELLED),
                journal=self._journal_rows,
                announce=cancelled,
            )
        )
        self._bulk.add(job)

        def ended(job: asyncio.Task[int]) -> None:
            self._bulk.discard(job)
            if not job.cancelled() and job.exception() is not None:
                log.error("cancelling the queued tasks failed", exc_info=job.exception())
            self._poke()

        job.add_done_callback(ended)
        return True

    def _launch(self, task: Task, provider: Provider) -> None:
        loop = asyncio.get_running_loop()
        # The request slot is taken now (not when the coroutine first runs) so that the
        # dispatcher, which launches several tasks without yielding, never overshoots.
        self._slots[task.id] = provider.name
        self._per_provider[provider.name] += 1
        self.max_in_flight = max(self.max_in_flight, len(self._slots))
        job = loop.create_task(self._execute(task, provider), name=f"nbbatch-task-{task.id}")
        self._in_flight[task.id] = job

        def finished(job: asyncio.Task[None]) -> None:
            self._in_flight.pop(task.id, None)
            self._release_slot(task.id)
            self._poke()
            if not job.cancelled() and job.exception() is not None:
                # _execute settles every error itself; one getting here is a bug, logged
                # (retrieved) rather than left as "Task exception was never retrieved"
                log.error("task %s ended with an error", task.id, exc_info=job.exception())

        job.add_done_callback(finished)

    def _release_slot(self, task_id: str) -> None:
        """Free a task's request slot (idempotent): its provider call has ended."""
        name = self._slots.pop(task_id, None)
        if name is not None:
            self.pace.released(task_id)
            self._per_provider[name] -= 1
            self._poke()

    def _request(self, task: Task, *, with_images: bool = True) -> GenerationRequest:
        images: tuple[InputImage, ...] = ()
        if task.references:
            images = tuple(
                InputImage(
                    r.name,
                    r.read_bytes() if with_images else b"",
                    f"image/{r.format.lower()}",
                )
                for r in task.references
            )
        return GenerationRequest(
            prompt=task.prompt,
            params=task.params,
            images=images,
            task_id=task.id,
            attempt=task.attempts,
            timeout=self.attempt_timeout,
        )

    def _on_progress(self, task: Task) -> Callable[[float | None, bytes | None], None]:
        def report(fraction: float | None, preview: bytes | None = None) -> None:
            if fraction is not None:
                if not math.isfinite(fraction):
                    return
                fraction = min(1.0, max(0.0, fraction))
            if task.status is TaskStatus.RUNNING:
                task.progress = fraction
                now = self._clock()
                last = self._last_progress.get(task.id)
                if last is not None and now - last < _PROGRESS_INTERVAL and fraction != 1.0:
                    return  # a UI cannot show more; previews are large
                self._last_progress[task.id] = now
                self._emit(TaskProgress(task, fraction, preview, batch_id=self.batch_id))

        return report

    async def _execute(self, task: Task, provider: Provider) -> None:
        if task.status is not TaskStatus.QUEUED or task.id in self._removed:
            return  # cancelled or removed between being handed out and starting: nothing sent
        try:
            task.transition(TaskStatus.RUNNING)
            self._count(TaskStatus.QUEUED, TaskStatus.RUNNING)

            tries = 0
            sent = False  # has any request of this task gone out (journaled running)?

            async def attempt() -> list[ImageData]:
                nonlocal tries, sent
                tries += 1
                if tries > 1:
                    await self._wait_while_paused()  # a retry is a new request: pause holds it
                task.attempts += 1
                # journaled before the request is sent
                self._unsent.add(task.id)
                try:
                    await self._journal(self.workspace.save_status_row, Workspace.status_row(task))
                except StoreError:
                    task.attempts -= 1  # not journaled, not sent
                    raise
                finally:
                    self._unsent.discard(task.id)
                sent = True
                self._emit(TaskStarted(task, task.attempts, batch_id=self.batch_id))
                return await self._attempt(task, provider)

            def on_retry(retry: Retry) -> None:
                self.server_wait.stop_retrying(retry.error)  # an unreachable server: wait
                self._emit(
                    TaskRetrying(
                        task,
                        task.attempts + 1,
                        retry.delay,
                        str(retry.error),
                        batch_id=self.batch_id,
                    )
                )

            try:
                images = await retrying(
                    attempt, self.retry_policy, on_retry=on_retry, rng=self._rng
                )
            except ProviderError as exc:
                if not await self.server_wait.take_back(task, provider, exc):
                    self._fail(task, exc)
                return
            await self._finish(task, provider, images)
        except asyncio.CancelledError:
            self._abort(task)
            raise
        except StorageError as exc:
            # the journal or the image folder cannot be written (disk full, ...)
            self._store_failed(task, exc, sent=sent)
        except NbbatchError as exc:
            self._fail(task, exc)
        except Exception as exc:  # a bug in a provider must not take the run down
            log.exception("unexpected error while running task %s", task.id)
            self._fail(task, exc)
        finally:
            if task.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED):
                self._eta.completed(time.monotonic())  # only real completions set the pace
            self._emit_progress()

    async def _wait_while_paused(self) -> None:
        if not self._paused:
            return
        self._parked += 1
        try:
            while self._paused:
                assert self._resumed is not None
                await self._resumed.wait()
        finally:
            self._parked -= 1

    async def _attempt(self, task: Task, provider: Provider) -> list[ImageData]:
        """One provider request; the task holds a request slot throughout."""
        # Reading reference images is disk I/O (up to 10 MB each): keep it off the loop.
        request = (
            await asyncio.to_thread(self._request, task) if task.references else self._request(task)
        )
        try:
            if self.attempt_timeout is None or provider.own_timeout:
                images = await generate_paced(provider, request, self._on_progress(task))
            elif _timeout is not None:
                # asyncio.timeout (3.11+) costs no extra Task per attempt, wait_for does.
                async with _timeout(self.attempt_timeout):
                    images = await generate_paced(provider, request, self._on_progress(task))
            else:  # pragma: no cover - Python 3.10
                images = await asyncio.wait_for(
                    generate_paced(provider, request, self._on_progress(task)), self.attempt_timeout
                )
        except asyncio.TimeoutError:
            raise ProviderTimeoutError(
                f"{provider.name}: no result within {self.attempt_timeout:g} s",
                provider=provider.name,
                task_id=task.id,
            ) from None
        if not images:
            raise MalformedResponseError(
                f"{provider.name} answered without any image",
                provider=provider.name,
                task_id=task.id,
            )
        return images

    async def _finish(self, task: Task, provider: Provider, images: list[ImageData]) -> None:
        """Check, write and record the images of a finished request.

        The provider is done (and has billed): its slot goes to the next request while
        the images are written, and a stop or cancel arriving now waits for the save
        instead of throwing a paid result away. Nothing here is retried: a bad image
        or a full disk would only pay for the same failure again.
        """
        self._release_slot(task.id)
        saving = asyncio.ensure_future(self._save_and_record(task, provider, images))
        try:
            await asyncio.shield(saving)
        except asyncio.CancelledError:
            # Stop cancels twice (stop() and the wind-down): wait out every cancel until
            # the save has finished, so its outcome is recorded before the task ends.
            while not saving.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(saving)
            if not saving.cancelled() and saving.exception() is not None:
                log.warning(
                    "saving task %s failed while stopping: %s",
                    task.id,
                    scrub(str(saving.exception())),
                )
            raise

    async def _save_and_record(
        self, task: Task, provider: Provider, images: list[ImageData]
    ) -> None:
        stored = await asyncio.get_running_loop().run_in_executor(
            self._savers, self._save_files, task, provider, images
        )
        # The files are durable already; the rows and "succeeded" go in one commit, and
        # only then is the task succeeded in memory (nothing can show it earlier).
        finished = time.time()
        row = Workspace.status_row(task, TaskStatus.SUCCEEDED, finished)
        saved = await self._journal(self.workspace.record_success, task, stored, row=row)
        task.transition(TaskStatus.SUCCEEDED, now=finished)
        task.images.extend(saved)
        task.progress = 1.0
        self._count(TaskStatus.RUNNING, TaskStatus.SUCCEEDED)
        self._emit(TaskSucceeded(task, tuple(saved), batch_id=self.batch_id))

    async def _journal(self, write: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run one journal write on the journal thread and wait until it has committed.

        A cancel (stop, or a person cancelling the task) arriving meanwhile waits for the
        write to end first, so whatever the cancel journals next lands after it.
        """
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._journal_thread, lambda: write(*args, **kwargs))
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            while not done.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(done)
            raise

    def _save_files(
        self, task: Task, provider: Provider, images: Sequence[ImageData]
    ) -> list[StoredImage]:
        """Worker thread: decode-check every image, then write it durably to disk."""
        out = []
        for i, im in enumerate(images):
            raw = trim_to_image(im.data)  # not what may follow the image's end
            try:
                info = verify_image(raw, self.image_limits)
            except ImageRejectedError as exc:
                exc.message = f"{provider.name} returned an unusable image: {exc.message}"
                exc.task_id = task.id
                raise
            params = task.params.to_dict()
            params["provider"] = provider.name
            model = getattr(provider, "model", None)
            if isinstance(model, str) and model and "model" not in params:
                params["model"] = model  # what the cost ledger prices usage by
            if im.info:
                params["info"] = im.info
            record = generation_record(
                task, provider=provider.name, seed=im.seed, index=len(task.images) + i, info=im.info
            )
            data = embed_metadata(raw, info, record)  # parameters travel with the file
            _, sha = self.workspace.write_blob(data, info.ext)
            out.append(StoredImage(sha, info, im.seed, params))
        return out

    def _fail(self, task: Task, exc: BaseException) -> None:
        if isinstance(exc, NbbatchError):
            kind = getattr(exc, "kind", None) or (
                "storage" if isinstance(exc, StorageError) else type(exc).__name__
            )
            if isinstance(exc, ImageRejectedError):
                kind = "bad_image"
            message = exc.message
            if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                until = time.strftime("%H:%M:%S", time.localtime(time.time() + exc.retry_after))
                message += f" (the service asks to wait {exc.retry_after:.0f} s, until {until})"
        else:
            kind = "internal"
            message = f"unexpected {type(exc).__name__}: {exc}"
        message = scrub(message)  # server and exception text may echo a key
        # journaled first: a failure the journal does not hold is never reported
        before = (task.error, task.error_kind)
        task.error, task.error_kind = message, kind
        try:
            self.workspace.save_status_row(
                Workspace.status_row(task, TaskStatus.FAILED, time.time())
            )
        except StoreError as store_exc:
            task.error, task.error_kind = before
            self._store_failed(task, store_exc, sent=True)
            return
        task.transition(TaskStatus.FAILED)
        task.error, task.error_kind = message, kind
        self._count(TaskStatus.RUNNING, TaskStatus.FAILED)
        self._emit(TaskFailed(task, message, kind, batch_id=self.batch_id))
        if isinstance(exc, StorageError):
            self._pause_for_storage(exc)  # the next tasks would fail the same way

    def _store_failed(self, task: Task, exc: StoreError, *, sent: bool) -> None:
        """A journal or image write failed: keep memory to what the journal holds, pause.

        Before anything was sent the task goes back to the queue, as the journal still
        has it (it starts again on Resume). After a request (the provider may have
        billed), a failure is reported only if the journal takes it; when it cannot, the
        task is interrupted here and the journal keeps ``running`` until it is next
        opened, which makes it ``interrupted`` too: never re-sent without being asked.
        """
        if task.status is not TaskStatus.RUNNING:
            return
        if not sent:
            task.status = TaskStatus.QUEUED  # undo: "running" was never journaled
            task.started_at = None
            task.progress = None
            self._count(TaskStatus.RUNNING, TaskStatus.QUEUED)
            self._queue_for(task).appendleft(task)
            self._emit(TaskQueued(task, batch_id=self.batch_id))
        elif isinstance(exc, StorageError) and self._journal_failure(task, exc):
            pass  # reported failed: the journal says so
        else:
            task.transition(TaskStatus.INTERRUPTED)
            task.error_kind = "storage"
            task.error = scrub(f"the result could not be saved: {exc.message}")
            self._unjournaled[task.id] = task  # journaled on Resume or at the end
            self._count(TaskStatus.RUNNING, TaskStatus.INTERRUPTED)
            self._emit(TaskInterrupted(task, batch_id=self.batch_id))
        if isinstance(exc, StorageError):
            self._pause_for_storage(exc)
        else:
            log.warning("task %s could not be journaled: %s", task.id, scrub(exc.message))

    def _catch_up_journal(self) -> None:
        """Journal what could not be written before (space may have been freed)."""
        if not self._unjournaled:
            return
        try:
            self.workspace.save_statuses(list(self._unjournaled.values()))
        except NbbatchError as exc:
            log.warning("the journal still cannot be written: %s", scrub(exc.message))
        else:
            self._unjournaled.clear()

    def _journal_failure(self, task: Task, exc: StorageError) -> bool:
        """Journal ``task`` failed by ``exc``; True when the journal took it."""
        message = scrub(exc.message)
        before = (task.error, task.error_kind)
        task.error, task.error_kind = message, "storage"
        try:
            self.workspace.save_status_row(
                Workspace.status_row(task, TaskStatus.FAILED, time.time())
            )
        except StoreError:
            task.error, task.error_kind = before
            return False
        task.transition(TaskStatus.FAILED)
        task.error, task.error_kind = message, "storage"
        self._count(TaskStatus.RUNNING, TaskStatus.FAILED)
        self._emit(TaskFailed(task, message, "storage", batch_id=self.batch_id))
        return True

    @property
    def paused_reason(self) -> str | None:
        """Why the run paused by itself (a full disk, a server not answering, its budget,
        its deadline), in words; ``None`` otherwise."""
        if self.state is RunState.PAUSED and self.pace.reason is not None:
            return self.pace.reason
        if self.state is RunState.PAUSED and self._storage_problem is None:
            return self.server_wait.reason
        if self._storage_problem is None or self.state is not RunState.PAUSED:
            return None
        return self._storage_message()

    def _storage_message(self) -> str:
        # queued, and those whose "running" is being journaled now: on a full disk that
        # write fails too and they go back to the queue, never sent
        waiting = self._counts[TaskStatus.QUEUED] + len(self._unsent)
        problem = self._storage_problem or ""
        if "full" in problem.lower() or "no space" in problem.lower():
            head, fix = "disk full", "free space"
        else:
            head, fix = "cannot write the workspace", "fix it (see the log)"
        return f"{head}: run paused, {waiting} tasks not started; {fix} and Resume"

    def _pause_for_storage(self, exc: StorageError) -> None:
        """Pause once for a storage problem, saying so (not once per failing task)."""
        if self._storage_problem is not None and self.state is RunState.PAUSED:
            return
        self._storage_problem = exc.message
        log.warning("nbbatch: %s (%s)", self._storage_message(), scrub(exc.message))
        if self.state is RunState.RUNNING:
            self._paused = True
            if self._resumed is not None:
                self._resumed.clear()
            self.state = RunState.PAUSED
            self._emit(
                RunStateChanged(
                    RunState.PAUSED, batch_id=self.batch_id, reason=self._storage_message()
                )
            )

    def _abort(self, task: Task) -> None:
        if task.status is not TaskStatus.RUNNING:
            return
        user = task.id in self._user_cancelled
        new = TaskStatus.CANCELLED if user else TaskStatus.INTERRUPTED
        task.transition(new)
        task.error_kind = "cancelled" if user else "interrupted"
        task.error = (
            "cancelled by you" if user else "the run was stopped while this task was running"
        )
        with contextlib.suppress(NbbatchError):
            self.workspace.save_status(task)
        self._count(TaskStatus.RUNNING, new)
        self._emit(
            TaskCancelled(task, batch_id=self.batch_id)
            if user
            else TaskInterrupted(task, batch_id=self.batch_id)
        )
