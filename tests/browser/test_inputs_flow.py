"""The studio's inputs as a whole, in a real browser, used as a new user would: the flow
in Notebook 7, a folder dropped from the desktop, an AUTOMATIC1111 image remixed, presets
managed where they are picked, and settings that decide what "Run all" runs on.

Screenshots go to test-artifacts/screenshots (gitignored) to be looked at.
"""

from __future__ import annotations

import base64
import io
import json
import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import Page, expect

from tests.browser.test_inputs import drop, names, png, tiles

# the preview's button is named as it reads ("Add 3 tasks to the batch")
ADD_TASKS = re.compile(r"^Add \d+ tasks? to the batch$")

A1111_PROMPT = "a lighthouse at dusk, oil painting"


def a1111_png(prompt: str = A1111_PROMPT) -> bytes:
    """A PNG as AUTOMATIC1111 saves it: its parameters in a 'parameters' text chunk."""
    info = PngInfo()
    info.add_text(
        "parameters",
        f"{prompt}\nNegative prompt: blurry, text\n"
        "Steps: 24, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 1234, Size: 320x240, Model: dreamy",
    )
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 200)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def studio_cell(*, provider: str | None = '"demo"', lang: str | None = None) -> str:
    given = f"provider={provider}," if provider else ""
    return f"""
import nbbatch, os, tempfile
os.environ["NBBATCH_CONFIG_DIR"] = tempfile.mkdtemp()  # a new user: no saved settings
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace(tempfile.mkdtemp())
studio = BatchStudio(workspace=ws, {given} lang={lang!r})
studio
"""


def upload_of(page: Page):  # type: ignore[no-untyped-def]
    """The drop zone's widget, once it is on the page (a drop before it would be lost)."""
    up = page.locator(".nbb-up").first
    expect(up.locator(".nbb-up-zone")).to_be_visible()
    return up


def rows(page: Page):  # type: ignore[no-untyped-def]
    return page.locator(".nbb-root").first.locator(".nbb-row[data-task-id]")


def lines_to_tasks(page: Page, text: str) -> None:
    panel = page.locator(".nbb-pp").first
    panel.get_by_role("radio", name="One per line").check()
    panel.get_by_role("textbox", name="Master prompt").fill(text)
    panel.get_by_role("button", name="Create tasks").click()
    panel.get_by_role("button", name=ADD_TASKS).click()
    expect(panel.get_by_role("alert")).to_contain_text("tasks added to the batch")


def test_drop_create_and_run_in_notebook_7(lab) -> None:
    page = lab.open_notebook([studio_cell()], app="notebook7")
    up = upload_of(page)
    drop(page, {"mug.png": png((200, 60, 40)), "jar.png": png((60, 80, 200))})
    expect(tiles(up)).to_have_count(2)
    panel = page.locator(".nbb-pp").first
    panel.get_by_role("radio", name="Same prompt for every image").check()
    expect(panel.locator(".nbb-pp-count")).to_have_text("2 tasks: one per image")
    panel.get_by_role("textbox", name="Master prompt").fill("the same object as a watercolour")
    panel.get_by_role("button", name="Create tasks").click()
    panel.get_by_role("button", name=ADD_TASKS).click()
    expect(rows(page)).to_have_count(2)
    grid = page.locator(".nbb-root").first
    grid.get_by_role("button", name="Run all").click()
    expect(grid.locator(".nbb-badge", has_text="done")).to_have_count(2)
    lab.screenshot(page, "1-notebook7-ran")


# Chromium cannot synthesise a dropped directory: the entry API of the dropped item is
# replaced by a tree of the same shape (directory entries with readers that answer in
# batches, then an empty batch, as Chromium's do), so the page's own walk is exercised.
DROP_FOLDER = """
async ([selector, tree]) => {
  const file = (path, b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const name = path.split("/").pop();
    const f = new File([bytes], name, {type: "image/png"});
    return {isFile: true, isDirectory: false, name, fullPath: "/" + path, file: (ok) => ok(f)};
  };
  const dir = (path, children) => ({
    isFile: false, isDirectory: true, name: path.split("/").pop(), fullPath: "/" + path,
    createReader() {
      let left = children.slice();
      const readEntries = (ok) => {
        const batch = left.slice(0, 2);
        left = left.slice(2);
        ok(batch);
      };
      return {readEntries};
    },
  });
  const build = (path, node) => typeof node === "string" ? file(path, node)
    : dir(path, Object.entries(node).map(([k, v]) => build(path + "/" + k, v)));
  const root = build("pets", tree);
  const dt = new DataTransfer();
  dt.items.add(new File(["x"], "pets"));
  const proto = Object.getPrototypeOf(dt.items[0]);
  const real = proto.webkitGetAsEntry;
  proto.webkitGetAsEntry = function () { return root; };
  const zone = document.querySelector(selector);
  try {
    for (const type of ["dragenter", "dragover", "drop"]) {
      zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    }
  } finally {
    proto.webkitGetAsEntry = real;
  }
}
"""


