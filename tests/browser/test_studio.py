"""BatchStudio in a real JupyterLab / Notebook 7, used as a new user would.

The demo provider runs with a latency and a failing prompt so that every state shows:
waiting, queued, generating N%, done and failed. Screenshots of each step go to
test-artifacts/screenshots (gitignored) to be looked at.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
from playwright.sync_api import Locator, Page, expect

# rows showing a task (parked row nodes keep their last content, hidden)
ROW_BADGE = ".nbb-row[data-task-id] .nbb-badge"

PROMPTS = [
    "a red fox in snow, watercolour",
    "a lighthouse at dusk, oil painting with heavy impasto and a stormy sky over the cliffs",
    "a koi pond, ukiyo-e style",
    "FAILME a city at night in the rain",
    "a bowl of ramen, studio photo",
    "a sailing boat on a calm sea",
    "a snowy mountain cabin",
    "a robot reading a book",
]


# A demo provider whose requests the test lets finish one by one (provider.allow(n)
# in the kernel), so the test never races the run: each shows "generating 50%" and waits
# for a ticket; refusals (FAILME) fail at once as the demo's do.
GATED_PROVIDER = """
import asyncio
from nbbatch.providers._demo import DemoProvider

class GatedDemo(DemoProvider):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.tickets = asyncio.Semaphore(0)
        self.loop = None

    def allow(self, n):
        # from a cell: the run may live on another loop, so wake it thread-safely
        for _ in range(n):
            self.loop.call_soon_threadsafe(self.tickets.release)

    async def generate(self, request, on_progress=None):
        self.loop = asyncio.get_running_loop()
        if "FAILME" not in request.prompt:
            if on_progress is not None:
                on_progress(0.5, None)
            await self.tickets.acquire()
        return await super().generate(request, on_progress)

provider = GatedDemo(latency=0, fail_prompts=["FAILME"])
"""


def setup_cell(
    *, latency: float = 1.2, lang: str | None = None, prompts=PROMPTS, gated: bool = False
) -> str:
    make_provider = (
        GATED_PROVIDER
        if gated
        else f"""
provider = nbbatch.get_provider(
    "demo", latency={latency}, fail_prompts=["FAILME"], progress_steps=6
)
"""
    )
    return f"""
import nbbatch, tempfile
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace(tempfile.mkdtemp())
batch = nbbatch.Batch.create(
    {prompts!r}, workspace=ws, params=nbbatch.Params(size="512x384", seed=7)
)
{make_provider}
studio = BatchStudio(batch, provider=provider, concurrency=2, lang={lang!r},
                     panels=["grid", "gallery", "history"])
