"""The History panel in a real JupyterLab, used as a person would, on the demo provider.

Two batches are run (one from Python, one with the studio's Run all); History opens from
the studio's toolbar and lists both, newest first; the older one is opened into the
studio, the newer one renamed and deleted (after a confirmation). Then a third batch is
started on a provider that never answers for some tasks, and its kernel is killed
(SIGKILL) mid-run. A new notebook opens the same workspace in a Chinese studio: History
shows the batch interrupted, nothing is sent until Resume is pressed, and Resume
finishes it. Screenshots (light, dark, Chinese) go to test-artifacts.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

SETUP = """
import asyncio, nbbatch
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace({path!r})
older = nbbatch.Batch.create(
    ["a red fox in snow", "a koi pond, ukiyo-e", "FAILME a storm at sea"], workspace=ws,
    name="Older batch", params=nbbatch.Params(size="256x256", n=2),
)
await older.run(nbbatch.get_provider("demo", fail_prompts=["FAILME"]), retry=0)
newer = nbbatch.Batch.create(
    ["a lighthouse at dusk", "a bowl of ramen"], workspace=ws, name="Newer batch",
    params=nbbatch.Params(size="256x256"),
)
studio = BatchStudio(newer, provider=nbbatch.get_provider("demo", latency=0.05),
                     panels=["grid", "gallery", "history"])
studio
"""

# A provider that makes the first prompt's image and never answers for the others: the
# kernel is killed while those are running.
HANG = """
import os
from nbbatch.providers import Capabilities, Provider

class Hang(Provider):
    name = "hang"
    capabilities = Capabilities(txt2img=True)

    def __init__(self):
        self.demo = nbbatch.get_provider("demo")

    async def generate(self, request, on_progress=None):
        if request.prompt.startswith("one"):
            return await self.demo.generate(request)
        await asyncio.Event().wait()

killed = nbbatch.Batch.create(["one: a fox", "two: a koi", "three: a storm"], workspace=ws,
                              name="Killed batch", params=nbbatch.Params(size="256x256"))
run = killed.start(Hang(), concurrency=3)
while killed.counts.get("succeeded", 0) < 1 or killed.counts.get("running", 0) < 2:
    await asyncio.sleep(0.02)
print(os.getpid())
"""

REOPEN = """
import nbbatch
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace({path!r})
studio = BatchStudio(workspace=ws, provider=nbbatch.get_provider("demo", latency=0.05),
                     lang="zh", panels=["grid", "gallery", "history"])
