"""Contact sheets and X/Y grids."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from nbbatch import Batch, Params, Task, Workspace, contact_sheet
from nbbatch.errors import ConfigError
from nbbatch.images import varying_parameters, xy_grid

BG = (30, 30, 30)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


def solid(color: tuple[int, int, int], size: tuple[int, int] = (100, 100)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_sheet_layout_follows_columns_cell_and_padding() -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    sheet = contact_sheet([solid(c) for c in colors], columns=2, cell=64, padding=4, captions=False)
    assert sheet.size == (4 + 2 * (64 + 4), 4 + 3 * (64 + 4))
    for i, color in enumerate(colors):
        r, c = divmod(i, 2)
        x, y = 4 + c * 68 + 32, 4 + r * 68 + 32
        assert sheet.getpixel((x, y)) == color
    # the sixth slot is empty background
    assert sheet.getpixel((4 + 68 + 32, 4 + 2 * 68 + 32)) == BG


def test_captions_are_written_under_each_cell(ws: Workspace) -> None:
    batch = Batch.create(["a fox", "a car"], workspace=ws, params=Params(seed=4))
    batch.run_sync("demo")
    with_caps = contact_sheet(batch, columns=2, cell=128)
    without = contact_sheet(batch, columns=2, cell=128, captions=False)
    assert with_caps.height > without.height
    band = with_caps.crop((8, 8 + 128 + 2, 8 + 128, 8 + 128 + 20))
    assert ImageStat.Stat(band).extrema[0][1] > 150  # light text on the dark band


def test_caption_list_must_match_the_images() -> None:
    with pytest.raises(ConfigError, match="captions"):
        contact_sheet([solid((1, 2, 3))], captions=["a", "b"])


def test_unreadable_images_show_as_a_cross_instead_of_failing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    sheet = contact_sheet([bad, solid((0, 200, 0))], columns=2, cell=64, captions=False)
    assert sheet.getpixel((8 + 64 + 8 + 32, 8 + 32)) == (0, 200, 0)
    assert sheet.getpixel((8 + 10, 8 + 10)) != BG  # the diagonal of the cross


def test_title_and_pil_images_are_accepted() -> None:
    sheet = contact_sheet([Image.new("RGB", (50, 50), (9, 9, 200))], title="Picks", cell=64)
    assert sheet.height > 64 + 16


def test_oversized_sheets_are_refused() -> None:
    with pytest.raises(ConfigError, match="smaller cell"):
        contact_sheet([solid((0, 0, 0))] * 3000, cell=2048, captions=False)


def grid_batch(ws: Workspace) -> Batch:
    tasks = [
        Task("a lighthouse", params=Params(seed=s, cfg_scale=c))
        for s in (30, 10, 20)
        for c in (7.5, 5.0)
    ]
    batch = Batch.create(tasks, workspace=ws)
    batch.run_sync("demo")
    return batch


def test_varying_parameters_are_detected(ws: Workspace) -> None:
    batch = grid_batch(ws)
    varying = varying_parameters(batch)
    assert set(varying) == {"seed", "cfg_scale"}
    assert sorted(varying["seed"]) == [10, 20, 30]


def test_xy_grid_places_each_image_at_its_values(ws: Workspace) -> None:
    batch = grid_batch(ws)
    cell, pad = 96, 6
    grid = xy_grid(batch, x="seed", y="cfg_scale", cell=cell, padding=pad)
    font = max(10, cell // 18)
    header = (font + 3) * 3 + pad
    assert grid.size == (cell + pad + 3 * (cell + pad), header + pad + 2 * (cell + pad))
    seeds, cfgs = [10, 20, 30], [5.0, 7.5]  # numbers are sorted along each axis
    for task in batch.tasks:
        col, row = seeds.index(task.params.seed), cfgs.index(task.params.cfg_scale)
        x0 = cell + pad + col * (cell + pad)
        y0 = header + pad + row * (cell + pad)
        tile = grid.crop((x0, y0, x0 + cell, y0 + cell))
        expected = task.images[0].pil.convert("RGB").resize((cell, cell))
        others = [
            t.images[0].pil.convert("RGB").resize((cell, cell))
            for t in batch.tasks
            if t.params.seed != task.params.seed
        ]

        def distance(img: Image.Image, tile: Image.Image = tile) -> float:
            return sum(ImageStat.Stat(ImageChops.difference(tile, img)).mean)

        assert distance(expected) < min(distance(o) for o in others)


def test_xy_grid_picks_the_axes_itself_when_they_are_clear(ws: Workspace) -> None:
    batch = grid_batch(ws)
    assert xy_grid(batch, cell=64).size == xy_grid(batch, x="seed", y="cfg_scale", cell=64).size


def test_xy_grid_with_one_axis_has_no_row_labels(ws: Workspace) -> None:
    batch = Batch.create([Task("a cat", params=Params(seed=s)) for s in (1, 2)], workspace=ws)
    batch.run_sync("demo")
    grid = xy_grid(batch, cell=64, padding=6)
    assert grid.width == 6 + 2 * (64 + 6)


def test_xy_grid_needs_clear_axes(ws: Workspace) -> None:
    tasks = [
        Task(p, params=Params(seed=s, steps=st))
        for p, s, st in [("a", 1, 10), ("b", 2, 20), ("c", 3, 30)]
    ]
    batch = Batch.create(tasks, workspace=ws)
    batch.run_sync("demo")
    with pytest.raises(ConfigError, match="choose the axes"):
        xy_grid(batch)
    with pytest.raises(ConfigError, match="unknown axis"):
        xy_grid(batch, x="colour")
    assert xy_grid(batch, x="prompt", y="steps", cell=64).width > 0
