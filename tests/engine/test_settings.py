"""The one settings home: providers, the planner LLM, run defaults and prices together."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from nbbatch import Batch, ProviderConfig, Settings, load_settings, save_settings
from nbbatch.engine import LLMSettings, RunDefaults
from nbbatch.engine._settings import config_dir, save_secret
from nbbatch.errors import ConfigError
from nbbatch.planning import LLMConfig


def test_settings_round_trip_all_sections(tmp_path: Path) -> None:
    settings = Settings(
        prices={"openai": 0.04},
        llm=LLMSettings(model="llama3", base_url="http://localhost:11434/v1", temperature=0.2),
        run=RunDefaults(concurrency=5, retries=4),
    )
    settings.add(ProviderConfig("comfyui", base_url="http://gpu:8188"))
    path = settings.save(tmp_path / "config.json")
    data = json.loads(path.read_text())
    assert data["version"] == 2
    assert data["llm"] == {
        "model": "llama3",
        "base_url": "http://localhost:11434/v1",
        "temperature": 0.2,
    }
    assert data["run"] == {"concurrency": 5, "retries": 4}
    again = Settings.load(path)
    assert again.llm == settings.llm
    assert again.run == settings.run
    assert again.prices == {"openai": 0.04}
    assert again.get().base_url == "http://gpu:8188"


def test_studio_json_of_an_older_version_is_folded_in_then_no_longer_read(
    tmp_path: Path,
) -> None:
    # an older studio kept the LLM and the run defaults in studio.json; config.json (v1)
    # only knew providers
    (tmp_path / "config.json").write_text(
        json.dumps({"version": 1, "default": None, "providers": []})
    )
    (tmp_path / "studio.json").write_text(
        json.dumps(
            {
                "llm_base_url": "http://localhost:11434/v1",
                "llm_model": "qwen2.5",
                "concurrency": 6,
                "retries": 1,
            }
        )
    )
    settings = load_settings(tmp_path / "config.json")
    assert settings.llm.model == "qwen2.5"
    assert settings.llm.base_url == "http://localhost:11434/v1"
    assert settings.run == RunDefaults(concurrency=6, retries=1)

    settings.run = RunDefaults(concurrency=2, retries=0)
    save_settings(settings, tmp_path / "config.json")
    # once config.json holds the sections, studio.json is no longer read
    assert load_settings(tmp_path / "config.json").run == RunDefaults(2, 0)


def test_studio_json_alone_is_folded_in(tmp_path: Path) -> None:
    (tmp_path / "studio.json").write_text(json.dumps({"llm_model": "m", "retries": 3}))
    settings = load_settings(tmp_path / "config.json")
    assert settings.llm.model == "m"
    assert settings.run.retries == 3
    assert settings.run.concurrency == 3


def test_a_broken_studio_json_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "studio.json").write_text(json.dumps({"concurrency": "many"}))
    with caplog.at_level(logging.WARNING, logger="nbbatch"):
        settings = load_settings(tmp_path / "config.json")
    assert settings.run == RunDefaults()
    assert "studio.json cannot be used" in caplog.text
    assert "whole number" in caplog.text


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: RunDefaults(concurrency=0), "concurrency must be 1 or more"),
        (lambda: RunDefaults(retries=11), "retries must be between 0 and 10"),
        (lambda: RunDefaults(retries=True), "whole number"),
        (lambda: LLMSettings(model=" "), "LLM model must be named"),
        (lambda: LLMSettings(timeout=0), "more than 0 seconds"),
        (lambda: Settings.from_dict({"run": {"speed": 3}}), "unknown run setting"),
        (lambda: Settings.from_dict({"llm": []}), "LLM must be a JSON object"),
    ],
)
def test_bad_values_are_refused_in_words(make: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        make()  # type: ignore[operator]


def test_a_password_in_the_llm_base_url_is_refused_not_saved() -> None:
    with pytest.raises(ConfigError, match="keys are never kept") as info:
        LLMSettings(base_url="http://me:hunter2@localhost:8000/v1")
    assert "hunter2" not in str(info.value)


def test_the_planner_reads_the_saved_llm_and_its_saved_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    Settings(llm=LLMSettings(model="llama3", base_url="http://localhost:1/v1", timeout=9)).save()
    save_secret("llm", "sk-saved")
    config = LLMConfig.coerce(None)
    assert (config.model, config.base_url, config.timeout) == (
        "llama3",
        "http://localhost:1/v1",
        9.0,
    )
    assert config.api_key is not None and config.api_key.reveal() == "sk-saved"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    config = LLMConfig.from_settings()
    assert config.api_key is not None and config.api_key.reveal() == "sk-env"
    assert (config_dir() / "config.json").exists()


async def test_a_run_uses_the_saved_run_defaults(tmp_path: Path) -> None:
    Settings(run=RunDefaults(concurrency=1, retries=5)).save()
    batch = Batch.create(["a", "b"], workspace=tmp_path / "ws")
    try:
        runner = batch.start("demo")
        assert runner.concurrency == 1
        assert runner.retry_policy.max_retries == 5
        await runner.wait()
        runner = batch.start("demo", concurrency=2, retry=0, retry_failed=True)
        assert runner.concurrency == 2
        assert runner.retry_policy.max_retries == 0
        await runner.wait()
    finally:
        batch.workspace.close()
