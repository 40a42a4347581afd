"""The Compare table's message protocol, driven as the browser drives it (no browser)."""

from __future__ import annotations

import pytest

import nbbatch
from nbbatch import Params, Workspace
from nbbatch.engine import Comparison
from nbbatch.widgets import ComparePanel, CompareView
from tests.widgets.page import Page


@pytest.fixture
def ran(workspace: Workspace) -> Comparison:
    cmp = nbbatch.compare(
        ["a red fox", "a castle at night", "a koi pond"],
        ["demo", ("demo", {"label": "faulty", "fail_prompts": ["castle"]})],
        workspace=workspace,
        params=Params(size="64x64"),
    )
    return cmp.run_sync(retry=0)


def test_the_table_sends_columns_with_totals_and_rows_with_thumbnails(ran: Comparison) -> None:
    view = CompareView(ran)
    page = Page(view.table)
    hello = page.ok("hello")
    assert hello["rows"] == 3 and hello["strings"]["cmp_task"] == "Task"
    faulty = hello["columns"][1]
    assert (faulty["name"], faulty["succeeded"], faulty["failed"]) == ("faulty", 2, 1)
    reply = page.ok("rows", start=1, count=5)
    assert [r["row"] for r in reply["rows"]] == [1, 2]
    castle = reply["rows"][0]
    assert castle["prompt"] == "a castle at night"
    ok, bad = castle["cells"]
    assert ok["status"] == "succeeded" and ok["took"] is not None and ok["thumb"] == 0
    assert bad["status"] == "failed" and bad["thumb"] is None and bad["error"]
    assert len(reply["_buffers"]) == 3  # one thumbnail per cell with an image
    assert reply["_buffers"][0][:4] == b"RIFF"  # WebP
    view.close()


def test_a_cell_opens_the_gallery_and_pick_stars_the_winner(ran: Comparison) -> None:
    view = CompareView(ran, lang="zh")
    page = Page(view.table)
    shown: list[object] = []
    view.gallery.show = lambda task, image=0, **kw: shown.append((task, image))  # type: ignore[method-assign]
    page.ok("open", row=0, column=1)
    assert shown == [(ran.cell(0, "faulty").task, 0)]
    assert "还没有图片" in page.refused("open", row=1, column=1)
    page.ok("pick", row=2, column=0)
    assert [(w.row, w.configuration) for w in ran.winners()] == [(2, "demo")]
    assert page.of_type("changed")  # the star was announced to the page
    assert page.refused("rows", start=-1, count=3)
    assert page.refused("open", row=9, column=0)
    view.close()


def test_the_synced_state_holds_counts_only(ran: Comparison) -> None:
    panel = ComparePanel(ran)
    state = panel.get_state()
    assert (state["rows"], state["columns"]) == (3, 2)
    assert "a red fox" not in str(state)
    with pytest.raises(TypeError, match="Comparison"):
        ComparePanel(ran.batch)  # type: ignore[arg-type]
    panel.close()


async def test_run_from_the_table_then_retry_failed(workspace: Workspace) -> None:
    cmp = nbbatch.compare(
        ["a red fox", "a castle at night"],
        ["demo", ("demo", {"label": "faulty", "fail_prompts": ["castle"]})],
        workspace=workspace,
        params=Params(size="64x64"),
        retry=0,
    )
    panel = ComparePanel(cmp)
    page = Page(panel)
    page.ok("run")
    assert "already running" in page.refused("run")
    assert cmp.runner is not None
    await cmp.runner.wait()
    assert cmp.counts == {"succeeded": 3, "failed": 1}
    assert "Nothing to run" in page.refused("run")
    cmp.configurations[1].options["fail_prompts"] = []
    page.ok("run", retry_failed=True)
    await cmp.runner.wait()
    assert cmp.counts == {"succeeded": 4}
    panel.close()


