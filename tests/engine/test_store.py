"""The workspace: journal, reopen, reconcile, and clear errors for a bad disk state."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbbatch import Batch, Params, Task, TaskStatus, Workspace
from nbbatch.engine import _journal as journal_module
from nbbatch.engine import _store as store_module
from nbbatch.errors import (
    ConfigError,
    ImageRejectedError,
    NotFoundError,
    SchemaVersionError,
    StorageError,
    StoreBusyError,
    StoreError,
    WorkspaceNotWritableError,
)
from tests.support import ControlledProvider, png_bytes


def test_batch_round_trips_through_the_journal(tmp_path: Path) -> None:
    with Workspace(tmp_path / "ws") as ws:
        ref = ws.add_reference(png_bytes((16, 12)), "cat.png")
        tasks = [
            Task("a red car", params=Params(size="512x512", seed=7, steps=20)),
            Task("a blue car", references=[ref], params=Params(strength=0.4, extras={"q": 1})),
        ]
        batch = Batch.create(workspace=ws, tasks=tasks, name="cars")
        batch.run_sync("demo")
        ids = [t.id for t in batch.tasks]
    with Workspace(tmp_path / "ws") as ws:
        (summary,) = ws.batches()
        assert (summary.name, summary.status, summary.counts) == (
            "cars",
            "succeeded",
            {"succeeded": 2},
        )
        again = Batch.load(summary.id[:6], workspace=ws)  # a unique prefix is enough
        assert [t.id for t in again.tasks] == ids
        red, blue = again.tasks
        assert red.params == Params(size="512x512", seed=7, steps=20)
        assert blue.params.extras == {"q": 1}
        assert blue.references[0].name == "cat.png"
        assert (blue.references[0].width, blue.references[0].height) == (16, 12)
        assert red.images[0].seed == 7
        assert red.images[0].pil.size == (512, 512)
        assert red.images[0].params["provider"] == "demo"


def test_unknown_batch_is_a_clear_not_found(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError, match="nbbatch history"):
        Batch.load("nope", workspace)


def test_empty_batch_is_refused(workspace: Workspace) -> None:
    with pytest.raises(ConfigError, match="at least one task"):
        Batch.create(workspace=workspace, tasks=[])


def test_an_empty_batch_can_be_asked_for_and_filled_later(workspace: Workspace) -> None:
    batch = Batch.create([], workspace=workspace, allow_empty=True)
    assert len(batch) == 0
    batch.add(["a red fox"])
    assert [t.prompt for t in Batch.load(batch.id, workspace).tasks] == ["a red fox"]


def test_reconcile_repairs_what_a_crash_leaves(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        batch = Batch.create(workspace=ws, tasks=["one", "two", "three"])
        batch.run_sync("demo")
        one, two, three = batch.tasks
        # simulate the states a SIGKILL can leave behind
        ws._conn.execute("UPDATE tasks SET status='running' WHERE id=?", (two.id,))
        ws._conn.execute("UPDATE tasks SET status='queued' WHERE id=?", (three.id,))
        one.images[0].path.unlink()  # a row whose file vanished
        (ws.images_dir / "ab").mkdir(exist_ok=True)
        (ws.images_dir / "ab" / ".tmp-half-written").write_bytes(b"partial")
        (ws.images_dir / "ab" / ("ab" + "0" * 62 + ".png")).write_bytes(b"orphan")
    with Workspace(path) as ws:
        report = ws.recovery
        assert report.reconciled and report.integrity == "ok"
        assert report.interrupted == [two.id]
        assert (report.temp_files_removed, report.orphan_files_removed) == (1, 1)
        assert report.missing_files == 1
        again = Batch.load(batch.id, ws)
        s_one, s_two, s_three = again.tasks
        assert s_one.status is TaskStatus.FAILED and s_one.images == []
        assert "missing" in (s_one.error or "")
        assert s_two.status is TaskStatus.INTERRUPTED
        assert s_three.status is TaskStatus.IDLE
        # no row points at a missing file and no file lacks a row
        files = {p.name for p in ws.images_dir.rglob("*") if p.is_file()}
        rows = {im.path.name for t in again.tasks for im in t.images}
        assert files == rows
        assert again.runnable() == [s_two, s_three]
        assert again.runnable(retry_failed=True) == [s_one, s_two, s_three]


def test_second_open_does_not_reconcile_a_live_workspace(tmp_path: Path) -> None:
    with Workspace(tmp_path / "ws") as first:
        batch = Batch.create(workspace=first, tasks=["x"])
        first._conn.execute("UPDATE tasks SET status='running'")
        with Workspace(tmp_path / "ws") as second:
            assert not second.recovery.reconciled
            assert Batch.load(batch.id, second).tasks[0].status is TaskStatus.RUNNING


def test_newer_schema_is_refused_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    Workspace(path).close()
    db = path / "nbbatch.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version={store_module.SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    with pytest.raises(SchemaVersionError, match="newer nbbatch"):
        Workspace(path)
    assert db.read_bytes() == before


def test_unwritable_workspace_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(WorkspaceNotWritableError, match="cannot write"):
        Workspace(blocker / "ws")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder_is_a_clear_error(tmp_path: Path) -> None:  # pragma: no cover
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(WorkspaceNotWritableError):
        Workspace(ro)


def test_corrupt_database_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    path.mkdir()
    (path / "nbbatch.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        Workspace(path)


def test_busy_database_gives_store_busy_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    with Workspace(path, busy_timeout=0.2) as ws:
        batch = Batch.create(workspace=ws, tasks=["x"])
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                import sqlite3, sys, time
                c = sqlite3.connect({str(path / "nbbatch.sqlite3")!r}, isolation_level=None)
                c.execute('BEGIN IMMEDIATE')
                print('locked', flush=True)
                time.sleep(5)
            """),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            task = batch.tasks[0]
            task.transition(TaskStatus.QUEUED)
            with pytest.raises(StoreBusyError, match="another process"):
                ws.save_task(task)
        finally:
            holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()