studio
"""


def studio_of(page: Page) -> Locator:
    root = page.locator(".nbb-root").first
    expect(root.get_by_role("grid", name=re.compile("Tasks|任务"))).to_be_visible()
    expect(root.locator(".nbb-row[data-task-id]").first).to_be_visible()
    return root


def ids(lab, page: Page) -> list[str]:
    return json.loads(lab.execute(page, "import json; print(json.dumps([t.id for t in batch]))"))


def statuses(lab, page: Page) -> list[str]:
    out = lab.execute(page, "import json; print(json.dumps([t.status.value for t in batch]))")
    return json.loads(out)


def row(studio: Locator, task_id: str) -> Locator:
    return studio.locator(f'.nbb-row[data-task-id="{task_id}"]')


def button(scope: Locator, name: str) -> Locator:
    return scope.get_by_role("button", name=name, exact=True)


def test_run_pause_resume_stop_run_again_and_retry_failed(lab, context) -> None:
    # "Notify me when done": the permission granted, the notifications shown recorded (in
    # this test's own context: its notebook is not opened in the shared JupyterLab page)
    context.grant_permissions(["notifications"])
    context.add_init_script(
        "window.__nbbShown = []; const N = window.Notification; window.Notification ="
        " class extends N { constructor(t, o) { super(t, o); window.__nbbShown.push(o.body); } };"
    )
    # the provider finishes a request only when the test allows it (no racing the run)
    page = lab.open_notebook([setup_cell(gated=True)])
    studio = studio_of(page)
    task_ids = ids(lab, page)
    for tid in task_ids:
        expect(row(studio, tid).locator(".nbb-badge")).to_have_text("waiting")
    lab.screenshot(page, "1-shown")

    button(studio, "Run all").click()
    expect(studio.locator(ROW_BADGE, has_text=re.compile(r"^generating \d+%$"))).to_have_count(2)
    expect(studio.locator(ROW_BADGE, has_text="queued").first).to_be_visible()
    lab.screenshot(page, "2-running")

    # Pause: the two in flight finish, nothing new starts
    button(studio, "Pause").click()
    expect(studio.get_by_role("status")).to_have_text(re.compile("Paused"))
    lab.execute(page, "provider.allow(2)")
    expect(studio.locator(ROW_BADGE, has_text="generating")).to_have_count(0, timeout=15_000)
    expect(studio.locator(ROW_BADGE, has_text="done")).to_have_count(2)
    before = statuses(lab, page)
    page.wait_for_timeout(1000)  # a paused run starts nothing, however long one waits
    assert statuses(lab, page) == before
    assert before.count("queued") == 6
    lab.screenshot(page, "3-paused")

    button(studio, "Resume").click()
    # tasks 2 and 4 in flight (3, the refusal, failed at once); 5, 6 and 7 queued
    expect(studio.locator(ROW_BADGE, has_text="generating")).to_have_count(2)

    # Run next on the last queued task: it is the next to start
    last = task_ids[-1]
    expect(row(studio, last).locator(".nbb-badge")).to_have_text("queued")
    button(row(studio, last), "Run next").click()
    expect(row(studio, last).locator(".nbb-badge")).to_have_text("queued")
    lab.execute(page, "provider.allow(1)")  # one slot frees
    expect(row(studio, last).locator(".nbb-badge")).to_have_text(
        re.compile("generating"), timeout=15_000
    )

    button(studio, "Stop").click()
    expect(studio.get_by_role("status")).to_have_attribute("data-state", "stopped", timeout=15_000)
    expect(studio.get_by_role("status")).to_have_text("Stopped")
    after_stop = statuses(lab, page)
    assert "queued" not in after_stop and "running" not in after_stop
    lab.screenshot(page, "4-stopped")

    lab.execute(page, "provider.allow(100)")  # from here on every request may finish
    studio.get_by_role("checkbox", name="Notify me when done").check()
    button(studio, "Run all").click()
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=60_000)
    page.wait_for_function("window.__nbbShown.length > 0")
    shown = page.evaluate("window.__nbbShown")
    assert len(shown) == 1 and re.search(r"finished: 7 done, 1 failed of 8\.$", shown[0]), shown
    final = statuses(lab, page)
    assert final.count("succeeded") == 7 and final[3] == "failed"
    for i, tid in enumerate(task_ids):
        badge = row(studio, tid).locator(".nbb-badge")
        if i == 3:
            expect(badge).to_have_text("failed")
        else:
            expect(badge).to_have_text("done")
            thumb = row(studio, tid).locator(".nbb-c-results img")
            expect(thumb).to_have_count(1)
            expect(thumb).to_have_js_property("complete", True)
            assert thumb.evaluate("img => img.naturalWidth") > 0
    expect(studio.get_by_text("7 done")).to_be_visible()
    expect(studio.get_by_text("1 failed")).to_be_visible()
    lab.screenshot(page, "5-finished")

    failed_row = row(studio, task_ids[3])
    failed_row.locator(".nbb-err").click()  # the failure reason, in full
    expect(studio.locator(".nbb-popover")).to_contain_text("simulated refusal")
    assert lab.execute(page, "print(batch[3].attempts)") == "1\n"
    button(studio, "Retry failed").click()
    expect(failed_row.locator(".nbb-attempts")).to_have_text("attempt 2", timeout=30_000)
    expect(failed_row.locator(".nbb-badge")).to_have_text("failed")
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=30_000)
    # "elapsed" is the batch's run time (the paused second included), not the instant
    # retry's own: it said "elapsed 0:00" here
    elapsed = studio.locator(".nbb-stat", has_text="elapsed")
    expect(elapsed).to_have_text(re.compile(r"^elapsed \d+:\d\d$"))
    expect(elapsed).not_to_have_text("elapsed 0:00")
    lab.screenshot(page, "6-retried")
    assert not [c for c in lab.console if "pageerror" in c]


def test_reload_reattaches_and_the_dark_theme_follows(lab) -> None:
    page = lab.open_notebook([setup_cell(latency=0.05)])
    studio = studio_of(page)
    button(studio, "Run all").click()
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=30_000)
    lab.add_cell(page, "studio.grid.selection = [batch[0].id, batch[1].id]")
    expect(studio.locator('.nbb-row[aria-selected="true"]')).to_have_count(2)

    light = studio.evaluate("el => getComputedStyle(el).backgroundColor")
    lab.set_theme(page, "dark")
    dark = studio.evaluate("el => getComputedStyle(el).backgroundColor")
    assert dark != light
    lab.screenshot(page, "dark")

    lab.reload(page)
    studio = studio_of(page)
    expect(studio.get_by_role("status")).to_have_text("Finished")
    expect(studio.locator(ROW_BADGE, has_text="done")).to_have_count(7)
    expect(studio.locator('.nbb-row[aria-selected="true"]')).to_have_count(2)
    expect(studio.get_by_text("7 done")).to_be_visible()
    lab.screenshot(page, "reloaded-dark")
    lab.set_theme(page, "light")


def test_changes_made_in_python_show_up_and_a_second_display_shares_the_state(lab) -> None:
    page = lab.open_notebook([setup_cell(latency=0.05, prompts=PROMPTS[:3])])
    studio_of(page)
    lab.add_cell(page, 'batch.add(["a new task from Python"]); studio')
    lab.add_cell(page, "from nbbatch.widgets import TaskGrid; TaskGrid(batch)")
    views = page.locator(".nbb-root")
    expect(views).to_have_count(3)
    for view in (views.nth(0), views.nth(1), views.nth(2)):
        expect(view.get_by_text("a new task from Python")).to_be_visible()
    expect(button(views.nth(2), "Run all")).to_have_count(0)  # the grid alone: no toolbar
    lab.add_cell(page, "await batch.run(provider)")
    for view in (views.nth(0), views.nth(1), views.nth(2)):
        expect(view.locator(ROW_BADGE, has_text="done")).to_have_count(4)

    # Another kernel (a second process) runs two new tasks: Run all here says so instead
    # of starting or "Finished", the studio follows that run, and runs again after it.
    lab.add_cell(page, OTHER_KERNEL)
    studio = views.nth(0)
    button(studio, "Run all").click()
    expect(studio.get_by_role("alert")).to_contain_text(
        "2 task(s) of this batch are being run by another kernel"
    )
    expect(studio.get_by_role("status")).to_have_text("2 task(s) are being run by another kernel")
    expect(button(studio, "Run all")).to_be_disabled()
    lab.screenshot(page, "another-kernel-runs")
    lab.execute(page, "other.stdin.write('go\\n'); other.stdin.flush()")
    expect(studio.get_by_role("alert")).to_contain_text(
        "The other kernel's run of this batch has ended", timeout=60_000
    )
    for view in (views.nth(0), views.nth(1), views.nth(2)):
        expect(view.locator(ROW_BADGE, has_text="done")).to_have_count(6)
    expect(button(studio, "Run all")).to_be_enabled()
    done = lab.execute(page, "print(other.wait(60), other.stdout.read().split()[-1])")
    assert done == "0 succeeded\n"


# A second process that runs the batch's new tasks one at a time, each request waiting
# until the notebook writes a line to its stdin (nothing races the test).
OTHER_KERNEL = '''
import subprocess, sys
OTHER = """
import asyncio, sys
from nbbatch import Batch, Workspace
from nbbatch.events import TaskStarted
from nbbatch.providers import DemoProvider
gate = []
class Gated(DemoProvider):
    async def generate(self, request, on_progress=None):
        if not gate:
            gate.append(asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline)))
        await asyncio.shield(gate[0])
        return await super().generate(request, on_progress)
