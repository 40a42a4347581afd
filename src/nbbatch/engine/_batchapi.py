"""Runs through a provider's batch API: half price, results within 24 h, resumable anywhere.

``batch.run("openai", batch_api=True)`` (also ``start``, ``run_sync``, ``nbbatch run
--batch-api``) runs a :class:`BatchApiRunner`: the same tasks, journal, events and
images as a synchronous run, but the requests go to the provider in jobs of up to its
limit (50,000 requests / 200 MB for OpenAI) and come back as result files.

Journal first. Every step is committed before the next one starts, in two tables of
the workspace's journal (made on first use; older nbbatch never reads them):
``remote_jobs`` (one row per job: nbbatch's own job id, which also goes into the job's
``metadata``; its phase ``prepared`` -> ``uploaded`` -> ``submitted`` -> ``ingesting``
-> ``done``; the input file, the provider's job id, state and counts) and
``remote_tasks`` (which task went in which job; a task's custom id is its task id).

* ``prepared``: the job's tasks are journaled ``running`` with ``error_kind`` =
  ``batch_api`` (and a label, "queued at OpenAI"): no synchronous run, edit or reconcile
  touches them from then on. The input file is written from the journal, so a kill
  before the upload just writes it again.
* ``uploaded``: the input file's id is journaled; the job is created next. A kill (or a
  timeout) between the provider creating it and the journal taking its id is why, before
  creating a job again, the provider's jobs are searched for one whose metadata carries
  this job id: a job is never created twice.
* ``submitted``: polled (the one poll retry policy, ``POLL_RETRY``) until it ends; its
  state and ``request_counts`` are journaled as they change. Each new state relabels the
  job's waiting tasks (journal, then memory) and is announced as one
  :class:`~nbbatch.events.RemoteJobChanged`, so a studio's rows follow the job live.
* ``ingesting``: the output and error files are downloaded streaming to a temporary
  file and read line by line; each line's images go through the same guarded decoder
  and durable save as a synchronous run's and are committed with the task's
  ``succeeded`` in one transaction. A task no longer journaled ``running`` under the batch
  API is skipped, so a line is never ingested twice, whatever was killed when.
  Per-line errors become the task's typed error (a refusal is ``refused``); requests
  the service never ran (the job expired or was cancelled) leave their tasks
  ``interrupted`` with the reason, runnable again.

One process polls a job at a time: a job names the run (lease) that polls it, and is
taken over only when that run's process has died. Pause stops polling (the job goes on
at the provider); stop ends the run and leaves the jobs submitted (``batch.run(...,
batch_api=True)`` or ``nbbatch resume`` re-attaches, never re-sends); cancelling
(``run.cancel_pending()``) cancels the jobs at the provider and keeps every result
they had made.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..core._errors import (
    AuthenticationError,
    ConfigError,
    ImageRejectedError,
    MalformedResponseError,
    NbbatchError,
    ProviderError,
)
from ..core._events import (
    BatchProgress,
    RemoteJobChanged,
    TaskInterrupted,
    TaskStarted,
    TaskSucceeded,
)
from ..core._model import Task, TaskStatus, new_id
from ..core._retry import POLL_RETRY, retrying
from ..core._secrets import scrub
from ..providers._base import ImageData, Provider
from ..providers._batchapi import BatchApi, LineResult, RemoteJob
from ..providers._batchapis import batch_api_of
from ..providers._codec import loads
from ._journal import in_chunks
from ._recovery import run_alive
from ._runner import Runner
from ._store import Workspace

__all__ = ["BATCH_API_KIND", "BatchApiRunner", "remote_jobs", "runner_factory", "where"]

log = logging.getLogger("nbbatch")

#: ``error_kind`` of a task submitted to a batch API (journaled ``running``)
BATCH_API_KIND = "batch_api"
#: the metadata keys naming the nbbatch batch and job at the provider
META_BATCH = "nbbatch_batch"
META_JOB = "nbbatch_job"
#: seconds between polls: from the first to the last, then the last again
POLL_STEPS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
#: result lines being decoded and saved at once
_INGEST_AT_ONCE = 8
#: bytes of result lines read from disk per thread hop
_READ_CHUNK = 8 * 1024 * 1024

_TABLES = (
    "CREATE TABLE IF NOT EXISTS remote_jobs ("
    "id TEXT PRIMARY KEY, "
    "batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE, "
    "provider TEXT NOT NULL, "
    "phase TEXT NOT NULL, "
    "endpoint TEXT, "
    "input_file TEXT, "
    "remote_id TEXT, "
    "remote_state TEXT, "
    "total INTEGER NOT NULL, "
    "completed INTEGER NOT NULL DEFAULT 0, "
    "failed INTEGER NOT NULL DEFAULT 0, "
    "run_id TEXT, "
    "note TEXT, "
    "created_at REAL NOT NULL, "
    "updated_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS remote_jobs_batch ON remote_jobs(batch_id)",
    "CREATE TABLE IF NOT EXISTS remote_tasks ("
    "task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE, "
    "job_id TEXT NOT NULL REFERENCES remote_jobs(id) ON DELETE CASCADE)",
    "CREATE INDEX IF NOT EXISTS remote_tasks_job ON remote_tasks(job_id)",
    # reference images uploaded for edits, once each per provider
    "CREATE TABLE IF NOT EXISTS remote_files ("
    "provider TEXT NOT NULL, "
    "sha256 TEXT NOT NULL, "
    "file_id TEXT NOT NULL, "
    "created_at REAL NOT NULL, "
    "PRIMARY KEY (provider, sha256))",
)

#: what a task's label says while its job is in each state
_WHERE = {
    "prepared": "being submitted to the {label} batch API",
    "uploaded": "being submitted to the {label} batch API",
    "validating": "submitted to the batch API: queued at {label}",
    "in_progress": "submitted to the batch API: in progress at {label}",
    "finalizing": "submitted to the batch API: finishing at {label}",
    "cancelling": "submitted to the batch API: being cancelled at {label}",
    # ended: the results are being downloaded and saved (a large file takes a while)
    "completed": "submitted to the batch API: done at {label}, collecting the results",
    "expired": "submitted to the batch API: expired at {label}, collecting what it made",
    "cancelled": "submitted to the batch API: cancelled at {label}, collecting what it made",
}


def _read_back(words: str) -> re.Pattern[str]:
    head, _, tail = words.partition("{label}")
    return re.compile(f"{re.escape(head)}(.+?){re.escape(tail)}", re.DOTALL)


#: each label read back to its state ("prepared" and "uploaded" say the same)
_READ_BACK = [(state, _read_back(w)) for state, w in _WHERE.items() if state != "uploaded"]


def where(label: str | None) -> tuple[str, str] | None:
    """The job state and the provider a batch API task's label names, e.g. ``("in_progress",
    "OpenAI")``, so a view can say it in its own language (None: not such a label)."""
    if not label:
        return None
    for state, pattern in _READ_BACK:
        found = pattern.fullmatch(label)
        if found is not None:
            return state, found.group(1)
    return None


#: why a task the service never ran is runnable again
_UNRUN_WORDS = {
    "expired": (
        "batch_expired",
        "the {label} batch job expired (24 h) before this request ran; nothing was "
        "billed for it. Run it again (now or in another batch job).",
    ),
    "cancelled": (
        "batch_cancelled",
        "the {label} batch job was cancelled before this request ran; run it again "
        "when you want it.",
    ),
    "failed": (
        "batch_failed",
        "the {label} batch API refused the job ({why}); nothing ran. Run it again.",
    ),
    "missing": (
        "batch_missing",
        "the {label} batch job ended ({state}) without a result for this request; run it again.",
    ),
}


def ensure_tables(workspace: Workspace) -> None:
    """Make the batch API tables when the journal lacks them (idempotent)."""
    have = {
        r[0]
        for r in workspace._query(
            "SELECT name FROM sqlite_master WHERE type='table' AND name IN (?, ?, ?)",
            ("remote_jobs", "remote_tasks", "remote_files"),
        )
    }
    if len(have) == 3:
        return
    with workspace._tx() as c:
        for statement in _TABLES:
            c.execute(statement)


def remote_jobs(workspace: Workspace, batch_id: str) -> list[dict[str, Any]]:
    """The batch API jobs of a batch, oldest first, as the journal holds them."""
    tables = workspace._query(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='remote_jobs'"
    )
    if not tables:
        return []
    keys = (
        "id", "provider", "phase", "input_file", "remote_id", "remote_state", "total",
        "completed", "failed", "note", "created_at", "updated_at",
    )  # fmt: skip
    rows = workspace._query(
        f"SELECT {', '.join(keys)} FROM remote_jobs WHERE batch_id=? ORDER BY created_at, id",
        (batch_id,),
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


@dataclass
class _Job:
    """One job of this run, as journaled (memory follows the journal, never leads)."""

    id: str
    phase: str
    task_ids: list[str]
    endpoint: str = ""
    input_file: str | None = None
    remote_id: str | None = None
    remote_state: str | None = None
    completed: int = 0
    failed: int = 0
    note: str | None = None
    #: a create may have reached the provider without its answer reaching us
    maybe_created: bool = False
    #: the person asked to cancel it
    cancel: bool = False
    #: the provider's last answer once it is terminal (where its result files are)
    seen: RemoteJob | None = None
    #: a result could not be saved (disk full): the files are read again next pass
    incomplete: bool = False


Sleep = Callable[[float], Awaitable[object]]


class BatchApiRunner(Runner):
    """A run whose requests go through the provider's batch API (module docstring).

    The handle is a :class:`~nbbatch.engine.Runner`: ``pause()`` stops polling,
    ``resume()`` polls again, ``stop()`` ends the run and leaves the jobs at the provider
    (resumable from any kernel), ``cancel_pending()`` cancels the jobs there (results
    already made are kept), ``progress()`` counts tasks and :meth:`jobs` shows each job
    with the provider's own counts.
    """

    def __init__(
        self,
        workspace: Workspace,
        tasks: Sequence[Task],
        provider: Provider,
        *,
        api: BatchApi,
        attached: Sequence[Task] = (),
        sleep: Sleep | None = None,
        poll_steps: Sequence[float] = POLL_STEPS,
        temp_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("concurrency", 1)
        super().__init__(workspace, tasks, provider, **options)
        self.api = api
        self._attached = [t for t in attached if t.id not in {x.id for x in tasks}]
        self._sleep = sleep
        self._poll_steps = tuple(poll_steps) or POLL_STEPS
        self._temp = Path(temp_dir) if temp_dir is not None else workspace.path / "tmp"
        self._jobs: list[_Job] = []
        self._by_id: dict[str, Task] = {}
        self._cancel_asked = False
        #: the last problem talking to the provider, in words (None: none)
        self.problem: str | None = None
        #: (clock, requests the provider has finished) at each change of its counts
        self._remote_pace: list[tuple[float, int]] = []
        #: reference image digest -> the provider's file id (uploaded for edits)
        self._ref_files: dict[str, str] = {}
        #: poll_now() was asked: the next nap is skipped (the poll under way when it was
        #: asked may have read the job before it moved)
        self._poll_asked = False

    # ----------------------------------------------------------- public handle
    def jobs(self) -> list[dict[str, Any]]:
        """Each job of this run: nbbatch's id, the provider's id, state and counts."""
        return [
            {
                "id": j.id,
                "remote_id": j.remote_id,
                "phase": j.phase,
                "state": j.remote_state,
                "total": len(j.task_ids),
                "completed": j.completed,
                "failed": j.failed,
            }
            for j in self._jobs
        ]

    def progress(self) -> BatchProgress:
        """Task counts; the ETA comes from the provider's ``request_counts`` (its pace
        since this run began), as no task finishes before its job does."""
        base = super().progress()
        if self._attached:  # at the provider, adopted when the run begins
            waiting = len(self._attached)
            base = dataclasses.replace(
                base, total=base.total + waiting, running=base.running + waiting
            )
        pace = self._remote_pace
        if len(pace) < 2 or pace[-1][0] <= pace[0][0] or pace[-1][1] <= pace[0][1]:
            return base
        total = sum(len(j.task_ids) for j in self._jobs)
        left = max(0, total - pace[-1][1])
        rate = (pace[-1][1] - pace[0][1]) / (pace[-1][0] - pace[0][0])
        return dataclasses.replace(base, eta=left / rate)

    def poll_now(self) -> None:
        """Ask the provider about the jobs now, not at the next poll (polls back off to
        once a minute while a job does not move)."""
        self._poll_asked = True
        self._poke()

    def cancel(self, task_id: str) -> None:
        task = self._find(task_id)
        if task.status is TaskStatus.RUNNING:
            raise ConfigError(
                f"task {task_id} is inside a {self.api.label} batch job, whose requests "
                "cannot be cancelled one by one; run.cancel_pending() cancels the whole "
                "job (the results it has made are kept)",
                task_id=task_id,
            )
        super().cancel(task_id)

    def cancel_pending(self) -> None:
        """Cancel the jobs at the provider (results made so far are kept) and every
        task not submitted yet."""
        super().cancel_pending()
        self._cancel_asked = True
        for job in self._jobs:
            job.cancel = True
        self._poke()

    # ----------------------------------------------------------- checks
    def _check(self, tasks: Sequence[Task]) -> None:
        super()._check(tasks)
        for task in tasks:
            self.api.check(self._request(task, with_images=False))

    # ----------------------------------------------------------- the run
    async def _dispatch(self, prepare: int | None = None) -> None:
        try:
            if prepare is not None:
                try:
                    await self._prepare(prepare)
                except BaseException:
                    self._stopping = True
                    raise
            await self._journal(ensure_tables, self.workspace)
            await self._journal(self._take_over)
            await self._submit_queued()
            step = 0
            while not self._stopping:
                if self._paused:
                    assert self._resumed is not None and self._wake is not None
                    await self._wait_for(self._resumed.wait())
                    continue
                if self._has_pending() and not self._cancel_asked:
                    await self._submit_queued()  # tasks added or retried during the run
                open_jobs = [j for j in self._jobs if j.phase != "done"]
                if not open_jobs:
                    break
                before = [(j.phase, j.remote_state, j.completed, j.failed) for j in open_jobs]
                self._poll_asked = False  # this pass is the poll asked for
                for job in open_jobs:
                    if self._stopping or self._paused:
                        break
                    await self._advance(job)
                after = [(j.phase, j.remote_state, j.completed, j.failed) for j in open_jobs]
                if any(j.phase != "done" for j in open_jobs) and not self._stopping:
                    step = 0 if after != before else min(step + 1, len(self._poll_steps) - 1)
                    await self._nap(self._poll_steps[step])
        except asyncio.CancelledError:
            self._stopping = True
            raise
        finally:
            self._closing = True
            await self._wind_down()

    async def _nap(self, seconds: float) -> None:
        if self._poll_asked:
            return
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        assert self._wake is not None
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _wait_for(self, waiting: Awaitable[object]) -> None:
        """Wait for ``waiting`` or a poke (stop), whichever comes first."""
        assert self._wake is not None
        self._wake.clear()
        first = asyncio.ensure_future(waiting)
        poke = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({first, poke}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (first, poke):
                f.cancel()

    # ----------------------------------------------------------- journal steps
    def _take_over(self) -> None:
        """Journal thread: adopt this batch's unfinished jobs whose poller is gone."""
        # adopted below, or left to the live run polling them
        attached, self._attached = self._attached, []
        mine = self._lease.id if self._lease is not None else new_id()
        rows = self.workspace._query(
            "SELECT id, phase, endpoint, input_file, remote_id, remote_state, completed, "
            "failed, run_id, note FROM remote_jobs WHERE batch_id=? AND phase != 'done' "
            "ORDER BY created_at, id",
            (self.batch_id,),
        )
        root, pid, host = self.workspace.path, os.getpid(), socket.gethostname()
        adopted: list[_Job] = []
        for row in rows:
            job_id, phase, endpoint, input_file, remote_id, state, done, failed, run_id, note = row
            if run_id and run_id != mine and run_alive(root, run_id, pid, host):
                continue  # a live run elsewhere polls it
            with self.workspace._tx() as c:
                cur = c.execute(
                    "UPDATE remote_jobs SET run_id=?, updated_at=? WHERE id=? AND run_id IS ?",
                    (mine, time.time(), job_id, run_id),
                )
                if cur.rowcount != 1:
                    continue  # another process took it over meanwhile
                ids = [
                    r[0]
                    for r in c.execute(
                        "SELECT task_id FROM remote_tasks WHERE job_id=? ORDER BY rowid",
                        (job_id,),
                    )
                ]
            job = _Job(
                job_id, phase, ids, endpoint or "", input_file, remote_id, state, done, failed, note
            )
            # another process may have created it and died before journaling its id
            job.maybe_created = phase == "uploaded"
            adopted.append(job)
        for job in adopted:  # what a killed run of these jobs left half written
            for stale in self._temp.glob(f"batchapi-{job.id}-*"):
                stale.unlink(missing_ok=True)
        if not adopted:
            return
        wanted = {i for j in adopted for i in j.task_ids}
        journaled: dict[str, tuple[str, str | None]] = {}
        ids = sorted(wanted)
        for chunk, marks in in_chunks(ids):
            for task_id, status, kind in self.workspace._query(
                f"SELECT id, status, error_kind FROM tasks WHERE id IN ({marks})", chunk
            ):
                journaled[task_id] = (status, kind)
        known = {t.id: t for t in (*self._tasks, *attached)}
        for task_id in ids:
            status, kind = journaled.get(task_id, ("", None))
            t = known.get(task_id)
            if t is None or status != "running" or kind != BATCH_API_KIND:
                continue  # ingested (or removed) by a run before this one
            if t.status is not TaskStatus.RUNNING:
                continue
            if task_id not in self._by_id:
                self._tasks.append(t)
                self._counts[TaskStatus.RUNNING] += 1
            self._by_id[task_id] = t
        self._jobs.extend(adopted)

    def _journal_job(self, job: _Job, **changes: Any) -> None:
        """Journal thread: commit ``changes`` of a job's row, then take them in memory."""
        changes["updated_at"] = time.time()
        sets = ", ".join(f"{k}=?" for k in changes)
        with self.workspace._tx() as c:
            c.execute(f"UPDATE remote_jobs SET {sets} WHERE id=?", (*changes.values(), job.id))
            if "remote_state" in changes and changes["remote_state"] in _WHERE:
                label = _WHERE[changes["remote_state"]].format(label=self.api.label)
                c.execute(
                    "UPDATE tasks SET error=? WHERE id IN "
                    "(SELECT task_id FROM remote_tasks WHERE job_id=?) "
                    "AND status='running' AND error_kind=?",
                    (label, job.id, BATCH_API_KIND),
                )
        for k, v in changes.items():
            if hasattr(job, k):
                setattr(job, k, v)

    def _journal_prepared(self, job: _Job, tasks: Sequence[Task], now: float) -> None:
        """Journal thread: the job's row, its tasks' rows and their ``running``, at once."""
        label = _WHERE["prepared"].format(label=self.api.label)
        with self.workspace._tx() as c:
            c.execute(
                "INSERT INTO remote_jobs(id, batch_id, provider, phase, endpoint, total, run_id, "
                "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    job.id,
                    self.batch_id,
                    self.provider.name,
                    "prepared",
                    job.endpoint,
                    len(tasks),
                    self._lease.id if self._lease is not None else None,
                    now,
                    now,
                ),
            )
            c.executemany(
                "INSERT OR REPLACE INTO remote_tasks(task_id, job_id) VALUES (?,?)",
                [(t.id, job.id) for t in tasks],
            )
            ids = [t.id for t in tasks]
            for chunk, marks in in_chunks(ids):
                cur = c.execute(
                    "UPDATE tasks SET status='running', attempts=attempts+1, error=?, "
                    f"error_kind=?, started_at=?, finished_at=NULL WHERE id IN ({marks}) "
                    "AND status='queued'",
                    (label, BATCH_API_KIND, now, *chunk),
                )
                if cur.rowcount != len(chunk):
                    raise ConfigError(
                        "some tasks of this batch API job changed meanwhile (removed or "
                        "taken by another run); nothing was submitted"
                    )
                # the run's lease no longer covers them: a dead run's repair must not
                # turn a submitted task into an interrupted one
                c.execute(f"DELETE FROM leases WHERE task_id IN ({marks})", chunk)

    # ----------------------------------------------------------- submitting
    async def _submit_queued(self) -> None:
        """Put every queued task into jobs (each journaled before anything is sent)."""
        queued = [
            t for t in self._tasks if t.status is TaskStatus.QUEUED and t.id not in self._removed
        ]
        parts = await asyncio.to_thread(self._partition, queued)
        for endpoint, part in parts:
            if self._stopping or self._cancel_asked:
                break
            job = _Job(new_id(), "prepared", [t.id for t in part], endpoint)
            now = time.time()
            await self._journal(self._journal_prepared, job, part, now)
            self._jobs.append(job)
            label = _WHERE["prepared"].format(label=self.api.label)
            for t in part:
                t.transition(TaskStatus.RUNNING, now=now)
                t.attempts += 1
                t.error, t.error_kind = label, BATCH_API_KIND
                self._by_id[t.id] = t
                self._count(TaskStatus.QUEUED, TaskStatus.RUNNING)
                self._emit(TaskStarted(t, t.attempts, batch_id=self.batch_id))
            self._emit_progress()
            await self._advance(job)

    def _partition(self, queued: Sequence[Task]) -> list[tuple[str, list[Task]]]:
        """Worker thread: the tasks in jobs of one endpoint each and at most the
        provider's requests and bytes (each line is measured, not kept)."""
        limit_n, limit_bytes = self.api.max_requests, self.api.max_bytes
        by_endpoint: dict[str, list[Task]] = {}
        for task in queued:
            endpoint = self.api.endpoint(self._request(task, with_images=False))
            by_endpoint.setdefault(endpoint, []).append(task)
        parts: list[tuple[str, list[Task]]] = []
        for endpoint, tasks in by_endpoint.items():
            part: list[Task] = []
            size = 0
            for task in tasks:
                files = ["file-" + "x" * 24] * len(task.references)  # an id's length
                request = self._request(task, with_images=False)
                line = len(self.api.line(request, task.id, files))
                if part and (len(part) >= limit_n or size + line > limit_bytes):
                    parts.append((endpoint, part))
                    part, size = [], 0
                part.append(task)
                size += line
            if part:
                parts.append((endpoint, part))
        return parts

    async def _upload_references(self, job: _Job) -> None:
        """Upload the reference images of the job's edits, once each (journaled: a
        resumed run uses the same files)."""
        wanted = {
            r.sha256: r
            for task_id in job.task_ids
            if (task := self._by_id.get(task_id)) is not None
            for r in task.references
            if r.sha256 not in self._ref_files
        }
        if not wanted:
            return
        known = await self._journal(self._known_files, list(wanted))
        self._ref_files.update(known)
        for sha, ref in wanted.items():
            if sha in self._ref_files:
                continue
            data = await asyncio.to_thread(ref.read_bytes)
            mime = f"image/{ref.format.lower()}"
            upload = functools.partial(self.api.upload_image, data, ref.name, mime)
            file_id = await retrying(upload, POLL_RETRY)
            await self._journal(self._journal_file, sha, file_id)
            self._ref_files[sha] = file_id

    def _known_files(self, digests: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk, marks in in_chunks(list(digests)):
            for sha, file_id in self.workspace._query(
                "SELECT sha256, file_id FROM remote_files WHERE provider=? "
                f"AND sha256 IN ({marks})",
                (self.provider.name, *chunk),
            ):
                out[sha] = file_id
        return out

    def _journal_file(self, sha: str, file_id: str) -> None:
        with self.workspace._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO remote_files(provider, sha256, file_id, created_at) "
                "VALUES (?,?,?,?)",
                (self.provider.name, sha, file_id, time.time()),
            )

    def _write_input(self, job: _Job) -> Path:
        """Worker thread: the job's input file, from its journaled tasks, streamed to disk."""
        self._temp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"batchapi-{job.id}-", suffix=".jsonl", dir=self._temp)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for task_id in job.task_ids:
                    task = self._by_id.get(task_id)
                    if task is None:
                        continue
                    files = [self._ref_files[r.sha256] for r in task.references]
                    request = self._request(task, with_images=False)
                    out.write(self.api.line(request, task_id, files))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def _advance(self, job: _Job) -> None:
        """Take ``job`` one step further (each step journaled before the next)."""
        try:
            if job.phase == "prepared":
                await self._upload(job)
            if job.phase == "uploaded":
                await self._create(job)
            if job.phase == "submitted":
                await self._poll(job)
            if job.phase == "ingesting":
                await self._ingest(job)
        except AuthenticationError as exc:
            self.problem = scrub(exc.message)
            log.warning("nbbatch: batch API job %s: %s; the run stops", job.id, self.problem)
            self.stop(reason=self._stopped_for(self.problem))  # resume once the key is right
        except ProviderError as exc:
            self.problem = scrub(exc.message)
            log.warning("nbbatch: batch API job %s: %s", job.id, self.problem)
            refused = not exc.retryable and not job.maybe_created
            if refused and job.phase in ("prepared", "uploaded"):
                await self._refused(job, exc)
            elif not exc.retryable and job.phase in ("submitted", "ingesting"):
                # asking again will not help (the job or its file is gone, access was
                # taken away): stop, the job stays journaled for a later resume
                self.stop(reason=self._stopped_for(self.problem))

    @staticmethod
    def _stopped_for(problem: str) -> str:
        return f"{problem} (the batch API jobs stay in the journal: Run all resumes them)"

    async def _upload(self, job: _Job) -> None:
        if job.cancel:
            await self._never_sent(job, "cancelled before it was sent")
            return
        await self._upload_references(job)
        path = await asyncio.to_thread(self._write_input, job)
        try:
            file_id = await retrying(
                lambda: self.api.upload(path, f"nbbatch-{self.batch_id}-{job.id}.jsonl"),
                POLL_RETRY,
            )
        finally:
            path.unlink(missing_ok=True)
        await self._journal(self._journal_job, job, phase="uploaded", input_file=file_id)

    async def _create(self, job: _Job) -> None:
        found: RemoteJob | None = None
        if job.maybe_created:
            found = await retrying(lambda: self.api.find(META_JOB, job.id), POLL_RETRY)
        if found is None:
            if job.cancel:
                await self._never_sent(job, "cancelled before it was sent")
                return
            assert job.input_file is not None
            metadata = {META_BATCH: str(self.batch_id), META_JOB: job.id}
            input_file = job.input_file
            endpoint = job.endpoint or self._endpoint_of(job)
            # Not retried here: a create that timed out may have made the job. The
            # next pass looks for it by its metadata before creating it again.
            job.maybe_created = True
            try:
                found = await self.api.create(input_file, metadata, endpoint)
            except ProviderError as exc:
                if not exc.retryable:
                    job.maybe_created = False  # refused: no job was made
                raise
        await self._journal(
            self._journal_job,
            job,
            phase="submitted",
            remote_id=found.id,
            remote_state=found.state,
            completed=found.completed,
            failed=found.failed,
        )
        job.maybe_created = False
        self._relabel(job)
        await self._seen(job, found)

    def _endpoint_of(self, job: _Job) -> str:
        for task_id in job.task_ids:
            task = self._by_id.get(task_id)
            if task is not None:
                return self.api.endpoint(self._request(task, with_images=False))
        return ""

    async def _poll(self, job: _Job) -> None:
        assert job.remote_id is not None
        remote_id = job.remote_id
        if job.cancel and job.remote_state not in ("cancelling", "cancelled", "completed"):
            seen = await retrying(lambda: self.api.cancel(remote_id), POLL_RETRY)
        else:
            seen = await retrying(lambda: self.api.get(remote_id), POLL_RETRY)
        await self._seen(job, seen)

    async def _seen(self, job: _Job, seen: RemoteJob) -> None:
        changes: dict[str, Any] = {}
        if seen.state != job.remote_state:
            changes["remote_state"] = seen.state
        if (seen.completed, seen.failed) != (job.completed, job.failed):
            changes.update(completed=seen.completed, failed=seen.failed)
        if seen.terminal:
            changes["phase"] = "ingesting"
            if seen.errors:
                changes["note"] = seen.errors
        if seen.terminal:
            job.seen = seen
        if changes:
            await self._journal(self._journal_job, job, **changes)
            if "remote_state" in changes:
                self._relabel(job)
            finished = sum(j.completed + j.failed for j in self._jobs)
            self._remote_pace.append((self._clock(), finished))
            self._emit_progress()

    def _relabel(self, job: _Job) -> None:
        """After the journal took the job's new state: its waiting tasks say so in memory
        too, and one event tells the studio (whose rows show the label) which ones."""
        state = job.remote_state or ""
        words = _WHERE.get(state)
        if words is None:
            return
        label = words.format(label=self.api.label)
        waiting = tuple(
            t
            for task_id in job.task_ids
            if (t := self._by_id.get(task_id)) is not None
            and t.status is TaskStatus.RUNNING
            and t.error_kind == BATCH_API_KIND
        )
        for t in waiting:
            t.error = label
        self._emit(
            RemoteJobChanged(
                job.id,
                state,
                label,
                waiting,
                completed=job.completed,
                failed=job.failed,
                total=len(job.task_ids),
                remote_id=job.remote_id,
                batch_id=self.batch_id,
            )
        )

    async def _refused(self, job: _Job, exc: ProviderError) -> None:
        """The provider refused the upload or the job (not retryable): nothing ran, so
        the tasks fail with its words (they were never billed)."""
        for task_id in job.task_ids:
            task = self._by_id.get(task_id)
            if task is not None and task.status is TaskStatus.RUNNING:
                task.error, task.error_kind = None, None
                self._fail(task, exc)
        await self._journal(self._journal_job, job, phase="done", note=scrub(exc.message))

    async def _never_sent(self, job: _Job, why: str) -> None:
        """A job cancelled before it reached the provider: its tasks wait again."""
        await self._settle_unrun(job, "cancelled", "")
        await self._journal(self._journal_job, job, phase="done", note=why)

    # ----------------------------------------------------------- results
    async def _ingest(self, job: _Job) -> None:
        seen = job.seen
        if seen is None:  # resumed while ingesting: ask again where the files are
            assert job.remote_id is not None
            remote_id = job.remote_id
            seen = job.seen = await retrying(lambda: self.api.get(remote_id), POLL_RETRY)
        await self._journal(self._refresh, job)
        job.incomplete = False
        for file_id in (seen.output_file, seen.error_file):
            if file_id and not self._stopping:
                await self._ingest_file(job, file_id)
        if self._stopping or job.incomplete:
            return  # read again later, from the files; nothing is ingested twice
        await self._settle_unrun(job, "missing", seen.state, why=seen.errors)
        await self._journal(self._journal_job, job, phase="done")
        self._emit_progress()

    def _refresh(self, job: _Job) -> None:
        """Journal thread: forget tasks of ``job`` the journal no longer has submitted
        (another run ingested them before it died): they are never ingested again."""
        still: set[str] = set()
        for chunk, marks in in_chunks(job.task_ids):
            for (task_id,) in self.workspace._query(
                f"SELECT id FROM tasks WHERE id IN ({marks}) AND status='running' AND error_kind=?",
                (*chunk, BATCH_API_KIND),
            ):
                still.add(task_id)
        for task_id in job.task_ids:
            if task_id not in still and task_id in self._by_id:
                del self._by_id[task_id]

    async def _ingest_file(self, job: _Job, file_id: str) -> None:
        self._temp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"batchapi-{job.id}-", suffix=".out", dir=self._temp)
        os.close(fd)
        path = Path(name)
        try:
            await retrying(lambda: self.api.download(file_id, path), POLL_RETRY)
            gate = asyncio.Semaphore(_INGEST_AT_ONCE)
            pending: set[asyncio.Task[None]] = set()
            with path.open("rb") as handle:
                while not self._stopping:
                    lines = await asyncio.to_thread(_read_lines, handle)
                    if not lines:
                        break
                    for raw in lines:
                        await gate.acquire()
                        work = asyncio.ensure_future(self._take_line(job, raw))
                        pending.add(work)
                        work.add_done_callback(pending.discard)
                        work.add_done_callback(lambda _: gate.release())
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            path.unlink(missing_ok=True)

    async def _take_line(self, job: _Job, raw: bytes) -> None:
        try:
            line = loads(raw)
        except (ValueError, UnicodeDecodeError):
            log.warning("nbbatch: an unreadable line in a result file of job %s", job.id)
            return
        custom_id = self.api.custom_id(line)
        task = self._by_id.get(custom_id) if custom_id is not None else None
        if task is None or task.status is not TaskStatus.RUNNING:
            return  # not ours, or ingested already
        del self._by_id[task.id]  # claimed by this line: a duplicate line finds nothing
        try:
            result = await self.api.read_line(line, self._request(task, with_images=False))
        except MalformedResponseError as exc:
            result = LineResult(task.id, error=exc)
        try:
            if result.images:
                await self._save(task, job, result.images)
            elif result.error is not None:
                task.error, task.error_kind = None, None
                self._fail(task, result.error)
            else:
                await self._settle_unrun(job, result.unrun or "missing", "", only=[task])
        except ImageRejectedError as exc:
            task.error, task.error_kind = None, None
            self._fail(task, exc)
        except NbbatchError as exc:
            log.warning("nbbatch: task %s could not be saved: %s", task.id, scrub(exc.message))
            if task.status is TaskStatus.RUNNING:
                self._by_id[task.id] = task  # not journaled: the next ingest takes it again
                job.incomplete = True

    async def _save(self, task: Task, job: _Job, images: list[ImageData]) -> None:
        for im in images:
            # the billed usage stays as the answer gave it; these say it was a batch job
            im.info["batch_api"] = self.provider.name
            im.info["batch_job"] = job.remote_id
        stored = await asyncio.get_running_loop().run_in_executor(
            self._savers, self._save_files, task, self.provider, images
        )
        finished = time.time()
        task.error, task.error_kind = None, None
        row = Workspace.status_row(task, TaskStatus.SUCCEEDED, finished)
        saved = await self._journal(self.workspace.record_success, task, stored, row=row)
        task.transition(TaskStatus.SUCCEEDED, now=finished)
        task.images.extend(saved)
        task.progress = 1.0
        self._count(TaskStatus.RUNNING, TaskStatus.SUCCEEDED)
        self._eta.completed(time.monotonic())
        self._emit(TaskSucceeded(task, tuple(saved), batch_id=self.batch_id))

    async def _settle_unrun(
        self,
        job: _Job,
        reason: str,
        state: str,
        *,
        why: str = "",
        only: Sequence[Task] | None = None,
    ) -> None:
        """Tasks the service never ran become ``interrupted`` with the reason (runnable)."""
        if only is None:
            tasks = [self._by_id.pop(i) for i in job.task_ids if i in self._by_id]
        else:
            tasks = list(only)
        tasks = [t for t in tasks if t.status is TaskStatus.RUNNING]
        if not tasks:
            return
        if reason == "missing" and state in ("expired", "cancelled", "failed"):
            reason = state
        kind, words = _UNRUN_WORDS.get(reason, _UNRUN_WORDS["missing"])
        text = scrub(words.format(label=self.api.label, state=state, why=why or "no reason"))
        now = time.time()
        for t in tasks:
            t.error, t.error_kind = text, kind
        rows = [Workspace.status_row(t, TaskStatus.INTERRUPTED, now) for t in tasks]
        await self._journal(_save_rows, self.workspace, rows)
        for t in tasks:
            t.transition(TaskStatus.INTERRUPTED, now=now)
            t.error, t.error_kind = text, kind
            self._count(TaskStatus.RUNNING, TaskStatus.INTERRUPTED)
            self._emit(TaskInterrupted(t, batch_id=self.batch_id))
        self._emit_progress()


