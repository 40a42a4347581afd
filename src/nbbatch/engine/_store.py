"""The workspace: one folder holding a SQLite journal and content-addressed image files.

Layout::

    <workspace>/nbbatch.sqlite3      tasks, batches, images, derived copies (WAL journal)
    <workspace>/images/ab/ab12….png  every input and output image, named by sha256
    <workspace>/derived/ab/<sha>/…   post-processed copies of stored images
    <workspace>/workspace.lock       advisory lock: who else has this workspace open
    <workspace>/runs/<run id>.lock   one per live run, locked by the process running it

:class:`Workspace` is the façade over modules with one job each:

* ``_journal`` — the SQLite connection, schema and migrations, transactions and the
  translation of SQLite's errors into the package's;
* ``_recovery`` — run leases, the reconcile on open and the repair of dead runs (the
  durability rules are written there), and which tasks another live run holds;
* ``_blobs`` — content-addressed image files and the ``derived/`` layout;
* ``_tasks`` — task, batch, input and derived rows;
* ``_history`` — history rows and per-provider statistics.

One process keeps one workspace per folder for the code that does not pass one
(:meth:`Workspace.shared`, used by ``Batch.create`` and ``Batch.load``); every workspace
still open is closed at interpreter exit. A folder this process cannot write opens
read-only: reading works, writes refuse in words.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from ..core._errors import ConfigError, NbbatchError, WorkspaceNotWritableError
from ..core._model import GeneratedImage, Params, Reference, Task
from ..images._decode import UPLOAD_LIMITS, ImageLimits
from . import _history, _recovery
from ._blobs import TMP_PREFIX, Blobs, StoredImage
from ._history import BatchSummary, HistoryRow, ProviderStats
from ._journal import DB_NAME, SCHEMA_VERSION, Journal, bulk_objects, new_ids
from ._ledger import TOKEN_PRICES, task_cost
from ._recovery import RecoveryReport, RunHolder, RunLease
from ._settings import load_settings
from ._tasks import BatchRecord, TaskRows

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "BatchRecord",
    "BatchSummary",
    "RecoveryReport",
    "RunHolder",
    "RunLease",
    "StoredImage",
    "Workspace",
    "bulk_objects",
    "default_workspace",
    "new_ids",
]

# Open handles per resolved folder: a second handle in this process never reconciles (it
# would take a running task of the first for a crashed one).
_OPEN: dict[str, int] = {}
_OPEN_LOCK = threading.Lock()
#: the one workspace per folder that :meth:`Workspace.shared` hands out
_SHARED: dict[str, Workspace] = {}
#: every workspace not yet closed, closed at interpreter exit
_LIVE: weakref.WeakSet[Workspace] = weakref.WeakSet()


def default_workspace() -> Path:
    """``$NBBATCH_WORKSPACE`` or ``./nbbatch-workspace`` (next to the notebook)."""
    env = os.environ.get("NBBATCH_WORKSPACE")
    return Path(env) if env else Path.cwd() / "nbbatch-workspace"


def _folder_writable(path: Path) -> str | None:
    """Make the folder (and ``images/``) if needed; None when this process can write it,
    else why not."""
    probe = path / f"{TMP_PREFIX}probe-{os.getpid()}-{threading.get_ident()}"
    try:
        (path / "images").mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


class Workspace:
    """A folder of batches, tasks and images that survives kernel restarts.

    ``Workspace()`` opens (creating if needed) :func:`default_workspace`. Use it as a
    context manager or call :meth:`close` when done; any workspace still open is closed
    at interpreter exit. :meth:`shared` returns this process's one workspace for a folder
    (what ``Batch.create`` uses when given none).

    A folder this process may read but not write opens read-only (``read_only`` is
    true): history, batches, export and images work; every change raises
    :class:`~nbbatch.errors.WorkspaceNotWritableError` saying so.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = 5.0,
        durability: Literal["normal", "full"] = "normal",
    ) -> None:
        self.path = Path(path) if path is not None else default_workspace()
        self.busy_timeout = busy_timeout
        # Image files are always fsynced before their row is committed. The journal itself
        # uses WAL with synchronous=NORMAL by default: every commit survives a kernel or
        # process crash; only a power cut or OS crash can roll back the newest commits
        # (the files then become orphans that reconcile removes). "full" also syncs the
        # journal at every commit and each image's folder after the rename, at ~0.3-1 ms
        # per status change and per image.
        if durability not in ("normal", "full"):
            raise ConfigError(f"durability must be 'normal' or 'full', got {durability!r}")
        self.durability = durability
        self._closed = False
        self._lock_file: IO[bytes] | None = None
        self._open_key: str | None = None
        self.recovery = RecoveryReport()
        why_not = _folder_writable(self.path)
        writable = why_not is None
        if not writable and not (self.path / DB_NAME).is_file():
            raise WorkspaceNotWritableError(
                f"cannot write to the workspace folder {str(self.path)!r} ({why_not}); "
                "pick a folder you can write to, e.g. Workspace('~/nbbatch-workspace')"
            )
        self._blobs = Blobs(self.path, durability=durability)
        self.images_dir = self._blobs.images_dir
        self._journal = Journal(
            self.path, busy_timeout=busy_timeout, durability=durability, writable=writable
        )
        self.db_path = self._journal.db_path
        self._rows = TaskRows(self._journal, self._blobs)
        try:
            self._journal.init_schema()
            self._acquire_and_reconcile()
        except BaseException:
            self.close()
            raise
        _LIVE.add(self)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, **options: Any) -> Workspace:
        return cls(path, **options)

    @classmethod
    def shared(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """This process's one open workspace for ``path`` (opened on first use).

        Every call for the same folder returns the same object until it is closed, so
        code that makes batches without a workspace does not open a new connection and
        lock each time. It is closed at interpreter exit.
        """
        folder = Path(path) if path is not None else default_workspace()
        key = str(folder.resolve())
        with _OPEN_LOCK:
            found = _SHARED.get(key)
            if found is not None and not found._closed:
                return found
        made = cls(folder)
        with _OPEN_LOCK:
            found = _SHARED.get(key)
            if found is not None and not found._closed:  # another thread won the race
                winner = found
            else:
                _SHARED[key] = winner = made
        if winner is not made:
            made.close()
        return winner

    # ------------------------------------------------------------------ opening
    @property
    def read_only(self) -> bool:
        """Whether this process opened the workspace for reading only."""
        return not self._journal.writable

    @property
    def journal_mode(self) -> str:
        return self._journal.journal_mode

    def _acquire_and_reconcile(self) -> None:
        # Within this process, a second handle on an open workspace never reconciles;
        # across processes the advisory lock below tells the same (POSIX only).
        key = str(self.path.resolve())
        with _OPEN_LOCK:
            exclusive = _OPEN.get(key, 0) == 0
            _OPEN[key] = _OPEN.get(key, 0) + 1
            self._open_key = key
        if self.read_only:
            # Nothing can be repaired in a folder we cannot write; runs of other
            # processes are still told apart (see held_elsewhere).
            return
        self._lock_file, free = _recovery.acquire_folder_lock(self.path, self.busy_timeout)
        exclusive = exclusive and free
        if exclusive:
            self.recovery = _recovery.reconcile(self._journal, self._blobs, self.path)
        else:
            # Someone else has the workspace open; a run that died meanwhile still must
            # not leave its tasks queued or running for ever.
            self.recovery = self.repair_dead_runs()
        if self._lock_file is not None:
            _recovery.share_folder_lock(self._lock_file, self.path, self.busy_timeout)

    # ----------------------------------------------------------- run leases
    def open_lease(self) -> RunLease:
        """Start a run's lease: a lock file this process holds until :meth:`release_lease`."""
        if self.read_only:
            raise WorkspaceNotWritableError(self._journal.read_only_message())
        return _recovery.open_lease(self.path)

    def release_lease(self, lease: RunLease) -> None:
        """End a run's lease: its task rows go, then its lock file (idempotent)."""
        _recovery.release_lease(self._journal, lease)

    def repair_dead_runs(self) -> RecoveryReport:
        """Repair the tasks of runs whose process has died; leave live runs alone.

        See ``nbbatch.engine._recovery.repair_dead_runs``.
        """
        return _recovery.repair_dead_runs(self._journal, self.path)

    def held_elsewhere(
        self, *, batch_id: str | None = None, task_ids: Sequence[str] | None = None
    ) -> list[RunHolder]:
        """The live runs of *other* processes (other kernels) holding tasks, oldest first.

        Each :class:`RunHolder` gives ``pid``, ``host``, ``run_id``, ``claimed_at`` and the
        ``task_ids`` it has queued or running (of ``batch_id``, of ``task_ids``, or of the
        whole workspace). Runs of this process are left out. Cheap enough to poll (one
        query plus one lock probe per run).
        """
        return _recovery.held_elsewhere(
            self._journal, self.path, task_ids=task_ids, batch_id=batch_id
        )

    # ----------------------------------------------------------- plumbing
    @property
    def _conn(self) -> Any:
        return self._journal.conn

    def _tx(self) -> Any:
        return self._journal.tx()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._journal.query(sql, args)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        journal = getattr(self, "_journal", None)
        if journal is not None:
            journal.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        key = self._open_key
        if key is not None:
            with _OPEN_LOCK:
                _OPEN[key] -= 1
                if _OPEN[key] <= 0:
                    del _OPEN[key]
                if _SHARED.get(key) is self:
                    del _SHARED[key]
            self._open_key = None
        _LIVE.discard(self)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace('{self.path}')"

    def __fspath__(self) -> str:
        return str(self.path)

    # ----------------------------------------------------------- files
    def write_blob(self, data: bytes, ext: str) -> tuple[Path, str]:
        """Write ``data`` durably under its sha256 name; return ``(path, sha256)``.

        Blocking (file I/O + fsync): call it from a worker thread on the event loop.
        Writing the same bytes twice is harmless (same name, same content).
        """
        if self.read_only:
            raise WorkspaceNotWritableError(self._journal.read_only_message())
        return self._blobs.write(data, ext)

    # ----------------------------------------------------------- derived copies
    def derived_path(self, source_sha256: str, recipe_hash: str, ext: str) -> Path:
        """Where the post-processed copy of a source made by a recipe goes (``derived/``)."""
        return self._blobs.derived_path(source_sha256, recipe_hash, ext)

    def write_derived(
        self, source_sha256: str, recipe_hash: str, ext: str, data: bytes
    ) -> tuple[Path, str]:
        """Write a post-processed copy into ``derived/``; return ``(path, sha256)``."""
        if self.read_only:
            raise WorkspaceNotWritableError(self._journal.read_only_message())
        return self._blobs.write_derived(source_sha256, recipe_hash, ext, data)

    def record_derived(self, rows: Sequence[dict[str, Any]]) -> None:
        """Journal post-processed copies written with :meth:`write_derived`."""
        self._rows.record_derived(rows)

    def derived(self, source_sha256: str, recipe_hash: str | None = None) -> list[dict[str, Any]]:
        """The journaled post-processed copies of a source image, each with its ``path``."""
        out = self._rows.derived(source_sha256, recipe_hash)
        for row in out:
            row["path"] = self._blobs.derived_path(
                row["source_sha256"], row["recipe_hash"], row["ext"]
            )
        return out

    def prune_derived(self) -> int:
        """Forget and delete the post-processed copies of images no row uses any more.

        The rows go first, then the files (a file without a row is only a cache entry;
        a row without its file would be listed by :meth:`derived`). Returns the files
        removed.
        """
        if self.read_only:
            raise WorkspaceNotWritableError(self._journal.read_only_message())
        live = self._rows.known_digests()
        orphans = [sha for sha in self._blobs.derived_sources() if sha not in live]
        self._rows.forget_derived(orphans)
        return sum(self._blobs.remove_derived(sha) for sha in orphans)

    # ----------------------------------------------------------- inputs
    def add_reference(
        self,
        source: bytes | str | os.PathLike[str],
        name: str | None = None,
        *,
        limits: ImageLimits = UPLOAD_LIMITS,
    ) -> Reference:
        """Validate an input image (path or bytes) and keep it in the workspace."""
        return self._rows.add_reference(source, name, limits=limits)

    async def aadd_reference(
        self,
        source: bytes | str | os.PathLike[str],
        name: str | None = None,
        *,
        limits: ImageLimits = UPLOAD_LIMITS,
    ) -> Reference:
        """:meth:`add_reference` in a worker thread (decode, hash and fsync stay off the loop)."""
        return await asyncio.to_thread(self.add_reference, source, name, limits=limits)

    def known_digests(self) -> set[str]:
        """The sha256 of every image a row still uses (results and inputs)."""
        return self._rows.known_digests()

    def has_input(self, sha256: str) -> bool:
        """Whether an input image with this digest is kept in the workspace."""
        return self._rows.has_input(sha256)

    def reference_from_image(self, image: GeneratedImage, name: str | None = None) -> Reference:
        """Use a generated image as an input of another task (no bytes are copied)."""
        return self._rows.reference_from_image(image, name)

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
        return self._rows.insert_batch(
            tasks, name=name, params=params, provider=provider, allow_empty=allow_empty
        )

    def add_tasks(self, batch_id: str, tasks: Sequence[Task]) -> None:
        """Journal extra tasks for an existing batch (their ``order`` is kept)."""
        self._rows.add_tasks(batch_id, tasks)

    def remove_tasks(self, task_ids: Sequence[str]) -> None:
        """Delete tasks with their image and reference rows, in one transaction.

        Refused (:class:`~nbbatch.errors.HeldElsewhereError`, nothing changed) while a
        live run of another process holds any of them.
        """
        self._rows.remove_tasks(task_ids)

    def set_orders(self, orders: Sequence[tuple[str, int]]) -> None:
        """Journal new positions, ``(task_id, order)`` pairs, in one transaction."""
        self._rows.set_orders(orders)

    def batches(self) -> list[BatchSummary]:
        """Every batch in the workspace, newest first, with per-status task counts."""
        return self._rows.batches()

    def load_batch(self, batch_id: str) -> BatchRecord:
        """Read a batch (tasks, references and images) from the journal.

        A unique prefix of the id is enough.
        """
        return self._rows.load_batch(batch_id)

    def task(self, task_id: str) -> Task:
        return self._rows.task(task_id)

    def delete_batch(self, batch_id: str, *, files: bool = True) -> int:
        """Remove a batch, its tasks and (with ``files``) the image files only it used.

        Refused while any of its tasks is queued or running (a live run, here or in
        another process). Returns the files removed. Blocking (file I/O): from the event
        loop, call it in a worker thread.
        """
        return self._rows.delete_batch(batch_id, files=files)

    def rename_batch(self, batch_id: str, name: str) -> str:
        """Give a batch a new name (stripped, 1-200 characters); returns it."""
        return self._rows.rename_batch(batch_id, name)

    def remember_provider(self, batch_id: str, provider: str) -> str:
        """Record the provider of a batch made without one; returns the batch's provider."""
        return self._rows.remember_provider(batch_id, provider)

    # ----------------------------------------------------------- journaling
    def save_task(self, task: Task) -> None:
        """Journal a task's mutable fields (status, prompt, params, references, ...).

        Refused (:class:`~nbbatch.errors.HeldElsewhereError`) while a live run of another
        process holds the task.
        """
        self._rows.save_task(task)

    def claim(self, tasks: Sequence[Task], lease: RunLease | None = None) -> set[str]:
        """Mark ``tasks`` queued in one transaction; return the ids that were free."""
        return self._rows.claim(tasks, lease)

    def claimed_elsewhere(self, task_ids: Sequence[str]) -> dict[str, int]:
        """For tasks held by a live run: task id -> the process id running it."""
        return self._rows.claimed_elsewhere(task_ids)

    def save_status(self, task: Task) -> None:
        """Journal only the lifecycle fields (the runner's hot path: no JSON to encode)."""
        self._rows.save_status(task)

    status_row = staticmethod(TaskRows.status_row)

    def save_status_row(self, row: tuple[Any, ...]) -> None:
        """Journal a :meth:`status_row` (safe to call from a writer thread)."""
        self._rows.save_status_row(row)

    def save_statuses(self, tasks: Sequence[Task]) -> None:
        self._rows.save_statuses(tasks)

    def save_status_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Journal many :meth:`status_row` rows at once (any thread; removed tasks skipped)."""
        self._rows.save_status_rows(rows)

    def set_starred(self, task_id: str, index: int, starred: bool) -> None:
        """Journal the ``starred`` flag of one generated image."""
        self._rows.set_starred(task_id, index, starred)

    def record_success(
        self,
        task: Task,
        stored: Sequence[StoredImage],
        *,
        row: tuple[Any, ...] | None = None,
    ) -> list[GeneratedImage]:
        """Commit the images (already written with :meth:`write_blob`) and the task at once."""
        return self._rows.record_success(task, stored, row=row)

    # ----------------------------------------------------------- history
    def history(self) -> list[HistoryRow]:
        """Every batch, newest first, with counts, images, success rate, mean duration."""
        return _history.history_rows(self._journal.query)

    def batch_thumbnails(self, batch_id: str, limit: int = 6) -> list[Path]:
        """The files of the first ``limit`` images of a batch, in task order."""
        sources = _history.thumbnail_sources(self._journal.query, batch_id, limit)
        return [self._blobs.path(sha, ext) for sha, ext in sources]

    def provider_stats(self, prices: Mapping[str, float] | None = None) -> list[ProviderStats]:
        """Per-provider numbers (see :meth:`stats`) as objects."""
        if prices is None:
            prices = _saved_prices()
        return _history.provider_stats(self._journal.query, prices, _ledger_cost(prices))

    def stats(self, prices: Mapping[str, float] | None = None) -> Any:
        """Per provider: batches, tasks, success rate, mean and p90 duration (seconds, of
        succeeded tasks), images, images per batch, tokens the provider reported, spend.

        A pandas DataFrame when pandas is installed, else a list of dicts. ``prices``
        (per image, keyed ``"provider"`` or ``"provider/model"``) default to the saved
        ``Settings.prices``; spend is ``None`` for a provider with no known price.
        """
        rows = [s.to_dict() for s in self.provider_stats(prices)]
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows, columns=list(ProviderStats("").to_dict()))


def _ledger_cost(prices: Mapping[str, float]) -> _history.TaskCost:
    """The cost ledger (billed usage x token prices, else the price table) for stats."""
    table = dict(TOKEN_PRICES)
    with contextlib.suppress(NbbatchError):
        table.update(load_settings().token_prices)

    def cost(
        images: list[dict[str, Any]], provider: str, model: str | None
    ) -> tuple[float | None, str | None]:
        found = task_cost(images, prices, table, provider=provider, model=model)
        return found.amount, found.basis

    return cost


def _saved_prices() -> dict[str, float]:
    """The price table of the engine's saved settings; none when they cannot be read."""
    try:
        return dict(load_settings().prices)
    except NbbatchError:
        return {}


@atexit.register
def _close_all() -> None:
    """Close every workspace still open (connections, lock files) at interpreter exit."""
    for ws in list(_LIVE):
        ws.close()
