"""The workspace: one folder holding a SQLite journal and content-addressed image files.

Layout::

    <workspace>/nbbatch.sqlite3      tasks, batches, images (WAL journal)
    <workspace>/images/ab/ab12….png  every input and output image, named by sha256
    <workspace>/workspace.lock       advisory lock: who else has this workspace open
    <workspace>/runs/<run id>.lock   one per live run, locked by the process running it

Durability rules (what survives a crash or a kill at any moment):

* every status change is committed before the runner announces it;
* ``running`` (with the attempt number) is committed *before* the request is sent;
* an image is written to a temp file in its final folder, fsynced, renamed into place,
  and only then is its row committed — together with ``succeeded``, in one transaction;
* on open, when no other process has the workspace open, the store reconciles: temp
  files and files no row points at are removed, rows whose file vanished are dropped
  (their task becomes ``failed`` and can be retried), tasks left ``running`` become
  ``interrupted`` and are never re-sent until someone resumes them;
* every run holds a lease: a lock file its process keeps locked while it runs, and one
  row per task it claimed. When other processes have the workspace open (so the full
  reconcile above cannot run), opening it still repairs the tasks of every run whose
  lease lock is free -- its process died -- the same way. A live run elsewhere keeps
  its tasks.

The connection is used from one thread at a time (a lock guards it) so the same
workspace can serve the kernel's event loop and a ``run_sync`` worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, TypeVar

from ..core._errors import (
    ConfigError,
    ImageRejectedError,
    NbbatchError,
    NotFoundError,
    SchemaVersionError,
    StorageError,
    StoreBusyError,
    StoreError,
    TaskStateError,
    WorkspaceNotWritableError,
)
from ..core._model import GeneratedImage, Params, Reference, Task, TaskStatus, new_id
from ..images._decode import UPLOAD_LIMITS, ImageInfo, ImageLimits, inspect_image
from ..images._files import NotAFileError, read_capped
from . import _history
from ._history import BatchSummary, HistoryRow, ProviderStats

try:  # POSIX advisory locks; on Windows every open reconciles (single-user desktops)
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SCHEMA_VERSION",
    "BatchRecord",
    "BatchSummary",
    "RecoveryReport",
    "RunLease",
    "StoredImage",
    "Workspace",
    "default_workspace",
]

#: 1: the first journal; 2: ``images.starred`` (see ``_COLUMNS_ADDED``)
SCHEMA_VERSION = 2
DB_NAME = "nbbatch.sqlite3"
_NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "9p", "afs", "lustre", "glusterfs"}
)
_TMP_PREFIX = ".tmp-"
_OPEN: collections.Counter[str] = collections.Counter()  # open handles per workspace path
_OPEN_LOCK = threading.Lock()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    provider TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    parent_id TEXT,
    ord INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    original_prompt TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    provider TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_kind TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS tasks_batch ON tasks(batch_id, ord);
CREATE TABLE IF NOT EXISTS inputs (
    sha256 TEXT PRIMARY KEY,
    ext TEXT NOT NULL,
    name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_refs (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    sha256 TEXT NOT NULL REFERENCES inputs(sha256),
    name TEXT NOT NULL,
    PRIMARY KEY (task_id, idx)
);
CREATE TABLE IF NOT EXISTS images (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    ext TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format TEXT NOT NULL,
    seed INTEGER,
    params TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    starred INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, idx)
);
"""
#: Indexes older workspaces carry that no query uses: each status change rewrote an entry
#: of ``tasks_status`` and each image row one of ``images_sha`` (about 3 extra WAL pages
#: per commit on the runner's hot path). The only queries by status run once per open
#: (reconcile), where scanning the table costs milliseconds even at 100,000 tasks.
_UNUSED_INDEXES = ("tasks_status", "images_sha")


