"""Recovery: run leases, reconciling the workspace on open, repairing dead runs.

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
  its tasks, and :func:`held_elsewhere` says which ones and who holds them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..core._errors import StoreBusyError, StoreError, WorkspaceNotWritableError
from ..core._model import new_id
from ._blobs import TMP_PREFIX, Blobs
from ._journal import Journal, in_chunks

try:  # POSIX advisory locks; on Windows every open reconciles (single-user desktops)
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "RUNS_DIR",
    "RecoveryReport",
    "RunHolder",
    "RunLease",
    "held_elsewhere",
    "open_lease",
    "reconcile",
    "release_lease",
    "repair_dead_runs",
]

RUNS_DIR = "runs"
LOCK_NAME = "workspace.lock"


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
class RunHolder:
    """A live run of another process and the tasks it holds (queued or running there).

    ``describe()`` names it for people: "process 4242 on host lab-1".
    """

    run_id: str
    pid: int
    host: str
    claimed_at: float
    task_ids: tuple[str, ...]

    def describe(self) -> str:
        return f"process {self.pid} on host {self.host}"


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


def acquire_folder_lock(root: Path, busy_timeout: float) -> tuple[IO[bytes] | None, bool]:
    """Open the folder's advisory lock: ``(file, exclusive)``.

    ``exclusive`` is true when no other process has the workspace open, so the caller may
    reconcile; it then calls :func:`share_folder_lock` to stay visible as "in use".
    """
    if fcntl is None:  # pragma: no cover - Windows: every open reconciles
        return None, True
    handle = open(root / LOCK_NAME, "a+b")  # noqa: SIM115
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return handle, False
    return handle, True


def share_folder_lock(handle: IO[bytes], root: Path, busy_timeout: float) -> None:
    """Downgrade to a shared lock: later openers see the workspace in use, unblocked."""
    if fcntl is None:  # pragma: no cover
        return
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise StoreBusyError(
                    f"workspace {str(root)!r} is being repaired by another "
                    "process; try again in a moment"
                ) from None
            time.sleep(0.05)


def reconcile(journal: Journal, blobs: Blobs, root: Path) -> RecoveryReport:
    """The full repair, for a workspace nobody else has open (see the module docstring)."""
    report = RecoveryReport(reconciled=True)
    with journal.lock, journal.translate():
        report.integrity = journal.conn.execute("PRAGMA quick_check").fetchone()[0]
    if report.integrity != "ok":
        warnings.warn(
            f"workspace database {str(journal.db_path)!r} failed its integrity check "
            f"({report.integrity}); copy it aside before changing anything, then "
            "`nbbatch repair` salvages what can be read",
            RuntimeWarning,
            stacklevel=4,
        )
    known: set[str] = set()
    with journal.lock, journal.translate():
        for sha, ext in journal.conn.execute(
            "SELECT sha256, ext FROM images UNION SELECT sha256, ext FROM inputs"
        ):
            known.add(f"{sha}.{ext}")
    present: set[str] = set()
    for f in blobs.entries():
        if f.name.startswith(TMP_PREFIX):
            f.unlink(missing_ok=True)
            report.temp_files_removed += 1
        elif f.name in known:
            present.add(f.name)
        else:
            f.unlink(missing_ok=True)
            report.orphan_files_removed += 1
    missing = known - present
    now = time.time()
    with journal.tx() as c:
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
        # A task submitted to a provider's batch API (error_kind 'batch_api') is still
        # at the provider, whatever became of the process: a batch API run collects it.
        report.interrupted = [
            r[0]
            for r in c.execute(
                "SELECT id FROM tasks WHERE status='running' AND error_kind IS NOT 'batch_api'"
            )
        ]
        c.execute(
            "UPDATE tasks SET status='interrupted', error_kind='interrupted', error=?, "
            "finished_at=? WHERE status='running' AND error_kind IS NOT 'batch_api'",
            (
                "the process stopped while this task was running; the provider may "
                "or may not have finished (and billed) it. Resume to run it again.",
                now,
            ),
        )
        # Nothing is queued once no runner is alive; queued tasks were never sent.
        report.requeued = [r[0] for r in c.execute("SELECT id FROM tasks WHERE status='queued'")]
        c.execute("UPDATE tasks SET status='idle' WHERE status='queued'")
        report.dead_runs = [r[0] for r in c.execute("SELECT DISTINCT run_id FROM leases")]
        c.execute("DELETE FROM leases")
        # Post-processed copies of images no row uses any more, or whose file is gone,
        # are forgotten (the files themselves are a cache: ``prune_caches`` removes them).
        c.execute(
            "DELETE FROM derived WHERE source_sha256 NOT IN "
            "(SELECT sha256 FROM images UNION SELECT sha256 FROM inputs)"
        )
        gone_copies = [
            (source, recipe)
            for source, recipe, ext in c.execute(
                "SELECT source_sha256, recipe_hash, ext FROM derived"
            ).fetchall()
            if not blobs.derived_path(source, recipe, ext).exists()
        ]
        c.executemany("DELETE FROM derived WHERE source_sha256=? AND recipe_hash=?", gone_copies)
    runs = root / RUNS_DIR
    for f in runs.iterdir() if runs.is_dir() else ():
        f.unlink(missing_ok=True)  # no run is alive: every lock file is stale
    return report


def open_lease(root: Path) -> RunLease:
    """Start a run's lease: a lock file this process holds until :func:`release_lease`.

    The file is locked right after it is made. A checker that comes in between finds
    it unlocked, but no task row names this run yet (claims come after), so there is
    nothing it could take for a dead run's.
    """
    run_id = new_id()
    runs = root / RUNS_DIR
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


def release_lease(journal: Journal, lease: RunLease) -> None:
    """End a run's lease: its task rows go, then its lock file (idempotent)."""
    if not lease.held:
        return
    with contextlib.suppress(StoreError), journal.tx() as c:
        c.execute("DELETE FROM leases WHERE run_id=?", (lease.id,))
    lease._release()