def test_a_dropped_folder_is_walked_in_the_browser(lab) -> None:
    page = lab.open_notebook([studio_cell()])
    up = upload_of(page)
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    tree = {
        "cat.png": b64(png((230, 180, 60))),
        "dog.png": b64(png((120, 90, 60))),
        "notes.png": b64(b"%PDF-1.4 not a picture"),
        "more": {"fish.png": b64(png((40, 90, 200)))},
        ".DS_Store": b64(b"junk"),
    }
    page.evaluate(DROP_FOLDER, [".nbb-up-zone", tree])
    expect(tiles(up)).to_have_count(3)
    expect(up.locator(".nbb-up-refused")).to_contain_text("pets/notes.png")
    assert names(lab, page, "studio.upload.references") == [
        "pets/cat.png",
        "pets/dog.png",
        "pets/more/fish.png",
    ]


def test_a_dropped_a1111_image_is_remixed_and_run(lab) -> None:
    page = lab.open_notebook([studio_cell()])
    up = upload_of(page)
    drop(page, {"lighthouse.png": a1111_png(), "mug.png": png((200, 60, 40))})
    expect(tiles(up)).to_have_count(2)
    offer = up.locator(".nbb-up-offer")
    expect(offer).to_have_count(1)
    expect(offer).to_contain_text("Made with AUTOMATIC1111 / Forge: " + A1111_PROMPT)
    lab.screenshot(page, "1-remix-offer")
    up.get_by_role("button", name="Remix lighthouse.png").click()
    expect(up.get_by_role("status").last).to_contain_text("lighthouse.png is in the batch")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text(A1111_PROMPT)
    expect(tiles(up)).to_have_count(1)  # a result to redo, not a reference
    params = json.loads(
        lab.execute(page, "import json; print(json.dumps(studio.batch.tasks[0].params.to_dict()))")
    )
    assert (params["steps"], params["sampler"], params["seed"], params["negative_prompt"]) == (
        24,
        "DPM++ 2M",
        1234,
        "blurry, text",
    )
    grid = page.locator(".nbb-root").first
    grid.get_by_role("button", name="Run all").click()
    expect(grid.locator(".nbb-badge", has_text="done")).to_have_count(1)
    lab.screenshot(page, "2-remixed-and-ran")

    # the other choice: keep a dropped result as a reference
    drop(page, {"again.png": a1111_png("a lightkeeper at night")})
    expect(up.locator(".nbb-up-offer")).to_have_count(1)
    up.get_by_role("button", name="Use again.png as a reference").click()
    expect(up.locator(".nbb-up-offer")).to_have_count(0)
    expect(tiles(up)).to_have_count(2)


