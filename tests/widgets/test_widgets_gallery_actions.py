"""Post-processing from the gallery, selection ZIPs, the starred filter, parent thumbnails
and which view opens: the message protocol, driven as the browser drives it."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from PIL import Image

import nbbatch
from nbbatch import Batch, Params, Workspace
from nbbatch.images import derived_images
from nbbatch.widgets import BatchStudio, Gallery, TaskGrid
from tests.widgets.page import Page


@pytest.fixture
def batch(workspace: Workspace) -> Batch:
    made = Batch.create(
        ["a red fox in snow", "a lighthouse at dusk", "a koi pond"],
        workspace=workspace,
        params=Params(size="96x64", seed=7, n=2),
        name="Post test",
    )
    return made.run_sync(nbbatch.get_provider("demo"))


FORM: dict[str, Any] = {
    "resize": {"on": True, "width": "48", "height": "", "mode": "fit"},
    "crop": {"on": False, "aspect": "1:1"},
    "format": {"on": True, "format": "jpeg", "quality": "80"},
    "watermark": {"on": False, "text": "", "position": "bottom-right", "opacity": "50"},
    "strip": {"on": False},
}


def form(**changes: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in FORM.items()}
    for part, values in changes.items():
        out[part].update(values)
    return out


def fetch_zip(page: Page, type: str = "zip", **body: object) -> zipfile.ZipFile:
    start = page.ok(type, **body)
    data = b"".join(
        page.ok("chunk", job=start["job"], index=i)["_buffers"][0] for i in range(start["chunks"])
    )
    return zipfile.ZipFile(io.BytesIO(data))


def test_post_processing_an_image_makes_a_new_file_and_keeps_the_original(batch: Batch) -> None:
    page = Page(Gallery(batch))
    image = batch.tasks[0].images[1]
    before = image.path.read_bytes()
    done = page.ok("postprocess", scope="image", id=image.task_id, index=1, form=FORM, job="j1")
    assert done["count"] == 1 and done["label"] == "Resize 48×48 · JPEG 80"
    assert image.path.read_bytes() == before  # never overwritten
    (copy,) = derived_images(image)
    assert (copy.width, copy.format) == (48, "JPEG") and copy.height == 32
    # the copy is listed with its image, and the page is told to ask again
    described = page.ok("task", id=image.task_id, step=0)["task"]["images"][1]
    assert described["copies"] == [
        {"key": copy.sha256, "label": "Resize 48×48 · JPEG 80", "w": 48, "h": 32, "format": "JPEG"}
    ]
    assert page.of_type("changed")[-1]["ids"] == [image.task_id]
    # ... and downloads under a safe name, the bytes of the derived file
    got = page.ok("derived", id=image.task_id, index=1, key=copy.sha256)
    assert got["_buffers"] == [copy.path.read_bytes()] and got["mime"] == "image/jpeg"
    assert got["name"].startswith("0001-2_a-red-fox-in-snow_") and got["name"].endswith(".jpg")
    assert "expired" not in page.refused("derived", id=image.task_id, index=1, key="0" * 64)


def test_a_batch_post_process_reports_progress_and_its_zip_holds_the_copies(
    batch: Batch,
) -> None:
    page = Page(Gallery(batch))
    marked = form(watermark={"on": True, "text": "© nbbatch"}, strip={"on": True})
    done = page.ok("postprocess", scope="batch", id=batch.tasks[0].id, form=marked, job="j2")
    assert done["count"] == 6
    steps = page.of_type("pp_progress")
    assert steps[-1] == {"type": "pp_progress", "job": "j2", "done": 6, "total": 6}
    with fetch_zip(page, scope="batch", id=batch.tasks[0].id, form=marked) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert len(manifest["images"]) == 6
        for entry in manifest["images"]:
            data = zf.read(entry["file"])
            assert hashlib.sha256(data).hexdigest() == entry["file_sha256"] != entry["sha256"]
            with Image.open(io.BytesIO(data)) as img:
                assert img.format == "JPEG" and img.width == 48
                assert "parameters" not in img.info and not img.getexif()
    assert [s["step"] for s in manifest["postprocess"]] == [
        "resize",
        "watermark",
        "format",
        "strip_metadata",
    ]
    assert all(len(derived_images(im)) == 1 for im in batch.images)  # made once, reused


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"resize": {"width": "0"}}, "resize.width", "from 1 to 16384"),
        ({"resize": {"width": "wide"}}, "resize.width", "whole number"),
        ({"format": {"quality": "101"}}, "format.quality", "from 1 to 100"),
        ({"watermark": {"on": True, "text": "  "}}, "watermark.text", "watermark's text"),
        ({"crop": {"on": True, "aspect": "5:4"}}, "crop.aspect", "aspect ratio"),
        ({"resize": {"on": False}, "format": {"on": False}}, "", "at least one step"),
    ],
)
def test_a_wrong_field_is_named_and_said_in_words(
    batch: Batch, changes: dict[str, Any], field: str, words: str
) -> None:
    page = Page(Gallery(batch))
    task = batch.tasks[0]
    reply = page.ok("postprocess", scope="task", id=task.id, form=form(**changes), job="j")
    assert reply["invalid"] == field and words in reply["error"]
    assert all(derived_images(im) == [] for im in task.images)


def test_the_selection_scope_is_the_grids_selection(batch: Batch) -> None:
    studio = BatchStudio(batch)
    page = Page(studio.gallery)
    task = batch.tasks[0]
    assert "select rows" in page.refused("postprocess", scope="selection", id=task.id, form=FORM)
    studio.grid.selection = [batch.tasks[1].id, batch.tasks[2].id]
    scopes = page.ok("pp_scopes", id=task.id)
    assert (scopes["task"], scopes["selection"], scopes["batch"]) == (2, 2, 6)
    assert page.ok("postprocess", scope="selection", id=task.id, form=FORM, job="s")["count"] == 4
    assert derived_images(task.images[0]) == []


def test_the_grid_downloads_a_zip_of_its_selection_with_a_manifest(batch: Batch) -> None:
    grid = TaskGrid(batch)
    page = Page(grid)
    assert "select" in page.refused("zip_selected").lower()
    grid.selection = [batch.tasks[2].id, batch.tasks[0].id]
    start = page.ok("zip_selected")
    assert start["name"] == "post-test_selection.zip"
    with fetch_zip(page, "zip_selected") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert [m["prompt"] for m in manifest["images"]] == ["a red fox in snow"] * 2 + [
        "a koi pond"
    ] * 2
    assert manifest["batch"]["name"] == "Post test"


def test_the_starred_filter_shows_tasks_with_a_starred_image_and_stays_live(batch: Batch) -> None:
    grid = TaskGrid(batch)
    page = Page(grid)
    assert page.rows(filter="starred") == []
    batch.star(batch.tasks[1].images[1])
    assert [r["p"] for r in page.rows(filter="starred")] == ["a lighthouse at dusk"]
    assert page.ok("hello")["summary"]["starred"] == 1
    batch.star(batch.tasks[1].images[1], False)
    assert page.rows(filter="starred") == []


def test_a_derived_task_row_names_its_parent_image(batch: Batch) -> None:
    parent = batch.tasks[1]
    child = batch.derive(parent.images[1], "the same at night")
    page = Page(TaskGrid(batch))
    rows = {r["id"]: r for r in page.rows()}
    assert rows[child.id]["pa"] == {"id": parent.id, "i": 1, "k": parent.images[1].sha256, "n": 2}
    assert "pa" not in rows[parent.id]
    # its thumbnail comes as any other (the reference is the parent image's bytes)
    thumbs = page.ok("thumbs", keys=[rows[child.id]["pa"]["k"]])
    assert thumbs["keys"] == [parent.images[1].sha256]


def test_only_the_view_that_asked_opens_the_dialog(batch: Batch) -> None:
    studio = BatchStudio(batch)
    gallery = studio.gallery
    grid = Page(studio.grid)
    grid.ok("open_gallery", id=batch.tasks[2].id, index=1, view="g2-abc")
    assert (gallery.opened_view, gallery.task_id, gallery.image_index) == (
        "g2-abc",
        batch.tasks[2].id,
        1,
    )
    # from code: the view that was used last (a request names it; hello does not count)
    page = Page(gallery)
    page.ok("hello", view="g1-xyz")
    page.ok("task", id=batch.tasks[0].id, step=0, view="g1-xyz")
    page.ok("hello", view="g3-new")
    gallery.show(batch.tasks[0])
    assert gallery.opened_view == "g1-xyz"
    # the view used last is gone (its output cleared): the one shown last opens
    page.ok("bye", view="g1-xyz")
    gallery.show(batch.tasks[0])
    assert gallery.opened_view == "g3-new"


def test_a_click_in_the_grid_opens_one_gallery_view_not_every_one(batch: Batch) -> None:
    # the grid no longer finds its gallery view in the page; the kernel picks one view
    studio = BatchStudio(batch)
    gallery = studio.gallery
    page = Page(gallery)
    page.ok("hello", view="g1-first")
    page.ok("hello", view="g2-second")
    Page(studio.grid).ok("open_gallery", id=batch.tasks[2].id, index=0)
    assert gallery.opened_view == "g2-second"
