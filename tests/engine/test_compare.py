"""nbbatch.compare: the same tasks on several configurations, journaled as one batch."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

import nbbatch
from nbbatch import Params, TaskStatus, Workspace
from nbbatch.engine import Comparison
from nbbatch.errors import ConfigError, NotFoundError
from nbbatch.images import sharpness

PROMPTS = ["scene 0: a lighthouse", "scene 1: a koi pond", "a castle at night"]
CASTLE = 2  # the row the faulty configuration fails
TINY = Params(size="64x64")


def _demo_configs() -> list[object]:
    return [
        "demo",
        ("demo", {"label": "slow", "latency": 0.002}),
        ("demo", {"label": "faulty", "fail_prompts": ["castle"]}),
        ("demo", {"steps": 4}),
    ]


async def _ran(workspace: Workspace, **options: object) -> Comparison:
    cmp = nbbatch.compare(PROMPTS, _demo_configs(), workspace=workspace, params=TINY)
    await cmp.run(retry=0, **options)
    return cmp


def test_a_comparison_is_one_batch_of_cells_with_one_seed_per_row(workspace: Workspace) -> None:
    cmp = nbbatch.compare(["a fox", "a boat"], _demo_configs(), workspace=workspace)
    assert cmp.columns == ["demo", "slow", "faulty", "demo · steps=4"]
    assert len(cmp) == 2 and len(cmp.batch) == 8
    assert [b.id for b in workspace.batches()] == [cmp.id]
    for row in range(2):
        seeds = {cmp.cell(row, c).task.params.seed for c in cmp.columns}
        assert len(seeds) == 1 and None not in seeds
    assert cmp.cell(0, "demo · steps=4").task.params.steps == 4
    assert cmp.cell(1, 2).task.provider == "faulty"


def test_a_provider_without_seeds_gets_none(workspace: Workspace) -> None:
    cmp = nbbatch.compare(["a fox"], ["demo", ("openai", {"api_key": "sk-x"})], workspace=workspace)
    assert cmp.cell(0, "demo").task.params.seed is not None
    assert cmp.cell(0, "openai").task.params.seed is None


def test_the_journal_never_holds_a_configuration_key(workspace: Workspace) -> None:
    nbbatch.compare(
        ["a fox"], [("openai", {"api_key": "sk-sentinel-4242"}), "demo"], workspace=workspace
    )
    data = (Path(workspace.path) / "nbbatch.sqlite3").read_bytes()
    for extra in Path(workspace.path).glob("nbbatch.sqlite3*"):
        data += extra.read_bytes()
    assert b"sk-sentinel-4242" not in data


async def test_every_cell_runs_on_its_own_configuration(workspace: Workspace) -> None:
    cmp = await _ran(workspace)
    counts = {c: 0 for c in cmp.columns}
    for cell in cmp.cells():
        if cell.configuration == "faulty" and "castle" in cell.task.prompt:
            assert cell.status is TaskStatus.FAILED
            assert cell.task.error
        else:
            assert cell.status is TaskStatus.SUCCEEDED, cell
            assert cell.images[0].seed == cell.task.params.seed
            counts[cell.configuration] += 1
    assert counts == {"demo": 3, "slow": 3, "faulty": 2, "demo · steps=4": 3}


async def test_each_configuration_keeps_its_own_concurrency(workspace: Workspace) -> None:
    cmp = nbbatch.compare(
        PROMPTS[:6],
        [("demo", {"concurrency": 1}), ("demo", {"label": "wide", "concurrency": 3})],
        workspace=workspace,
        params=TINY,
    )
    runner = cmp.start()
    assert runner.concurrency == 4
    assert [p.max_concurrency for p in runner._providers.values()] == [1, 3]
    await runner.wait()
    assert cmp.counts == {"succeeded": 6}


async def test_a_failed_cell_is_retried_alone(workspace: Workspace) -> None:
    cmp = await _ran(workspace)
    failed = cmp.cell(CASTLE, "faulty")
    assert failed.status is TaskStatus.FAILED
    cmp.configurations[2].options["fail_prompts"] = []  # the service is fixed meanwhile
    cmp.retry(CASTLE, "faulty")
    runner = cmp.start()
    assert [t.id for t in runner.tasks] == [failed.task.id]
    await runner.wait()
    assert cmp.cell(CASTLE, "faulty").status is TaskStatus.SUCCEEDED
    assert cmp.counts == {"succeeded": 12}


async def test_load_reopens_the_layout_and_resumes(workspace: Workspace) -> None:
    cmp = nbbatch.compare(PROMPTS, _demo_configs(), workspace=workspace, params=TINY)
    again = Comparison.load(cmp.id[:8], workspace)
    assert again.columns == cmp.columns
    assert [c.task.id for c in again.cells()] == [c.task.id for c in cmp.cells()]
    await again.run(retry=0)
    assert Comparison.load(cmp.id, workspace).counts == {"succeeded": 11, "failed": 1}
    assert Comparison.in_workspace(workspace) == [cmp.id]


def test_a_plain_batch_is_not_a_comparison(workspace: Workspace) -> None:
    batch = nbbatch.Batch.create(["a fox"], workspace=workspace)
    with pytest.raises(NotFoundError, match="not a comparison"):
        Comparison.load(batch.id, workspace)


def test_bad_configurations_are_refused_in_words(workspace: Workspace) -> None:
    with pytest.raises(ConfigError, match="at least one configuration"):
        nbbatch.compare(["a"], [], workspace=workspace)
    with pytest.raises(ConfigError, match="a configuration is a provider name"):
        nbbatch.compare(["a"], [42], workspace=workspace)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"unknown provider 'nope'; available: .*demo"):
        nbbatch.compare(["a"], ["demo", "nope"], workspace=workspace)
    assert workspace.batches() == []


async def test_the_dataframe_agrees_with_the_journal(workspace: Workspace) -> None:
    prices = {"demo": 0.01}
    cmp = await _ran(workspace)
    frame = cmp.to_dataframe(prices=prices)
    assert len(frame) == 12
    journal = {
        row[0]: row[1:]
        for row in workspace._query(
            "SELECT id, status, started_at, finished_at, provider FROM tasks WHERE batch_id=?",
            (cmp.id,),
        )
    }
    images = dict(
        workspace._query(
            "SELECT i.task_id, count(*) FROM images i JOIN tasks t ON t.id = i.task_id "
            "WHERE t.batch_id=? GROUP BY i.task_id",
            (cmp.id,),
        )
    )
    for rec in frame.to_dict("records"):
        status, started, finished, column = journal[rec["task_id"]]
        assert rec["status"] == status and rec["configuration"] == column
        assert rec["provider"] == "demo"
        n = images.get(rec["task_id"], 0)
        assert rec["n_images"] == n == len(rec["image_paths"])
        if status == "succeeded":
            assert rec["seconds"] == pytest.approx(finished - started)
            assert rec["cost"] == pytest.approx(0.01 * n)
            assert all(Path(p).is_file() for p in rec["image_paths"])
        else:
            assert rec["seconds"] is None or rec["seconds"] != rec["seconds"]  # None/NaN
    assert frame[frame.configuration == "demo · steps=4"].params.iloc[0]["steps"] == 4


async def test_pivot_and_summary(workspace: Workspace) -> None:
    cmp = await _ran(workspace)
    table = cmp.pivot("status")
    assert list(table.columns) == cmp.columns
    assert table.shape == (3, 4)
    assert table.loc[(CASTLE, PROMPTS[CASTLE]), "faulty"] == "failed"
    summary = cmp.summary(prices={"demo": 0.02})
    faulty = summary.loc["faulty"]
    assert faulty.succeeded == 2 and faulty.failed == 1
    assert faulty.success_rate == pytest.approx(2 / 3)
    assert faulty.cost_per_image == pytest.approx(0.02)
    seconds = sorted(cmp.pivot("seconds")["slow"])
    assert summary.loc["slow"].median_seconds == pytest.approx(seconds[1])
    p90 = seconds[1] + 0.8 * (seconds[2] - seconds[1])
    assert summary.loc["slow"].p90_seconds == pytest.approx(p90)
    rows = cmp.summary_rows(prices={})
    assert rows[0]["cost"] is None and rows[0]["images"] == 3
    with pytest.raises(ConfigError, match="no column"):
        cmp.pivot("nope")


async def test_pick_winners_and_keep_them_as_a_batch(workspace: Workspace) -> None:
    cmp = await _ran(workspace)
    cmp.pick(0, "slow")
    cmp.pick(0, "demo")  # one winner a row: the earlier star goes
    cmp.pick(1, "faulty")
    winners = cmp.winners()
    assert [(w.row, w.configuration) for w in winners] == [(0, "demo"), (1, "faulty")]
    assert not cmp.cell(0, "slow").task.starred
    kept = cmp.keep_winners()
    assert workspace.batches()[0].id == kept.id
    assert [t.status for t in kept] == [TaskStatus.SUCCEEDED] * 2
    assert [t.images[0].sha256 for t in kept] == [w.image.sha256 for w in winners]
    assert kept[1].prompt == PROMPTS[1] and kept[1].provider == "demo"
    assert Comparison.load(cmp.id, workspace).winners()[1].image.sha256 == winners[1].image.sha256
    with pytest.raises(ConfigError, match="there is no image"):
        cmp.pick(CASTLE, "faulty")


def test_keep_winners_without_stars_says_what_to_do(workspace: Workspace) -> None:
    cmp = nbbatch.compare(["a"], ["demo"], workspace=workspace)
    with pytest.raises(ConfigError, match="pick the winners first"):
        cmp.keep_winners()


async def test_export_sheet_and_manifest_agree_with_the_journal(
    workspace: Workspace, tmp_path: Path
) -> None:
    cmp = await _ran(workspace)
    cmp.score(lambda image, prompt: float(len(prompt)), name="length")
    out = cmp.export_zip(tmp_path / "cmp.zip", prices={"demo": 0.01})
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
        sheet = Image.open(zf.open("comparison-sheet.png"))
        sheet.load()
    cells = manifest["comparison"]["cells"]
    assert len(cells) == 12
    frame = cmp.to_dataframe(prices={"demo": 0.01}).set_index("task_id")
    for c in cells:
        row = frame.loc[c["task_id"]]
        assert c["status"] == row.status and c["configuration"] == row.configuration
        assert c["provider"] == "demo" and c["params"] == row.params
        assert c["score"] == float(len(c["prompt"])) if c["status"] == "succeeded" else True
    assert [c["name"] for c in manifest["comparison"]["configurations"]] == cmp.columns
    assert sum(1 for n in names if n.endswith(".png")) == 11 + 1  # images + the sheet
    assert sheet.width > 4 * 256 and sheet.height > 3 * 256
    sheet.close()


async def test_scores_are_journaled_and_shown(workspace: Workspace) -> None:
    cmp = await _ran(workspace)
    cmp.score(lambda image, prompt: 1.0 if "castle" in prompt else 0.5, name="stub")
    again = Comparison.load(cmp.id, workspace)
    frame = again.to_dataframe()
    castle = frame[(frame.row == CASTLE) & (frame.configuration == "demo")]
    assert castle.score.iloc[0] == 1.0
    assert frame[frame.configuration == "faulty"].score.isna().sum() == 1  # no image
    assert again.summary().loc["demo"].mean_score == pytest.approx((2 * 0.5 + 1) / 3)


def test_sharpness_is_higher_for_detail_than_for_blur() -> None:
    sharp = Image.new("L", (64, 64), 0)
    for x in range(0, 64, 4):
        sharp.paste(255, (x, 0, x + 2, 64))
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    flat = Image.new("RGB", (64, 64), (120, 30, 200))
    assert sharpness(sharp, "") > 1000 * sharpness(blurred, "") > 0
    assert sharpness(flat, "") == 0.0
    assert sharpness(Image.new("L", (2, 2)), "") == 0.0


def test_a_comparison_shows_its_summary_escaped(workspace: Workspace) -> None:
    cmp = nbbatch.compare(["a fox"], ["demo", ("demo", {"label": "<b>x</b>"})], workspace=workspace)
    shown = cmp._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in shown and "<b>x</b>" not in shown
    assert shown.count("<tr>") == 3  # the header and one row a configuration