ws = Workspace(sys.argv[1])
batch = Batch.load(sys.argv[2], ws)
batch.subscribe(lambda e: isinstance(e, TaskStarted) and print("RUNNING", flush=True))
batch.run_sync(Gated(latency=0), concurrency=1)
print("DONE", batch.status, flush=True)
ws.close()
"""
batch.add(["a task another kernel runs", "and another one"])
other = subprocess.Popen([sys.executable, "-c", OTHER, str(ws.path), batch.id],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
print(other.stdout.readline().strip())
'''


def test_filter_search_and_select_all(lab) -> None:
    page = lab.open_notebook([setup_cell(latency=0.05)])
    studio = studio_of(page)
    button(studio, "Run all").click()
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=30_000)
    studio.locator(".nbb-fchip", has_text="failed").click()
    # list form: waits for exactly these rows (a transient state never passes it)
    expect(studio.locator(ROW_BADGE)).to_have_text(["failed"])
    studio.locator(".nbb-fchip", has_text="All").click()
    expect(studio.locator(ROW_BADGE)).to_have_count(8)
    studio.get_by_role("searchbox", name="Search prompts").fill("ramen")
    shown = studio.locator(".nbb-row[data-task-id] .nbb-ptext")
    expect(shown).to_have_text(["a bowl of ramen, studio photo"])
    studio.get_by_role("searchbox", name="Search prompts").fill("")
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(8)
    studio.get_by_role("checkbox", name="Select all").click()
    expect(studio.get_by_text("8 selected")).to_be_visible()
    assert lab.execute(page, "print(len(studio.selected))") == "8\n"
    lab.screenshot(page, "all-selected")


def test_the_quickstart_notebook_opens_on_the_studio(lab) -> None:
    quickstart = Path(__file__).resolve().parents[2] / "notebooks" / "01-quickstart.ipynb"
    nb = nbformat.read(quickstart, as_version=4)
    first = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "BatchStudio(" in first
    page = lab.open_notebook([first])
    studio = studio_of(page)
    button(studio, "Run all").click()
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=60_000)
    expect(studio.locator(ROW_BADGE, has_text="done")).to_have_count(3)
    expect(studio.locator(".nbb-row[data-task-id] .nbb-c-results img")).to_have_count(6)  # n=2
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nbb-row[data-task-id] .nbb-c-results img')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    lab.screenshot(page, "quickstart")


def test_the_grid_is_usable_from_the_keyboard(lab) -> None:
    page = lab.open_notebook([setup_cell(latency=0.05)])
    studio = studio_of(page)
    task_ids = ids(lab, page)
    first = row(studio, task_ids[0])
    first.click(position={"x": 200, "y": 8})
    expect(first).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(row(studio, task_ids[2])).to_be_focused()
    page.keyboard.press("Space")
    expect(row(studio, task_ids[2])).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Shift+ArrowDown")
    # row 1 (clicked), row 3 (Space) and row 4 (Shift+↓ from the anchor, row 3); waiting
    # for 2 only passed while the range reply was still on its way
    expect(row(studio, task_ids[3])).to_have_attribute("aria-selected", "true")
    expect(studio.locator('.nbb-row[aria-selected="true"]')).to_have_count(3)
    # the notebook did not take the keys (no cell moved, none was added)
    assert len(page.locator(".jp-Cell").all()) == 1
    page.keyboard.press("Alt+ArrowUp")  # the 4th row moves up to 3rd
    page.wait_for_function(
        "id => document.querySelector(`.nbb-row[data-task-id='${id}'] .nbb-num`)"
        ".textContent === '3'",
        arg=task_ids[3],
    )


def test_lang_zh_renders_chinese_labels(lab) -> None:
    page = lab.open_notebook([setup_cell(latency=0.05, lang="zh")])
    studio = studio_of(page)
    expect(studio.get_by_role("grid", name="任务")).to_be_visible()
    expect(button(studio, "全部运行")).to_be_visible()
    expect(studio.locator(ROW_BADGE).first).to_have_text("等待中")
    button(studio, "全部运行").click()
    expect(studio.get_by_role("status")).to_have_text("已完成", timeout=30_000)
    expect(studio.locator(ROW_BADGE, has_text="失败")).to_have_count(1)
    lab.screenshot(page, "zh")


def test_the_studio_runs_in_notebook_7(lab) -> None:
    page = lab.open_notebook([setup_cell(latency=0.3)], app="notebook7")
    studio = studio_of(page)
    button(studio, "Run all").click()
    expect(studio.locator(ROW_BADGE, has_text="generating").first).to_be_visible()
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=60_000)
    expect(studio.locator(ROW_BADGE, has_text="done")).to_have_count(7)
    lab.screenshot(page, "notebook7")


def test_edit_delete_reorder_and_bulk_delete(lab) -> None:
    page = lab.open_notebook([setup_cell(latency=0.05)])
    studio = studio_of(page)
    task_ids = ids(lab, page)
    fox = row(studio, task_ids[0])

    # edit, then cancel with Esc: nothing changes
    button(fox, "Edit").click()
    editor = fox.get_by_role("textbox")
    expect(editor).to_be_focused()
    editor.fill("a red fox, changed my mind")
    page.keyboard.press("Escape")
    expect(fox.locator(".nbb-ptext")).to_have_text(PROMPTS[0])
    assert lab.execute(page, "print(batch[0].prompt)").strip() == PROMPTS[0]

    # edit with Shift+Enter for a new line, save with Enter
    button(fox, "Edit").click()
    editor.fill("a red fox in deep snow")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("at dawn")
    page.keyboard.press("Enter")
    expect(fox.get_by_role("textbox")).to_have_count(0)
    assert lab.execute(page, "print(repr(batch[0].prompt))").strip() == repr(
        "a red fox in deep snow\nat dawn"
    )
    lab.screenshot(page, "edited")

    # an empty prompt is refused with the validation message; Cancel edit leaves it
    button(fox, "Edit").click()
    editor.fill("   ")
    button(fox, "Save").click()
    expect(fox.get_by_role("alert")).to_contain_text("empty")
    lab.screenshot(page, "refused")
    button(fox, "Cancel edit").click()

    # delete one
    button(row(studio, task_ids[7]), "Delete").click()
    expect(row(studio, task_ids[7])).to_have_count(0)

    # reorder two by drag: the lighthouse (2nd) below the koi pond (3rd)
    grip = row(studio, task_ids[1]).locator(".nbb-grip")
    grip.drag_to(row(studio, task_ids[2]), target_position={"x": 300, "y": 56})
    page.wait_for_function(
        "id => document.querySelector(`.nbb-row[data-task-id='${id}'] .nbb-num`)"
        ".textContent === '3'",
        arg=task_ids[1],
    )
    assert ids(lab, page)[:3] == [task_ids[0], task_ids[2], task_ids[1]]

    # select two (click, Ctrl+click) and delete them
    row(studio, task_ids[4]).click(position={"x": 200, "y": 8})
    row(studio, task_ids[5]).click(position={"x": 200, "y": 8}, modifiers=["Control"])
    expect(studio.get_by_text("2 selected")).to_be_visible()
    button(studio, "Delete selected").click()
    expect(row(studio, task_ids[4])).to_have_count(0)
    expect(row(studio, task_ids[5])).to_have_count(0)
    assert len(ids(lab, page)) == 5
    lab.screenshot(page, "after-deletes")
