"""Salvage a damaged journal: copy every row that can still be read into a new one.

``nbbatch repair`` (and :func:`salvage`) is the way back from a journal SQLite can no
longer read whole — one zeroed page used to make the whole workspace unreadable:

1. nobody else may have the workspace open (every kernel using it is closed first);
2. an intact journal (``PRAGMA quick_check`` says ok) is left alone;
3. a new journal is made in a temp folder beside it and every table is copied row by
   row in rowid order; a damaged stretch of a table is stepped over (the rows on it are
   lost, the ones after it are not), and rows whose batch or task was lost go too;
4. image files no surviving row uses are moved to ``recovered-files/`` instead of being
   removed by the next open, so nothing on disk is lost;
5. the damaged file (with its ``-wal``) is kept as ``nbbatch.sqlite3.damaged-<time>`` —
   never deleted, never written — and only then is the new journal renamed over it, so
   a repair that stops part-way leaves the damaged journal where it was.

Opening the workspace afterwards reconciles as usual: a task whose image rows were lost
but whose status says succeeded becomes failed ("the result file is missing") and can
be run again.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..core._errors import StoreBusyError
from ..core._model import new_id
from ._blobs import TMP_PREFIX, Blobs
from ._journal import DB_NAME, Journal
from ._recovery import acquire_folder_lock

__all__ = ["SalvageReport", "salvage"]

#: tables copied, parents first (leases are not: no run is alive during a repair); any
#: other table of the damaged journal is copied after them (see ``_other_tables``)
_TABLES = ("batches", "tasks", "inputs", "task_refs", "images", "derived")
_STEP_LIMIT = 2**62
RECOVERED_DIR = "recovered-files"


@dataclass
class SalvageReport:
    """What a repair found and did."""

    intact: bool = False
    problem: str = ""
    damaged_copy: Path | None = None
    #: rows copied per table
    copied: dict[str, int] = field(default_factory=dict)
    #: stretches of a table that could not be read (rows on them are lost)
    damaged_stretches: dict[str, int] = field(default_factory=dict)
    #: rows dropped because their batch or task did not survive
    orphans_dropped: int = 0
    files_kept_aside: int = 0

    def summary(self) -> str:
        if self.intact:
            return "the journal is intact; nothing to repair"
        copied = ", ".join(f"{n} {t}" for t, n in self.copied.items() if n)
        lost = ", ".join(f"{t} ({n})" for t, n in self.damaged_stretches.items() if n)
        lines = [
            f"the journal was damaged ({self.problem}); it was moved aside to "
            f"{str(self.damaged_copy)!r} and a new one made",
            f"rows saved: {copied or 'none'}",
        ]
        if lost:
            lines.append(f"unreadable stretches skipped in: {lost}")
        if self.orphans_dropped:
            lines.append(
                f"rows dropped because their batch or task was lost: {self.orphans_dropped}"
            )
        if self.files_kept_aside:
            lines.append(
                f"{self.files_kept_aside} image file(s) no saved row uses were moved to "
                f"{RECOVERED_DIR}/ (nothing was deleted)"
            )
        return "\n".join(lines)


def _check(db: Path) -> str:
    """``"ok"``, or what is wrong with the journal."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        return "; ".join(str(r[0]) for r in rows[:3])
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def _readable_after(src: sqlite3.Connection, table: str, after: int) -> int | None:
    """The smallest ``x > after`` from which reading ``table`` in rowid order works.

    Seeking past ``x`` fails exactly while the row after ``x`` sits on a damaged page,
    so the probes that work are those past the damage: double the step until one works,
    then halve back to the first.
    """

    def works(x: int) -> bool:
        try:
            src.execute(
                f"SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1", (x,)
            ).fetchall()
        except sqlite3.DatabaseError:
            return False
        return True

    step = 1
    while not works(after + step):
        step *= 2
        if step > _STEP_LIMIT:
            return None
    low, high = after + step // 2, after + step  # works(high); not works(low) or low==after
    while high - low > 1:
        mid = (low + high) // 2
        if works(mid):
            high = mid
        else:
            low = mid
    return high


def _rows(
    src: sqlite3.Connection, table: str, report: SalvageReport
) -> Iterator[tuple[tuple[str, ...], tuple[Any, ...]]]:
    try:
        columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        report.damaged_stretches[table] = report.damaged_stretches.get(table, 0) + 1
        return
    if not columns:
        return
    select = f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid"
    last = -(2**63)
    chunk = 256
    while True:
        try:
            got = src.execute(f"{select} LIMIT {chunk}", (last,)).fetchall()
        except sqlite3.DatabaseError:
            if chunk > 1:
                chunk = 1  # go row by row up to the damage
                continue
            report.damaged_stretches[table] = report.damaged_stretches.get(table, 0) + 1
            resume = _readable_after(src, table, last)
            if resume is None:
                return
            last, chunk = resume, 256
            continue
        if not got:
            return
        for row in got:
            yield tuple(columns), row[1:]
        last = int(got[-1][0])
        chunk = 256