studio
"""


def button(scope: Locator | Page, name: str) -> Locator:
    return scope.get_by_role("button", name=name, exact=True)


def py(lab, page: Page, code: str) -> object:
    return json.loads(lab.execute(page, f"import json; print(json.dumps({code}))"))


def open_history(page: Page, label: str = "History", *, keyboard: bool = False) -> Locator:
    trigger = button(page.locator(".nbb-toolbar"), label)
    if keyboard:
        trigger.focus()
        page.keyboard.press("Enter")
    else:
        trigger.click()
    dialog = page.get_by_role("dialog", name="History" if label == "History" else "历史记录")
    expect(dialog).to_be_visible()
    expect(dialog.locator("tbody tr").first).to_be_visible()
    return dialog


@pytest.mark.timeout(300)
def test_history_lists_opens_and_resumes_a_batch_killed_mid_run(lab, tmp_path: Path) -> None:
    path = str(tmp_path / "ws")
    page = lab.open_notebook([SETUP.format(path=path)])
    studio = page.locator(".nbb-root").first
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(2)
    button(studio, "Run all").click()
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=60_000)

    # the list: newest first, with what each batch did
    dialog = open_history(page)
    rows = dialog.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".nbb-h-name")).to_have_text("Newer batch")
    expect(rows.nth(1).locator(".nbb-h-name")).to_have_text("Older batch")
    older = rows.nth(1)
    expect(older).to_contain_text("2 of 3 done")
    expect(older).to_contain_text("1 failed")
    expect(older).to_contain_text("67%")
    expect(older.locator(".nbb-h-strip img")).to_have_count(4)  # thumbnails, lazily
    expect(rows.nth(0).locator(".nbb-h-here")).to_be_visible()  # the one the studio shows
    expect(button(rows.nth(0), "Open · Newer batch")).to_be_disabled()
    lab.screenshot(page, "1-list-light")
    search = dialog.get_by_role("searchbox", name="Search batches")
    search.fill("older")
    expect(rows.filter(visible=True)).to_have_count(1)
    expect(dialog.locator(".nbb-h-count")).to_have_text("1 of 2 batches")
    search.press("Escape")  # clears the search, the dialog stays
    expect(rows.filter(visible=True)).to_have_count(2)
    expect(dialog).to_be_visible()

    # the stats tab
    dialog.get_by_role("tab", name="Stats").click()
    stats = dialog.locator(".nbb-h-stats")
    expect(stats.locator("tbody tr")).to_have_count(1)
    expect(stats).to_contain_text("demo")
    expect(stats).to_contain_text("80%")  # 4 of 5 tasks succeeded on demo
    lab.screenshot(page, "2-stats-light")
    dialog.get_by_role("tab", name="Batches").click()

    # open the older batch: the studio switches to it
    button(older, "Open · Older batch").click()
    expect(dialog).to_be_hidden()
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(3)
    expect(studio).to_contain_text("a red fox in snow")
    expect(studio.locator(".nbb-stats")).to_contain_text("1 failed")
    expect(studio.locator(".nbb-batchname")).to_have_text("Older batch")
    assert py(lab, page, "studio.batch.name") == "Older batch"
    lab.screenshot(page, "3-opened-older")

    lab.set_theme(page, "dark")
    dialog = open_history(page, keyboard=True)
    expect(dialog.get_by_role("tab", name="Batches")).to_be_focused()  # keys go to the dialog
    expect(dialog.locator("tr.nbb-h-current .nbb-h-name")).to_have_text("Older batch")
    lab.screenshot(page, "4-list-dark")

    # rename from the keyboard, then delete with a confirmation
    newer = dialog.locator("tbody tr", has_text="Newer batch")
    button(newer, "Rename · Newer batch").click()
    field = dialog.get_by_role("textbox", name="New name for Newer batch")
    expect(field).to_be_focused()
    field.fill("Sunset set")
    field.press("Enter")
    renamed = dialog.locator("tbody tr", has_text="Sunset set")
    expect(renamed.locator(".nbb-h-name")).to_have_text("Sunset set")
    button(renamed, "Delete · Sunset set").click()
    confirm = dialog.get_by_role("alertdialog", name="Delete batch")
    expect(confirm).to_contain_text("Delete “Sunset set” and its 2 tasks?")
    lab.screenshot(page, "5-confirm-delete-dark")
    button(confirm, "Delete batch").click()
    expect(dialog.locator("tbody tr")).to_have_count(1)
    expect(dialog.get_by_role("status")).to_contain_text("Deleted “Sunset set” (2 image files")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(button(page.locator(".nbb-toolbar"), "History")).to_be_focused()  # back where it was
    lab.set_theme(page, "light")

    # a run killed with its kernel
    lab.add_cell(page, HANG)
    pid = int(lab.execute(page, "print(os.getpid())").strip())
    os.kill(pid, signal.SIGKILL)
    page.close()

    again = lab.open_notebook([REOPEN.format(path=path)])
    studio = again.locator(".nbb-root").first
    expect(studio.get_by_role("status")).to_have_text("就绪")
    dialog = open_history(again, "历史")
    killed = dialog.locator("tbody tr", has_text="Killed batch")
    expect(killed.locator(".nbb-h-badge")).to_have_text("已中断")
    expect(killed).to_contain_text("1 / 3 完成")
    expect(killed).to_contain_text("2 个中断")
    expect(killed.locator(".nbb-h-strip img")).to_have_count(1)
    expect(
        dialog.locator("tbody tr", has_text="Older batch").locator(".nbb-h-strip img")
    ).to_have_count(4)
    lab.screenshot(again, "6-interrupted-zh")
    counts = py(lab, again, "ws.history()[1].counts")
    assert counts == {"succeeded": 1, "interrupted": 2}  # nothing sent before Resume

    button(killed, "继续 · Killed batch").click()
    expect(dialog).to_be_hidden()
    expect(studio.get_by_role("status")).to_have_text("已完成", timeout=60_000)
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(3)
    done = py(lab, again, "[t.status.value for t in studio.batch]")
    assert done == ["succeeded"] * 3
    dialog = open_history(again, "历史")
    killed = dialog.locator("tbody tr", has_text="Killed batch")
    expect(killed.locator(".nbb-h-badge")).to_have_text("完成")
    expect(killed.locator(".nbb-h-strip img")).to_have_count(3)
    lab.screenshot(again, "7-resumed-zh")
    dialog.get_by_role("tab", name="统计").click()
    stats = dialog.locator(".nbb-h-stats")
    expect(stats.locator("tbody tr")).to_have_count(2)  # demo and the provider killed
    expect(stats.locator("tbody tr", has_text="hang")).to_contain_text("1 / 1 完成")
    lab.screenshot(again, "8-stats-zh")


ALONE = """
import nbbatch
from nbbatch.widgets import History
ws = nbbatch.Workspace({path!r})
done = nbbatch.Batch.create(["a fox", "a koi"], workspace=ws, name="Made earlier")
await done.run("demo")
History(ws)
"""


def test_history_alone_in_a_cell_lists_and_renames_without_opening(lab, tmp_path: Path) -> None:
    page = lab.open_notebook([ALONE.format(path=str(tmp_path / "ws"))])
    panel = page.locator(".nbb-h-inline")
    row = panel.locator("tbody tr", has_text="Made earlier")
    expect(row).to_contain_text("2 of 2 done")
    expect(row.locator(".nbb-h-strip img")).to_have_count(2)
    expect(button(row, "Open · Made earlier")).to_be_hidden()  # no studio to open it in
    button(row, "Rename · Made earlier").click()
    field = panel.get_by_role("textbox", name="New name for Made earlier")
    field.fill("Kept")
    field.press("Enter")
    expect(panel.locator(".nbb-h-name")).to_have_text("Kept")
    fits = "(el) => el.scrollWidth <= el.clientWidth"  # every column in a notebook's width
    assert panel.locator(".nbb-h-scroll").first.evaluate(fits)
    lab.screenshot(page, "alone-light")
