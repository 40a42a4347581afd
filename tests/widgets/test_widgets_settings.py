"""SettingsPanel: keys go in once and never come back out; a broken config file is kept."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nbbatch.widgets import SettingsPanel
from tests.widgets.page import PanelPage

SENTINEL = "test-key-SENTINEL-5b1f0c"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("STABILITY_API_KEY", raising=False)
    return tmp_path / "config"


def everything_the_page_and_the_notebook_can_see(panel: SettingsPanel, page: PanelPage) -> str:
    return json.dumps([panel.get_state(), page.sent], default=str)


def test_a_typed_key_lives_in_the_kernel_only(cfg: Path) -> None:
    panel = SettingsPanel(config_dir=cfg)
    page = PanelPage(panel)
    assert panel.llm_key_set is False
    page.ok("set_key", which="llm", key=SENTINEL, remember=False)
    assert panel.llm_key_set is True
    assert panel.llm_config().api_key.reveal() == SENTINEL  # type: ignore[union-attr]
    page.ok("save", values={"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m"})
    assert SENTINEL not in everything_the_page_and_the_notebook_can_see(panel, page)
    for f in cfg.rglob("*"):
        assert SENTINEL not in f.read_text()
    assert not (cfg / "secrets.json").exists()  # not remembered: nothing on disk


def test_remember_writes_the_private_secrets_file(cfg: Path) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    page.ok("save", values={"provider": "stability"})
    page.ok("set_key", which="provider", key=SENTINEL, remember=True)
    secrets = cfg / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert SENTINEL not in (cfg / "config.json").read_text()
    again = SettingsPanel(config_dir=cfg)  # the next studio
    assert again.key_set is True and again.values["provider"] == "stability"
    page.ok("forget_key", which="provider")
    assert SettingsPanel(config_dir=cfg).key_set is False


def test_a_key_from_the_environment_is_named_not_shown(
    cfg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    panel = SettingsPanel(config_dir=cfg)
    page = PanelPage(panel)
    hello = page.ok("hello")
    assert hello["keys"]["llm"]["env"] == "OPENAI_API_KEY"
    assert SENTINEL not in everything_the_page_and_the_notebook_can_see(panel, page)


def test_a_broken_config_file_gives_the_defaults_and_is_kept_until_saved(cfg: Path) -> None:
    cfg.mkdir(parents=True)
    (cfg / "config.json").write_text("{ this is not json")
    panel = SettingsPanel(config_dir=cfg)
    hello = PanelPage(panel).ok("hello")
    assert hello["problem"] and hello["values"]["provider"] == "demo"
    assert (cfg / "config.json").read_text() == "{ this is not json"
    PanelPage(panel).ok("save", values={"provider": "demo", "concurrency": 4})
    assert json.loads((cfg / "config.json").read_text())["default"] == "demo"
    assert SettingsPanel(config_dir=cfg).values["concurrency"] == 4


def test_bad_values_are_refused_in_words(cfg: Path) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    assert "from 1 to 10" in page.refused("save", values={"concurrency": 99})
    assert "No provider named" in page.refused("save", values={"provider": "nope"})
    assert "Paste a key" in page.refused("set_key", which="llm", key="  ")
    assert "incomplete" in page.refused("set_key", which="root", key="x")
    assert "does not understand" in page.refused("steal_keys")


async def test_test_connection_answers_in_words(cfg: Path) -> None:
    import asyncio

    panel = SettingsPanel(config_dir=cfg)
    page = PanelPage(panel)
    uid = page.request("test", values={"provider": "demo"})
    while page.reply(uid) is None:
        await asyncio.sleep(0.01)
    reply = page.reply(uid)
    assert reply is not None and reply["ok"] and reply["passed"] is True
    assert reply["message"]


def test_the_comm_debug_log_of_a_typed_key_is_redacted(
    cfg: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    SettingsPanel(config_dir=cfg)
    custom = {"type": "set_key", "which": "llm", "key": SENTINEL}
    msg = {"content": {"comm_id": "abc", "data": {"method": "custom", "content": custom}}}
    with caplog.at_level(logging.DEBUG, logger="Comm"):
        logging.getLogger("Comm").debug("handle_msg[%s](%s)", "abc", msg)
    assert "handle_msg[abc]" in caplog.text
    assert SENTINEL not in caplog.text and "'key': '***'" in caplog.text
    assert custom["key"] == SENTINEL  # the message itself is untouched
