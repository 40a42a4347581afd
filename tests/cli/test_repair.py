"""``nbbatch repair``: the salvage path for a damaged journal (issue 26, LOW item).

One zeroed page used to make the whole workspace unreadable with no way back. The
repair moves the damaged file aside, copies every row that can still be read into a new
journal, and keeps image files no surviving row uses.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import nbbatch
from nbbatch import Batch, Params, Workspace
from nbbatch._cli import main
from nbbatch.engine import Comparison
from nbbatch.engine._journal import DB_NAME
from nbbatch.engine._salvage import salvage
from nbbatch.errors import StoreBusyError, StoreError

LONG = "a watercolour of a lighthouse on a cliff at dusk, gulls, spray, " * 3


def zero_a_page_of(db: Path, table: str) -> int:
    """Overwrite one leaf page of ``table`` (not its first or last) with zeros."""
    with sqlite3.connect(db) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name=? AND pagetype='leaf' ORDER BY pageno",
                (table,),
            )
        ]
    conn.close()
    assert len(leaves) >= 3, leaves
    page = leaves[len(leaves) // 2]
    with open(db, "r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(b"\x00" * size)
    return page


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        big = Batch.create([f"{LONG} #{i}" for i in range(300)], workspace=ws, name="big")
        small = Batch.create(["a red fox", "a blue car"], workspace=ws, params=Params(size="32x32"))
        small.run_sync("demo")
    # closing the last connection checkpoints the WAL into the file: damage it there
    assert not (path / f"{DB_NAME}-wal").exists()
    zero_a_page_of(path / DB_NAME, "tasks")
    return path, big.id, small.id


def test_a_zeroed_page_is_salvaged_by_nbbatch_repair(
    damaged: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, big_id, small_id = damaged
    with pytest.raises((StoreError, RuntimeWarning)), Workspace(path) as ws:
        Batch.load(big_id, ws)  # unreadable before the repair

    assert main(["repair", "-w", str(path)]) == 0
    said = capsys.readouterr().err
    assert "was moved aside" in said and "rows saved:" in said
    assert "unreadable stretches skipped in: tasks (1)" in said
    # the damaged file is kept (with its -wal / -shm, if the failed open made them)
    (aside,) = [p for p in path.glob(f"{DB_NAME}.damaged-*") if p.name[-4:] not in ("-wal", "-shm")]

    with Workspace(path) as ws:
        assert ws.recovery.integrity == "ok"
        names = {b.name for b in ws.batches()}
        assert "big" in names and len(names) == 2
        big = Batch.load(big_id, ws)
        assert 200 < len(big) < 300  # one page of rows lost, every other row kept
        assert [t.order for t in big.tasks] == sorted(t.order for t in big.tasks)
        small = Batch.load(small_id, ws)
        assert all(im.pil.size == (32, 32) for im in small.images)
    assert aside.stat().st_size > 0

    assert main(["repair", "-w", str(path)]) == 0
    assert "intact; nothing to repair" in capsys.readouterr().err


def test_repair_refuses_while_the_workspace_is_open(damaged: tuple[Path, str, str]) -> None:
    path, _, _ = damaged
    with sqlite3.connect(path / DB_NAME) as conn:
        conn.execute("PRAGMA user_version").fetchone()  # page 1 is intact: this opens
    conn.close()
    holder = open(path / "workspace.lock", "a+b")  # noqa: SIM115 - another kernel's lock
    try:
        import fcntl

        fcntl.flock(holder.fileno(), fcntl.LOCK_SH)
        with pytest.raises(StoreBusyError, match="open in another process"):
            salvage(path)
    finally:
        holder.close()
    assert not list(path.glob(f"{DB_NAME}.damaged-*"))  # nothing was moved


def test_a_journal_whose_first_page_is_gone_still_repairs_and_keeps_the_images(
    damaged: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, _ = damaged
    images = sorted(p.name for p in (path / "images").rglob("*.png"))
    assert images
    with open(path / DB_NAME, "r+b") as fh:  # the header and the schema: nothing readable
        fh.write(b"\x00" * 4096)
    assert main(["repair", "-w", str(path)]) == 0
    said = capsys.readouterr().err
    assert "rows saved: none" in said and "moved to recovered-files/" in said
    assert sorted(p.name for p in (path / "recovered-files").iterdir()) == images
    with Workspace(path) as ws:  # a new, empty journal; the files were not deleted
        assert ws.batches() == [] and ws.recovery.integrity == "ok"
    assert sorted(p.name for p in (path / "recovered-files").iterdir()) == images


def test_a_repair_that_stops_part_way_leaves_the_journal_and_every_image(
    damaged: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The repair used to move the damaged journal aside first and build the new one in
    # its place: stopped before the end, the folder was left with a partial journal (or
    # none), and the next open deleted every image file it did not list as an orphan.
    from nbbatch.engine import _salvage

    path, _big, small_id = damaged
    images = sorted(p.name for p in (path / "images").glob("*/*"))
    assert images

    def stop(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_salvage, "_keep_unused_files", stop)
    with pytest.raises(OSError):
        salvage(path)
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == []
    assert not list(path.glob(f"{DB_NAME}.damaged-*"))
    monkeypatch.undo()

    killed = path / ".tmp-repair-0123456789ab"  # what a repair killed part-way leaves
    killed.mkdir()
    (killed / DB_NAME).write_bytes(b"partial")
    report = salvage(path)  # the repair runs again from the start
    assert not killed.exists()
    assert report.damaged_copy is not None
    with Workspace(path) as ws:
        assert all(im.path.exists() for im in Batch.load(small_id, ws).images)
    kept = {p.name for p in (path / "images").glob("*/*")}
    kept |= {p.name for p in (path / "recovered-files").glob("*")}
    assert sorted(kept) == images


def test_a_repair_keeps_the_tables_parts_of_the_engine_add(tmp_path: Path) -> None:
    # The batch API's jobs, budgets and comparisons live in tables made on first use: a
    # repair that copied only the core tables forgot a job already submitted (the next
    # run would submit its tasks again) and turned a comparison into a plain batch.
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        big = Batch.create([f"{LONG} #{i}" for i in range(300)], workspace=ws, name="big")
        cmp = nbbatch.compare(
            ["a red fox", "a koi"],
            ["demo", ("demo", {"label": "b"})],
            workspace=ws,
            params=Params(size="32x32"),
        )
        cmp.run_sync()
        with ws._tx() as c:  # an extra table whose rows point at tasks, one of them lost below
            c.execute(
                "CREATE TABLE IF NOT EXISTS notes_by_task ("
                "task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE, note TEXT)"
            )
            c.executemany(
                "INSERT INTO notes_by_task VALUES (?, ?)",
                [(t.id, f"note {t.order}") for t in big.tasks],
            )
        cmp_id = cmp.id
    zero_a_page_of(path / DB_NAME, "tasks")

    report = salvage(path)
    assert not report.intact and report.copied["comparisons"] == 1
    assert report.orphans_dropped > 0  # notes of the tasks on the zeroed page
    with Workspace(path) as ws:
        again = Comparison.load(cmp_id, ws)
        assert len(again.to_dataframe()) == 4
        kept = ws._query("SELECT count(*) FROM notes_by_task")[0][0]
        tasks = ws._query("SELECT count(*) FROM tasks WHERE batch_id=?", (big.id,))[0][0]
        assert kept == tasks < 300
