"""The studio's inputs work together: what the settings save is what "Run all" uses,
and the prompt panel offers the parameters of the provider that will run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nbbatch import Batch, ProviderConfig, Workspace
from nbbatch.errors import ConfigError
from nbbatch.widgets import BatchStudio
from tests.widgets.page import PanelPage

SENTINEL = "test-key-SENTINEL-77c1d2"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("OPENAI_API_KEY", "STABILITY_API_KEY", "NBBATCH_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "config"
    monkeypatch.setenv("NBBATCH_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    return Batch.create([], workspace=Workspace(tmp_path / "ws"), allow_empty=True)


def offered(studio: BatchStudio) -> list[str]:
    return [f["name"] for f in PanelPage(studio.prompt).ok("params")["params"]]


def test_saved_settings_become_what_run_all_uses(cfg: Path, batch: Batch) -> None:
    studio = BatchStudio(batch)
    settings = PanelPage(studio.settings)
    before = studio.prompt.params_version
    settings.ok(
        "save",
        values={
            "provider": "a1111",
            "base_url": "http://127.0.0.1:7861",
            "options": {"concurrency": "1", "workflow": "ignored: not a WebUI field"},
            "defaults": {"steps": "12", "sampler": "Euler a"},
            "concurrency": 5,
            "retries": 1,
        },
    )
    provider = studio.provider
    assert isinstance(provider, ProviderConfig)
    assert (provider.provider, provider.base_url) == ("a1111", "http://127.0.0.1:7861")
    # only the catalogue's fields, and one concurrency: the WebUI's own cap of 1 is its
    # limit (built.max_concurrency below), not a second field
    assert (provider.concurrency, provider.options) == (None, {})
    assert (studio.concurrency, studio.session.retries) == (5, 1)
    assert studio.session.provider_name == "a1111" and "a1111" in studio.session.providers
    # the open prompt panel is told to redraw, and now offers the WebUI's parameters
    assert studio.prompt.params_version > before
    reply = PanelPage(studio.prompt).ok("params")
    assert {"steps", "cfg_scale", "sampler"} <= {f["name"] for f in reply["params"]}
    assert reply["defaults"] == {"steps": "12", "sampler": "Euler a"}
    built, owned = studio.session._build_provider()
    assert owned == [built] and built.name == "a1111" and built.max_concurrency == 1


def test_the_next_studio_starts_from_the_saved_settings(cfg: Path, batch: Batch) -> None:
    first = BatchStudio(batch)
    PanelPage(first.settings).ok(
        "save", values={"provider": "openai", "concurrency": 2, "retries": 0}
    )
    nxt = BatchStudio(Batch.create([], workspace=batch.workspace, allow_empty=True))
    assert nxt.session.provider_name == "openai" and isinstance(nxt.provider, ProviderConfig)
    assert (nxt.concurrency, nxt.session.retries) == (2, 0)
    # OpenAI Images has no seed, steps or sampler: they are not offered
    assert offered(nxt) == ["size", "n", "model"]


def test_what_the_code_gave_wins_over_the_settings(cfg: Path, batch: Batch) -> None:
    studio = BatchStudio(batch, provider="demo", concurrency=4)
    PanelPage(studio.settings).ok(
        "save", values={"provider": "openai", "concurrency": 2, "retries": 3}
    )
    assert (studio.provider, studio.concurrency, studio.session.retries) == ("demo", 4, 3)


def test_the_studios_picker_changes_the_offered_params(cfg: Path, batch: Batch) -> None:
    studio = BatchStudio(batch)
    assert "steps" not in offered(studio)  # the demo provider takes no steps
    version = studio.prompt.params_version
    PanelPage(studio.grid).ok("set_provider", name="comfyui")
    assert studio.prompt.params_version > version
    assert "steps" in offered(studio) and studio.provider == "comfyui"


def test_a_key_typed_into_settings_reaches_the_provider_and_nothing_else(
    cfg: Path, batch: Batch
) -> None:
    studio = BatchStudio(batch)
    settings = PanelPage(studio.settings)
    settings.ok("save", values={"provider": "stability"})
    with pytest.raises(ConfigError, match="STABILITY_API_KEY"):
        studio.session._build_provider()  # Stability cannot be built without a key
    settings.ok("set_key", which="provider", provider="stability", key=SENTINEL, remember=False)
    built, _ = studio.session._build_provider()
    assert built.name == "stability"
    assert studio.provider.api_key.reveal() == SENTINEL
    assert SENTINEL not in str(studio.grid.get_state()) + str(studio.settings.get_state())
    assert SENTINEL not in repr(studio.provider)


async def test_run_all_runs_on_the_saved_provider_with_its_defaults(
    cfg: Path, batch: Batch
) -> None:
    studio = BatchStudio(batch)
    PanelPage(studio.settings).ok(
        "save",
        values={"provider": "demo", "defaults": {"seed": "7"}, "concurrency": 2, "retries": 0},
    )
    prompt = PanelPage(studio.prompt)
    prompt.ok("propose", draft={"mode": "lines", "prompt": "a fox\na lighthouse"})
    prompt.ok("create")
    assert [t.params.seed for t in batch.tasks] == [7, 7]
    PanelPage(studio.grid).ok("run_all")
    run = studio.runner
    assert run is not None and run.concurrency == 2
    await run.wait()
    await asyncio.sleep(0)
    assert [t.status.value for t in batch.tasks] == ["succeeded", "succeeded"]
