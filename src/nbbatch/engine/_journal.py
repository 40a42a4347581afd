"""The journal: the workspace's SQLite database, its schema and how it is written.

One :class:`Journal` per open workspace owns the connection: it creates and migrates
the schema, runs every write in one ``BEGIN IMMEDIATE`` transaction (:meth:`Journal.tx`),
reads with :meth:`Journal.query`, and translates SQLite's errors into the package's
(:class:`~nbbatch.errors.StoreBusyError`, :class:`~nbbatch.errors.StorageError`, ...).
It knows nothing of tasks, images or runs: the modules beside it (``_tasks``,
``_recovery``, ``_blobs``) hold those jobs and :class:`~nbbatch.engine.Workspace` is the
façade over all of them.

A journal in a folder this process cannot write opens read-only (``mode=ro``): every
read works, every write raises :class:`~nbbatch.errors.WorkspaceNotWritableError` in
words.

The connection is used from one thread at a time (a lock guards it) so the same
workspace can serve the kernel's event loop and a ``run_sync`` worker thread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from ..core._errors import (
    SchemaVersionError,
    StorageError,
    StoreBusyError,
    StoreError,
    WorkspaceNotWritableError,
)

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "Journal",
    "bulk_objects",
    "in_chunks",
    "new_ids",
]

#: 1: the first journal; 2: ``images.starred`` (see ``_COLUMNS_ADDED``)
SCHEMA_VERSION = 2
DB_NAME = "nbbatch.sqlite3"
_NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "9p", "afs", "lustre", "glusterfs"}
)


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


def in_chunks(items: Sequence[_T]) -> Iterator[tuple[list[_T], str]]:
    """``items`` in slices of at most 500, each with its ``?,?,…`` placeholder list.

    One ``IN (…)`` statement per slice instead of one statement per item; 500 stays under
    the 999 bound variables older SQLite builds allow in one statement.
    """
    for start in range(0, len(items), _IN_CHUNK):
        chunk = list(items[start : start + _IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


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


# Columns added after schema 1, as (table, column, definition). Older workspaces get them
# with ALTER TABLE on open; a column already there (a fresh workspace, made from _SCHEMA)
# is left alone, so the upgrade is idempotent and never rewrites a table.
_COLUMNS_ADDED: tuple[tuple[str, str, str], ...] = (
    # schema 2: Batch.star(image); images of older workspaces are not starred
    ("images", "starred", "INTEGER NOT NULL DEFAULT 0"),
)

# Post-processed copies of stored images (see ``_blobs``): one row per source image and
# recipe. Like ``leases``, created when missing whatever the schema version, so older
# versions (which kept a JSON file beside each copy instead) open the workspace unchanged.
_DERIVED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS derived ("
    "source_sha256 TEXT NOT NULL, "
    "recipe_hash TEXT NOT NULL, "
    "sha256 TEXT NOT NULL, "
    "ext TEXT NOT NULL, "
    "width INTEGER NOT NULL, "
    "height INTEGER NOT NULL, "
    "format TEXT NOT NULL, "
    "recipe TEXT NOT NULL, "
    "task_id TEXT, "
    "idx INTEGER, "
    "created_at REAL NOT NULL, "
    "PRIMARY KEY (source_sha256, recipe_hash))",
)
_UNVERSIONED_TABLES = {"leases": _LEASE_SCHEMA, "derived": _DERIVED_SCHEMA}


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


class Journal:
    """The SQLite journal of one workspace folder: connection, schema, transactions.

    ``writable=False`` (or a folder this process cannot write, found by the caller) opens
    the database read-only: nothing is created or migrated, reads work, and :meth:`tx`
    refuses in words.
    """

    def __init__(
        self,
        folder: Path,
        *,
        busy_timeout: float = 5.0,
        durability: Literal["normal", "full"] = "normal",
        writable: bool = True,
    ) -> None:
        self.folder = folder
        self.db_path = folder / DB_NAME
        self.busy_timeout = busy_timeout
        self.durability = durability
        self.writable = writable
        self.journal_mode = "wal"
        self.lock = threading.RLock()
        self.closed = False
        self.conn = self._connect() if writable else self._connect_read_only()

    # ------------------------------------------------------------------ opening
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
        fs = _filesystem_type(self.folder)
        try:
            with self.translate():
                if fs in _NETWORK_FS:
                    # WAL needs shared memory on one host; on network file systems it
                    # corrupts.
                    warnings.warn(
                        f"workspace {str(self.folder)!r} is on a network file system ({fs}); "
                        "using the slower rollback journal. Put the workspace on local disk "
                        "for speed.",
                        RuntimeWarning,
                        stacklevel=4,
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
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        if not self.db_path.is_file():
            raise WorkspaceNotWritableError(
                f"the workspace folder {str(self.folder)!r} cannot be written and holds no "
                f"journal ({DB_NAME}); pick a folder you can write to"
            )
        uri = "file:" + quote(str(self.db_path.resolve())) + "?mode=ro"
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                uri, uri=True, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            # A WAL journal whose -shm file is absent cannot be opened ``mode=ro`` in a
            # folder nobody may write; nobody can change it either, so read it as an
            # immutable file (no locks, no shared memory).
            if conn is not None:
                conn.close()
            conn = None
            try:
                conn = sqlite3.connect(
                    uri + "&immutable=1", uri=True, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                raise WorkspaceNotWritableError(
                    f"cannot open {str(self.db_path)!r} for reading: {exc}"
                ) from None
        conn.execute("PRAGMA query_only=ON")
        self.journal_mode = "read-only"
        return conn

    def version(self) -> int:
        with self.lock, self.translate():
            return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def init_schema(self) -> None:
        """Create or migrate the schema (idempotent); refuse a newer one in words."""
        version = self.version()
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"workspace {str(self.folder)!r} was written by a newer nbbatch (schema "
                f"{version}, this version understands {SCHEMA_VERSION}); upgrade nbbatch "
                "or open another workspace. Nothing was changed."
            )
        if not self.writable:
            return
        if version < SCHEMA_VERSION:
            with self.tx() as c:
                # executescript() would COMMIT our transaction; run statement by statement.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                for table, column, definition in _COLUMNS_ADDED:
                    have = {row[1] for row in c.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        tables = {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type='table'")}
        for name, statements in _UNVERSIONED_TABLES.items():
            if name not in tables:
                with self.tx() as c:
                    for statement in statements:
                        c.execute(statement)
        unused = [
            r[0]
            for r in self.query(
                "SELECT name FROM sqlite_master WHERE type='index' AND name IN (?, ?)",
                _UNUSED_INDEXES,
            )
        ]
        if unused:
            # Same schema version: older nbbatch never needs these indexes either.
            with self.tx() as c:
                for name in unused:
                    c.execute(f"DROP INDEX IF EXISTS {name}")

    # ------------------------------------------------------------------ using
    @contextlib.contextmanager
    def translate(self) -> Iterator[None]:
        """SQLite's exceptions as the package's, each saying what to do."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                raise StoreBusyError(
                    f"workspace {str(self.folder)!r} is busy: another process held its "
                    f"database for more than {self.busy_timeout:g} s. Close the other "
                    "notebook or process using it, or use a different workspace."
                ) from None
            if not self.writable and ("readonly" in text or "read-only" in text):
                raise WorkspaceNotWritableError(self.read_only_message()) from None
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
                f"workspace database {str(self.db_path)!r} is damaged or not a database: "
                f"{exc}. `nbbatch repair` salvages what can be read (see "
                "docs/reliability.md, 'A damaged journal')."
            ) from None

    def read_only_message(self) -> str:
        return (
            f"the workspace {str(self.folder)!r} is open read-only (this process cannot "
            "write its folder): history, show, export and images work, changes do not. "
            "Copy the folder somewhere you can write, or fix its permissions, to change it."
        )

    def check_open(self) -> None:
        if self.closed:
            raise StoreError(f"workspace {str(self.folder)!r} is closed")

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), committed when the block ends."""
        self.check_open()
        if not self.writable:
            raise WorkspaceNotWritableError(self.read_only_message())
        with self.lock, self.translate():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                # Also when the COMMIT itself fails (a deferred constraint, a full disk):
                # left open, the transaction would refuse every later write. SQLite may
                # have rolled back already (after SQLITE_FULL, for one); a ROLLBACK
                # failing then must not hide the error that matters.
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.check_open()
        with self.lock, self.translate():
            return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self.lock, contextlib.suppress(sqlite3.Error):
            self.conn.close()
