"""The settings panel is a view over the engine's one ``Settings``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nbbatch
from nbbatch import Batch, Workspace
from nbbatch.engine import ProviderConfig, Settings, load_settings, save_settings
from nbbatch.widgets import BatchStudio, SettingsPanel


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("NBBATCH_CONFIG_DIR", str(folder))
    return folder


def ask(widget: Any, type: str, **body: Any) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    widget.send = lambda content, buffers=None: sent.append(content)
    widget._on_msg(widget, {"type": type, "uuid": "u1", **body}, [])
    (reply,) = [c for c in sent if c.get("uuid") == "u1"]
    assert reply["ok"], reply
    return reply


def test_save_writes_one_home_the_engines_settings(cfg: Path) -> None:
    panel = SettingsPanel(config_dir=cfg)
    ask(
        panel,
        "save",
        values={"provider": "demo", "llm_model": "llama3", "concurrency": 4, "retries": 1},
    )
    assert not (cfg / "studio.json").exists()  # the second home is gone
    saved = load_settings(cfg / "config.json")
    assert (saved.llm.model, saved.run.concurrency, saved.run.retries) == ("llama3", 4, 1)
    again = SettingsPanel(config_dir=cfg).values
    assert (again["llm_model"], again["concurrency"], again["retries"]) == ("llama3", 4, 1)


def test_what_python_saved_is_what_the_panel_shows(cfg: Path) -> None:
    settings = Settings()
    settings.add(ProviderConfig(provider="comfyui", base_url="http://127.0.0.1:8188"))
    settings.default = "comfyui"
    settings.run = type(settings.run)(concurrency=6, retries=0)
    save_settings(settings, cfg / "config.json")
    values = SettingsPanel(config_dir=cfg).values
    assert (values["provider"], values["base_url"]) == ("comfyui", "http://127.0.0.1:8188")
    assert (values["concurrency"], values["retries"]) == (6, 0)


def test_one_concurrency_and_the_providers_cap_shown_as_a_limit(cfg: Path) -> None:
    # "Requests at once" (the provider's) sat beside "Concurrency" (the runner's)
    hello = ask(SettingsPanel(config_dir=cfg), "hello")
    for form in hello["forms"].values():
        assert "concurrency" not in {f["name"] for f in form["fields"]}
    assert hello["forms"]["a1111"]["limit"] == 1
    assert hello["forms"]["openai"]["limit"] is None


def test_the_toolbar_shows_the_providers_own_limit(cfg: Path, workspace: Workspace) -> None:
    # the toolbar's concurrency showed no limit: a WebUI run at 5 sends one at a time
    forge = ProviderConfig(provider="a1111", name="my-forge", concurrency=2)
    save_settings(Settings(providers={"my-forge": forge}))
    studio = BatchStudio(Batch.create([], workspace=workspace, allow_empty=True), provider="demo")
    grid, session = studio.grid, studio.session
    assert grid.concurrency_limit == 0  # the demo has none
    session.choose_provider("a1111")
    assert grid.concurrency_limit == 1  # the catalogue's default for the WebUI
    session.choose_provider("my-forge")
    assert grid.concurrency_limit == 2  # a saved configuration's "Requests at once"
    session.use_provider(nbbatch.get_provider("demo", max_concurrency=4))
    assert grid.concurrency_limit == 4  # a Provider object's own cap
    session.use_provider(ProviderConfig(provider="openai"))
    assert grid.concurrency_limit == 0 and grid.concurrency == 3
    studio.close()


def test_each_provider_is_listed_once_by_its_name(cfg: Path, workspace: Workspace) -> None:
    # "Stable Diffusion WebUI (A1111 / Forge)" was listed three times (a1111, forge, sdwebui)
    hello = ask(SettingsPanel(config_dir=cfg), "hello")
    labels = [p["label"] for p in hello["providers"]]
    assert len(labels) == len(set(labels))
    assert "forge" not in [p["name"] for p in hello["providers"]]
    studio = BatchStudio(Batch.create([], workspace=workspace, allow_empty=True))
    grid = studio.grid
    assert "forge" not in grid.providers and "a1111" in grid.providers
    # the toolbar's picker shows names a person reads, not raw ids
    labels_by_name = dict(zip(grid.providers, grid.provider_labels, strict=True))
    assert labels_by_name["a1111"] == "Stable Diffusion WebUI (A1111 / Forge)"
    assert labels_by_name["demo"] == nbbatch.providers.provider_info("demo").label


def test_an_older_studio_json_still_reaches_the_panel(cfg: Path) -> None:
    cfg.mkdir(parents=True)
    (cfg / "studio.json").write_text(json.dumps({"llm_model": "old-model", "concurrency": 7}))
    values = SettingsPanel(config_dir=cfg).values
    assert (values["llm_model"], values["concurrency"]) == ("old-model", 7)
