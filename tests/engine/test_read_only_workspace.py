"""A workspace this process cannot write opens for reading (issue 26, LOW item).

It used to raise "cannot write to the workspace folder" on open, so history, show,
export and ``.pil`` were all impossible. Now it opens read-only: reads work, and each
write refuses in words. As root a folder's permissions do not stop writes, so the test
makes the folder read-only the way this process would find it (the write probe fails);
the journal itself is then opened with SQLite's ``mode=ro``, which holds even for root.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbbatch import Batch, Params, Workspace
from nbbatch._cli import main
from nbbatch.engine import _store
from nbbatch.errors import WorkspaceNotWritableError


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        batch = Batch.create(["a red fox", "a blue car"], workspace=ws, params=Params(size="64x48"))
        batch.run_sync("demo")
        batch.add(["a green tree"])  # still to run
    monkeypatch.setattr(_store, "_folder_writable", lambda p: "Read-only file system")
    yield path, batch.id


def test_a_read_only_workspace_reads_history_batches_images_and_exports(
    read_only: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, batch_id = read_only
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    with Workspace(path) as ws:
        assert ws.read_only
        assert [row.id for row in ws.history()] == [batch_id]
        batch = Batch.load(batch_id, ws)
        assert [t.status.value for t in batch.tasks] == ["succeeded", "succeeded", "idle"]
        assert batch.images[0].pil.size == (64, 48)
        out = batch.export_zip(tmp_path / "out.zip")
        with zipfile.ZipFile(out) as z:
            assert "manifest.json" in z.namelist()
        assert ws.held_elsewhere() == []
    assert main(["show", batch_id, "-w", str(path)]) == 0
    assert "a red fox" in capsys.readouterr().out
    assert main(["history", "-w", str(path)]) == 0
    # no file of the folder was changed (as root, SQLite's reader may add its -shm/-wal
    # index files; in a truly read-only folder it cannot and reads the file immutable)
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_a_read_only_workspace_refuses_every_change_in_words(read_only: tuple[Path, str]) -> None:
    path, batch_id = read_only
    with Workspace(path) as ws:
        batch = Batch.load(batch_id, ws)
        said = "open read-only .* history, show, export and images work, changes do not"
        with pytest.raises(WorkspaceNotWritableError, match=said):
            ws.rename_batch(batch_id, "new name")
        with pytest.raises(WorkspaceNotWritableError, match=said):
            Batch.create(["a green tree"], workspace=ws)
        with pytest.raises(WorkspaceNotWritableError, match=said):
            batch.add(["a green tree"])
        with pytest.raises(WorkspaceNotWritableError, match=said):
            batch.remove(batch.tasks[0])
        with pytest.raises(WorkspaceNotWritableError, match=said):
            batch.run_sync("demo")
        assert Batch.load(batch_id, ws).tasks[0].prompt == "a red fox"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anyway")
def test_a_folder_without_write_permission_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        Batch.create(["a red fox"], workspace=ws).run_sync("demo")
    modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        with Workspace(path) as ws:
            assert ws.read_only and len(ws.history()) == 1
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
