"""Tasks and batches in the journal: insert, load, edit, claim, journal their progress.

:class:`TaskRows` holds every read and write of the ``batches``, ``tasks``,
``task_refs``, ``inputs`` and ``images`` rows (and the ``derived`` rows of post-processed
copies); it returns plain records (:class:`BatchRecord`, :class:`~nbbatch.core.Task`).
An edit or removal of a task that a live run of another process holds is refused with
:class:`~nbbatch.errors.HeldElsewhereError`, naming the process (see ``_recovery``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core._errors import (
    ConfigError,
    HeldElsewhereError,
    ImageRejectedError,
    NotFoundError,
    TaskStateError,
)
from ..core._model import GeneratedImage, Params, Reference, Task, TaskStatus, new_id
from ..images._decode import UPLOAD_LIMITS, ImageLimits, inspect_image
from ..images._files import NotAFileError, read_capped
from ._blobs import Blobs, StoredImage
from ._history import BatchSummary
from ._journal import Journal, bulk_objects, in_chunks
from ._recovery import RunHolder, RunLease, held_elsewhere

__all__ = ["BatchRecord", "TaskRows", "refuse_held"]

_STATUSES = {s.value: s for s in TaskStatus}


def _restore_task(values: dict[str, Any]) -> Task:
    """A Task from its journal row without running ``__init__`` again.

    The row was validated when the task was made (prompt checked and stripped, params
    parsed, status a known value), and re-checking 100,000 of them was most of the time
    of reopening a batch. Fields the row does not hold get their declared defaults, so
    a field added to Task later still gets its default here.
    """
    task = object.__new__(Task)
    state = task.__dict__
    for f in _TASK_DEFAULTS:
        if f.default is not dataclasses.MISSING:
            state[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            state[f.name] = f.default_factory()
    state.update(values)
    return task


_ROW_FIELDS = frozenset(
    {
        "id", "batch_id", "parent_id", "order", "prompt", "original_prompt", "params",
        "provider", "status", "attempts", "error", "error_kind", "created_at", "started_at",
        "finished_at",
    }
)  # fmt: skip
_TASK_DEFAULTS = [f for f in dataclasses.fields(Task) if f.name not in _ROW_FIELDS]


@dataclass(frozen=True)
class BatchRecord:
    """A batch as the journal holds it: its head row and its tasks in order."""

    id: str
    name: str
    created_at: float
    provider: str | None
    tasks: list[Task]


def _take_journaled(t: Task, prompt: str, params: str, provider: str | None) -> None:
    """Make ``t`` what the journal says (an edit made by another process since it was
    loaded here): the run sends the journal's prompt, not a stale copy."""
    t.prompt = prompt
    t.params = Params.from_dict(json.loads(params))
    t.provider = provider


def refuse_held(holders: Sequence[RunHolder], doing: str) -> None:
    """Raise :class:`HeldElsewhereError` naming ``holders`` (nothing when there are none)."""
    if not holders:
        return
    ids = tuple(i for h in holders for i in h.task_ids)
    who = "; ".join(h.describe() for h in holders)
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    raise HeldElsewhereError(
        f"cannot {doing}: {len(ids)} task(s) ({shown}) are being run by another kernel "
        f"({who}). Wait for that run to finish or stop it there, then try again; "
        "batch.follow() shows its progress here. Nothing was changed.",
        holders=tuple(holders),
        task_ids=ids,
    )