def test_network_filesystem_falls_back_to_rollback_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_filesystem_type", lambda path: "nfs4")
    with pytest.warns(RuntimeWarning, match="network file system"):
        ws = Workspace(tmp_path / "ws")
    with ws:
        assert ws.journal_mode == "delete"
        batch = Batch.create(workspace=ws, tasks=["x"])
        batch.run_sync("demo")
        assert batch.status == "succeeded"


async def test_disk_error_while_saving_marks_nothing_succeeded(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", full)
    batch = Batch.create(workspace=workspace, tasks=["x"])
    await batch.run(ControlledProvider(), retry=0)
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED and task.error_kind == "storage"
    assert "No space left" in (task.error or "")
    assert workspace.task(task.id).images == []
    assert [p for p in workspace.images_dir.rglob("*") if p.is_file()] == []


def test_write_blob_raises_storage_error(workspace: Workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        store_module.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error"))
    )
    with pytest.raises(StorageError, match="Input/output error"):
        workspace.write_blob(png_bytes(), "png")


def test_corrupt_reference_image_is_refused_with_its_name(workspace: Workspace) -> None:
    with pytest.raises(ImageRejectedError, match=r"broken\.png: PNG image could not be decoded"):
        workspace.add_reference(png_bytes()[:40], "broken.png")
    with pytest.raises(ImageRejectedError, match="not an accepted image format"):
        workspace.add_reference(b"%PDF-1.7 ...", "doc.pdf")


def test_oversized_reference_file_is_refused_before_reading(
    tmp_path: Path, workspace: Workspace
) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(11 * 1024 * 1024)
    with pytest.raises(ImageRejectedError) as info:
        workspace.add_reference(big)
    assert info.value.reason == "too_many_bytes"
    assert info.value.limit == 10 * 1024 * 1024


def test_same_image_twice_is_stored_once(workspace: Workspace) -> None:
    a = workspace.add_reference(png_bytes(), "a.png")
    b = workspace.add_reference(png_bytes(), "b.png")
    assert a.path == b.path
    assert len([p for p in workspace.images_dir.rglob("*") if p.is_file()]) == 1


def test_batches_are_listed_newest_first_with_counts(workspace: Workspace) -> None:
    first = Batch.create(workspace=workspace, tasks=["a", "b"], name="first")
    second = Batch.create(workspace=workspace, tasks=["c"], name="second")
    second.run_sync("demo")
    listed = workspace.batches()
    assert [b.id for b in listed] == [second.id, first.id]
    assert listed[0].to_dict()["status"] == "succeeded"
    assert listed[1].counts == {"idle": 2} and listed[1].status == "new"


def test_delete_batch_keeping_files_leaves_them_to_reconcile(tmp_path: Path) -> None:
    with Workspace(tmp_path / "ws") as ws:
        batch = Batch.create(workspace=ws, tasks=["x"])
        batch.run_sync("demo")
        ws.delete_batch(batch.id, files=False)
    with Workspace(tmp_path / "ws") as ws:
        assert ws.batches() == []
        assert ws.recovery.orphan_files_removed == 1


def test_retrying_a_task_that_lost_one_of_its_images(tmp_path: Path) -> None:
    with Workspace(tmp_path / "ws") as ws:
        batch = Batch.create(workspace=ws, tasks=["pair"], params=Params(n=2, size="32x32"))
        batch.run_sync("demo")
        batch.tasks[0].images[0].path.unlink()
    with Workspace(tmp_path / "ws") as ws:
        again = Batch.load(batch.id, ws)
        task = again.tasks[0]
        assert task.status is TaskStatus.FAILED and [im.index for im in task.images] == [1]
        again.run_sync("demo", retry_failed=True)
        assert task.status is TaskStatus.SUCCEEDED
        assert [im.index for im in ws.task(task.id).images] == [1, 2, 3]
        assert all(im.path.exists() for im in ws.task(task.id).images)


def test_claim_takes_exactly_the_free_tasks_across_chunks_of_ids(tmp_path: Path) -> None:
    # 1,200 tasks span three chunks of ids; the ones already queued, running or
    # succeeded stay as they are and are not returned, a repeated id counts once.
    # The claimed ones, and only they, are leased to the run; a task another run
    # holds keeps that run's lease.
    with Workspace(tmp_path / "ws") as ws:
        batch = Batch.create([f"prompt {i}" for i in range(1200)], workspace=ws)
        tasks = batch.tasks
        held = {0: "queued", 499: "running", 500: "succeeded", 1199: "running"}
        again = {7: "failed", 900: "cancelled", 1000: "interrupted"}
        for i, status in {**held, **again}.items():
            ws._conn.execute("UPDATE tasks SET status=? WHERE id=?", (status, tasks[i].id))
        ws._conn.execute(
            "INSERT INTO leases VALUES (?, 'another-run', 1, 'elsewhere', 0)", (tasks[499].id,)
        )
        lease = ws.open_lease()
        try:
            claimed = ws.claim([*tasks, tasks[3]], lease)
            leases = dict(ws._conn.execute("SELECT task_id, run_id FROM leases").fetchall())
        finally:
            ws.release_lease(lease)
        assert claimed == {t.id for i, t in enumerate(tasks) if i not in held}
        statuses = dict(ws._conn.execute("SELECT id, status FROM tasks").fetchall())
        assert {i: statuses[tasks[i].id] for i in held} == held
        assert {statuses[t.id] for i, t in enumerate(tasks) if i not in held} == {"queued"}
        assert leases == {tasks[499].id: "another-run"} | dict.fromkeys(claimed, lease.id)


def test_claim_takes_the_references_another_kernel_journaled(workspace: Workspace) -> None:
    # Issue 26 item 4: a kernel that loaded the batch before another changed a task's
    # references sent its stale copy; the claim now takes the journal's references too.
    record = workspace.insert_batch([Task("a red car")])
    mine = record.tasks[0]
    theirs = workspace.task(mine.id)  # another kernel's copy of the same row
    theirs.references = [workspace.add_reference(png_bytes(), "sketch.png")]
    workspace.save_task(theirs)
    assert mine.references == []
    assert workspace.claim([mine]) == {mine.id}
    assert [(r.name, r.sha256) for r in mine.references] == [
        ("sketch.png", theirs.references[0].sha256)
    ]
    # and back: references removed elsewhere are not sent either
    other = workspace.task(mine.id)
    other.references = []
    other.status = TaskStatus.IDLE
    workspace.save_task(other)
    assert workspace.claim([mine]) == {mine.id}
    assert mine.references == []


def test_a_failed_commit_is_rolled_back_and_the_next_write_works(tmp_path: Path) -> None:
    # A COMMIT that fails (here a deferred foreign key; a full disk fails there too)
    # left the transaction open: "nothing was changed" was said, but every later write
    # of the workspace failed with "cannot start a transaction within a transaction".
    journal = journal_module.Journal(tmp_path)
    try:
        journal.init_schema()
        with pytest.raises(StoreError, match="nothing was changed"), journal.tx() as c:
            c.execute("PRAGMA defer_foreign_keys=ON")
            c.execute("INSERT INTO task_refs(task_id, idx, sha256, name) VALUES ('t', 0, 's', 'n')")
        assert not journal.conn.in_transaction
        with journal.tx() as c:
            c.execute(
                "INSERT INTO batches(id, name, created_at, params) VALUES ('b', 'b', 0, '{}')"
            )
        assert journal.query("SELECT count(*) FROM task_refs") == [(0,)]
        assert journal.query("SELECT id FROM batches") == [("b",)]
    finally:
        journal.close()


def test_repairing_a_dead_run_leaves_a_task_another_run_claimed_meanwhile(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dead runs were told from a read outside the write transaction: if another
    # process repaired the task and a live run claimed it in between, the repair turned
    # that live run's queued task back to idle (free for a third run to send again).
    from nbbatch.engine import _recovery

    (task,) = workspace.insert_batch([Task("a red car")]).tasks
    dead = workspace.open_lease()
    workspace.claim([task], dead)
    dead._release()  # its process is gone: the lock file with it
    live = workspace.open_lease()
    judge = _recovery.run_alive

    def judged_while_another_process_steps_in(*args: object) -> bool:
        verdict = judge(*args)  # type: ignore[arg-type]
        with workspace._tx() as c:  # another process repairs it and a live run claims it
            c.execute("UPDATE tasks SET status='idle' WHERE id=?", (task.id,))
        workspace.claim([task], live)
        return verdict

    monkeypatch.setattr(_recovery, "run_alive", judged_while_another_process_steps_in)
    try:
        report = workspace.repair_dead_runs()
        assert report.requeued == []
        assert workspace.task(task.id).status is TaskStatus.QUEUED
        assert workspace._query("SELECT run_id FROM leases") == [(live.id,)]
    finally:
        monkeypatch.undo()
        workspace.release_lease(live)
