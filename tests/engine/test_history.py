"""The workspace's history and statistics: what the History panel and ``stats()`` show."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from nbbatch import Batch, Params, Task, TaskStatus, Workspace
from nbbatch.engine import Settings, load_settings, save_settings
from nbbatch.engine._store import StoredImage
from nbbatch.errors import BadRequestError, ConfigError, NotFoundError, TaskStateError
from nbbatch.images._decode import inspect_image
from nbbatch.providers import GenerationRequest, ImageData
from nbbatch.providers._base import ProgressCallback
from tests.support import ControlledProvider


class MeteredProvider(ControlledProvider):
    """Reports usage once per request, as the OpenAI provider records it."""

    name: ClassVar[str] = "metered"

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        images = await super().generate(request, on_progress)
        first = images[0]
        usage = {"usage": {"total_tokens": 100, "input_tokens": 40}}
        return [ImageData(first.data, seed=first.seed, info=usage), *images[1:]]


def _set_durations(ws: Workspace, batch: Batch, seconds: list[float]) -> None:
    """Give the batch's tasks known durations (the clock of a real run is not one)."""
    for task, s in zip(batch.tasks, seconds, strict=True):
        task.started_at = 1000.0
        task.finished_at = 1000.0 + s
    ws.save_statuses(batch.tasks)


def _record_same_file(ws: Workspace, task: Task, path: Path) -> None:
    """Make ``task`` a result with the very file another task made (same digest)."""
    task.transition(TaskStatus.QUEUED)
    task.transition(TaskStatus.RUNNING)
    task.transition(TaskStatus.SUCCEEDED)
    info = inspect_image(path.read_bytes())
    ws.record_success(task, [StoredImage(path.stem, info, None, {})])


def test_history_lists_batches_newest_first_with_their_numbers(workspace: Workspace) -> None:
    old = Batch.create(["a", "b", "c"], workspace=workspace, name="old")
    provider = ControlledProvider()
    provider.script["c"] = [BadRequestError("refused")]
    old.run_sync(provider, retry=0)
    _set_durations(workspace, old, [2.0, 4.0, 30.0])  # the failed one does not count
    new = Batch.create(["d"], workspace=workspace, name="new", params=Params(n=2))

    rows = workspace.history()

    assert [r.name for r in rows] == ["new", "old"]
    fresh, done = rows
    assert fresh.status == "new" and fresh.images == 0 and fresh.success_rate is None
    assert fresh.mean_duration is None and fresh.resumable == 1
    assert done.counts == {"succeeded": 2, "failed": 1}
    assert done.images == 2
    assert done.success_rate == pytest.approx(2 / 3)
    assert done.mean_duration == pytest.approx(3.0)
    assert done.provider == "controlled"  # remembered by the first run
    assert done.to_dict()["status"] == "failed"
    assert new.id == fresh.id


def test_history_of_an_empty_batch_and_of_none(workspace: Workspace) -> None:
    assert workspace.history() == []
    Batch.create([], workspace=workspace, allow_empty=True, name="nothing yet")
    (row,) = workspace.history()
    assert row.status == "empty" and row.total == 0 and row.counts == {}


def test_thumbnails_of_a_batch_come_in_task_order(workspace: Workspace) -> None:
    batch = Batch.create(["a", "b", "c"], workspace=workspace)
    batch.run_sync(ControlledProvider())
    paths = workspace.batch_thumbnails(batch.id, limit=2)
    assert paths == [batch.tasks[0].images[0].path, batch.tasks[1].images[0].path]
    assert all(p.is_file() for p in paths)


def test_rename_is_journaled_and_checked(tmp_path: Path) -> None:
    with Workspace(tmp_path / "ws") as ws:
        batch = Batch.create(["a"], workspace=ws, name="first")
        assert batch.rename("  Spring   campaign ") == "Spring campaign"
        assert batch.name == "Spring campaign"
        with pytest.raises(ConfigError, match="empty"):
            batch.rename("   ")
        with pytest.raises(ConfigError, match="200"):
            ws.rename_batch(batch.id, "x" * 201)
        with pytest.raises(NotFoundError):
            ws.rename_batch("nope", "name")
    with Workspace(tmp_path / "ws") as ws:
        assert Batch.load(batch.id, ws).name == "Spring campaign"


