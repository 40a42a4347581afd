"""More of the gallery and the grid's results, in a real JupyterLab, used as a person would.

A batch of 3 tasks × 2 images runs on the demo provider. An image is post-processed from
the gallery (a wrong width is refused in words first) and the result downloaded; the
whole batch is post-processed with a progress bar and its ZIP checked; an image is starred
and the grid's Starred filter follows; two rows are downloaded as a ZIP with a manifest;
an edited image becomes a child task whose row shows the parent image and opens it; and a
studio shown twice opens its gallery only where it was clicked. Screenshots light and dark.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

PROMPTS = ["a red fox in snow", "a lighthouse at dusk", "a koi pond"]

SETUP = f"""
import nbbatch, tempfile
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace(tempfile.mkdtemp())
batch = nbbatch.Batch.create(
    {PROMPTS!r}, workspace=ws, name="Results tour",
    params=nbbatch.Params(size="512x384", seed=3, n=2),
)
studio = BatchStudio(batch, provider=nbbatch.get_provider("demo", latency=0.02), concurrency=2,
                     panels=["grid", "gallery", "history"])
studio
"""


def button(scope: Locator | Page, name: str) -> Locator:
    return scope.get_by_role("button", name=name, exact=True)


def py(lab, page: Page, code: str) -> object:
    return json.loads(lab.execute(page, f"import json; print(json.dumps({code}))"))


def download(page: Page, control: Locator) -> bytes:
    with page.expect_download() as info:
        control.click()
    return Path(info.value.path()).read_bytes()


def run_all(page: Page) -> Locator:
    studio = page.locator(".nbb-root").first
    expect(studio.locator(".nbb-row[data-task-id]").first).to_be_visible()
    button(studio, "Run all").click()
    expect(studio.get_by_role("status")).to_have_text("Finished", timeout=60_000)
    return studio


def open_from_row(studio: Locator, task_id: str, image: int = 0) -> None:
    thumb = studio.locator(f'.nbb-row[data-task-id="{task_id}"] .nbb-c-results img').nth(image)
    expect(thumb).to_have_js_property("complete", True)
    thumb.click()


@pytest.mark.timeout(900)
def test_post_process_starred_filter_selection_zip_and_parent_thumbnail(lab) -> None:
    page = lab.open_notebook([SETUP])
    studio = run_all(page)
    ids = py(lab, page, "[t.id for t in batch]")
    assert isinstance(ids, list)
    open_from_row(studio, ids[0], 1)
    dialog = page.get_by_role("dialog", name="Gallery")
    expect(dialog.locator(".nbb-g-imagepos")).to_have_text("2 / 2")

    # post-process this image: a wrong width is refused in words, at its field
    button(dialog, "Post-process").click()
    form = dialog.get_by_role("form", name="Post-process")
    expect(form).to_be_visible()
    expect(form.get_by_label("Apply to")).to_be_focused()
    scope_options = form.get_by_label("Apply to").locator("option")
    expect(scope_options).to_have_text(
        [
            "This image",
            "This task (2 images)",
            "Tasks selected in the grid (0)",
            "Whole batch (6 images)",
        ]
    )
    expect(scope_options.nth(2)).to_be_disabled()  # nothing is selected in the grid yet
    width = form.get_by_label("Width (px)")
    width.fill("0")
    button(form, "Apply").click()
    expect(form.get_by_role("alert")).to_have_text("Type a whole number from 1 to 16384.")
    expect(width).to_have_attribute("aria-invalid", "true")
    expect(width).to_be_focused()
    width.fill("256")
    form.get_by_label("Format", exact=True).select_option("jpeg")
    form.get_by_role("checkbox", name="Watermark").check()
    form.get_by_label("Watermark text").fill("© nbbatch")
    lab.screenshot(page, "1-postprocess-form-light")
    button(form, "Apply").click()
    expect(form.get_by_role("status")).to_contain_text("New files made: 1 (")
    expect(width).not_to_have_attribute("aria-invalid", "true")
    data = download(page, button(form, "Download result"))
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.size) == ("JPEG", (256, 192))
    original = Path(str(py(lab, page, "str(batch[0].images[1].path)")))
    with Image.open(original) as img:
        assert img.size == (512, 384)  # the original stays as it was
    # the copy is listed with its image: shown on the stage, downloadable again
    label = "Resize 256×256 · Watermark · JPEG 90"
    copies = dialog.get_by_role("list", name="Post-processed copies")
    expect(copies).to_contain_text(label)
    button(copies, f"Show copy: {label}").click()
    expect(dialog.locator(".nbb-g-imagepos")).to_have_text(f"copy · {label}")
    assert download(page, button(dialog, "Download this copy")) == data
    lab.screenshot(page, "2-postprocessed-copy-light")

    # the whole batch, with a progress bar, then its ZIP of the results and manifest
    form.get_by_label("Apply to").select_option("batch")
    form.get_by_role("checkbox", name="Watermark").uncheck()
    form.get_by_role("checkbox", name=re.compile("^Strip metadata")).check()
    button(form, "Apply").click()
    expect(form.get_by_role("status")).to_contain_text("New files made: 6 (")
    with zipfile.ZipFile(io.BytesIO(download(page, button(form, "Download results ZIP")))) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        files = [m["file"] for m in manifest["images"]]
        assert len(files) == 6 and all(f.endswith(".jpg") for f in files)
        with Image.open(io.BytesIO(zf.read(files[0]))) as img:
            assert img.size == (256, 192) and "parameters" not in img.info
    assert [s["step"] for s in manifest["postprocess"]] == ["resize", "format", "strip_metadata"]
    assert py(lab, page, "len(list(ws.path.joinpath('derived').rglob('*.jpg')))") == 7

    # star image 1 of task 2; the grid's Starred filter shows that task only, live
    button(dialog, "Next task").click()
    expect(dialog.locator(".nbb-g-taskpos")).to_have_text("task 2 of 3")
    star = button(dialog, "Star")
    star.click()
    expect(star).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    starred = studio.locator(".nbb-fchip", has_text="Starred")
    expect(starred).to_contain_text("1")
    starred.click()
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(1)
    expect(studio.locator(".nbb-row[data-task-id]").first).to_contain_text(PROMPTS[1])
    open_from_row(studio, ids[1])
    expect(dialog.locator(".nbb-g-taskpos")).to_have_text("task 2 of 3")
    star.click()  # unstar from the gallery: the filtered grid empties
    expect(star).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Escape")
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(0)
    studio.locator(".nbb-fchip", has_text="All").click()
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(3)

    # select two rows: "Download selected" gives their images and a manifest
    for n in (1, 3):  # the kernel holds the selection: the box ticks once it answers
        box = studio.get_by_role("checkbox", name=f"Select task {n}")
        box.click()
        expect(box).to_be_checked()
    zip_button = studio.get_by_role("button", name="Download the selected tasks' images as a ZIP")
    with zipfile.ZipFile(io.BytesIO(download(page, zip_button))) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert sorted(names) == sorted([*(m["file"] for m in manifest["images"]), "manifest.json"])
    assert [m["prompt"] for m in manifest["images"]] == [PROMPTS[0]] * 2 + [PROMPTS[2]] * 2
    assert all(n.endswith(".png") for n in names if n != "manifest.json")
    expect(studio.locator(".nbb-notice")).to_contain_text("downloaded")

    # the gallery post-processes the grid's selection too
    open_from_row(studio, ids[1])
    expect(dialog.locator(".nbb-g-taskpos")).to_have_text("task 2 of 3")
    button(dialog, "Post-process").click()
    form.get_by_label("Apply to").select_option("selection")
    expect(scope_options.nth(2)).to_have_text("Tasks selected in the grid (2)")
    button(form, "Apply").click()
    expect(form.get_by_role("status")).to_contain_text("New files made: 4 (")
    page.keyboard.press("Escape")  # the form first, then the gallery
    expect(form).to_be_hidden()
    expect(button(dialog, "Post-process")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # edit image 2 of task 3 into a child: its row shows that image, which opens it
    open_from_row(studio, ids[2], 1)
    expect(dialog.locator(".nbb-g-taskpos")).to_have_text("task 3 of 3")  # not the last one
    button(dialog, "Edit image").click()
    dialog.get_by_role("textbox", name="What should change in this image?").fill("at night")
    page.keyboard.press("Enter")
    expect(dialog.locator(".nbb-g-status")).to_contain_text("Task 4 was made")
    page.keyboard.press("Escape")
    child = studio.locator(f'.nbb-row[data-task-id="{py(lab, page, "batch[3].id")}"]')
    parent = child.get_by_role("button", name="Made from image 2 of task 3: open it in the gallery")
    expect(parent.locator("img")).to_have_attribute("src", re.compile("^blob:"))
    expect(parent).to_contain_text("#3")
    lab.screenshot(page, "3-parent-thumbnail-light")
    parent.click()
    expect(dialog).to_be_visible()
    expect(dialog.locator(".nbb-g-taskpos")).to_have_text("task 3 of 3")
    expect(dialog.locator(".nbb-g-imagepos")).to_have_text("2 / 2")
    page.keyboard.press("Escape")

    lab.set_theme(page, "dark")
    lab.screenshot(page, "4-parent-thumbnail-dark")
    open_from_row(studio, ids[0], 1)
    expect(dialog.locator(".nbb-g-taskpos")).to_have_text("task 1 of 3")
    button(dialog, "Post-process").click()
    expect(dialog.get_by_role("list", name="Post-processed copies")).to_be_visible()
    lab.screenshot(page, "5-postprocess-dark")
    page.keyboard.press("Escape")
    lab.set_theme(page, "light")
    assert not [c for c in lab.console if "pageerror" in c]


def test_a_studio_shown_twice_opens_its_gallery_only_where_it_was_clicked(lab) -> None:
    page = lab.open_notebook([SETUP, "studio"])
    studios = page.locator(".nbb-root")
    expect(studios).to_have_count(2)
    first = run_all(page)
    second = studios.nth(1)
    expect(second.get_by_role("status")).to_have_text("Finished")
    task = str(py(lab, page, "batch[1].id"))
    dialogs = page.locator("dialog.nbb-g-dialog")
    expect(dialogs).to_have_count(2)

    open_from_row(second, task)
    expect(page.locator("dialog.nbb-g-dialog[open]")).to_have_count(1)
    opened = dialogs.nth(1)
    expect(opened).to_be_visible()
    expect(opened.locator(".nbb-g-taskpos")).to_have_text("task 2 of 3")
    expect(dialogs.nth(0)).to_be_hidden()
    page.keyboard.press("Escape")
    expect(page.locator("dialog.nbb-g-dialog[open]")).to_have_count(0)

    open_from_row(first, task)
    expect(dialogs.nth(0)).to_be_visible()
    expect(page.locator("dialog.nbb-g-dialog[open]")).to_have_count(1)
    page.keyboard.press("Escape")
    # from code: the view used last opens (the first one), not both
    lab.add_cell(page, "studio.gallery.show(batch[2])")
    expect(dialogs.nth(0)).to_be_visible()
    expect(dialogs.nth(0).locator(".nbb-g-taskpos")).to_have_text("task 3 of 3")
    expect(page.locator("dialog.nbb-g-dialog[open]")).to_have_count(1)


def test_the_post_process_form_speaks_chinese(lab) -> None:
    page = lab.open_notebook([SETUP.replace("concurrency=2,", "concurrency=2, lang='zh',")])
    studio = page.locator(".nbb-root").first
    button(studio, "全部运行").click()
    expect(studio.get_by_role("status")).to_have_text("已完成", timeout=60_000)
    open_from_row(studio, str(py(lab, page, "batch[0].id")))
    dialog = page.get_by_role("dialog", name="图库")
    button(dialog, "后期处理").click()
    form = dialog.get_by_role("form", name="后期处理")
    expect(form.get_by_label("应用于")).to_contain_text("整个批次（6 张）")
    form.get_by_label("宽度（像素）").fill("99999")
    button(form, "应用").click()
    expect(form.get_by_role("alert")).to_have_text("请输入 1 到 16384 之间的整数。")
    lab.screenshot(page, "zh-postprocess")