def test_a_cell_whose_task_was_removed_shows_as_removed(ran: Comparison) -> None:
    ran.batch.remove(ran.cell(1, "faulty").task)
    page = Page(ComparePanel(ran))
    rows = page.ok("rows", start=0, count=3)["rows"]
    assert [r["row"] for r in rows] == [0, 1, 2]
    assert rows[1]["cells"][1]["status"] == "removed"
    assert rows[1]["prompt"] == "a castle at night"
    assert len(ran.cells()) == 5
    assert ran.summary_rows()[1]["cells"] == 2
    page.widget.close()


def test_a_new_comparison_from_the_form_uses_saved_configurations(ran: Comparison) -> None:
    settings = nbbatch.load_settings()
    settings.add(nbbatch.ProviderConfig("demo", name="my demo", params={"steps": 3}))
    nbbatch.save_settings(settings)
    view = CompareView(ran)
    page = Page(view.table)
    names = [c["name"] for c in page.ok("configurations")["configurations"]]
    assert names == ["my demo", "demo"]
    assert "one prompt" in page.refused("create", prompts=" \n ", configurations=["demo"])
    assert "Pick one" in page.refused("create", prompts="a", configurations=["elsewhere"])
    made = page.ok("create", prompts="a fox\n\na boat\n", configurations=["my demo", "demo"])
    shown = view.table.comparison
    assert shown.id == made["id"] != ran.id and view.comparison is shown
    assert shown.columns == ["my demo", "demo"] and len(shown) == 2
    assert shown.cell(1, "my demo").task.params.steps == 3
    assert (view.table.rows, view.table.columns) == (2, 2)
    assert view.gallery is view.table.gallery and view.children[1] is view.gallery
    assert page.of_type("reset")
    view.close()


def test_the_gallery_opened_from_a_cell_moves_across_configurations_and_down_tasks(
    ran: Comparison,
) -> None:
    view = CompareView(ran)
    table, gallery = Page(view.table), Page(view.gallery)
    table.ok("open", row=0, column=0)
    assert view.gallery.task_id == ran.cell(0, "demo").task.id

    def move(task_id: str, **how: int) -> tuple[int, str]:
        reply = gallery.ok("task", id=task_id, **how)
        cell = reply["cell"]
        assert (cell["rows"], cell["columns"]) == (3, 2)
        assert cell["label"] == ran.columns[cell["column"]]
        assert ran.locate(reply["task"]["id"]) == (cell["row"], cell["label"])
        return cell["row"], cell["label"]

    fox_demo, fox_faulty = ran.cell(0, "demo").task.id, ran.cell(0, "faulty").task.id
    assert move(fox_demo) == (0, "demo")  # where it opened, its caption the column
    assert move(fox_demo, step=0, across=1) == (0, "faulty")  # → the next configuration
    assert move(fox_faulty, step=0, across=1) == (0, "demo")  # wraps
    assert move(fox_demo, step=0, across=-1) == (0, "faulty")
    # ↓ the same configuration of the next task; the failed castle cell has no image
    assert move(fox_faulty, step=1) == (2, "faulty")
    assert move(fox_demo, step=1) == (1, "demo")
    assert move(fox_demo, step=-1) == (2, "demo")  # wraps
    # the launcher opens the gallery's usual browsing: the done tasks, no cells
    first = gallery.ok("task", step="first")
    assert "cell" not in first
    after = gallery.ok("task", id=fox_demo, step=1)
    assert "cell" not in after and after["pos"] == 1
    view.close()


def test_the_gallery_opened_from_the_grid_keeps_browsing_done_tasks(ran: Comparison) -> None:
    view = CompareView(ran)
    gallery = Page(view.gallery)
    fox_demo = ran.cell(0, "demo").task.id
    view.gallery.show(fox_demo)  # a grid's click or code: no cells
    reply = gallery.ok("task", id=fox_demo, step=1, across=1)
    assert "cell" not in reply and reply["pos"] == 1
    view.close()
