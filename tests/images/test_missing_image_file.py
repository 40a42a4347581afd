"""An image file missing from ``images/`` (issue 26, LOW item): ``.pil`` used to raise a
raw ``FileNotFoundError`` and the contact sheet skipped it without a word."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nbbatch import Batch, Params, Workspace
from nbbatch.errors import ImageError, ImageMissingError
from nbbatch.images import contact_sheet


@pytest.fixture
def batch(workspace: Workspace) -> Batch:
    made = Batch.create(
        ["a red fox", "a blue car"], workspace=workspace, params=Params(size="64x64")
    )
    made.run_sync("demo")
    return made


def test_pil_of_a_deleted_image_file_raises_a_typed_error_in_words(batch: Batch) -> None:
    gone = batch.images[0]
    gone.path.unlink()
    with pytest.raises(
        ImageMissingError, match="missing from the workspace's images folder"
    ) as err:
        _ = gone.pil
    assert "Retry its task" in str(err.value)
    assert isinstance(err.value, ImageError) and isinstance(err.value, FileNotFoundError)
    assert err.value.path == str(gone.path)
    with pytest.raises(ImageMissingError):
        gone.read_bytes()
    assert batch.images[1].pil.size == (64, 64)  # the others are fine


def test_contact_sheet_says_which_images_it_could_not_show(
    batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    batch.images[1].path.unlink()
    with caplog.at_level(logging.WARNING, logger="nbbatch"):
        sheet = contact_sheet(batch, cell=64)
    assert sheet.info["skipped"] == ["#2 · seed " + str(batch.images[1].seed) + ": file missing"]
    assert "1 image(s) could not be shown" in caplog.text and "file missing" in caplog.text
    whole = contact_sheet(Batch.load(batch.id, batch.workspace).tasks[0], cell=64)
    assert whole.info["skipped"] == []


def test_a_path_given_to_the_contact_sheet_that_does_not_exist_is_named(tmp_path: Path) -> None:
    sheet = contact_sheet([tmp_path / "nowhere.png"], cell=64)
    assert sheet.info["skipped"] == ["nowhere.png: file missing"]
