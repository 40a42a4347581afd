"""The widget's message protocol, driven as the browser drives it (no browser needed)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

import nbbatch
from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.widgets import BatchStudio, TaskGrid
from tests.widgets.page import FakeClock, FakeScheduler, Page


@pytest.fixture
def batch(workspace: Workspace) -> Batch:
    return nbbatch.Batch.create(
        workspace=workspace,
        tasks=["a red fox in snow", "a lighthouse at dusk", "a koi pond", "FAILME a storm"],
        params=Params(size="512x384", seed=7),
    )


def quick_demo(**options: Any) -> nbbatch.Provider:
    return nbbatch.get_provider("demo", latency=0.0, fail_prompts=["FAILME"], **options)


# -- snapshot and rows ----------------------------------------------------------------------


def test_hello_answers_with_the_strings_of_the_language_and_the_counts(batch: Batch) -> None:
    page = Page(TaskGrid(batch, lang="zh"))
    reply = page.ok("hello")
    assert reply["strings"]["st_succeeded"] == "已完成"
    assert reply["strings"]["run_all"] == "全部运行"
    assert reply["summary"]["total"] == 4
    assert reply["summary"]["counts"]["idle"] == 4
    assert reply["notice"] is None


def test_rows_are_sent_for_the_window_asked_for_only(workspace: Workspace) -> None:
    big = nbbatch.Batch.create(
        workspace=workspace, tasks=[f"prompt number {i}" for i in range(1000)]
    )
    page = Page(TaskGrid(big))
    reply = page.ok("rows", start=100, end=130)
    assert reply["total"] == 1000
    assert reply["start"] == 100
    assert [r["n"] for r in reply["rows"]] == list(range(101, 131))
    assert reply["rows"][0]["p"] == "prompt number 100"
    # however much is asked for, one reply stays small
    assert len(page.ok("rows", start=0, end=10_000)["rows"]) == 400


def test_a_row_carries_what_the_grid_shows(batch: Batch) -> None:
    row = Page(TaskGrid(batch)).rows()[0]
    assert row["id"] == batch.tasks[0].id
    assert row["st"] == "idle"
    assert row["pm"] == "512×384 · seed 7"
    assert row["pc"] is None
    assert row["im"] == [] and row["rf"] == []


def test_rows_can_be_filtered_by_status_and_searched(batch: Batch) -> None:
    batch.tasks[1].status = TaskStatus.FAILED
    page = Page(TaskGrid(batch))
    assert [r["p"] for r in page.rows(filter="failed")] == ["a lighthouse at dusk"]
    assert [r["p"] for r in page.rows(query="KOI")] == ["a koi pond"]
    assert page.ok("rows", start=0, end=10, filter="succeeded")["total"] == 0
    assert "incomplete" in page.refused("rows", start=0, end=10, filter="bogus")


# -- errors are answered in words ----------------------------------------------------------


def test_an_unknown_request_gets_an_error_reply_and_the_widget_stays_usable(
    batch: Batch,
) -> None:
    page = Page(TaskGrid(batch))
    error = page.refused("frobnicate")
    assert "frobnicate" in error and "Reload the page" in error
    assert page.ok("rows", start=0, end=5)["total"] == 4


def test_a_request_that_is_not_an_object_is_shown_as_a_notice(batch: Batch) -> None:
    grid = TaskGrid(batch)
    page = Page(grid)
    grid._on_msg(grid, ["not", "a", "dict"], [])
    (notice,) = page.of_type("notice")
    assert notice["level"] == "error" and "Reload the page" in notice["text"]
    # and a view that renders later still sees it
    assert page.ok("hello")["notice"]["text"] == notice["text"]


def test_an_unexpected_error_is_one_sentence_and_the_traceback_goes_to_the_log(
    batch: Batch, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    grid = TaskGrid(batch)
    page = Page(grid)

    def broken(content: dict[str, Any]) -> None:
        raise ZeroDivisionError("boom")

    grid._handlers["rows"] = ("doing_rows", broken)
    with caplog.at_level(logging.ERROR, logger="nbbatch"):
        error = page.refused("rows", start=0, end=5)
    assert error == (
        "Something went wrong while loading the rows (ZeroDivisionError). "
        "Details are in the kernel log (logger 'nbbatch')."
    )
    assert "Traceback" not in error
    assert any(r.exc_info for r in caplog.records)


def test_errors_are_in_the_language_of_the_widget(batch: Batch) -> None:
    page = Page(TaskGrid(batch, lang="zh"))
    assert "请刷新页面" in page.refused("frobnicate")


# -- selection -------------------------------------------------------------------------------


def test_selection_is_a_list_of_ids_kept_in_python(batch: Batch) -> None:
    grid = TaskGrid(batch)
    page = Page(grid)
    a, b, c, d = (t.id for t in batch.tasks)
    page.ok("select", op="set", id=b)
    assert grid.selection == [b]
    page.ok("select", op="toggle", id=d)
    assert grid.selection == [b, d]
    page.ok("select", op="toggle", id=b)
    assert grid.selection == [d]
    page.ok("select", op="range", id=a, anchor=c)
    assert set(grid.selection) == {a, b, c, d}
    assert [t.id for t in grid.selected] == [a, b, c, d]
    page.ok("select", op="none")
    assert grid.selected == []
    page.ok("select", op="all", query="a l")  # "a lighthouse", "a koi"? no: only lighthouse
    assert grid.selection == [b]


def test_selecting_a_task_that_is_gone_says_so(batch: Batch) -> None:
    page = Page(TaskGrid(batch))
    assert "no longer exists" in page.refused("select", op="set", id="nope")


# -- thumbnails ------------------------------------------------------------------------------


async def test_thumbnails_come_as_binary_webp_buffers_for_keys_the_page_was_sent(
    batch: Batch,
) -> None:
    await batch.run(quick_demo())
    page = Page(TaskGrid(batch))
    rows = page.rows()
    keys = [k for r in rows for k in r["im"]]
    assert len(keys) == 3  # the FAILME task has none
    page.widget._on_msg(page.widget, {"type": "thumbs", "uuid": "t1", "keys": [*keys, "x"]}, [])
    # made in a worker thread, answered on the loop: wait for the reply, not for a time
    while not any(c.get("uuid") == "t1" for c, _ in page.sent):
        await asyncio.sleep(0.01)
    (content, buffers) = next((c, b) for c, b in page.sent if c.get("uuid") == "t1")
    assert content["ok"]
    assert content["keys"] == keys
    assert content["missing"] == ["x"]
    assert len(buffers) == 3
    assert all(b[:4] == b"RIFF" and b[8:12] == b"WEBP" for b in buffers)
    assert all(len(b) <= 24 * 1024 for b in buffers)
    assert all("RIFF" not in json.dumps(c) for c, _ in page.sent)  # never base64 in JSON


# -- live updates ----------------------------------------------------------------------------


async def test_a_run_sends_few_small_patches_for_the_rows_on_screen(workspace: Workspace) -> None:
    batch = nbbatch.Batch.create(
        workspace=workspace, tasks=[f"task {i}" for i in range(200)], params=Params(size="32x32")
    )
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    grid = TaskGrid(batch, _clock=clock, _scheduler=scheduler)
    page = Page(grid)
    page.rows(0, 20)  # the page shows the first 20 rows
    await batch.run(quick_demo(progress_steps=4), concurrency=8)
    scheduler.advance(0.2)
    patches = page.of_type("patch")
    assert 1 <= len(patches) <= 2  # the whole run happened "within one interval"
    rows = [r for p in patches for r in p.get("rows", [])]
    assert {r[0] for r in rows} <= {t.id for t in batch.tasks[:20]}
    final = patches[-1]
    assert final["summary"]["counts"]["succeeded"] == 200
    for r in rows:
        assert len(json.dumps(r, separators=(",", ":"))) < 200


async def test_tasks_that_finish_on_screen_come_whole_in_the_patch(batch: Batch) -> None:
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    page = Page(TaskGrid(batch, _clock=clock, _scheduler=scheduler))
    page.rows()
    await batch.run(quick_demo())
    scheduler.advance(1)
    (patch,) = page.of_type("patch")
    by_id = {r["id"]: r for r in patch["full"]}  # no round trip to show a result
    fox = by_id[batch.tasks[0].id]
    assert fox["st"] == "succeeded" and fox["im"] == [batch.tasks[0].images[0].sha256]
    storm = by_id[batch.tasks[3].id]
    assert storm["st"] == "failed" and "refuses" in storm["er"]


async def test_rows_off_screen_get_only_a_compact_patch(workspace: Workspace) -> None:
    batch = nbbatch.Batch.create(workspace=workspace, tasks=[f"t{i}" for i in range(300)])
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    page = Page(TaskGrid(batch, _clock=clock, _scheduler=scheduler))
    page.rows(0, 300)  # sent long ago: the most recent 150 count as on screen
    page.rows(150, 300)
    await batch.run(quick_demo(), tasks=batch.tasks[:10])
    scheduler.advance(1)
    (patch,) = page.of_type("patch")
    assert "full" not in patch
    by_id = {r[0]: r for r in patch["rows"]}
    # the run's start and end repaint every row the page holds (a stop resets queued
    # tasks without one event each), compactly
    assert len(by_id) == 300
    assert by_id[batch.tasks[0].id][1:5] == ["succeeded", None, 1, 1]
    assert by_id[batch.tasks[20].id][1:5] == ["idle", None, 0, 0]


async def test_a_studio_runs_the_batch_from_run_all(batch: Batch) -> None:
    studio = BatchStudio(batch, provider=quick_demo())
    page = Page(studio.grid)
    page.ok("run_all")
    run = studio.runner
    assert run is not None and studio.grid.run_state == "running"
    await run.wait()
    await asyncio.sleep(0)
    assert [t.status.value for t in batch.tasks] == ["succeeded"] * 3 + ["failed"]
    studio.grid._coalescer.flush_now()  # "Finished" goes out with the last results' patch
    assert studio.runner is run and run.done and studio.grid.run_state == "finished"
    assert len(studio.results) == 3
    assert "Nothing to run" in page.refused("run_all")


async def test_pause_resume_and_stop_go_to_the_live_run(batch: Batch) -> None:
    studio = BatchStudio(batch, provider=nbbatch.get_provider("demo", latency=0.2))
    page = Page(studio.grid)
    page.ok("run_all")
    page.ok("pause")
    assert studio.grid.run_state == "paused"
    page.ok("resume")
    assert studio.grid.run_state == "running"
    page.ok("stop")
    run = studio.runner
    if run is not None:
        await run.wait()
    await asyncio.sleep(0)
    studio.grid._coalescer.flush_now()  # with the patch of the last rows
    assert studio.grid.run_state == "stopped"
    assert all(t.status in (TaskStatus.IDLE, TaskStatus.INTERRUPTED) for t in batch.tasks)


async def test_retry_failed_runs_the_failed_tasks_again(batch: Batch) -> None:
    studio = BatchStudio(batch, provider=quick_demo())
    page = Page(studio.grid)
    await batch.run(quick_demo())
    storm = batch.tasks[3]
    attempts = storm.attempts
    page.ok("retry_failed")
    await studio.runner.wait()
    assert storm.status is TaskStatus.FAILED and storm.attempts > attempts


def test_retry_failed_without_failures_says_so(batch: Batch) -> None:
    assert "No failed task" in Page(BatchStudio(batch).grid).refused("retry_failed")


async def test_concurrency_is_live_and_kept_between_one_and_ten(batch: Batch) -> None:
    studio = BatchStudio(batch, provider=nbbatch.get_provider("demo", latency=0.2))
    page = Page(studio.grid)
    page.ok("set_concurrency", value=50)
    assert studio.concurrency == 10
    page.ok("run_all")
    page.ok("set_concurrency", value=2)
    assert studio.runner.concurrency == 2 and studio.concurrency == 2
    studio.runner.stop()
    await studio.runner.wait()


def test_the_provider_picker_offers_registered_names_and_keeps_a_provider_object(
    batch: Batch,
) -> None:
    provider = quick_demo()
    studio = BatchStudio(batch, provider=provider)
    page = Page(studio.grid)
    assert "demo" in studio.session.providers and "openai" in studio.session.providers
    page.ok("set_provider", name="openai")
    assert studio.provider == "openai"
    page.ok("set_provider", name="demo")
    assert studio.provider is provider  # its options (latency, failures) are kept
    assert "incomplete" in page.refused("set_provider", name="no-such-thing")


async def test_an_exception_that_ends_the_run_is_shown_in_the_widget(
    batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    studio = BatchStudio(batch, provider=quick_demo())
    page = Page(studio.grid)

    class Broken:
        state = "running"

        async def wait(self) -> None:
            raise RuntimeError("secret-ish details https://x.invalid/?key=test-key-1")

    with caplog.at_level(logging.ERROR, logger="nbbatch"):
        studio.session.watch(Broken())
        for _ in range(5):
            await asyncio.sleep(0)
    (notice,) = page.of_type("notice")
    assert notice["text"].startswith("The run ended with an unexpected error (RuntimeError)")
    assert "test-key" not in notice["text"]
    assert any("test-key" in r.exc_text for r in caplog.records if r.exc_text)


def test_run_all_outside_an_event_loop_explains_what_to_do(batch: Batch) -> None:
    page = Page(BatchStudio(batch).grid)
    assert "event loop" in page.refused("run_all")


# -- editing (issue 8's API) -----------------------------------------------------------------


def test_an_edit_is_saved_through_the_batch(batch: Batch) -> None:
    page = Page(TaskGrid(batch))
    fox = batch.tasks[0]
    page.ok("edit", id=fox.id, prompt="  a red fox in deep snow ")
    assert fox.prompt == "a red fox in deep snow"
    assert page.rows()[0]["p"] == "a red fox in deep snow"


def test_an_empty_prompt_is_refused_with_the_validation_message(batch: Batch) -> None:
    page = Page(TaskGrid(batch))
    error = page.refused("edit", id=batch.tasks[0].id, prompt="   ")
    assert "empty" in error
    assert batch.tasks[0].prompt == "a red fox in snow"


def test_delete_move_and_duplicate_change_the_rows(batch: Batch) -> None:
    grid = TaskGrid(batch)
    page = Page(grid)
    a, b, c, d = batch.tasks
    page.ok("move", id=a.id, index=2)
    assert [t.id for t in batch.tasks] == [b.id, c.id, a.id, d.id]
    page.ok("duplicate", id=c.id)
    assert len(batch.tasks) == 5 and batch.tasks[2].prompt == c.prompt
    page.ok("select", op="set", id=b.id)
    page.ok("delete", ids=[b.id, d.id])
    assert b.id not in {t.id for t in batch.tasks} and grid.selection == []
    assert [r["n"] for r in page.rows()] == [1, 2, 3]
    assert grid.count == 3


def test_delete_selected_needs_a_selection(batch: Batch) -> None:
    grid = TaskGrid(batch)
    page = Page(grid)
    assert "Select tasks first" in page.refused("delete_selected")
    page.ok("select", op="range", id=batch.tasks[1].id, anchor=batch.tasks[0].id)
    page.ok("delete_selected")
    assert len(batch.tasks) == 2


# -- what is synced (and may be saved into the notebook) -------------------------------------


def test_synced_state_is_small_and_holds_no_prompt(batch: Batch) -> None:
    studio = BatchStudio(batch, provider=quick_demo())
    Page(studio.grid).ok("select", op="all")
    state = studio.grid.get_state()
    for name in ("_esm", "_css"):
        state.pop(name, None)
    text = json.dumps(state, default=str)
    assert len(text) < 2000, text
    assert "fox" not in text and "lighthouse" not in text
    assert not any(isinstance(v, bytes | bytearray | memoryview) for v in state.values())
    assert set(studio.grid.keys) >= {"lang", "count", "selection", "run_state", "concurrency"}