@contextlib.contextmanager
def bulk_objects() -> Iterator[None]:
    """Pause the cyclic garbage collector while many objects are built at once.

    Building 100,000 tasks (or loading them) triggers dozens of full collections that
    walk every object made so far: ~40 % of the time at that size, none of it useful
    (tasks form no cycles that need collecting right away). Collections resume after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def new_ids(count: int) -> list[str]:
    """``count`` ids like :func:`~nbbatch.core._model.new_id` (12 random hex digits).

    One read of the system's random source instead of one uuid4 (and one syscall)
    per task: a quarter of the time of creating a 100,000-task batch went there.
    """
    raw = os.urandom(6 * count).hex()
    return [raw[i : i + 12] for i in range(0, 12 * count, 12)]


_IN_CHUNK = 500
_T = TypeVar("_T")


def _in_chunks(items: Sequence[_T]) -> Iterator[tuple[list[_T], str]]:
    """``items`` in slices of at most 500, each with its ``?,?,…`` placeholder list.

    One ``IN (…)`` statement per slice instead of one statement per item; 500 stays under
    the 999 bound variables older SQLite builds allow in one statement.
    """
    for start in range(0, len(items), _IN_CHUNK):
        chunk = list(items[start : start + _IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


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

# Which run claimed which task. Kept apart from the versioned schema (created when
# missing, whatever the schema version): older versions never read it, so adding it
# changes nothing for them.
_LEASE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS leases ("
    "task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE, "
    "run_id TEXT NOT NULL, "
    "pid INTEGER NOT NULL, "
    "host TEXT NOT NULL, "
    "claimed_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS leases_run ON leases(run_id)",
)
_RUNS_DIR = "runs"

# Columns added after schema 1, as (table, column, definition). Older workspaces get them
# with ALTER TABLE on open; a column already there (a fresh workspace, made from _SCHEMA)
# is left alone, so the upgrade is idempotent and never rewrites a table.
_COLUMNS_ADDED: tuple[tuple[str, str, str], ...] = (
    # schema 2: Batch.star(image); images of older workspaces are not starred
    ("images", "starred", "INTEGER NOT NULL DEFAULT 0"),
)


def default_workspace() -> Path:
    """``$NBBATCH_WORKSPACE`` or ``./nbbatch-workspace`` (next to the notebook)."""
    env = os.environ.get("NBBATCH_WORKSPACE")
    return Path(env) if env else Path.cwd() / "nbbatch-workspace"


class StoredImage(NamedTuple):
    """An image file already written to the workspace, waiting for its row."""

    sha256: str
    info: ImageInfo
    seed: int | None
    params: dict[str, Any]


@dataclass
class RecoveryReport:
    """What reconciling the workspace on open found and repaired."""

    reconciled: bool = False
    interrupted: list[str] = field(default_factory=list)
    #: queued tasks of a dead run put back to idle (they were never sent)
    requeued: list[str] = field(default_factory=list)
    #: runs found dead (their process is gone) whose tasks were repaired
    dead_runs: list[str] = field(default_factory=list)
    temp_files_removed: int = 0
    orphan_files_removed: int = 0
    missing_files: int = 0
    integrity: str = "ok"

    def __bool__(self) -> bool:
        return bool(
            self.interrupted
            or self.requeued
            or self.temp_files_removed
            or self.orphan_files_removed
            or self.missing_files
        )


@dataclass(frozen=True)
class BatchRecord:
    """A batch as the journal holds it: its head row and its tasks in order."""

    id: str
    name: str
    created_at: float
    provider: str | None
    tasks: list[Task]


def _filesystem_type(path: Path) -> str | None:
    """The mount type holding ``path`` (Linux ``/proc/mounts``), or None when unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, best_type = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, best_type = mount_point, parts[2]
    return best_type


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunLease:
    """A run's claim on its tasks, alive exactly as long as the process holding it.

    The lease is a lock file under ``<workspace>/runs/`` that the running process keeps
    locked (``flock``); the operating system drops the lock when the process dies, even
    on SIGKILL, so another process can tell a dead run from a live one without clocks or
    heartbeats. The tasks the run claimed are listed in the ``leases`` table.
    """

    def __init__(self, run_id: str, path: Path, handle: IO[bytes] | None) -> None:
        self.id = run_id
        self.path = path
        self._handle = handle

    @property
    def held(self) -> bool:
        return self._handle is not None

    def _release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        # Unlink before unlocking: a checker that finds the lock free then also finds the
        # file gone, and either way concludes the run is over.
        with contextlib.suppress(OSError):
            self.path.unlink()
        handle.close()

    def __repr__(self) -> str:
        return f"RunLease({self.id!r}, held={self.held})"


