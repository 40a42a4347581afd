"""What a new user meets in BatchStudio(), in JupyterLab and in Notebook 7.

The first prompt's journey goes on in Notebook 7 (JupyterLab has the same steps in
test_inputs_flow, test_gallery and test_history): settings saved and used by Run all,
an image edited from the gallery into a task that runs, and a batch resumed from
History; one kernel and one page for all of it.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Locator, Page, expect


def setup_cell(lang: str | None = None) -> str:
    return f"""
import nbbatch, os, tempfile
os.environ["NBBATCH_CONFIG_DIR"] = tempfile.mkdtemp()  # a new user: nothing saved
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace(tempfile.mkdtemp())
batch = nbbatch.Batch.create(
    ["a red fox in snow"], workspace=ws, params=nbbatch.Params(size="256x192", n=3)
)
studio = BatchStudio(batch, provider=nbbatch.get_provider("demo", latency=0.05),
                     lang={lang!r})
studio
"""


def button(scope: Locator | Page, name: str) -> Locator:
    return scope.get_by_role("button", name=name, exact=True)


def grid_of(page: Page) -> Locator:
    grid = page.locator(".nbb-root").first
    expect(grid.locator(".nbb-row[data-task-id]").first).to_be_visible()
    return grid


@pytest.mark.timeout(600)
@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_the_gallery_keys_work_as_soon_as_it_opens(lab, app) -> None:  # type: ignore[no-untyped-def]
    # Notebook 7: focus sat on "Previous task" (disabled a moment later with one done
    # task) and ←/→ did nothing until the image was clicked.
    page = lab.open_notebook([setup_cell()], app=app)
    page.set_viewport_size({"width": 1400, "height": 1000})
    grid = grid_of(page)
    lab.screenshot(page, f"{app}-studio-light")
    # no lone Settings bar on top: it sits under the reference images
    settings_box = page.locator(".nbb-set").first.bounding_box()
    upload_box = page.locator(".nbb-up").first.bounding_box()
    assert settings_box and upload_box and settings_box["y"] > upload_box["y"]
    # the grid's first row is on screen under the inputs, without scrolling the page
    row = grid.locator(".nbb-row[data-task-id]").first
    box = row.bounding_box()
    assert box is not None and box["y"] < 1000, box
    row.scroll_into_view_if_needed()
    button(grid, "Run all").click()
    expect(grid.get_by_role("status")).to_have_text("Finished", timeout=60_000)
    thumb = row.locator(".nbb-c-results img").first
    expect(thumb).to_have_js_property("complete", True)
    thumb.click()
    dialog = page.get_by_role("dialog", name="Gallery")
    expect(dialog.locator(".nbb-g-imagepos")).to_have_text("1 / 3")
    page.keyboard.press("ArrowRight")  # no click on the image first
    expect(dialog.locator(".nbb-g-imagepos")).to_have_text("2 / 3")
    page.keyboard.press("End")
    expect(dialog.locator(".nbb-g-imagepos")).to_have_text("3 / 3")
    # a fresh result has no lineage to show: no "Made from none / Reworked into none"
    expect(dialog.get_by_text("Made from", exact=True)).to_have_count(0)
    lab.screenshot(page, f"{app}-gallery")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_a_new_users_first_prompt_works_offline(lab, app) -> None:  # type: ignore[no-untyped-def]
    page = lab.open_notebook(
        [
            "import nbbatch, os, tempfile\n"
            'os.environ["NBBATCH_CONFIG_DIR"] = tempfile.mkdtemp()\n'
            'os.environ.pop("OPENAI_API_KEY", None)\n'
            "from nbbatch.widgets import BatchStudio\n"
            "studio = BatchStudio(workspace=nbbatch.Workspace(tempfile.mkdtemp()))\n"
            "studio"
        ],
        app=app,
    )
    page.set_viewport_size({"width": 1400, "height": 1000})
    prompt = page.locator(".nbb-pp").first
    expect(prompt.get_by_role("radio", name="Template")).to_be_checked()
    # the empty grid points at the prompt panel above it
    expect(page.locator(".nbb-empty").first).to_contain_text("Create tasks")
    prompt.locator("textarea").first.fill("a {red|blue} fox in snow")
    prompt.get_by_role("button", name="Create tasks").click()
    add = prompt.get_by_role("button", name="Add 2 tasks to the batch")
    expect(add).to_be_visible()
    add.click()
    grid = grid_of(page)
    expect(grid.locator(".nbb-row[data-task-id]")).to_have_count(2)
    # the toolbar's picker shows names a person reads
    picker = grid.get_by_role("combobox", name="Provider")
    expect(picker.locator("option", has_text="Demo (offline, no key)")).to_have_count(1)
    lab.screenshot(page, f"{app}-first-prompt")
    if app == "notebook7":
        the_rest_of_the_journey(lab, page, grid)
    lab.set_theme(page, "dark")
    lab.screenshot(page, f"{app}-first-prompt-dark")


FAKE_WEBUI = """
from nbbatch.testing import FakeA1111
webui = FakeA1111().start()
print(webui.url)
"""

# made before the studio was opened on it: one task done, one never run ("incomplete")
EARLIER = """
earlier = nbbatch.Batch.create(["a heron at dawn", "a snowy owl"], name="Earlier batch",
                               workspace=studio.batch.workspace)