def test_presets_are_saved_edited_reordered_and_deleted(lab) -> None:
    page = lab.open_notebook([studio_cell()])
    panel = page.locator(".nbb-pp").first
    panel.get_by_role("textbox", name="Master prompt").fill("a harbour at dawn, soft mist")
    panel.get_by_role("textbox", name="Negative prompt").fill("people")
    panel.get_by_role("button", name="Manage presets").click()
    dialog = page.get_by_role("dialog", name="Manage presets")
    expect(dialog).to_be_visible()
    new = dialog.get_by_role("region", name="Save the prompt as a preset")
    new.get_by_role("textbox", name="Title").fill("Harbour")
    new.get_by_role("combobox", name="Category").fill("places")
    new.get_by_role("textbox", name="Title").press("Enter")
    expect(dialog.get_by_role("status")).to_have_text("Preset Harbour saved.")
    row = dialog.locator('li[data-name="Harbour"]')
    expect(row).to_contain_text("a harbour at dawn, soft mist")
    lab.screenshot(page, "1-presets-saved")

    # reorder by keyboard: focus "Move Harbour up", press Enter twice
    up_btn = dialog.get_by_role("button", name="Move Harbour up")
    up_btn.focus()
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("status")).to_contain_text("Harbour is now number")
    order = json.loads(
        lab.execute(page, "import json; print(json.dumps(studio.prompt.presets.names))")
    )
    assert order[-2] == "Harbour"
    expect(dialog.get_by_role("button", name="Move Harbour up")).to_be_focused()

    # edit: the text and the title
    dialog.get_by_role("button", name="Edit Harbour").click()
    editing = dialog.locator(".nbb-pp-preset-edit")
    editing.get_by_role("textbox", name="Preset text").fill("a harbour at first light")
    editing.get_by_role("textbox", name="Title").fill("Harbour light")
    editing.get_by_role("button", name="Save changes").click()
    expect(dialog.get_by_role("status")).to_have_text("Preset Harbour light saved.")
    expect(dialog.locator('li[data-name="Harbour light"]')).to_contain_text("first light")

    # a second preset of the same title is refused in words
    new.get_by_role("textbox", name="Title").fill("harbour LIGHT")
    new.get_by_role("button", name="Save preset").click()
    expect(dialog.get_by_role("status")).to_contain_text("already exists")

    # the picker offers it, grouped by its category
    group = panel.locator('optgroup[label="places"] option')
    expect(group).to_have_text(["Harbour light"])

    # delete asks first; Keep keeps it, Yes deletes it
    dialog.get_by_role("button", name="Delete Harbour light").click()
    expect(dialog.get_by_role("alert")).to_have_text("Delete the preset Harbour light?")
    lab.screenshot(page, "2-presets-confirm-delete")
    dialog.get_by_role("button", name="Keep").click()
    expect(dialog.locator('li[data-name="Harbour light"]')).to_have_count(1)
    dialog.get_by_role("button", name="Delete Harbour light").click()
    dialog.get_by_role("button", name="Yes, delete Harbour light").click()
    expect(dialog.get_by_role("status")).to_have_text("Preset Harbour light deleted.")
    expect(dialog.locator('li[data-name="Harbour light"]')).to_have_count(0)
    stored = lab.execute(
        page,
        "from nbbatch.planning import Presets; print('Harbour light' in Presets.load(ws))",
    )
    assert stored.strip() == "False"
    lab.set_theme(page, "dark")
    lab.screenshot(page, "3-presets-dark")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


FAKE_WEBUI = """
from nbbatch.testing import FakeA1111
webui = FakeA1111().start()
print(webui.url)
"""


def test_saved_settings_decide_what_run_all_runs_on(lab) -> None:
    page = lab.open_notebook([studio_cell(provider=None)])
    webui_url = lab.execute(page, FAKE_WEBUI).strip()
    grid = page.locator(".nbb-root").first
    panel = page.locator(".nbb-pp").first
    panel.locator("summary", has_text="Generation parameters").click()
    expect(panel.get_by_role("spinbutton", name="Steps")).to_have_count(0)  # demo: no steps

    page.locator(".nbb-set").first.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    # ComfyUI: the workflow's mapping is shown, each slot a choice of the graph's inputs
    dialog.get_by_role("combobox", name="Provider").select_option("comfyui")
    prompt_slot = dialog.get_by_role("combobox", name="Mapping: Prompt")
    expect(prompt_slot).to_have_value("2.text")  # the built-in graph's, as detected
    expect(prompt_slot.locator("option:checked")).to_have_text(
        "2 · CLIPTextEncode · text — detected"
    )
    expect(dialog.get_by_role("combobox", name="Mapping: Seed")).to_have_value("5.seed")
    lab.screenshot(page, "1-settings-comfyui")
    dialog.get_by_role("combobox", name="Provider").select_option("a1111")
    dialog.get_by_role("textbox", name="Base URL", exact=True).fill(webui_url)
    dialog.locator("summary", has_text="Defaults for new tasks").click()
    dialog.get_by_role("spinbutton", name="Defaults for new tasks: Steps").fill("7")
    dialog.get_by_role("spinbutton", name="Concurrency").fill("2")
    lab.screenshot(page, "1-settings-webui")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.get_by_role("status")).to_contain_text("Saved to")
    dialog.get_by_role("button", name="Close").last.click()

    # the open prompt panel now offers the WebUI's parameters, with the saved default
    steps = panel.get_by_role("spinbutton", name="Steps")
    expect(steps).to_have_attribute("placeholder", "default: 7")
    expect(grid.get_by_role("combobox", name="Provider")).to_have_value("a1111")
    lines_to_tasks(page, "a red fox\na koi pond")
    grid.get_by_role("button", name="Run all").click()
    expect(grid.locator(".nbb-badge", has_text="done")).to_have_count(2)
    sent = json.loads(
        lab.execute(
            page,
            "import json; print(json.dumps([json.loads(r.body)['steps'] "
            "for r in webui.calls('/sdapi/v1/txt2img')]))",
        )
    )
    assert sent == [7, 7]
    assert lab.execute(page, "print(studio.concurrency)").strip() == "2"
    lab.screenshot(page, "2-ran-on-webui")


