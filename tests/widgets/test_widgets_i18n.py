"""One message catalogue, English and Simplified Chinese, and the names tests rely on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nbbatch
from nbbatch.widgets import BatchStudio
from nbbatch.widgets._i18n import LANGS, catalogue, resolve_lang, tr

STATIC = Path(__file__).resolve().parents[2] / "src" / "nbbatch" / "widgets" / "static"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_both_languages_have_every_message_with_the_same_placeholders() -> None:
    en, zh = LANGS["en"], LANGS["zh"]
    assert set(en) == set(zh)
    for key in en:
        assert set(PLACEHOLDER.findall(en[key])) == set(PLACEHOLDER.findall(zh[key])), key


def test_the_chinese_catalogue_is_translated() -> None:
    same = [k for k, v in LANGS["zh"].items() if v == LANGS["en"][k] and re.search("[a-z]{3}", v)]
    assert same == []


def test_accessible_names_and_badges_are_exact_in_english() -> None:
    en = catalogue("en")
    names = {k: en[k] for k in ("run_all", "pause", "resume", "stop", "retry_failed")}
    assert names == {
        "run_all": "Run all",
        "pause": "Pause",
        "resume": "Resume",
        "stop": "Stop",
        "retry_failed": "Retry failed",
    }
    row = ("edit", "save", "cancel_edit", "delete", "retry", "run_next", "duplicate")
    assert [en[k] for k in row] == [
        "Edit",
        "Save",
        "Cancel edit",
        "Delete",
        "Retry",
        "Run next",
        "Duplicate",
    ]
    assert en["delete_selected"] == "Delete selected"
    assert en["grid"] == "Tasks"
    statuses = ("idle", "queued", "running", "succeeded", "failed", "cancelled", "interrupted")
    badges = [tr("en", f"st_{s}", pct=42) for s in statuses]
    assert badges == [
        "waiting",
        "queued",
        "generating 42%",
        "done",
        "failed",
        "cancelled",
        "interrupted",
    ]


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        ("zh", None, "zh"),
        ("zh-CN", None, "zh"),
        ("zh_CN.UTF-8", None, "zh"),
        (None, "zh", "zh"),
        (None, None, "en"),
        ("en", "zh", "en"),
        ("klingon", None, "en"),
    ],
)
def test_the_language_comes_from_the_argument_then_nbbatch_lang_then_english(
    monkeypatch: pytest.MonkeyPatch, given: str | None, env: str | None, expected: str
) -> None:
    if env is None:
        monkeypatch.delenv("NBBATCH_LANG", raising=False)
    else:
        monkeypatch.setenv("NBBATCH_LANG", env)
    assert resolve_lang(given) == expected


def test_a_studio_takes_its_language_from_nbbatch_lang(
    monkeypatch: pytest.MonkeyPatch, workspace
) -> None:
    monkeypatch.setenv("NBBATCH_LANG", "zh")
    assert BatchStudio(nbbatch.Batch.create(workspace=workspace, tasks=["x"])).lang == "zh"


def test_the_front_end_holds_no_text_of_its_own() -> None:
    # every label comes from the catalogue in the snapshot: the bundle names keys only
    js = (STATIC / "studio.js").read_text()
    for text in ("Run all", "Retry failed", "generating", "Delete selected", "全部运行"):
        assert text not in js


def test_the_bundle_is_one_self_contained_module() -> None:
    js = (STATIC / "studio.js").read_text()
    assert re.search(r"export\s*\{|export default", js)  # minified: export{x as default}
    assert not re.search(r"^\s*import\s", js, re.M)  # a Blob-URL module cannot resolve imports
    assert "data-lm-suppress-shortcuts" in js
    assert '"grid"' in js
    css = (STATIC / "studio.css").read_text()
    assert "--jp-layout-color1" in css
    assert not re.search(r"(^|[\s,}])\.(?!nbb-)[a-z][\w-]*\s*[{,]", css)  # nbb- prefix only


def test_no_message_key_is_defined_twice() -> None:
    # The catalogue is one JSON file per part (panel); a key two parts both define would
    # silently take one part's words. JSON objects with a repeated key are refused too.
    import json

    folder = Path(nbbatch.widgets.__file__).parent / "locales"

    def refuse_repeats(pairs: list[tuple[str, str]]) -> dict[str, str]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
        return dict(pairs)

    for lang in ("en", "zh"):
        owner: dict[str, str] = {}
        twice: list[str] = []
        for path in sorted((folder / lang).glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=refuse_repeats)
            for key in data:
                if key in owner:
                    twice.append(f"{lang}:{key} in {owner[key]} and {path.stem}")
                owner[key] = path.stem
        assert twice == []
