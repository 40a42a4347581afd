"""Post-processed copies are journaled by the workspace (issue 25): ``images/`` asks the
workspace where a copy goes instead of guessing its folder from an image path, and the
JSON files older versions wrote beside each copy are read once, then folded in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbbatch import Batch, Params, Workspace
from nbbatch.errors import ConfigError
from nbbatch.images import Resize, derived_images, postprocess
from nbbatch.images._postprocess import DerivedStore


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    ws = Workspace(tmp_path / "ws")
    made = Batch.create(["a red fox"], workspace=ws, params=Params(seed=3, size="96x64"))
    made.run_sync("demo")
    return made


def test_the_workspace_places_and_journals_each_copy(batch: Batch) -> None:
    ws = batch.workspace
    try:
        assert isinstance(ws, DerivedStore)
        (made,) = postprocess(batch, [Resize(32)])
        (row,) = ws.derived(made.source_sha256)
        assert (
            made.path
            == row["path"]
            == ws.derived_path(made.source_sha256, row["recipe_hash"], row["ext"])
        )
        assert (row["task_id"], row["index"]) == (made.task_id, made.index)
        assert list(made.path.parent.glob("*.json")) == []
    finally:
        ws.close()


def test_a_copy_described_by_an_older_versions_json_file_is_journaled_once(
    batch: Batch,
) -> None:
    ws = batch.workspace
    try:
        image = batch.images[0]
        (made,) = postprocess(image, [Resize(40)])
        row = ws.derived(image.sha256)[0]
        # what an older nbbatch left: the copy, a JSON file beside it, no journal row
        with ws._tx() as c:
            c.execute("DELETE FROM derived")
        sidecar = made.path.with_suffix(".json")
        sidecar.write_text(
            json.dumps(
                {
                    "file": made.path.name, "sha256": made.sha256,
                    "source_sha256": image.sha256, "task_id": image.task_id,
                    "index": image.index, "recipe": row["recipe"], "width": made.width,
                    "height": made.height, "format": made.format, "created_at": 1.0,
                }
            )
        )  # fmt: skip
        stamp = made.path.stat().st_mtime_ns
        assert derived_images(image) == [made]
        assert not sidecar.exists()  # read once, then gone
        assert [r["sha256"] for r in ws.derived(image.sha256)] == [made.sha256]
        assert postprocess(image, [Resize(40)]) == [made]  # reused, not made again
        assert made.path.stat().st_mtime_ns == stamp
    finally:
        ws.close()


def test_an_image_outside_any_batch_needs_a_workspace_even_inside_images(
    batch: Batch,
) -> None:
    # Its path looks like a workspace's (…/images/ab/ab….png); nothing guesses from it.
    stray = batch.images[0].path
    batch.workspace.close()
    with pytest.raises(ConfigError, match="workspace"):
        postprocess(stray, [Resize(16)])
