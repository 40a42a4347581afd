"""Locale catalogues as JSON per language, split by panel; each panel's page is sent only
its slice (its part and the common words), and that slice has every word its code uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import nbbatch.widgets
from nbbatch import Batch, Workspace
from nbbatch.widgets import TaskGrid
from nbbatch.widgets._i18n import LANGS, PANELS, PARTS, catalogue
from tests.widgets.page import Page

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js" / "src"
LOCALES = Path(nbbatch.widgets.__file__).parent / "locales"
# the front-end files each panel's bundle is built from (scripts/build-js), besides shared/
SOURCES = {
    "studio": ["index.js", "grid.js", "toolbar.js"],
    "gallery": ["gallery"],
    "upload": ["upload"],
    "prompt": ["prompt"],
    "settings": ["settings"],
    "history": ["history"],
    "compare": ["compare"],
}
LITERAL = re.compile(r'"([a-z][a-z0-9_]*)"|\.([a-z][a-z0-9_]*)\b|\'([a-z][a-z0-9_]*)\'')
PREFIX = re.compile(r"`([a-z_]+_)\$\{")  # s[`st_${status}`]: every key with that prefix


def words_used(panel: str) -> set[str]:
    """The catalogue keys a panel's code names (literally, or by a prefix it completes)."""
    files: list[Path] = []
    for entry in [*SOURCES[panel], "shared"]:
        path = JS / entry
        files += sorted(path.rglob("*.js")) if path.is_dir() else [path]
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    every = set(LANGS["en"])
    used = {a or b or c for a, b, c in LITERAL.findall(text)} & every
    for prefix in set(PREFIX.findall(text)):
        used |= {k for k in every if k.startswith(prefix)}
    return used


def test_every_language_has_the_same_parts_with_the_same_keys() -> None:
    for part in PARTS:
        en = json.loads((LOCALES / "en" / f"{part}.json").read_text(encoding="utf-8"))
        zh = json.loads((LOCALES / "zh" / f"{part}.json").read_text(encoding="utf-8"))
        assert list(en) == list(zh), part
    assert sorted(p.stem for p in (LOCALES / "en").glob("*.json")) == sorted(PARTS)


@pytest.mark.parametrize("panel", PANELS)
def test_each_panel_is_sent_every_word_its_code_uses_and_not_the_others(panel: str) -> None:
    for lang in ("en", "zh"):
        sent = catalogue(lang, panel)
        assert sorted(words_used(panel) - set(sent)) == [], f"{panel} ({lang}) lacks them"
    # a slice, not the whole catalogue: the other panels' words stay in the kernel
    assert len(catalogue("en", panel)) < len(LANGS["en"]) / 2


def test_the_grid_page_gets_the_studio_slice(workspace: Workspace) -> None:
    batch = Batch.create(["a cat"], workspace=workspace)
    strings = Page(TaskGrid(batch, lang="zh")).ok("hello")["strings"]
    assert strings == catalogue("zh", "studio")
    assert strings["run_all"] == "全部运行"
    assert "hist_tab_stats" not in strings and "drop_here" not in strings


def test_the_catalogues_are_package_data_of_the_wheel() -> None:
    # hatch puts every file under src/nbbatch into the wheel unless it is excluded
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'packages = ["src/nbbatch"]' in text
    assert "locales" not in text.split("[tool.hatch.build.targets.wheel]")[1].split("[")[0]