def test_delete_removes_only_the_files_no_other_row_uses(workspace: Workspace) -> None:
    gone = Batch.create(["a", "b"], workspace=workspace)
    gone.run_sync(ControlledProvider())
    kept_file, lone_file = (t.images[0].path for t in gone.tasks)
    # Another batch uses the first image as an input, a third one holds the same file.
    user = Batch.create(["use it"], workspace=workspace)
    user.edit(user.tasks[0], references=[workspace.reference_from_image(gone.tasks[0].images[0])])
    twin = Batch.create(["same bytes"], workspace=workspace)
    _record_same_file(workspace, twin.tasks[0], lone_file)

    removed = workspace.delete_batch(gone.id)

    assert removed == 0  # both files are still used elsewhere
    assert kept_file.is_file() and lone_file.is_file()
    assert gone.id not in [r.id for r in workspace.history()]
    assert workspace.delete_batch(twin.id) == 1
    assert not lone_file.exists() and kept_file.is_file()
    with pytest.raises(NotFoundError):
        workspace.delete_batch(gone.id)


def test_delete_is_refused_while_the_batch_runs(workspace: Workspace) -> None:
    batch = Batch.create(["a", "b"], workspace=workspace)
    workspace.claim(batch.tasks[:1])  # what a live run does before it sends
    with pytest.raises(TaskStateError, match="running"):
        workspace.delete_batch(batch.id)
    assert [r.id for r in workspace.history()] == [batch.id]


def test_stats_per_provider_with_durations_usage_and_spend(workspace: Workspace) -> None:
    metered = Batch.create(["m1", "m2", "m3", "m4"], workspace=workspace, params=Params(n=2))
    failing = MeteredProvider()
    failing.script["m4"] = [BadRequestError("refused")]
    metered.run_sync(failing, retry=0)
    _set_durations(workspace, metered, [1.0, 2.0, 10.0, 99.0])
    plain = Batch.create(["p"], workspace=workspace, params=Params(model="fast"))
    plain.run_sync(ControlledProvider())
    Batch.create(["never run"], workspace=workspace)

    prices = {"metered": 0.04, "controlled": 1.0, "controlled/fast": 0.5}
    rows = {s.provider: s for s in workspace.provider_stats(prices)}

    m = rows["metered"]
    assert (m.batches, m.tasks, m.succeeded, m.failed, m.images) == (1, 4, 3, 1, 6)
    assert m.success_rate == pytest.approx(0.75)
    assert m.mean_duration == pytest.approx(13 / 3)
    assert m.p90_duration == pytest.approx(8.4)  # 2 + (10 - 2) * 0.8
    assert m.images_per_batch == pytest.approx(6.0)
    assert m.tokens == 300  # usage is recorded once per request
    assert m.spend == pytest.approx(6 * 0.04) and m.unpriced_images == 0
    c = rows["controlled"]
    assert c.spend == pytest.approx(0.5)  # the model's own price wins
    assert c.tokens is None
    assert rows["unknown"].tasks == 1 and rows["unknown"].spend is None


def test_stats_is_a_dataframe_and_reads_saved_prices(workspace: Workspace) -> None:
    pd = pytest.importorskip("pandas")
    Batch.create(["a"], workspace=workspace).run_sync(ControlledProvider())
    save_settings(Settings(prices={"controlled": 0.25}))
    frame = workspace.stats()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["provider"]) == ["controlled"]
    assert frame.loc[0, "spend"] == pytest.approx(0.25)
    assert {"success_rate", "mean_duration", "p90_duration", "images_per_batch"} <= set(
        frame.columns
    )


def test_stats_without_pandas_is_a_list_of_dicts(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pandas(name: str, *args: object, **kwargs: object) -> object:
        if name == "pandas":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    assert workspace.stats() == []
    Batch.create(["a"], workspace=workspace).run_sync(ControlledProvider())
    (row,) = workspace.stats(prices={})
    assert row["provider"] == "controlled" and row["spend"] is None


def test_prices_round_trip_through_settings_and_are_checked() -> None:
    save_settings(Settings(prices={"openai/gpt-image-1": 0.042, "demo": 0}))
    assert load_settings().prices == {"openai/gpt-image-1": 0.042, "demo": 0.0}
    for bad in ({"openai": -1}, {"openai": "cheap"}, {"": 1.0}, {"x": float("nan")}):
        with pytest.raises(ConfigError):
            Settings(prices=bad)  # type: ignore[arg-type]


def test_a_thousand_batches_are_all_listed_newest_first(workspace: Workspace) -> None:
    # Correctness at size; how fast is measured in benchmarks/bench_scale.py (history).
    for i in range(1000):
        workspace.insert_batch([], name=f"b{i}", provider="demo", allow_empty=True)
    rows = workspace.history()
    assert sorted(r.name for r in rows) == sorted(f"b{i}" for i in range(1000))
    stamps = [r.created_at for r in rows]
    assert stamps == sorted(stamps, reverse=True)
