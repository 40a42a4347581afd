"""The History panel's message protocol, driven as the browser drives it (no browser)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import nbbatch
from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.engine import load_settings
from nbbatch.widgets import BatchStudio, History
from tests.support import ControlledProvider
from tests.widgets.page import Page


def quick_demo() -> nbbatch.Provider:
    return nbbatch.get_provider("demo", fail_prompts=["FAILME"])


@pytest.fixture
def older(workspace: Workspace) -> Batch:
    made = Batch.create(
        ["a red fox", "FAILME a storm", "a koi pond"],
        workspace=workspace,
        params=Params(size="64x64", n=2),
        name="Older batch",
    )
    return made.run_sync(quick_demo(), retry=0)


def interrupt(batch: Batch) -> None:
    """What a killed kernel leaves after the next open's repair: tasks interrupted."""
    for task in batch.tasks:
        task.transition(TaskStatus.QUEUED)
        task.transition(TaskStatus.RUNNING)
        task.transition(TaskStatus.INTERRUPTED)
    batch.workspace.save_statuses(batch.tasks)


async def settle(*widgets: object) -> None:
    """Wait for the work the widgets sent off the loop and for their replies."""
    for _ in range(50):
        pending = [f for w in widgets for f in getattr(w, "_futures", getattr(w, "_jobs", ()))]
        if not pending:
            break
        await asyncio.wait(list(pending))
        await asyncio.sleep(0)
    await asyncio.sleep(0)


async def answer(page: Page, *widgets: object, type: str, **body: object) -> dict[str, Any]:
    """Send a request whose reply comes after work off the loop; return the reply."""
    uid = f"a{len(page.sent)}-{type}"
    page.widget._on_msg(page.widget, {"type": type, "uuid": uid, **body}, [])
    await settle(page.widget, *widgets)
    found = [c for c, _ in page.sent if c.get("uuid") == uid]
    assert len(found) == 1, f"{len(found)} replies to {type}"
    return found[0]


def test_hello_sends_the_strings_and_whether_a_studio_is_attached(older: Batch) -> None:
    alone = Page(History(older.workspace, lang="zh")).ok("hello")
    assert alone["studio"] is False
    assert alone["strings"]["hist_resume"] == "继续"
    studio = BatchStudio(older)
    assert Page(studio.history).ok("hello")["studio"] is True
    assert studio.history.current == older.id


def test_the_list_is_newest_first_with_what_the_columns_show(older: Batch) -> None:
    newer = Batch.create(["x"], workspace=older.workspace, name="Newer batch")
    rows = Page(History(older.workspace)).ok("list")["rows"]
    assert [r["name"] for r in rows] == ["Newer batch", "Older batch"]
    old = rows[1]
    assert old["counts"] == {"succeeded": 2, "failed": 1}
    assert old["images"] == 4 and old["provider"] == "demo"
    assert old["success_rate"] == pytest.approx(2 / 3)
    assert old["mean_duration"] is not None and old["status"] == "failed"
    assert rows[0]["id"] == newer.id and rows[0]["resumable"] == 1


def test_thumbnails_of_a_row_come_as_webp_buffers(older: Batch) -> None:
    reply = Page(History(older.workspace)).ok("thumbs", id=older.id)
    assert reply["count"] == 4
    assert all(b[:4] == b"RIFF" and b[8:12] == b"WEBP" for b in reply["_buffers"])


def test_open_switches_the_studio_grid_gallery_and_progress(older: Batch) -> None:
    current = Batch.create(["now"], workspace=older.workspace, name="Current")
    studio = BatchStudio(current)
    gallery_before = studio.gallery
    page = Page(studio.grid)
    history = Page(studio.history)
    page.ok("select", op="all")
    assert studio.grid.selection

    history.ok("open", id=older.id)

    assert studio.batch.id == older.id and studio.grid.count == 3
    assert studio.grid.selection == [] and studio.history.current == older.id
    assert page.of_type("reset")  # the page restarts with the new batch
    assert studio.gallery is not gallery_before and studio.gallery.batch is studio.batch
    hello = page.ok("hello")
    assert hello["summary"]["counts"]["succeeded"] == 2
    assert len(page.ok("rows", start=0, end=10)["rows"]) == 3
    # opening the first again gives back the very object the studio showed
    history.ok("open", id=current.id)
    assert studio.batch is current