def test_the_new_controls_speak_chinese_in_the_dark_theme(lab) -> None:
    page = lab.open_notebook([studio_cell(lang="zh")])
    lab.set_theme(page, "dark")
    up = upload_of(page)
    expect(up.get_by_role("button", name="选择服务器上的文件夹")).to_be_visible()
    drop(page, {"灯塔.png": a1111_png()})
    expect(up.get_by_role("button", name="再创作 灯塔.png：按其参数新建任务")).to_be_visible()
    expect(up.get_by_role("button", name="将 灯塔.png 用作参考图")).to_be_visible()
    lab.screenshot(page, "1-zh-dark-remix-offer")
    panel = page.locator(".nbb-pp").first
    panel.get_by_role("button", name="管理预设").click()
    dialog = page.get_by_role("dialog", name="管理预设")
    expect(dialog.get_by_role("button", name="上移 Clean render")).to_be_visible()
    lab.screenshot(page, "2-zh-dark-presets")
    page.keyboard.press("Escape")
    page.locator(".nbb-set").first.get_by_role("button", name="设置").click()
    settings = page.get_by_role("dialog", name="设置")
    settings.get_by_role("combobox", name="服务").select_option("openai")
    expect(settings.get_by_role("textbox", name="组织")).to_be_visible()
    lab.screenshot(page, "3-zh-dark-settings-openai")


SERVER_CELL = """
import nbbatch, pathlib, tempfile
from nbbatch.widgets import Upload

root = pathlib.Path(tempfile.mkdtemp())
(root / "pets").mkdir()
(root / "pets" / "cat.png").write_bytes(CAT)
(root / "pets" / "notes.txt").write_text("a note")
(root / "pets" / "elsewhere.png").symlink_to("/etc/hostname")
up = Upload(nbbatch.Workspace(tempfile.mkdtemp()), server_root=root)
up
"""


def test_choose_folder_on_server_adds_its_images(lab) -> None:
    cell = f"CAT = {png((230, 180, 60))!r}\n" + SERVER_CELL
    page = lab.open_notebook([cell])
    up = upload_of(page)
    up.get_by_role("button", name="Choose folder on server").click()
    chooser = page.locator(".nbb-server-folder")
    expect(chooser).to_contain_text("Folders next to the kernel")
    chooser.locator("select[multiple], select[size]").last.select_option(label="pets/")
    lab.screenshot(page, "1-server-folder-picker")
    chooser.get_by_role("button", name="Add its images").click()
    expect(tiles(up)).to_have_count(1)
    refused = up.locator(".nbb-up-refused")
    expect(refused).to_contain_text("pets/elsewhere.png")
    expect(refused).to_contain_text("symbolic link")
    expect(refused).to_contain_text("pets/notes.txt")
    expect(chooser).to_be_hidden()
    assert names(lab, page) == ["pets/cat.png"]
    expect(up.locator('.nbb-up-tile[data-id] img[data-source="kernel"]')).to_have_count(1)
    lab.screenshot(page, "2-server-folder-added")
    # Cancel closes the picker; the button opens it again
    up.get_by_role("button", name="Choose folder on server").click()
    expect(chooser).to_be_visible()
    chooser.get_by_role("button", name="Cancel").click()
    expect(chooser).to_be_hidden()