await earlier.run("demo", tasks=[earlier[0]])
"""


def py(lab, page: Page, code: str) -> object:  # type: ignore[no-untyped-def]
    return json.loads(lab.execute(page, f"import json; print(json.dumps({code}))"))


def the_rest_of_the_journey(lab, page: Page, grid: Locator) -> None:  # type: ignore[no-untyped-def]
    """Settings saved and used, Edit image from the gallery, Resume from History."""
    # (Notebook 7 itself throws one page error as it starts, "reading 'schema'" between
    # two yjs "Not same Y.Doc" warnings: only what comes after counts)
    console_before = len(lab.console)
    webui_url = lab.execute(page, FAKE_WEBUI).strip()
    lab.execute(page, EARLIER)
    # settings: a WebUI, saved; Run all runs on it
    page.locator(".nbb-set").first.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    dialog.get_by_role("combobox", name="Provider").select_option("a1111")
    dialog.get_by_role("textbox", name="Base URL", exact=True).fill(webui_url)
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.get_by_role("status")).to_contain_text("Saved to")
    lab.screenshot(page, "notebook7-settings-saved")
    dialog.get_by_role("button", name="Close").last.click()
    expect(dialog).to_be_hidden()
    expect(grid.get_by_role("combobox", name="Provider")).to_have_value("a1111")
    button(grid, "Run all").click()
    expect(grid.get_by_role("status")).to_have_text("Finished", timeout=60_000)
    expect(grid.locator(".nbb-badge")).to_have_text(["done"] * 2)
    assert py(lab, page, "len(webui.calls('/sdapi/v1/txt2img'))") == 2

    # the gallery: edit the first image into a new task, which runs
    row = grid.locator(".nbb-row[data-task-id]").first
    thumb = row.locator(".nbb-c-results img").first
    expect(thumb).to_have_js_property("complete", True)
    thumb.click()
    gallery = page.get_by_role("dialog", name="Gallery")
    # the image's details are drawn when the kernel's answer comes: clicked before that
    # (a loaded CI machine), the edit form opened in the pane that the answer then redrew
    expect(gallery.get_by_role("complementary", name="Details")).to_contain_text("Attempts")
    button(gallery, "Edit image").click()
    box = gallery.get_by_role("textbox", name="What should change in this image?")
    expect(box).to_be_focused()
    box.fill("the same fox at night")
    page.keyboard.press("Enter")
    expect(gallery.locator(".nbb-g-status")).to_contain_text("Task 3 was made from this image")
    lab.screenshot(page, "notebook7-edit-image")
    page.keyboard.press("Escape")
    expect(gallery).to_be_hidden()
    child = grid.locator(".nbb-row[data-task-id]").nth(2)
    expect(child.locator(".nbb-badge")).to_have_text("waiting")
    button(grid, "Run all").click()
    expect(child.locator(".nbb-badge")).to_have_text("done", timeout=60_000)
    expect(grid.get_by_role("status")).to_have_text("Finished", timeout=30_000)
    assert py(lab, page, "len(webui.calls('/sdapi/v1/img2img'))") == 1

    # History: the earlier batch, half done, resumed into the studio
    button(page.locator(".nbb-toolbar").first, "History").click()
    history = page.get_by_role("dialog", name="History")
    earlier = history.locator("tbody tr", has_text="Earlier batch")
    expect(earlier).to_contain_text("1 of 2 done")
    expect(history.locator("tbody tr")).to_have_count(2)
    lab.screenshot(page, "notebook7-history")
    button(earlier, "Resume · Earlier batch").click()
    expect(history).to_be_hidden()
    expect(grid.locator(".nbb-batchname")).to_have_text("Earlier batch")
    expect(grid.get_by_role("status")).to_have_text("Finished", timeout=60_000)
    expect(grid.locator(".nbb-badge")).to_have_text(["done"] * 2)
    # (the studio loaded the batch from the journal: not the object made above)
    assert py(lab, page, "[studio.batch.name, [t.status.value for t in studio.batch]]") == [
        "Earlier batch",
        ["succeeded"] * 2,
    ]
    # Resume goes on with what the batch ran on (demo), as the picker now says
    expect(grid.get_by_role("combobox", name="Provider")).to_have_value("demo")
    assert py(lab, page, "len(webui.calls('/sdapi/v1/txt2img'))") == 2
    assert not [c for c in lab.console[console_before:] if "pageerror" in c]


@pytest.mark.timeout(600)
def test_the_studio_in_chinese_and_dark(lab) -> None:  # type: ignore[no-untyped-def]
    page = lab.open_notebook(
        [
            "import nbbatch, os, tempfile\n"
            'os.environ["NBBATCH_CONFIG_DIR"] = tempfile.mkdtemp()\n'
            "from nbbatch.widgets import BatchStudio\n"
            'studio = BatchStudio(workspace=nbbatch.Workspace(tempfile.mkdtemp()), lang="zh")\n'
            "studio"
        ]
    )
    page.set_viewport_size({"width": 1400, "height": 1000})
    grid = page.locator(".nbb-root").first
    expect(grid.locator(".nbb-batchname")).to_contain_text("批次 ")  # named in Chinese
    button(grid, "历史").click()
    history = page.get_by_role("dialog", name="历史记录")
    expect(history.locator(".nbb-h-count")).to_have_text("1 个批次")  # "1 batches" in English
    lab.screenshot(page, "zh-history")
    page.keyboard.press("Escape")
    lab.set_theme(page, "dark")
    lab.screenshot(page, "zh-dark")