def test_open_batch_in_python_takes_an_id_or_a_batch(older: Batch, tmp_path: Path) -> None:
    studio = BatchStudio(workspace=older.workspace)
    assert studio.open_batch(older.id[:6]).id == older.id
    other = Batch.create(["y"], workspace=older.workspace)
    assert studio.open_batch(other) is other and studio.batch is other
    with Workspace(tmp_path / "elsewhere") as ws:
        stranger = Batch.create(["z"], workspace=ws)
        with pytest.raises(nbbatch.errors.ConfigError, match="make a BatchStudio"):
            studio.open_batch(stranger)
    assert studio.batch is other


def test_open_points_the_inputs_at_the_opened_batch(older: Batch) -> None:
    studio = BatchStudio(workspace=older.workspace)
    studio.open_batch(older)
    # tasks the prompt panel creates and images remixed from a drop land in what is shown
    assert studio.prompt.batch is studio.batch
    assert studio.upload.remix_into is studio.batch


async def test_open_is_refused_in_words_while_the_studio_runs(older: Batch) -> None:
    current = Batch.create(["slow one"], workspace=older.workspace)
    gate = asyncio.Event()
    studio = BatchStudio(current, provider=ControlledProvider(gate=gate))
    Page(studio.grid).ok("run_all")
    history = Page(studio.history)
    assert "running" in history.refused("open", id=older.id)
    with pytest.raises(nbbatch.errors.ConfigError, match="running"):
        studio.open_batch(older)
    assert studio.batch is current
    gate.set()
    await studio.runner.wait()


async def test_resume_sends_the_interrupted_tasks_only_when_pressed(older: Batch) -> None:
    ws = older.workspace
    broken = Batch.create(["one", "two"], workspace=ws, name="Killed", provider="controlled")
    await broken.run(ControlledProvider(), tasks=broken.tasks[:1])
    interrupt_these = Batch.load(broken.id, ws)
    interrupt_these.tasks.pop(0)  # the first finished before the kill
    interrupt(interrupt_these)
    provider = ControlledProvider()
    studio = BatchStudio(workspace=ws, provider=provider)
    history = Page(studio.history)
    listed = await answer(history, type="list")
    row = next(r for r in listed["rows"] if r["id"] == broken.id)
    assert row["status"] == "interrupted" and row["counts"]["interrupted"] == 1

    assert (await answer(history, studio.session, type="open", id=broken.id))["ok"]
    assert studio.batch.id == broken.id and studio.runner is None
    assert provider.calls == []  # opening sends nothing
    # (the answer waits for the studio's jobs, the run among them)
    assert (await answer(history, studio.session, type="resume", id=broken.id))["ok"]

    assert provider.calls == ["two"]
    assert [t.status for t in studio.batch.tasks] == [TaskStatus.SUCCEEDED] * 2


async def test_retry_failed_opens_the_batch_and_runs_its_failed_tasks(older: Batch) -> None:
    studio = BatchStudio(workspace=older.workspace, provider=ControlledProvider())
    page = Page(studio.history)
    assert (await answer(page, studio.session, type="retry_failed", id=older.id))["ok"]
    assert studio.batch.id == older.id
    assert [t.status for t in studio.batch.tasks] == [TaskStatus.SUCCEEDED] * 3


def test_rename_goes_through_the_batch_the_studio_shows(older: Batch) -> None:
    studio = BatchStudio(older)
    page = Page(studio.history)
    assert page.ok("rename", id=older.id, name="  Fox   and koi ")["name"] == "Fox and koi"
    assert older.name == "Fox and koi"
    assert "empty" in page.refused("rename", id=older.id, name="   ")
    assert "200" in page.refused("rename", id=older.id, name="x" * 201)
    assert older.workspace.load_batch(older.id).name == "Fox and koi"