class TaskRows:
    """Every read and write of task and batch rows of one workspace."""

    def __init__(self, journal: Journal, blobs: Blobs) -> None:
        self.journal = journal
        self.blobs = blobs

    @property
    def _where(self) -> str:
        return str(self.journal.folder)

    def _refuse_if_held(self, task_ids: Sequence[str], doing: str) -> None:
        refuse_held(held_elsewhere(self.journal, self.journal.folder, task_ids=task_ids), doing)

    # ----------------------------------------------------------- inputs
    def add_reference(
        self,
        source: bytes | str | os.PathLike[str],
        name: str | None = None,
        *,
        limits: ImageLimits = UPLOAD_LIMITS,
    ) -> Reference:
        """Validate an input image (path or bytes) and keep it in the workspace."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            label = name or "image"
        else:
            p = Path(source)
            try:
                # A FIFO would block the open forever and /dev/zero never ends: only a
                # regular file is read, and never past the byte cap.
                data = read_capped(p, limits.max_bytes)
            except NotAFileError as exc:
                raise ImageRejectedError(
                    f"{p.name}: {exc}",
                    reason="too_many_bytes" if exc.too_large else "not_a_file",
                    limit=limits.max_bytes if exc.too_large else None,
                    actual=exc.size if exc.too_large else None,
                ) from None
            label = name or p.name
        try:
            info = inspect_image(data, limits)
        except ImageRejectedError as exc:
            exc.message = f"{label}: {exc.message}"
            raise
        path, sha = self.blobs.write(data, info.ext)
        with self.journal.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO inputs(sha256, ext, name, width, height, format, "
                "created_at) VALUES (?,?,?,?,?,?,?)",
                (sha, info.ext, label, info.width, info.height, info.format, time.time()),
            )
        return Reference(label, path, sha, info.width, info.height, info.format)

    # ----------------------------------------------------------- batches
    def insert_batch(
        self,
        tasks: Sequence[Task],
        *,
        name: str | None = None,
        params: Params | None = None,
        provider: str | None = None,
        allow_empty: bool = False,
    ) -> BatchRecord:
        """Journal a new batch of tasks (numbered in the order given); return its record."""
        if not tasks and not allow_empty:
            raise ConfigError("a batch needs at least one task (no prompts were given)")
        batch_id = new_id()
        now = time.time()
        label = name or time.strftime("batch %Y-%m-%d %H:%M:%S", time.localtime(now))
        for i, task in enumerate(tasks):
            if task.batch_id not in (None, batch_id):
                raise ConfigError(f"task {task.id} already belongs to batch {task.batch_id}")
            task.batch_id = batch_id
            task.order = i
        with self.journal.tx() as c:
            c.execute(
                "INSERT INTO batches(id, name, created_at, provider, params) VALUES (?,?,?,?,?)",
                (batch_id, label, now, provider, json.dumps((params or Params()).to_dict())),
            )
            self._insert_tasks(c, tasks)
        return BatchRecord(batch_id, label, now, provider, list(tasks))

    def _insert_tasks(self, c: sqlite3.Connection, tasks: Sequence[Task]) -> None:
        # The tasks of a batch usually share one Params object: encode each object once
        # (a third of the time of journaling 100,000 tasks went to json.dumps).
        encoded: dict[int, str] = {}

        def params_json(p: Params) -> str:
            text = encoded.get(id(p))
            if text is None:
                text = encoded[id(p)] = json.dumps(p.to_dict())
            return text

        c.executemany(
            "INSERT INTO tasks(id, batch_id, parent_id, ord, prompt, original_prompt, params, "
            "provider, status, attempts, error, error_kind, created_at, started_at, "
            "finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    t.id,
                    t.batch_id,
                    t.parent_id,
                    t.order,
                    t.prompt,
                    t.original_prompt,
                    params_json(t.params),
                    t.provider,
                    t.status.value,
                    t.attempts,
                    t.error,
                    t.error_kind,
                    t.created_at,
                    t.started_at,
                    t.finished_at,
                )
                for t in tasks
            ],
        )
        refs = [(t.id, i, r.sha256, r.name) for t in tasks for i, r in enumerate(t.references)]
        if refs:
            c.executemany(
                "INSERT INTO task_refs(task_id, idx, sha256, name) VALUES (?,?,?,?)", refs
            )

    def add_tasks(self, batch_id: str, tasks: Sequence[Task]) -> None:
        """Journal extra tasks for an existing batch (their ``order`` is kept).

        Tasks whose order is already taken push the ones at and after it down, in the
        same transaction, so a task inserted in the middle keeps the journal's order.
        """
        for t in tasks:
            t.batch_id = batch_id
        with self.journal.tx() as c:
            for t in tasks:
                c.execute(
                    "UPDATE tasks SET ord = ord + 1 WHERE batch_id=? AND ord >= ?",
                    (batch_id, t.order),
                )
            self._insert_tasks(c, tasks)

    def remove_tasks(self, task_ids: Sequence[str]) -> None:
        """Delete tasks with their image and reference rows, in one transaction.

        The files stay until the next reconcile finds that no row uses them any more
        (another task may use the same image as a reference). Refused, changing
        nothing, when a live run of another process holds any of them.
        """
        with self.journal.tx() as c:
            # A task another live run holds stays: that run would send it anyway, then
            # find its row gone when it journals the outcome.
            self._refuse_if_held(list(task_ids), "remove these tasks")
            c.executemany("DELETE FROM tasks WHERE id=?", [(i,) for i in task_ids])

    def set_orders(self, orders: Sequence[tuple[str, int]]) -> None:
        """Journal new positions, ``(task_id, order)`` pairs, in one transaction."""
        with self.journal.tx() as c:
            c.executemany("UPDATE tasks SET ord=? WHERE id=?", [(o, i) for i, o in orders])

    def known_digests(self) -> set[str]:
        """The sha256 of every image a row still uses (results and inputs)."""
        rows = self.journal.query("SELECT sha256 FROM images UNION SELECT sha256 FROM inputs")
        return {r[0] for r in rows}

    def has_input(self, sha256: str) -> bool:
        """Whether an input image with this digest is kept in the workspace."""
        return bool(self.journal.query("SELECT 1 FROM inputs WHERE sha256=?", (sha256,)))

    def reference_from_image(self, image: GeneratedImage, name: str | None = None) -> Reference:
        """Use a generated image as an input of another task (no bytes are copied)."""
        ext = image.path.suffix.lstrip(".")
        label = name or f"{image.task_id}-{image.index}.{ext}"
        with self.journal.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO inputs(sha256, ext, name, width, height, format, "
                "created_at) VALUES (?,?,?,?,?,?,?)",
                (image.sha256, ext, label, image.width, image.height, image.format, time.time()),
            )
        return Reference(label, image.path, image.sha256, image.width, image.height, image.format)

    def batches(self) -> list[BatchSummary]:
        """Every batch in the workspace, newest first, with per-status task counts."""
        rows = self.journal.query(
            "SELECT b.id, b.name, b.created_at, b.provider, t.status, count(t.id) "
            "FROM batches b LEFT JOIN tasks t ON t.batch_id = b.id "
            "GROUP BY b.id, t.status ORDER BY b.created_at DESC, b.id"
        )
        out: dict[str, BatchSummary] = {}
        for bid, name, created, provider, status, count in rows:
            summary = out.get(bid)
            if summary is None:
                summary = out[bid] = BatchSummary(bid, name, created, provider, {})
            if status is not None:
                summary.counts[status] = count
        return list(out.values())

    def load_batch(self, batch_id: str) -> BatchRecord:
        """Read a batch (tasks, references and images) from the journal.

        A unique prefix of the id is enough.
        """
        head = self.journal.query(
            "SELECT id, name, created_at, provider FROM batches WHERE id=?", (batch_id,)
        )
        if not head:
            matches = self.journal.query(
                "SELECT id FROM batches WHERE id LIKE ? LIMIT 2", (batch_id + "%",)
            )
            if len(matches) == 1:
                return self.load_batch(matches[0][0])
            raise NotFoundError(
                f"no batch {batch_id!r} in workspace {self._where!r}; "
                "`nbbatch history` lists the batches"
            )
        bid, name, created, provider = head[0]
        with bulk_objects():
            tasks = self._load_tasks("t.batch_id=?", (bid,))
        return BatchRecord(bid, name, created, provider, tasks)

    def _load_tasks(self, where: str, args: Sequence[Any]) -> list[Task]:
        rows = self.journal.query(
            "SELECT t.id, t.batch_id, t.parent_id, t.ord, t.prompt, t.original_prompt, "
            "t.params, t.provider, t.status, t.attempts, t.error, t.error_kind, t.created_at, "
            f"t.started_at, t.finished_at FROM tasks t WHERE {where} ORDER BY t.ord",
            args,
        )
        tasks: dict[str, Task] = {}
        # Params are immutable and most tasks of a batch have the same ones: parse each
        # distinct text once and share the object, as Batch.create shares it.
        parsed: dict[str, Params] = {}
        for r in rows:
            params = parsed.get(r[6])
            if params is None:
                params = parsed[r[6]] = Params.from_dict(json.loads(r[6]))
            status = _STATUSES.get(r[8]) or TaskStatus(r[8])  # unknown: ValueError
            task = _restore_task(
                {
                    "id": r[0],
                    "batch_id": r[1],
                    "parent_id": r[2],
                    "order": r[3],
                    "prompt": r[4],
                    "original_prompt": r[5],
                    "params": params,
                    "provider": r[7],
                    "status": status,
                    "attempts": r[9],
                    "error": r[10],
                    "error_kind": r[11],
                    "created_at": r[12],
                    "started_at": r[13],
                    "finished_at": r[14],
                }
            )
            tasks[task.id] = task
        if not tasks:
            return []
        for task_id, idx, sha, ext, w, h, fmt, seed, params, created, starred in self.journal.query(
            "SELECT i.task_id, i.idx, i.sha256, i.ext, i.width, i.height, i.format, i.seed, "
            f"i.params, i.created_at, i.starred FROM images i JOIN tasks t ON t.id = i.task_id "
            f"WHERE {where} ORDER BY i.task_id, i.idx",
            args,
        ):
            tasks[task_id].images.append(
                GeneratedImage(
                    task_id,
                    idx,
                    self.blobs.path(sha, ext),
                    sha,
                    w,
                    h,
                    fmt,
                    seed,
                    json.loads(params),
                    created,
                    starred=bool(starred),
                )
            )
        for task_id, _idx, sha, name, ext, w, h, fmt in self.journal.query(
            "SELECT r.task_id, r.idx, r.sha256, r.name, i.ext, i.width, i.height, i.format "
            "FROM task_refs r JOIN inputs i ON i.sha256 = r.sha256 "
            f"JOIN tasks t ON t.id = r.task_id WHERE {where} ORDER BY r.task_id, r.idx",
            args,
        ):
            tasks[task_id].references.append(
                Reference(name, self.blobs.path(sha, ext), sha, w, h, fmt)
            )
        return list(tasks.values())

    def task(self, task_id: str) -> Task:
        found = self._load_tasks("t.id=?", (task_id,))
        if not found:
            raise NotFoundError(f"no task {task_id!r} in workspace {self._where!r}")
        return found[0]

    # ----------------------------------------------------------- journaling
    def save_task(self, task: Task) -> None:
        """Journal a task's mutable fields: status, attempts, error, prompt, params,
        provider, order and its references.

        Refused (:class:`~nbbatch.errors.HeldElsewhereError`) while a live run of another
        process holds the task: the edit would be journaled but that run sends what it
        read when it claimed it.
        """
        with self.journal.tx() as c:
            # Inside the write transaction: no run can claim the task between the check
            # and the write. A run of another process would send the prompt it read
            # when it claimed the task; the edit would be journaled but never sent.
            self._refuse_if_held([task.id], f"change task {task.id}")
            self._update(c, task)
            c.execute("DELETE FROM task_refs WHERE task_id=?", (task.id,))
            if task.references:
                c.executemany(
                    "INSERT INTO task_refs(task_id, idx, sha256, name) VALUES (?,?,?,?)",
                    [(task.id, i, r.sha256, r.name) for i, r in enumerate(task.references)],
                )

    def claim(self, tasks: Sequence[Task], lease: RunLease | None = None) -> set[str]:
        """Mark ``tasks`` queued in one transaction; return the ids that were free.

        A task already queued or running (by another run or process) or succeeded is
        not claimed, so two runs never send the same task at once. A claimed task whose
        prompt, params, provider or references the journal holds differently (another
        kernel edited it after this one loaded it) takes the journal's, so what is sent
        is what the journal says. With ``lease`` the claimed tasks are recorded as that
        run's in the same transaction, so that if its process dies they are repaired by
        whoever opens the workspace next.
        """
        claimed: set[str] = set()
        by_id = {t.id: t for t in tasks}
        ids = list(by_id)
        encoded: dict[int, str] = {}
        free = "status IN ('idle', 'failed', 'cancelled', 'interrupted')"
        owner = (lease.id, os.getpid(), socket.gethostname(), time.time()) if lease else ()
        with self.journal.tx() as c:
            # A few statements per chunk of ids instead of one UPDATE and one lease row
            # per task (a run starts on the event loop; for 1,000 tasks the claim went
            # from 6.7 to 4.3 ms of CPU, and the lease rows made from the SELECT took
            # 10,000 from 62 to 48 ms). Inside the one IMMEDIATE transaction nothing can
            # change in between, so the rows selected, leased and updated are the same.
            for chunk, marks in in_chunks(ids):
                where = f"WHERE id IN ({marks}) AND {free}"
                fresh: set[str] = set()
                for task_id, prompt, params, provider in c.execute(
                    f"SELECT id, prompt, params, provider FROM tasks {where}", chunk
                ):
                    claimed.add(task_id)
                    fresh.add(task_id)
                    t = by_id[task_id]
                    if prompt != t.prompt or provider != t.provider:
                        _take_journaled(t, prompt, params, provider)
                        continue
                    text = encoded.get(id(t.params))
                    if text is None:
                        text = encoded[id(t.params)] = json.dumps(t.params.to_dict())
                    if params != text:
                        _take_journaled(t, prompt, params, provider)
                self._take_journaled_references(c, chunk, marks, fresh, by_id)
                if lease is not None:
                    c.execute(
                        "INSERT OR REPLACE INTO leases(task_id, run_id, pid, host, claimed_at) "
                        f"SELECT id, ?, ?, ?, ? FROM tasks {where} ORDER BY id",
                        (*owner, *chunk),
                    )
                c.execute(
                    "UPDATE tasks SET status='queued', error=NULL, error_kind=NULL, "
                    f"finished_at=NULL {where}",
                    chunk,
                )
        return claimed

    def _take_journaled_references(
        self,
        c: sqlite3.Connection,
        chunk: Sequence[str],
        marks: str,
        claimed: set[str],
        by_id: Mapping[str, Task],
    ) -> None:
        """Give each claimed task the references the journal holds where they differ
        (another process changed them after this one loaded the task)."""
        journaled: dict[str, list[Reference]] = {}
        for task_id, sha, name, ext, w, h, fmt in c.execute(
            "SELECT r.task_id, r.sha256, r.name, i.ext, i.width, i.height, i.format "
            "FROM task_refs r JOIN inputs i ON i.sha256 = r.sha256 "
            f"WHERE r.task_id IN ({marks}) ORDER BY r.task_id, r.idx",
            chunk,
        ):
            if task_id in claimed:
                ref = Reference(name, self.blobs.path(sha, ext), sha, w, h, fmt)
                journaled.setdefault(task_id, []).append(ref)
        for task_id in claimed:
            t = by_id[task_id]
            refs = journaled.get(task_id, [])
            if [(r.sha256, r.name) for r in t.references] != [(r.sha256, r.name) for r in refs]:
                t.references = refs

    def claimed_elsewhere(self, task_ids: Sequence[str]) -> dict[str, int]:
        """For tasks held by a live run: task id -> the process id running it."""
        out: dict[str, int] = {}
        for chunk, marks in in_chunks(task_ids):
            for task_id, pid in self.journal.query(
                f"SELECT task_id, pid FROM leases WHERE task_id IN ({marks})", chunk
            ):
                out[task_id] = pid
        return out

    def save_status(self, task: Task) -> None:
        """Journal only the lifecycle fields (the runner's hot path: no JSON to encode)."""
        with self.journal.tx() as c:
            self._update_status(c, task)

    @staticmethod
    def status_row(
        t: Task, status: TaskStatus | None = None, finished_at: float | None = None
    ) -> tuple[Any, ...]:
        """The lifecycle fields of ``t`` as :meth:`save_status_row` journals them.

        Taken on the thread that owns the task, so that a writer thread journals one
        consistent moment of it; ``status`` and ``finished_at`` journal a transition
        before it is made in memory.
        """
        return (
            (status or t.status).value,
            t.attempts,
            t.error,
            t.error_kind,
            t.started_at,
            t.finished_at if finished_at is None else finished_at,
            t.id,
        )

    def save_status_row(self, row: tuple[Any, ...]) -> None:
        """Journal a :meth:`status_row` (safe to call from a writer thread)."""
        with self.journal.tx() as c:
            self._write_status_row(c, row)

    def save_statuses(self, tasks: Sequence[Task]) -> None:
        with self.journal.tx() as c:
            for t in tasks:
                self._update_status(c, t)

    def save_status_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Journal many :meth:`status_row` rows in one transaction (any thread).

        For a run settling its queued tasks in bulk: a row whose task is no longer in
        the journal (removed meanwhile, which journaled its removal) is skipped.
        """
        with self.journal.tx() as c:
            c.executemany(
                "UPDATE tasks SET status=?, attempts=?, error=?, error_kind=?, started_at=?, "
                "finished_at=? WHERE id=?",
                rows,
            )

    @classmethod
    def _update_status(cls, c: sqlite3.Connection, t: Task) -> None:
        cls._write_status_row(c, cls.status_row(t))

    @staticmethod
    def _write_status_row(c: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        cur = c.execute(
            "UPDATE tasks SET status=?, attempts=?, error=?, error_kind=?, started_at=?, "
            "finished_at=? WHERE id=?",
            row,
        )
        if cur.rowcount != 1:
            raise NotFoundError(f"task {row[-1]} is not in this workspace", task_id=row[-1])

    @staticmethod
    def _update(c: sqlite3.Connection, t: Task) -> None:
        cur = c.execute(
            "UPDATE tasks SET status=?, attempts=?, error=?, error_kind=?, started_at=?, "
            "finished_at=?, prompt=?, params=?, provider=?, ord=? WHERE id=?",
            (
                t.status.value,
                t.attempts,
                t.error,
                t.error_kind,
                t.started_at,
                t.finished_at,
                t.prompt,
                json.dumps(t.params.to_dict()),
                t.provider,
                t.order,
                t.id,
            ),
        )
        if cur.rowcount != 1:
            raise NotFoundError(f"task {t.id} is not in this workspace", task_id=t.id)

    def set_starred(self, task_id: str, index: int, starred: bool) -> None:
        """Journal the ``starred`` flag of one generated image."""
        with self.journal.tx() as c:
            cur = c.execute(
                "UPDATE images SET starred=? WHERE task_id=? AND idx=?",
                (int(starred), task_id, index),
            )
            if cur.rowcount != 1:
                raise NotFoundError(
                    f"image {index} of task {task_id} is not in this workspace", task_id=task_id
                )

    def record_success(
        self,
        task: Task,
        stored: Sequence[StoredImage],
        *,
        row: tuple[Any, ...] | None = None,
    ) -> list[GeneratedImage]:
        """Commit the images (already written with :meth:`write_blob`) and the task at once.

        ``task`` is already ``succeeded`` in memory, or ``row`` (a :meth:`status_row`)
        journals it as such while memory is changed only after the commit (the runner
        commits from a writer thread). If the commit fails the files become orphans
        that the next reconcile removes.
        """
        now = time.time()
        # One transaction for the numbering and the rows: the hot path pays one lock and
        # one commit, and no other writer can number between the two.
        with self.journal.tx() as c:
            # After a repair a task may keep some image rows: number new ones after them.
            first = c.execute(
                "SELECT COALESCE(MAX(idx), -1) + 1 FROM images WHERE task_id=?", (task.id,)
            ).fetchone()[0]
            images = [
                GeneratedImage(
                    task.id,
                    first + i,
                    self.blobs.path(s.sha256, s.info.ext),
                    s.sha256,
                    s.info.width,
                    s.info.height,
                    s.info.format,
                    s.seed,
                    s.params,
                    now,
                )
                for i, s in enumerate(stored)
            ]
            c.executemany(
                "INSERT INTO images(task_id, idx, sha256, ext, width, height, format, seed, "
                "params, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        im.task_id,
                        im.index,
                        im.sha256,
                        s.info.ext,
                        im.width,
                        im.height,
                        im.format,
                        im.seed,
                        json.dumps(s.params),
                        now,
                    )
                    for im, s in zip(images, stored, strict=True)
                ],
            )
            self._write_status_row(c, self.status_row(task) if row is None else row)
        return images

    def delete_batch(self, batch_id: str, *, files: bool = True) -> int:
        """Remove a batch, its tasks and (with ``files``) the image files only it used.

        A file another row still uses (an image of another batch with the same bytes, an
        input kept in the workspace) stays. Refused while any of its tasks is queued or
        running (a live run, here or in another process). Returns the files removed.
        Blocking (file I/O): from the event loop, call it in a worker thread.
        """
        removed = 0
        with self.journal.tx() as c:
            busy = c.execute(
                "SELECT count(*) FROM tasks WHERE batch_id=? AND status IN ('queued', 'running')",
                (batch_id,),
            ).fetchone()[0]
            if busy:
                raise TaskStateError(
                    f"batch {batch_id} is running ({busy} task(s) queued or running); "
                    "stop the run before deleting it"
                )
            blobs = c.execute(
                "SELECT DISTINCT i.sha256, i.ext FROM images i JOIN tasks t ON t.id = i.task_id "
                "WHERE t.batch_id=?",
                (batch_id,),
            ).fetchall()
            cur = c.execute("DELETE FROM batches WHERE id=?", (batch_id,))
            if cur.rowcount != 1:
                raise NotFoundError(f"no batch {batch_id!r} in workspace {self._where!r}")
            if not files:
                return 0
            # Inside the write transaction: no other writer can commit a row for one of
            # these digests between the check and the unlink. ``images`` has no index on
            # sha256 (the runner's commits would pay for it): one scan per 500 digests.
            for chunk, marks in in_chunks(blobs):
                digests = [sha for sha, _ in chunk]
                used = {
                    r[0]
                    for r in c.execute(
                        f"SELECT sha256 FROM images WHERE sha256 IN ({marks}) UNION "
                        f"SELECT sha256 FROM inputs WHERE sha256 IN ({marks})",
                        digests + digests,
                    )
                }
                for sha, ext in chunk:
                    if sha in used:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        self.blobs.path(sha, ext).unlink()
                        removed += 1
        return removed

    def rename_batch(self, batch_id: str, name: str) -> str:
        """Give a batch a new name (stripped, 1-200 characters); returns it."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a batch name cannot be empty")
        clean = " ".join(name.split())
        if len(clean) > 200:
            raise ConfigError(f"a batch name has at most 200 characters, got {len(clean)}")
        with self.journal.tx() as c:
            cur = c.execute("UPDATE batches SET name=? WHERE id=?", (clean, batch_id))
            if cur.rowcount != 1:
                raise NotFoundError(f"no batch {batch_id!r} in workspace {self._where!r}")
        return clean

    def remember_provider(self, batch_id: str, provider: str) -> str:
        """Record the provider of a batch made without one; returns the batch's provider."""
        with self.journal.tx() as c:
            c.execute(
                "UPDATE batches SET provider=? WHERE id=? AND provider IS NULL",
                (provider, batch_id),
            )
            row = c.execute("SELECT provider FROM batches WHERE id=?", (batch_id,)).fetchone()
        return str(row[0]) if row and row[0] is not None else provider

    # ----------------------------------------------------------- derived copies
    def derived(self, source_sha256: str, recipe_hash: str | None = None) -> list[dict[str, Any]]:
        """The journaled post-processed copies of one source image (oldest first)."""
        sql = (
            "SELECT source_sha256, recipe_hash, sha256, ext, width, height, format, recipe, "
            "task_id, idx, created_at FROM derived WHERE source_sha256=?"
        )
        args: list[Any] = [source_sha256]
        if recipe_hash is not None:
            sql += " AND recipe_hash=?"
            args.append(recipe_hash)
        rows = self.journal.query(sql + " ORDER BY created_at, recipe_hash", args)
        keys = (
            "source_sha256", "recipe_hash", "sha256", "ext", "width", "height", "format",
            "recipe", "task_id", "index", "created_at",
        )  # fmt: skip
        out = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["recipe"] = json.loads(item["recipe"])
            out.append(item)
        return out

    def forget_derived(self, source_digests: Sequence[str]) -> None:
        """Delete the derived rows of these source images, in one transaction."""
        with self.journal.tx() as c:
            c.executemany(
                "DELETE FROM derived WHERE source_sha256=?", [(sha,) for sha in source_digests]
            )

    def record_derived(self, rows: Sequence[dict[str, Any]]) -> None:
        """Journal post-processed copies (already written with ``Blobs.write_derived``)."""
        with self.journal.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO derived(source_sha256, recipe_hash, sha256, ext, width, "
                "height, format, recipe, task_id, idx, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r["source_sha256"], r["recipe_hash"], r["sha256"], r["ext"],
                        r["width"], r["height"], r["format"], json.dumps(r["recipe"]),
                        r.get("task_id"), r.get("index"), r.get("created_at", time.time()),
                    )
                    for r in rows
                ],
            )  # fmt: skip