def run_alive(root: Path, run_id: str, pid: int, host: str) -> bool:
    """Whether the run's process still holds its lease lock."""
    path = root / RUNS_DIR / f"{run_id}.lock"
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


def repair_dead_runs(journal: Journal, root: Path) -> RecoveryReport:
    """Repair the tasks of runs whose process has died; leave live runs alone.

    A dead run's ``running`` tasks become ``interrupted`` (the provider may have
    billed them: never re-sent until someone resumes) and its ``queued`` ones go
    back to ``idle`` (never sent). Tasks queued or running with no lease (claimed by
    an older nbbatch) are left to the full reconcile, which runs when the workspace
    is opened by nobody else. Safe to call at any time, from any process; opening
    the workspace and starting a run call it.
    """
    report = RecoveryReport()
    rows = journal.query(
        "SELECT t.id, t.status, l.run_id, l.pid, l.host FROM tasks t "
        "LEFT JOIN leases l ON l.task_id = t.id WHERE t.status IN ('queued', 'running')"
    )
    if not rows:
        return report
    verdicts: dict[str, bool] = {}
    dead: list[tuple[str, str, str]] = []
    for task_id, status, run_id, pid, host in rows:
        if run_id is None:
            # Claimed without a lease (an older nbbatch, perhaps still running):
            # the owner cannot be told, so only the full reconcile touches it.
            continue
        if run_id not in verdicts:
            verdicts[run_id] = run_alive(root, run_id, pid, host)
        if not verdicts[run_id]:
            dead.append((task_id, status, run_id))
    if not dead or not journal.writable:
        return report
    now = time.time()
    # The verdicts were reached outside this transaction: meanwhile another process may
    # have repaired a task and a live run claimed it, so a row changes only while the
    # dead run's lease still names it.
    still_dead = "AND EXISTS (SELECT 1 FROM leases WHERE task_id=? AND run_id=?)"
    with journal.tx() as c:
        for task_id, status, run_id in dead:
            if status == "running":
                cur = c.execute(
                    "UPDATE tasks SET status='interrupted', error_kind='interrupted', "
                    f"error=?, finished_at=? WHERE id=? AND status='running' {still_dead}",
                    (
                        "the process running this task stopped (it was killed or "
                        "crashed); the provider may or may not have finished (and "
                        "billed) it. Resume to run it again.",
                        now,
                        task_id,
                        task_id,
                        run_id,
                    ),
                )
                if cur.rowcount:
                    report.interrupted.append(task_id)
            else:
                cur = c.execute(
                    f"UPDATE tasks SET status='idle' WHERE id=? AND status='queued' {still_dead}",
                    (task_id, task_id, run_id),
                )
                if cur.rowcount:
                    report.requeued.append(task_id)
        report.dead_runs = sorted(r for r, alive in verdicts.items() if not alive)
        c.executemany("DELETE FROM leases WHERE run_id=?", [(r,) for r in report.dead_runs])
    for run_id in report.dead_runs:
        (root / RUNS_DIR / f"{run_id}.lock").unlink(missing_ok=True)
    if report.interrupted or report.requeued:
        report.reconciled = True
    return report


def held_elsewhere(
    journal: Journal,
    root: Path,
    *,
    task_ids: Sequence[str] | None = None,
    batch_id: str | None = None,
) -> list[RunHolder]:
    """The live runs of *other* processes holding (some of) these tasks, oldest first.

    A task is held while a run has it queued or running under its lease and that run's
    process is alive. Runs of this process are left out: its own batches know them.
    Give ``task_ids`` or ``batch_id`` (or neither, for the whole workspace).
    """
    me, here = os.getpid(), socket.gethostname()
    # no lease of another process at all (the common case): no join over the tasks
    # (a start of 100,000 tasks spent ~130 ms of its event loop on it)
    if not journal.query("SELECT 1 FROM leases WHERE pid<>? OR host<>? LIMIT 1", (me, here)):
        return []
    sql = (
        "SELECT l.task_id, l.run_id, l.pid, l.host, l.claimed_at FROM leases l "
        "JOIN tasks t ON t.id = l.task_id WHERE t.status IN ('queued', 'running')"
    )
    rows: list[tuple[object, ...]] = []
    if task_ids is not None:
        for chunk, marks in in_chunks(list(task_ids)):
            rows.extend(journal.query(f"{sql} AND l.task_id IN ({marks})", chunk))
    elif batch_id is not None:
        rows = list(journal.query(f"{sql} AND t.batch_id=? ORDER BY t.ord", (batch_id,)))
    else:
        rows = list(journal.query(f"{sql} ORDER BY t.ord"))
    grouped: dict[str, list[tuple[object, ...]]] = {}
    for row in rows:
        if row[2] == me and row[3] == here:
            continue
        grouped.setdefault(str(row[1]), []).append(row)
    out = []
    for run_id, members in grouped.items():
        _, _, pid, host, claimed = members[0]
        assert isinstance(pid, int) and isinstance(host, str) and isinstance(claimed, float)
        if run_alive(root, run_id, pid, host):
            out.append(RunHolder(run_id, pid, host, claimed, tuple(str(m[0]) for m in members)))
    return sorted(out, key=lambda h: h.claimed_at)
