"""Provider settings: round trips, where keys come from, and where they never go."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbbatch
from nbbatch import (
    Params,
    ProviderConfig,
    Settings,
    check_connection,
    load_settings,
    save_secret,
    save_settings,
)
from nbbatch.engine._settings import config_dir, delete_secret, load_secrets
from nbbatch.errors import ConfigError
from nbbatch.providers import DemoProvider, PoolProvider, provider_catalog
from nbbatch.providers._http import Timeouts
from nbbatch.providers._stability import StabilityProvider
from nbbatch.testing import FakeStability

SENTINEL = "test-key-CONFIG-SENTINEL-5f1e2d3c4b5a"
KEY_VARS = tuple(var for info in provider_catalog() for var in info.key_env)


@pytest.fixture(autouse=True)
def cfg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("NBBATCH_CONFIG_DIR", str(folder))
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    return folder


@pytest.fixture(scope="module")
def server() -> Iterator[FakeStability]:
    with FakeStability(api_key=SENTINEL) as s:
        yield s


def every_file_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_config_dir_honours_env(cfg_dir: Path) -> None:
    assert config_dir() == cfg_dir


def test_round_trip_keeps_everything_but_the_key(cfg_dir: Path) -> None:
    settings = Settings()
    settings.add(
        ProviderConfig(
            "stability",
            name="stab-ultra",
            base_url="https://example.invalid",
            model="ultra",
            params={"size": "1344x768", "negative_prompt": "blurry"},
            concurrency=4,
            timeouts={"read": 90, "connect": 3},
            options={"output_format": "webp"},
            api_key=SENTINEL,
        )
    )
    settings.add(
        ProviderConfig(
            "pool",
            name="gpus",
            endpoints=[
                ProviderConfig("demo", name="gpu-1", concurrency=2),
                ProviderConfig("demo", name="gpu-2", concurrency=3),
            ],
        )
    )
    path = save_settings(settings)
    assert path == cfg_dir / "config.json"
    loaded = load_settings()
    assert loaded == settings  # api_key is not compared and not saved
    assert loaded.default == "stab-ultra"
    assert loaded.get("stab-ultra").api_key is None
    assert loaded.get("stab-ultra").default_params() == Params(
        size="1344x768", negative_prompt="blurry"
    )
    assert SENTINEL not in path.read_text()
    assert "api_key" not in path.read_text()


def test_build_passes_settings_to_the_provider() -> None:
    config = ProviderConfig(
        "stability",
        model="sd3.5-large",
        concurrency=2,
        timeouts={"read": 12.5},
        options={"accept": "json"},
        api_key=SENTINEL,
    )
    provider = config.build()
    assert isinstance(provider, StabilityProvider)
    assert provider.model == "sd3.5-large" and provider.accept == "json"
    assert provider.max_concurrency == 2
    assert provider._http.timeouts == Timeouts(read=12.5)


def test_build_pool_from_endpoint_configs() -> None:
    config = ProviderConfig(
        "pool",
        endpoints=[
            {"provider": "demo", "name": "a", "concurrency": 2},  # type: ignore[list-item]
            ProviderConfig("demo", name="b", concurrency=3),
        ],
        options={"cooldown": 5.0},
    )
    pool = config.build()
    assert isinstance(pool, PoolProvider)
    assert [e.name for e in pool.endpoints] == ["a", "b"]
    assert pool.max_concurrency == 5 and pool.cooldown == 5.0
    assert all(isinstance(e.provider, DemoProvider) for e in pool.endpoints)


def test_unknown_fields_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="unknown parameter"):
        ProviderConfig("demo", params={"sizes": "1x1"})
    with pytest.raises(ConfigError, match="does not take base_url"):
        ProviderConfig("demo", base_url="http://x").build()
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        ProviderConfig("nope").build()
    with pytest.raises(ConfigError, match="unknown timeout"):
        ProviderConfig("demo", timeouts={"total": 3})
    with pytest.raises(ConfigError, match="unknown provider setting"):
        ProviderConfig.from_dict({"provider": "demo", "api_key": SENTINEL})


def test_credentials_in_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="looks like a credential") as info:
        ProviderConfig("stability", options={"api_key": SENTINEL})
    assert SENTINEL not in str(info.value)
    assert "STABILITY_API_KEY" in str(info.value)


def test_key_resolution_order(monkeypatch: pytest.MonkeyPatch, cfg_dir: Path) -> None:
    config = ProviderConfig("stability", name="stab")
    assert config.resolve_key() is None
    save_secret("stab", "sk-from-file-000111")
    assert config.resolve_key().reveal() == "sk-from-file-000111"  # type: ignore[union-attr]
    monkeypatch.setenv("STABILITY_API_KEY", "sk-from-env-222333")
    assert config.resolve_key().reveal() == "sk-from-env-222333"  # type: ignore[union-attr]
    config.api_key = nbbatch.core._secrets.Secret("sk-explicit-444555")
    assert config.resolve_key().reveal() == "sk-explicit-444555"  # type: ignore[union-attr]
    assert config.resolve_key("sk-argument-666777").reveal() == "sk-argument-666777"  # type: ignore[union-attr]


def test_gemini_falls_back_to_google_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google-9999")
    key = ProviderConfig("gemini").resolve_key()
    assert key is not None and key.reveal() == "AIza-google-9999"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_secrets_file_is_0600_and_round_trips(cfg_dir: Path) -> None:
    old = os.umask(0o022)  # the usual umask: a plain open() would give 0644
    try:
        path = save_secret("stab", SENTINEL)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    save_secret("fal", "fal-key-abcdef")  # rewriting keeps 0600 and the other key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {k: v.reveal() for k, v in load_secrets().items()} == {
        "stab": SENTINEL,
        "fal": "fal-key-abcdef",
    }
    assert delete_secret("fal") and not delete_secret("fal")
    assert list(load_secrets()) == ["stab"]
    assert [p.name for p in cfg_dir.iterdir()] == ["secrets.json"]  # no temp files left


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_readable_secrets_file_warns(cfg_dir: Path) -> None:
    path = save_secret("stab", SENTINEL)
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="can be read by other users") as caught:
        load_secrets()
    assert SENTINEL not in str(caught[0].message)
    with pytest.warns(UserWarning, match="chmod 600"):
        ProviderConfig("stability", name="stab").resolve_key()


def test_damaged_files_are_config_errors(cfg_dir: Path) -> None:
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "config.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings()
    (cfg_dir / "config.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ConfigError, match="Upgrade nbbatch"):
        load_settings()
    assert load_settings(cfg_dir / "missing.json") == Settings()


async def test_connection_ok_and_failure_are_readable(server: FakeStability) -> None:
    good = ProviderConfig("stability", base_url=server.url, api_key=SENTINEL)
    result = await check_connection(good)
    assert result.ok and result.verified and "connected" in result.message
    wrong = "test-key-WRONG-CONFIG-SENTINEL-777"
    bad = ProviderConfig("stability", base_url=server.url, api_key=wrong)
    result = await check_connection(bad)
    assert not result.ok and result.error_kind == "auth"
    assert "HTTP 401" in result.message and wrong not in str(result)


async def test_connection_reports_missing_key_and_unprobed_providers() -> None:
    result = await check_connection(ProviderConfig("stability"))
    assert not result.ok and result.error_kind == "config"
    assert "STABILITY_API_KEY" in result.message
    demo = await check_connection(ProviderConfig("demo"))
    assert demo.ok and demo.verified is False


async def test_sentinel_key_never_leaks(
    server: FakeStability, cfg_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = ProviderConfig("stability", name="stab", base_url=server.url, api_key=SENTINEL)
    settings = Settings()
    settings.add(config)
    save_settings(settings)
    provider = config.build()
    failing = ProviderConfig("stability", base_url=server.url, api_key=SENTINEL + "-x")
    result = await check_connection(failing)
    logging.getLogger("nbbatch").warning("built %r with %s", config, config.api_key)
    texts = [
        repr(config),
        str(config),
        repr(settings),
        repr(provider),
        str(result),
        repr(result),
        caplog.text,
        every_file_text(cfg_dir),
    ]
    await provider.aclose()
    assert not result.ok
    for text in texts:
        assert SENTINEL not in text