def _save_rows(workspace: Workspace, rows: Sequence[tuple[Any, ...]]) -> None:
    with workspace._tx() as c:
        c.executemany(
            "UPDATE tasks SET status=?, attempts=?, error=?, error_kind=?, started_at=?, "
            "finished_at=? WHERE id=?",
            rows,
        )


def _read_lines(handle: IO[bytes]) -> list[bytes]:
    """Worker thread: the next lines of a result file, about ``_READ_CHUNK`` bytes."""
    out: list[bytes] = []
    size = 0
    while size < _READ_CHUNK:
        raw = handle.readline()
        if not raw:
            break
        if raw.strip():
            out.append(raw)
            size += len(raw)
    return out


def runner_factory(
    all_tasks: Sequence[Task], provider: Provider, options: bool | Mapping[str, Any]
) -> Callable[..., Runner]:
    """What ``batch.start(..., batch_api=True)`` makes its runner with (it takes the
    :class:`Runner` arguments): the chosen tasks are submitted, and the batch's tasks
    already at the provider are re-attached (polled, never re-sent). ``options`` (a
    mapping) go to :class:`BatchApiRunner` (``sleep``, ``poll_steps``, ``temp_dir``)."""
    api = batch_api_of(provider)
    if api is None:
        raise ConfigError(
            f"{provider.label} has no batch API in nbbatch (OpenAI has); run it without "
            "batch_api=True"
        )
    attached = [
        t for t in all_tasks if t.status is TaskStatus.RUNNING and t.error_kind == BATCH_API_KIND
    ]
    extra = dict(options) if isinstance(options, Mapping) else {}

    def make(
        workspace: Workspace, tasks: Sequence[Task], provider: Provider, **kwargs: Any
    ) -> Runner:
        return BatchApiRunner(
            workspace, tasks, provider, api=api, attached=attached, **extra, **kwargs
        )

    return make