def test_delete_is_confirmed_by_the_page_and_refused_for_the_open_batch(older: Batch) -> None:
    other = Batch.create(["z"], workspace=older.workspace).run_sync(quick_demo())
    files = [im.path for im in other.images]
    studio = BatchStudio(older)
    page = Page(studio.history)
    assert "open in the studio" in page.refused("delete", id=older.id)
    assert page.ok("delete", id=other.id)["files"] == 1
    assert not any(p.exists() for p in files)
    assert [r["id"] for r in page.ok("list")["rows"]] == [older.id]


def test_alone_the_panel_lists_renames_and_deletes_but_does_not_open(older: Batch) -> None:
    page = Page(History(older.workspace))
    assert "studio" in page.refused("open", id=older.id)
    assert page.ok("rename", id=older.id, name="Renamed")["name"] == "Renamed"
    assert page.ok("delete", id=older.id)["files"] == 4
    assert page.ok("list")["rows"] == []


def test_stats_and_prices_set_from_the_panel(older: Batch) -> None:
    page = Page(History(older.workspace))
    (demo,) = page.ok("stats")["rows"]
    assert demo["provider"] == "demo" and demo["spend"] is None
    assert demo["succeeded"] == 2 and demo["failed"] == 1 and demo["images"] == 4
    page.ok("set_price", provider="demo", price=0.5)
    assert load_settings().prices == {"demo": 0.5}
    again = page.ok("stats")
    assert again["prices"] == {"demo": 0.5} and again["rows"][0]["spend"] == pytest.approx(2.0)
    assert "zero or more" in page.refused("set_price", provider="demo", price=-1)
    page.ok("set_price", provider="demo", price=None)
    assert load_settings().prices == {}


def test_the_toolbar_button_opens_the_dialog_and_bad_requests_get_words(older: Batch) -> None:
    studio = BatchStudio(older)
    before = studio.history.opened
    Page(studio.grid).ok("open_history")
    assert studio.history.opened == before + 1
    page = Page(studio.history)
    assert page.refused("no_such_thing")
    assert page.refused("thumbs", id=42)


async def test_the_list_is_marked_stale_when_a_run_of_the_studio_ends(older: Batch) -> None:
    current = Batch.create(["quick"], workspace=older.workspace)
    studio = BatchStudio(current, provider=ControlledProvider())
    history = Page(studio.history)
    Page(studio.grid).ok("run_all")
    await settle(studio.session)
    assert history.of_type("changed")  # the page asks for the list again if it shows it
    rows = (await answer(history, type="list"))["rows"]
    assert rows[0]["id"] == current.id and rows[0]["status"] == "succeeded"


def test_a_thousand_batches_list_in_one_reply_of_modest_size(workspace: Workspace) -> None:
    for i in range(1000):
        workspace.insert_batch([], name=f"b{i}", allow_empty=True)
    Batch.create(["the one with a task"], workspace=workspace)
    page = Page(History(workspace))
    rows = page.ok("list")["rows"]
    assert len(rows) == 1  # batches left empty are not listed
    for b in workspace.history()[1:]:
        workspace.add_tasks(b.id, [nbbatch.Task(prompt="p")])
    page.sent.clear()
    rows = page.ok("list")["rows"]
    assert len(rows) == 1001
    size = len(json.dumps(page.sent[-1][0]))
    assert size < 400_000, size  # ~0.3 KB a row: no thumbnails, no prompts


def test_a_panel_given_a_path_opens_that_workspace_and_closes_it_with_itself(
    tmp_path: Path,
) -> None:
    with Workspace(tmp_path / "ws") as ws:
        Batch.create(["a"], workspace=ws, name="From a path")
    panel = History(tmp_path / "ws")
    assert [r["name"] for r in Page(panel).ok("list")["rows"]] == ["From a path"]
    panel.close()
    with pytest.raises(nbbatch.errors.StoreError, match="closed"):
        panel.workspace.history()
