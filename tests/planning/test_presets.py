"""Presets: shipped defaults, CRUD + order + enable, persistence, import/export, applying."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nbbatch
from nbbatch import Params, Preset, Presets, Task, Workspace
from nbbatch.errors import ConfigError


@pytest.fixture
def ws(tmp_path: Path):
    with Workspace(tmp_path / "ws") as workspace:
        yield workspace


def test_default_set_is_shipped_with_categories() -> None:
    presets = Presets.defaults()
    assert len(presets) >= 10
    assert {"quality", "style", "lighting"} <= set(presets.categories())
    assert presets.enabled == []  # nothing changes a prompt until the person opts in
    assert all(p.text for p in presets)


def test_a_new_workspace_starts_from_the_defaults_and_persists_changes(ws: Workspace) -> None:
    presets = Presets.load(ws)
    assert presets.names == Presets.defaults().names
    assert not (ws.path / "presets.json").exists()  # nothing written until a change
    presets.add("Neon", "neon signs, cyberpunk night", category="Mood", enabled=True, index=0)
    presets.edit("Watercolor", text="loose watercolor", enabled=True)
    presets.remove("Top-down")
    presets.move("High detail", -1)
    reopened = Presets.load(ws)
    assert reopened.names == presets.names
    assert reopened.names[0] == "Neon" and reopened.names[-1] == "High detail"
    assert "Top-down" not in reopened
    assert reopened["neon"].category == "mood"  # names match ignoring case
    assert reopened["Watercolor"] == Preset("Watercolor", "loose watercolor", "style", "", True)
    assert [p.name for p in reopened.enabled] == ["Neon", "Watercolor"]
    leftovers = [p.name for p in ws.path.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_crud_refuses_duplicates_unknown_names_and_bad_fields(tmp_path: Path) -> None:
    presets = Presets([Preset("A", "alpha"), Preset("B", "beta")], path=tmp_path / "p.json")
    with pytest.raises(ConfigError, match="already exists"):
        presets.add("a", "again")
    with pytest.raises(ConfigError, match="already exists"):
        presets.edit("B", name="A")
    with pytest.raises(ConfigError, match="no preset named 'C'"):
        presets.remove("C")
    with pytest.raises(ConfigError, match="unknown preset field"):
        presets.edit("A", colour="red")
    with pytest.raises(ConfigError, match="no text"):
        presets.add("Empty", "  ")
    with pytest.raises(ConfigError, match="outside"):
        presets.move("A", 5)
    with pytest.raises(ConfigError, match="no preset named"):
        presets.enable("A", "Nope")
    assert presets.enabled == []  # enabling is all or nothing
    presets.reorder(["b", "A"])
    assert presets.names == ["B", "A"]
    with pytest.raises(ConfigError, match="exactly once"):
        presets.reorder(["A"])


def test_apply_appends_enabled_presets_in_order_and_wraps_placeholders() -> None:
    presets = Presets(
        [
            Preset("Frame", "a poster of {prompt}, bold type", enabled=True),
            Preset("Sharp", "sharp focus", category="quality", negative="blurry", enabled=True),
            Preset("Off", "never used"),
        ]
    )
    assert presets.apply("a fox") == "a poster of a fox, bold type, sharp focus"
    assert presets.apply("a fox", names=["Off"]) == "a fox, never used"
    assert presets.negative("lowres") == "lowres, blurry"
    assert presets.negative(None, names=["Off"]) is None
    assert presets.prompt("Sharp") == "sharp focus"
    assert presets.prompt("Frame") == "a poster of, bold type"
    task = Task("a fox", params=Params(seed=3, negative_prompt="text"))
    (applied,) = presets.apply_to([task])
    assert applied.prompt == "a poster of a fox, bold type, sharp focus"
    assert applied.params == Params(seed=3, negative_prompt="text, blurry")
    assert applied.id != task.id and task.prompt == "a fox"


def test_presets_as_the_unified_prompt_for_a_folder(tmp_path: Path, ws: Workspace) -> None:
    import io

    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, "PNG")
    (folder / "x.png").write_bytes(buf.getvalue())
    presets = Presets.load(ws)
    tasks = nbbatch.tasks_from_folder(folder, presets.prompt("Watercolor"), workspace=ws)
    assert tasks[0].prompt == presets["Watercolor"].text


def test_export_import_round_trip_and_merge(tmp_path: Path, ws: Workspace) -> None:
    source = Presets([Preset("A", "alpha", enabled=True), Preset("B", "beta", "lighting")])
    exported = source.export(tmp_path / "mine.json")
    document = json.loads(exported.read_text(encoding="utf-8"))
    assert document["format"] == "nbbatch-presets" and len(document["presets"]) == 2

    target = Presets.load(ws)
    before = len(target)
    target.add("A", "old alpha")
    assert target.import_file(exported) == 2
    assert len(target) == before + 2  # A overwritten in place, B appended
    assert target["A"].text == "alpha" and target["A"].enabled
    assert Presets.load(ws)["B"].category == "lighting"  # persisted

    target.import_file(exported, replace_all=True)
    assert Presets.load(ws).names == ["A", "B"]


def test_a1111_styles_csv_imports(tmp_path: Path) -> None:
    styles = tmp_path / "styles.csv"
    styles.write_text(
        'name,prompt,negative_prompt\nNone,,\n"Cinematic","cinematic still of {prompt}, film '
        'grain","cartoon"\nNegOnly,,"ugly"\n',
        encoding="utf-8",
    )
    presets = Presets()
    assert presets.import_file(styles) == 2
    assert presets.apply("a car", names=["cinematic"]) == "cinematic still of a car, film grain"
    assert presets.negative(names=["NegOnly"]) == "ugly"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other", "presets": []}', "not an nbbatch presets file"),
        ('{"presets": [{"name": "x"}]}', "needs 'name' and 'text'"),
        ('{"presets": [{"name": "x", "text": 5}]}', "must be text"),
        ('{"presets": [{"name": "x", "text": "a"}, {"name": "X", "text": "b"}]}', "twice"),
        ('"just a string"', "expected"),
    ],
)
def test_bad_import_files_change_nothing(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    presets = Presets([Preset("Keep", "me")])
    with pytest.raises(ConfigError, match=message):
        presets.import_file(bad)
    assert presets.names == ["Keep"]


def test_reset_restores_the_defaults(ws: Workspace) -> None:
    presets = Presets.load(ws)
    presets.disable_all()
    for name in list(presets.names):
        presets.remove(name)
    assert len(Presets.load(ws)) == 0
    presets.reset()
    assert Presets.load(ws).names == Presets.defaults().names
