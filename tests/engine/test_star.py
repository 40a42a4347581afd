"""Starring images: journaled per image, ``task.starred`` from its images, announced."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import nbbatch
from nbbatch import Batch, Workspace
from nbbatch.engine import _store as store_module
from nbbatch.errors import NotFoundError
from nbbatch.events import TaskChanged


def finished_batch(ws: Workspace, n: int = 2) -> Batch:
    batch = Batch.create(
        ["a red fox in snow", "a koi pond"], workspace=ws, params=nbbatch.Params(n=n, seed=3)
    )
    return batch.run_sync("demo")


def test_a_starred_image_stays_starred_after_the_workspace_is_reopened(tmp_path: Path) -> None:
    with Workspace(tmp_path / "ws") as ws:
        batch = finished_batch(ws)
        second = batch.tasks[0].images[1]
        assert not second.starred and not batch.tasks[0].starred
        assert batch.star(second) is second
        assert second.starred and batch.tasks[0].starred
        assert not batch.tasks[1].starred
    with Workspace(tmp_path / "ws") as ws:
        again = Batch.load(batch.id, ws)
        assert [im.starred for im in again.tasks[0].images] == [False, True]
        assert again.tasks[0].starred and not again.tasks[1].starred
        again.star(again.tasks[0].images[1], starred=False)
        assert not again.tasks[0].starred
    with Workspace(tmp_path / "ws") as ws:
        assert not Batch.load(batch.id, ws).tasks[0].starred


def test_starring_is_announced_once_and_a_repeat_is_a_no_op(workspace: Workspace) -> None:
    batch = finished_batch(workspace)
    seen: list[object] = []
    batch.subscribe(seen.append)
    image = batch.tasks[1].images[0]
    batch.star(image)
    batch.star(image)  # already starred: nothing to journal, nothing to announce
    (event,) = seen
    assert isinstance(event, TaskChanged)
    assert event.fields == ("starred",) and event.task is batch.tasks[1]
    assert event.batch_id == batch.id


def test_a_copy_of_an_image_stars_the_batchs_own_image(workspace: Workspace) -> None:
    batch = finished_batch(workspace)
    copy = Batch.load(batch.id, workspace).tasks[0].images[0]  # another object, same image
    mine = batch.star(copy)
    assert mine is batch.tasks[0].images[0] and mine.starred and copy.starred


def test_an_image_of_another_batch_is_refused(workspace: Workspace) -> None:
    batch = finished_batch(workspace)
    other = finished_batch(workspace)
    with pytest.raises(NotFoundError):
        batch.star(other.tasks[0].images[0])


def test_the_manifest_says_which_images_are_starred(workspace: Workspace, tmp_path: Path) -> None:
    import json
    import zipfile

    batch = finished_batch(workspace, n=1)
    batch.star(batch.tasks[1].images[0])
    with zipfile.ZipFile(batch.export_zip(tmp_path / "out.zip")) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert [t["images"][0]["starred"] for t in manifest["tasks"]] == [False, True]


def test_a_schema_1_workspace_opens_keeps_its_images_and_can_star(tmp_path: Path) -> None:
    path = tmp_path / "old"
    with Workspace(path) as ws:
        batch = finished_batch(ws)
    # Make it what nbbatch with schema 1 wrote: no images.starred column, user_version 1.
    db = path / store_module.DB_NAME
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE images DROP COLUMN starred")
        conn.execute("PRAGMA user_version=1")
    with sqlite3.connect(db) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(images)")}
    assert "starred" not in columns

    with Workspace(path) as ws:
        old = Batch.load(batch.id, ws)
        assert [len(t.images) for t in old.tasks] == [2, 2]
        assert not any(im.starred for im in old.images)
        assert old.images[0].pil.size == (old.images[0].width, old.images[0].height)
        old.star(old.images[3])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    with Workspace(path) as ws:  # upgraded once; opening again changes nothing
        assert [im.starred for im in Batch.load(batch.id, ws).images] == [False, False, False, True]