def _pid_alive(pid: int) -> bool:  # pragma: no cover - only where flock is missing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class Workspace:
    """A folder of batches, tasks and images that survives kernel restarts.

    ``Workspace()`` opens (creating if needed) :func:`default_workspace`. Use it as a
    context manager or call :meth:`close` when done; it also closes at interpreter exit.
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
        self.images_dir = self.path / "images"
        self.db_path = self.path / DB_NAME
        self._lock = threading.RLock()
        self._made_dirs: set[str] = set()
        self._lock_file: IO[bytes] | None = None
        self._closed = False
        self.journal_mode = "wal"
        self._make_dirs()
        self._conn = self._connect()
        self.recovery = RecoveryReport()
        try:
            self._init_schema()
            self._acquire_and_reconcile()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, **options: Any) -> Workspace:
        return cls(path, **options)

    # ------------------------------------------------------------------ opening
    def _make_dirs(self) -> None:
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            probe = self.path / f"{_TMP_PREFIX}probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise WorkspaceNotWritableError(
                f"cannot write to the workspace folder {str(self.path)!r} ({exc.strerror}); "
                "pick a folder you can write to, e.g. Workspace('~/nbbatch-workspace')"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.db_path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN IMMEDIATE ourselves
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise WorkspaceNotWritableError(f"cannot open {str(self.db_path)!r}: {exc}") from None
        fs = _filesystem_type(self.path)
        with self._translate():
            if fs in _NETWORK_FS:
                # WAL needs shared memory on one host; on network file systems it corrupts.
                warnings.warn(
                    f"workspace {str(self.path)!r} is on a network file system ({fs}); "
                    "using the slower rollback journal. Put the workspace on local disk "
                    "for speed.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                conn.execute("PRAGMA journal_mode=DELETE")
                self.journal_mode = "delete"
            else:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
            conn.execute("PRAGMA foreign_keys=ON")
            # Up to 64 MiB of page cache (SQLite's default is 2 MiB), taken only as
            # pages are read: a 100,000-task batch's table does not fit in 2 MiB, and
            # re-reading its pages from the OS made starting a run of it ~10% slower.
            conn.execute("PRAGMA cache_size=-65536")
        return conn

    def _init_schema(self) -> None:
        with self._translate():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"workspace {str(self.path)!r} was written by a newer nbbatch (schema "
                f"{version}, this version understands {SCHEMA_VERSION}); upgrade nbbatch "
                "or open another workspace. Nothing was changed."
            )
        if version < SCHEMA_VERSION:
            with self._tx() as c:
                # executescript() would COMMIT our transaction; run statement by statement.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                for table, column, definition in _COLUMNS_ADDED:
                    have = {row[1] for row in c.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        with self._translate():
            has_leases = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='leases'"
            ).fetchone()
        if not has_leases:
            with self._tx() as c:
                for statement in _LEASE_SCHEMA:
                    c.execute(statement)
        with self._translate():
            unused = [
                r[0]
                for r in self._conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='index' AND name IN (?, ?)",
                    _UNUSED_INDEXES,
                )
            ]
        if unused:
            # Same schema version: older nbbatch never needs these indexes either.
            with self._tx() as c:
                for name in unused:
                    c.execute(f"DROP INDEX IF EXISTS {name}")

    def _acquire_and_reconcile(self) -> None:
        # Within this process, a second handle on an open workspace never reconciles
        # (it would take a running task for a crashed one); across processes the
        # advisory lock below tells the same (POSIX only).
        key = str(self.path.resolve())
        with _OPEN_LOCK:
            exclusive = _OPEN[key] == 0
            _OPEN[key] += 1
            self._open_key: str | None = key
        if fcntl is not None:
            self._lock_file = open(self.path / "workspace.lock", "a+b")  # noqa: SIM115
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                exclusive = False
        if exclusive:
            self.recovery = self._reconcile()
        else:
            # Someone else has the workspace open; a run that died meanwhile still must
            # not leave its tasks queued or running for ever.
            self.recovery = self.repair_dead_runs()
        if self._lock_file is not None and fcntl is not None:
            # Stay visible to later openers as "in use" without blocking them.
            deadline = time.monotonic() + self.busy_timeout
            while True:
                try:
                    fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"workspace {str(self.path)!r} is being repaired by another "
                            "process; try again in a moment"
                        ) from None
                    time.sleep(0.05)

    def _reconcile(self) -> RecoveryReport:
        report = RecoveryReport(reconciled=True)
        with self._translate():
            report.integrity = self._conn.execute("PRAGMA quick_check").fetchone()[0]
        if report.integrity != "ok":
            warnings.warn(
                f"workspace database {str(self.db_path)!r} failed its integrity check "
                f"({report.integrity}); copy it aside before changing anything",
                RuntimeWarning,
                stacklevel=4,
            )
        known: set[str] = set()
        with self._lock, self._translate():
            for sha, ext in self._conn.execute(
                "SELECT sha256, ext FROM images UNION SELECT sha256, ext FROM inputs"
            ):
                known.add(f"{sha}.{ext}")
        present: set[str] = set()
        for sub in self.images_dir.iterdir() if self.images_dir.exists() else ():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.name.startswith(_TMP_PREFIX):
                    f.unlink(missing_ok=True)
                    report.temp_files_removed += 1
                elif f.name in known:
                    present.add(f.name)
                else:
                    f.unlink(missing_ok=True)
                    report.orphan_files_removed += 1
        missing = known - present
        now = time.time()
        with self._tx() as c:
            if missing:
                rows = c.execute("SELECT task_id, idx, sha256, ext FROM images").fetchall()
                gone = [(t, i) for t, i, s, e in rows if f"{s}.{e}" in missing]
                report.missing_files = len(gone)
                c.executemany("DELETE FROM images WHERE task_id=? AND idx=?", gone)
                for task_id in {t for t, _ in gone}:
                    c.execute(
                        "UPDATE tasks SET status='failed', error_kind='storage', error=?, "
                        "finished_at=? WHERE id=? AND status='succeeded'",
                        (
                            "the result file is missing from the workspace; retry the "
                            "task to generate it again",
                            now,
                            task_id,
                        ),
                    )
            report.interrupted = [
                r[0] for r in c.execute("SELECT id FROM tasks WHERE status='running'")
            ]
            c.execute(
                "UPDATE tasks SET status='interrupted', error_kind='interrupted', error=?, "
                "finished_at=? WHERE status='running'",
                (
                    "the process stopped while this task was running; the provider may "
                    "or may not have finished (and billed) it. Resume to run it again.",
                    now,
                ),
            )
            # Nothing is queued once no runner is alive; queued tasks were never sent.
            report.requeued = [
                r[0] for r in c.execute("SELECT id FROM tasks WHERE status='queued'")
            ]
            c.execute("UPDATE tasks SET status='idle' WHERE status='queued'")
            report.dead_runs = [r[0] for r in c.execute("SELECT DISTINCT run_id FROM leases")]
            c.execute("DELETE FROM leases")
        runs = self.path / _RUNS_DIR
        for f in runs.iterdir() if runs.is_dir() else ():
            f.unlink(missing_ok=True)  # no run is alive: every lock file is stale
        return report

    # ----------------------------------------------------------- run leases
    def open_lease(self) -> RunLease:
        """Start a run's lease: a lock file this process holds until :meth:`release_lease`.

        The file is locked right after it is made. A checker that comes in between finds
        it unlocked, but no task row names this run yet (claims come after), so there is
        nothing it could take for a dead run's.
        """
        run_id = new_id()
        runs = self.path / _RUNS_DIR
        final = runs / f"{run_id}.lock"
        try:
            runs.mkdir(exist_ok=True)
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            handle = os.fdopen(fd, "wb")
            try:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException:
                handle.close()
                final.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise WorkspaceNotWritableError(
                f"cannot start a run in {str(runs)!r} ({exc.strerror or exc}); check the "
                "workspace folder's permissions"
            ) from None
        return RunLease(run_id, final, handle)

    def release_lease(self, lease: RunLease) -> None:
        """End a run's lease: its task rows go, then its lock file (idempotent)."""
        if not lease.held:
            return
        with contextlib.suppress(StoreError), self._tx() as c:
            c.execute("DELETE FROM leases WHERE run_id=?", (lease.id,))
        lease._release()

    def _run_alive(self, run_id: str, pid: int, host: str) -> bool:
        path = self.path / _RUNS_DIR / f"{run_id}.lock"
        if fcntl is None:  # pragma: no cover - Windows: judge by the process id
            return host == socket.gethostname() and _pid_alive(pid) and path.exists()
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False  # released, or never got so far as to claim anything
        except OSError:
            return True  # cannot tell: assume alive, never repair a live run's tasks
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # its process still holds the lock
        finally:
            os.close(fd)  # also drops our lock, if we got it
        return False

    def repair_dead_runs(self) -> RecoveryReport:
        """Repair the tasks of runs whose process has died; leave live runs alone.

        A dead run's ``running`` tasks become ``interrupted`` (the provider may have
        billed them: never re-sent until someone resumes) and its ``queued`` ones go
        back to ``idle`` (never sent). Tasks queued or running with no lease (claimed by
        an older nbbatch) are left to the full reconcile, which runs when the workspace
        is opened by nobody else. Safe to call at any time, from any process; opening
        the workspace and starting a run call it.
        """
        report = RecoveryReport()
        rows = self._query(
            "SELECT t.id, t.status, l.run_id, l.pid, l.host FROM tasks t "
            "LEFT JOIN leases l ON l.task_id = t.id WHERE t.status IN ('queued', 'running')"
        )
        if not rows:
            return report
        verdicts: dict[str, bool] = {}
        dead: list[tuple[str, str]] = []
        for task_id, status, run_id, pid, host in rows:
            if run_id is None:
                # Claimed without a lease (an older nbbatch, perhaps still running):
                # the owner cannot be told, so only the full reconcile touches it.
                continue
            if run_id not in verdicts:
                verdicts[run_id] = self._run_alive(run_id, pid, host)
            if not verdicts[run_id]:
                dead.append((task_id, status))
        if not dead:
            return report
        now = time.time()
        with self._tx() as c:
            for task_id, status in dead:
                if status == "running":
                    cur = c.execute(
                        "UPDATE tasks SET status='interrupted', error_kind='interrupted', "
                        "error=?, finished_at=? WHERE id=? AND status='running'",
                        (
                            "the process running this task stopped (it was killed or "
                            "crashed); the provider may or may not have finished (and "
                            "billed) it. Resume to run it again.",
                            now,
                            task_id,
                        ),
                    )
                    if cur.rowcount:
                        report.interrupted.append(task_id)
                else:
                    cur = c.execute(
                        "UPDATE tasks SET status='idle' WHERE id=? AND status='queued'",
                        (task_id,),
                    )
                    if cur.rowcount:
                        report.requeued.append(task_id)
            report.dead_runs = sorted(r for r, alive in verdicts.items() if not alive)
            c.executemany("DELETE FROM leases WHERE run_id=?", [(r,) for r in report.dead_runs])
        for run_id in report.dead_runs:
            (self.path / _RUNS_DIR / f"{run_id}.lock").unlink(missing_ok=True)
        if report.interrupted or report.requeued:
            report.reconciled = True
        return report

    # ----------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                raise StoreBusyError(
                    f"workspace {str(self.path)!r} is busy: another process held its "
                    f"database for more than {self.busy_timeout:g} s. Close the other "
                    "notebook or process using it, or use a different workspace."
                ) from None
            if "full" in text or "disk i/o" in text or "readonly" in text:
                raise StorageError(
                    f"could not write the workspace database: {exc}. Free disk space or "
                    "check permissions; nothing was marked done."
                ) from None
            raise StoreError(f"workspace database error: {exc}") from None
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"the workspace refused an inconsistent write ({exc}); nothing was changed. "
                "Reopen the workspace to let it repair itself, then retry."
            ) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"workspace database {str(self.db_path)!r} is damaged or not a database: {exc}"
            ) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError(f"workspace {str(self.path)!r} is closed")
        with self._lock, self._translate():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._closed:
            raise StoreError(f"workspace {str(self.path)!r} is closed")
        with self._lock, self._translate():
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
            key = getattr(self, "_open_key", None)
            if key is not None:
                with _OPEN_LOCK:
                    _OPEN[key] -= 1
                    if _OPEN[key] <= 0:
                        del _OPEN[key]
                self._open_key = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace('{self.path}')"

    def __fspath__(self) -> str:
        return str(self.path)

    # ----------------------------------------------------------- files
    def _blob_path(self, sha: str, ext: str) -> Path:
        return self.images_dir / sha[:2] / f"{sha}.{ext}"

    def write_blob(self, data: bytes, ext: str) -> tuple[Path, str]:
        """Write ``data`` durably under its sha256 name; return ``(path, sha256)``.

        Blocking (file I/O + fsync): call it from a worker thread on the event loop.
        Writing the same bytes twice is harmless (same name, same content).
        """
        sha = hashlib.sha256(data).hexdigest()
        final = self._blob_path(sha, ext)
        try:
            if os.stat(final).st_size == len(data):
                return final, sha
        except FileNotFoundError:
            pass
        tmp = final.parent / f"{_TMP_PREFIX}{new_id()}"
        try:
            if final.parent.name not in self._made_dirs:  # 256 folders: mkdir once each
                final.parent.mkdir(exist_ok=True)
                self._made_dirs.add(final.parent.name)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            if self.durability == "full":
                # Makes the rename itself survive a power cut. Under "normal" the journal
                # may lose its newest commits on a power cut anyway, and reconcile turns a
                # row whose file vanished into a retryable failure; syncing the folder
                # costs a journal commit of the file system (~1 ms) per image.
                _fsync_dir(final.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(
                f"could not save an image to {str(final.parent)!r} ({exc.strerror or exc}); "
                "free disk space or check permissions, then retry the task"
            ) from None
        return final, sha

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
        path, sha = self.write_blob(data, info.ext)
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO inputs(sha256, ext, name, width, height, format, "
                "created_at) VALUES (?,?,?,?,?,?,?)",
                (sha, info.ext, label, info.width, info.height, info.format, time.time()),
            )
        return Reference(label, path, sha, info.width, info.height, info.format)

    async def aadd_reference(
        self,
        source: bytes | str | os.PathLike[str],
        name: str | None = None,
        *,
        limits: ImageLimits = UPLOAD_LIMITS,
    ) -> Reference:
        """:meth:`add_reference` in a worker thread (decode, hash and fsync stay off the loop)."""
        return await asyncio.to_thread(self.add_reference, source, name, limits=limits)

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
        with self._tx() as c:
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
        with self._tx() as c:
            for t in tasks:
                c.execute(
                    "UPDATE tasks SET ord = ord + 1 WHERE batch_id=? AND ord >= ?",
                    (batch_id, t.order),
                )
            self._insert_tasks(c, tasks)

    def remove_tasks(self, task_ids: Sequence[str]) -> None:
        """Delete tasks with their image and reference rows, in one transaction.

        The files stay until the next reconcile finds that no row uses them any more
        (another task may use the same image as a reference).
        """
        with self._tx() as c:
            c.executemany("DELETE FROM tasks WHERE id=?", [(i,) for i in task_ids])

    def set_orders(self, orders: Sequence[tuple[str, int]]) -> None:
        """Journal new positions, ``(task_id, order)`` pairs, in one transaction."""
        with self._tx() as c:
            c.executemany("UPDATE tasks SET ord=? WHERE id=?", [(o, i) for i, o in orders])

    def known_digests(self) -> set[str]:
        """The sha256 of every image a row still uses (results and inputs)."""
        rows = self._query("SELECT sha256 FROM images UNION SELECT sha256 FROM inputs")
        return {r[0] for r in rows}

    def has_input(self, sha256: str) -> bool:
        """Whether an input image with this digest is kept in the workspace."""
        return bool(self._query("SELECT 1 FROM inputs WHERE sha256=?", (sha256,)))

    def reference_from_image(self, image: GeneratedImage, name: str | None = None) -> Reference:
        """Use a generated image as an input of another task (no bytes are copied)."""
        ext = image.path.suffix.lstrip(".")
        label = name or f"{image.task_id}-{image.index}.{ext}"
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO inputs(sha256, ext, name, width, height, format, "
                "created_at) VALUES (?,?,?,?,?,?,?)",
                (image.sha256, ext, label, image.width, image.height, image.format, time.time()),
            )
        return Reference(label, image.path, image.sha256, image.width, image.height, image.format)

    def batches(self) -> list[BatchSummary]:
        """Every batch in the workspace, newest first, with per-status task counts."""
        rows = self._query(
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
        head = self._query(
            "SELECT id, name, created_at, provider FROM batches WHERE id=?", (batch_id,)
        )
        if not head:
            matches = self._query(
                "SELECT id FROM batches WHERE id LIKE ? LIMIT 2", (batch_id + "%",)
            )
            if len(matches) == 1:
                return self.load_batch(matches[0][0])
            raise NotFoundError(
                f"no batch {batch_id!r} in workspace {str(self.path)!r}; "
                "`nbbatch history` lists the batches"
            )
        bid, name, created, provider = head[0]
        with bulk_objects():
            tasks = self._load_tasks("t.batch_id=?", (bid,))
        return BatchRecord(bid, name, created, provider, tasks)

    def _load_tasks(self, where: str, args: Sequence[Any]) -> list[Task]:
        rows = self._query(
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
        for task_id, idx, sha, ext, w, h, fmt, seed, params, created, starred in self._query(
            "SELECT i.task_id, i.idx, i.sha256, i.ext, i.width, i.height, i.format, i.seed, "
            f"i.params, i.created_at, i.starred FROM images i JOIN tasks t ON t.id = i.task_id "
            f"WHERE {where} ORDER BY i.task_id, i.idx",
            args,
        ):
            tasks[task_id].images.append(
                GeneratedImage(
                    task_id,
                    idx,
                    self._blob_path(sha, ext),
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
        for task_id, _idx, sha, name, ext, w, h, fmt in self._query(
            "SELECT r.task_id, r.idx, r.sha256, r.name, i.ext, i.width, i.height, i.format "
            "FROM task_refs r JOIN inputs i ON i.sha256 = r.sha256 "
            f"JOIN tasks t ON t.id = r.task_id WHERE {where} ORDER BY r.task_id, r.idx",
            args,
        ):
            tasks[task_id].references.append(
                Reference(name, self._blob_path(sha, ext), sha, w, h, fmt)
            )
        return list(tasks.values())

    def task(self, task_id: str) -> Task:
        found = self._load_tasks("t.id=?", (task_id,))
        if not found:
            raise NotFoundError(f"no task {task_id!r} in workspace {str(self.path)!r}")
        return found[0]

    # ----------------------------------------------------------- journaling
    def save_task(self, task: Task) -> None:
        """Journal a task's mutable fields: status, attempts, error, prompt, params,
        provider, order and its references."""
        with self._tx() as c:
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
        not claimed, so two runs never send the same task at once. With ``lease`` the
        claimed tasks are recorded as that run's in the same transaction, so that if its
        process dies they are repaired by whoever opens the workspace next.
        """
        claimed: set[str] = set()
        ids = list(dict.fromkeys(t.id for t in tasks))
        free = "status IN ('idle', 'failed', 'cancelled', 'interrupted')"
        owner = (lease.id, os.getpid(), socket.gethostname(), time.time()) if lease else ()
        with self._tx() as c:
            # A few statements per chunk of ids instead of one UPDATE and one lease row
            # per task (a run starts on the event loop; for 1,000 tasks the claim went
            # from 6.7 to 4.3 ms of CPU, and the lease rows made from the SELECT took
            # 10,000 from 62 to 48 ms). Inside the one IMMEDIATE transaction nothing can
            # change in between, so the rows selected, leased and updated are the same.
            for chunk, marks in _in_chunks(ids):
                where = f"WHERE id IN ({marks}) AND {free}"
                claimed.update(row[0] for row in c.execute(f"SELECT id FROM tasks {where}", chunk))
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

    def claimed_elsewhere(self, task_ids: Sequence[str]) -> dict[str, int]:
        """For tasks held by a live run: task id -> the process id running it."""
        out: dict[str, int] = {}
        for chunk, marks in _in_chunks(task_ids):
            for task_id, pid in self._query(
                f"SELECT task_id, pid FROM leases WHERE task_id IN ({marks})", chunk
            ):
                out[task_id] = pid
        return out

    def save_status(self, task: Task) -> None:
        """Journal only the lifecycle fields (the runner's hot path: no JSON to encode)."""
        with self._tx() as c:
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
        with self._tx() as c:
            self._write_status_row(c, row)

    def save_statuses(self, tasks: Sequence[Task]) -> None:
        with self._tx() as c:
            for t in tasks:
                self._update_status(c, t)

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
        with self._tx() as c:
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
        with self._tx() as c:
            # After a repair a task may keep some image rows: number new ones after them.
            first = c.execute(
                "SELECT COALESCE(MAX(idx), -1) + 1 FROM images WHERE task_id=?", (task.id,)
            ).fetchone()[0]
            images = [
                GeneratedImage(
                    task.id,
                    first + i,
                    self._blob_path(s.sha256, s.info.ext),
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
        with self._tx() as c:
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
                raise NotFoundError(f"no batch {batch_id!r} in workspace {str(self.path)!r}")
            if not files:
                return 0
            # Inside the write transaction: no other writer can commit a row for one of
            # these digests between the check and the unlink. ``images`` has no index on
            # sha256 (the runner's commits would pay for it): one scan per 500 digests.
            for chunk, marks in _in_chunks(blobs):
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
                        self._blob_path(sha, ext).unlink()
                        removed += 1
        return removed

    # ----------------------------------------------------------- history
    def history(self) -> list[HistoryRow]:
        """Every batch, newest first, with counts, images, success rate, mean duration."""
        return _history.history_rows(self._query)

    def batch_thumbnails(self, batch_id: str, limit: int = 6) -> list[Path]:
        """The files of the first ``limit`` images of a batch, in task order."""
        sources = _history.thumbnail_sources(self._query, batch_id, limit)
        return [self._blob_path(sha, ext) for sha, ext in sources]

    def rename_batch(self, batch_id: str, name: str) -> str:
        """Give a batch a new name (stripped, 1-200 characters); returns it."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a batch name cannot be empty")
        clean = " ".join(name.split())
        if len(clean) > 200:
            raise ConfigError(f"a batch name has at most 200 characters, got {len(clean)}")
        with self._tx() as c:
            cur = c.execute("UPDATE batches SET name=? WHERE id=?", (clean, batch_id))
            if cur.rowcount != 1:
                raise NotFoundError(f"no batch {batch_id!r} in workspace {str(self.path)!r}")
        return clean

    def remember_provider(self, batch_id: str, provider: str) -> str:
        """Record the provider of a batch made without one; returns the batch's provider."""
        with self._tx() as c:
            c.execute(
                "UPDATE batches SET provider=? WHERE id=? AND provider IS NULL",
                (provider, batch_id),
            )
            row = c.execute("SELECT provider FROM batches WHERE id=?", (batch_id,)).fetchone()
        return str(row[0]) if row and row[0] is not None else provider

    def provider_stats(self, prices: Mapping[str, float] | None = None) -> list[ProviderStats]:
        """Per-provider numbers (see :meth:`stats`) as objects."""
        if prices is None:
            prices = _saved_prices()
        return _history.provider_stats(self._query, prices)

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


def _saved_prices() -> dict[str, float]:
    """The price table of the saved settings; none when they cannot be read."""
    from ._settings import load_settings

    try:
        return dict(load_settings().prices)
    except NbbatchError:
        return {}
