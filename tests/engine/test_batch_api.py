"""The notebook-facing API: results as Python objects, DataFrames, ZIPs, plug-ins."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import nbbatch
from nbbatch import Batch, Params, Task, Workspace
from nbbatch.providers import _registry


def test_results_are_python_objects(workspace: Workspace) -> None:
    batch = Batch.create(
        workspace=workspace, tasks=["a red fox", "a blue whale"], params=Params(n=2, seed=3)
    )
    batch.run_sync("demo", concurrency=2)
    assert len(batch.images) == 4 and len(batch.succeeded) == 2 and batch.failed == []
    first = batch.images[0]
    assert first.pil.size == (512, 512)
    png = first._repr_mimebundle_()["image/png"]
    assert png.startswith(b"\x89PNG")
    assert "seed=3" in repr(first)
    assert batch[0] is batch.tasks[0] and batch[batch.tasks[1].id] is batch.tasks[1]


def test_dataframe_has_one_row_per_task(workspace: Workspace) -> None:
    batch = Batch.create(
        workspace=workspace, tasks=["a", "b", "c"], params=Params(size="64x64", steps=5)
    )
    batch.run_sync("demo")
    df = batch.to_dataframe()
    assert list(df["prompt"]) == ["a", "b", "c"]
    assert set(df["status"]) == {"succeeded"}
    assert list(df["param_size"]) == ["64x64"] * 3
    assert all(Path(p).exists() for p in df["image_path"])


def test_export_zip_has_safe_names_and_real_prompts(workspace: Workspace, tmp_path: Path) -> None:
    tricky = ["../../etc/passwd", "CON", "a/b\\c", "ü" * 300]
    batch = Batch.create(workspace=workspace, tasks=tricky, params=Params(size="32x32"))
    batch.run_sync("demo")
    out = batch.export_zip(tmp_path / "out.zip")
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert len(set(names)) == len(names) == 5
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert len(name) <= 100
    assert sorted(im["prompt"] for im in manifest["images"]) == sorted(tricky)
    assert manifest["batch"]["id"] == batch.id


def test_add_tasks_and_load_again(tmp_path: Path) -> None:
    batch = Batch.create(["one"], workspace=tmp_path / "ws")
    added = batch.add(["two", Task("three", params={"seed": 9})])
    assert [t.order for t in batch.tasks] == [0, 1, 2]
    batch.run_sync("demo")
    batch.workspace.close()
    again = Batch.load(batch.id, workspace=tmp_path / "ws")
    assert [t.prompt for t in again.tasks] == ["one", "two", "three"]
    assert again.tasks[2].images[0].seed == 9 and added[1].id == again.tasks[2].id
    again.workspace.close()


def test_third_party_providers_come_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeEntryPoint:
        name = "acme"
        value = "acme_images:AcmeProvider"

        def load(self) -> type:
            return nbbatch.providers.DemoProvider

    class BrokenEntryPoint(FakeEntryPoint):
        name = "broken"

        def load(self) -> type:
            raise ImportError("acme is not installed properly")

    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    monkeypatch.setattr(
        _registry, "entry_points", lambda group: [FakeEntryPoint(), BrokenEntryPoint()]
    )
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    assert "acme" in nbbatch.available_providers()
    assert "broken" not in nbbatch.available_providers()
    assert isinstance(nbbatch.get_provider("acme"), nbbatch.providers.DemoProvider)


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(nbbatch.errors.UnknownProviderError, match=r"available: .*demo"):
        nbbatch.get_provider("dalle-9000")