def salvage(root: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> SalvageReport:
    """Repair the journal of the workspace at ``root`` (see the module docstring)."""
    folder = Path(root)
    db = folder / DB_NAME
    report = SalvageReport()
    if not db.is_file():
        report.intact, report.problem = True, "no journal"
        return report
    handle, exclusive = acquire_folder_lock(folder, busy_timeout)
    try:
        if not exclusive:
            raise StoreBusyError(
                f"the workspace {str(folder)!r} is open in another process; close every "
                "notebook and program using it, then run the repair again"
            )
        for left in folder.glob(f"{TMP_PREFIX}repair-*"):  # of a repair that was killed
            shutil.rmtree(left, ignore_errors=True)
        problem = _check(db)
        if problem == "ok":
            report.intact = True
            return report
        report.problem = problem
        # The new journal is made beside the damaged one and renamed over it last: until
        # then the damaged journal stays in place, so a repair that stops half-way
        # (killed, disk full) leaves the folder as it was, not without a journal (the
        # next open would make an empty one and delete every image file as an orphan).
        work = folder / f"{TMP_PREFIX}repair-{new_id()}"
        work.mkdir()
        try:
            _copy(db, work, report)
            report.files_kept_aside = _keep_unused_files(folder, known_in=work)
            aside = folder / f"{DB_NAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
            _keep_copy(db, aside)
            for suffix in ("-wal", "-shm"):
                extra = folder / f"{DB_NAME}{suffix}"
                if extra.exists():
                    os.replace(extra, folder / f"{aside.name}{suffix}")
            os.replace(work / DB_NAME, db)
            report.damaged_copy = aside
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if handle is not None:
            handle.close()
    return report


def _keep_copy(db: Path, aside: Path) -> None:
    """Keep the damaged journal as ``aside`` (a second name for the same file where the
    file system allows it) while ``db`` is still in place."""
    try:
        os.link(db, aside)
    except OSError:
        shutil.copy2(db, aside)


def _copy(damaged: Path, folder: Path, report: SalvageReport) -> None:
    """Copy what can be read of the journal ``damaged`` into a new journal in ``folder``."""
    journal = Journal(folder)
    try:
        journal.init_schema()
        try:
            src = sqlite3.connect(f"file:{quote(str(damaged.resolve()))}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            report.problem += f"; nothing could be read ({exc})"
            return
        try:
            for table in (*_TABLES, *_other_tables(src, journal, report)):
                copied = 0
                with journal.tx() as c:
                    c.execute("PRAGMA defer_foreign_keys=ON")
                    for columns, values in _rows(src, table, report):
                        marks = ",".join("?" * len(values))
                        c.execute(
                            f"INSERT OR IGNORE INTO {table}({', '.join(columns)}) VALUES ({marks})",
                            values,
                        )
                        copied += 1
                    report.orphans_dropped += _drop_orphans(c, table)
                report.copied[table] = copied
        finally:
            src.close()
    finally:
        journal.close()


def _other_tables(src: sqlite3.Connection, journal: Journal, report: SalvageReport) -> list[str]:
    """The damaged journal's tables beyond the core ones, made in the new journal as the
    damaged one declares them (``sqlite_master``): parts of the engine add their own
    tables on first use (batch API jobs, budgets, comparisons), and a repair that left
    them behind would forget a job already submitted — and submit it again."""
    try:
        found = src.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
    except sqlite3.DatabaseError:
        report.damaged_stretches["sqlite_master"] = 1
        return []
    skip = {*_TABLES, "leases"}
    tables = []
    for name, sql in found:
        if name in skip:
            continue
        ddl = str(sql)
        if ddl.upper().startswith("CREATE TABLE ") and "IF NOT EXISTS" not in ddl.upper()[:30]:
            ddl = "CREATE TABLE IF NOT EXISTS " + ddl[len("CREATE TABLE ") :]
        with journal.tx() as c:
            c.execute(ddl)
        tables.append(str(name))
    return tables


def _drop_orphans(c: sqlite3.Connection, table: str) -> int:
    """Delete rows of ``table`` whose parent row was lost; return how many."""
    where = {
        "tasks": "batch_id NOT IN (SELECT id FROM batches)",
        "task_refs": "task_id NOT IN (SELECT id FROM tasks) "
        "OR sha256 NOT IN (SELECT sha256 FROM inputs)",
        "images": "task_id NOT IN (SELECT id FROM tasks)",
    }.get(table)
    if where is not None:
        return int(c.execute(f"DELETE FROM {table} WHERE {where}").rowcount)
    # any other table: the rows its own foreign keys find without a parent
    lost = {int(r[1]) for r in c.execute(f"PRAGMA foreign_key_check({table})") if r[1] is not None}
    for rowid in lost:
        c.execute(f"DELETE FROM {table} WHERE rowid=?", (rowid,))
    return len(lost)


def _keep_unused_files(folder: Path, *, known_in: Path) -> int:
    """Move image files no row of the journal in ``known_in`` uses to ``recovered-files/``
    (the next open would delete them as orphans); return how many."""
    journal = Journal(known_in)
    try:
        known = {
            f"{sha}.{ext}"
            for sha, ext in journal.query(
                "SELECT sha256, ext FROM images UNION SELECT sha256, ext FROM inputs"
            )
        }
    finally:
        journal.close()
    moved = 0
    target = folder / RECOVERED_DIR
    for f in Blobs(folder).entries():
        if f.name in known or f.name.startswith("."):
            continue
        target.mkdir(exist_ok=True)
        os.replace(f, target / f.name)
        moved += 1
    return moved
