"""Settings, "Spend and pace": the webhook (a secret), rate limits, token prices, balance."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbbatch.core._ratelimit import RateLimit, rate_limit_for, set_rate_limit
from nbbatch.engine import _pace
from nbbatch.testing import FakeStability
from nbbatch.widgets import SettingsPanel
from tests.widgets.page import PanelPage

TOKEN = "test-webhook-token-SENTINEL-77d1"
HOOK = f"https://hooks.example.com/services/T0/B0/{TOKEN}"
STABILITY_KEY = "test-key-stability-SENTINEL-9a"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(_pace.WEBHOOK_ENV, raising=False)
    monkeypatch.delenv("STABILITY_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield tmp_path / "config"
    _pace.set_webhook(None)  # this kernel's webhook and limits are process-wide
    for name in ("openai", "http://127.0.0.1:8188", "stability"):
        set_rate_limit(name)


def seen(panel: SettingsPanel, page: PanelPage) -> str:
    return json.dumps([panel.get_state(), page.sent], default=str)


def test_the_webhook_is_a_secret_the_page_sees_only_its_host(cfg: Path) -> None:
    panel = SettingsPanel(config_dir=cfg)
    page = PanelPage(panel)
    assert page.ok("hello")["pace"]["webhook"]["set"] is False
    reply = page.ok("set_webhook", url=HOOK, remember=True)
    hook = reply["pace"]["webhook"]
    assert hook["set"] is True and hook["shown"] == "https://hooks.example.com/…"
    url = _pace.webhook_url()
    assert url is not None and url.reveal() == HOOK, "runs of this kernel post to it"
    secrets = cfg / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600 and TOKEN in secrets.read_text()
    page.ok("save", values={"provider": "demo"})
    assert TOKEN not in (cfg / "config.json").read_text()
    assert TOKEN not in seen(panel, page)
    assert TOKEN not in repr(url) and TOKEN not in repr(panel)

    _pace.set_webhook(None)  # a new kernel: the saved one is found
    again = PanelPage(SettingsPanel(config_dir=cfg)).ok("hello")["pace"]["webhook"]
    assert (again["set"], again["source"]) == (True, "saved")
    page.ok("forget_webhook")
    assert PanelPage(SettingsPanel(config_dir=cfg)).ok("hello")["pace"]["webhook"]["set"] is False
    assert TOKEN not in secrets.read_text()


def test_a_webhook_from_the_environment_is_named_not_shown(
    cfg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_pace.WEBHOOK_ENV, HOOK)
    panel = SettingsPanel(config_dir=cfg)
    page = PanelPage(panel)
    hook = page.ok("hello")["pace"]["webhook"]
    assert (hook["source"], hook["env"]) == ("env", "NBBATCH_WEBHOOK_URL")
    assert TOKEN not in seen(panel, page)


def test_a_webhook_that_is_not_a_url_is_refused_in_words(cfg: Path) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    for bad in ("ntfy.sh/topic", "ftp://example.com/x", "   "):
        assert "must be a whole http:// or https:// URL" in page.refused("set_webhook", url=bad)
    assert _pace.webhook_url() is None


def test_the_comm_debug_log_of_a_typed_webhook_is_redacted(
    cfg: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SettingsPanel(config_dir=cfg)
    custom = {"type": "set_webhook", "url": HOOK, "remember": False}
    msg = {"content": {"comm_id": "abc", "data": {"method": "custom", "content": custom}}}
    with caplog.at_level(logging.DEBUG, logger="Comm"):
        logging.getLogger("Comm").debug("handle_msg[%s](%s)", "abc", msg)
    assert "handle_msg[abc]" in caplog.text and TOKEN not in caplog.text


def pace(
    rate_limits: list[dict[str, str]] | None = None,
    token_prices: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {"rate_limits": rate_limits or [], "token_prices": token_prices or []}


def test_rate_limits_are_saved_and_this_kernel_follows_them_at_once(cfg: Path) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    rows = [
        {"endpoint": "openai", "requests_per_minute": "60", "images_per_minute": ""},
        {"endpoint": "http://127.0.0.1:8188/", "requests_per_minute": "", "images_per_minute": "8"},
        {"endpoint": "", "requests_per_minute": "", "images_per_minute": ""},  # a blank row
    ]
    reply = page.ok("save", values={"provider": "demo"}, pace=pace(rows))
    saved = json.loads((cfg / "config.json").read_text())["rate_limits"]
    assert saved == {
        "openai": {"requests_per_minute": 60.0},
        "http://127.0.0.1:8188": {"images_per_minute": 8.0},
    }
    assert rate_limit_for("x", "openai") == RateLimit(requests_per_minute=60.0)
    assert [r["endpoint"] for r in reply["pace"]["rate_limits"]] == [
        "openai",
        "http://127.0.0.1:8188",
    ]
    page.ok("save", values={"provider": "demo"}, pace=pace(rows[1:]))  # openai's row removed
    assert rate_limit_for("x", "openai") == RateLimit()
    assert "openai" not in json.loads((cfg / "config.json").read_text())["rate_limits"]


def test_bad_rate_limits_are_refused_in_words_and_nothing_is_saved(cfg: Path) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))

    def refused(row: dict[str, str]) -> str:
        return page.refused("save", values={"provider": "demo"}, pace=pace([row]))

    said = refused({"endpoint": "openai", "requests_per_minute": "fast"})
    assert said == (
        "Rate limit of openai: requests per minute must be a number above 0 (or empty for no "
        'limit), not "fast".'
    )
    assert "images per minute must be a number above 0" in refused(
        {"endpoint": "openai", "images_per_minute": "-2"}
    )
    assert "needs the provider name" in refused({"endpoint": "", "requests_per_minute": "5"})
    secret_url = f"https://user:{TOKEN}@gpu.example.com"
    said = refused({"endpoint": secret_url, "requests_per_minute": "5"})
    assert "was not saved" in said and TOKEN not in said
    assert not (cfg / "config.json").exists()
    assert rate_limit_for("x", "openai") == RateLimit()


def test_the_token_price_table_shows_the_built_in_prices_and_keeps_dated_changes(
    cfg: Path,
) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    rows = page.ok("hello")["pace"]["token_prices"]
    gpt = next(r for r in rows if r["model"] == "openai/gpt-image-1")
    assert gpt["builtin"] is True and gpt["date"] == "2025-04-23"
    assert gpt["output_image"] == "40"
    changed = {**gpt, "output_image": "32", "date": "2026-12-01"}
    new = {"model": "fal/flux-pro", "date": "2026-12-07", "per_second": "0.0012"}
    others = [r for r in rows if r["model"] != "openai/gpt-image-1"]
    reply = page.ok("save", values={"provider": "demo"}, pace=pace([], [changed, new, *others]))
    saved = json.loads((cfg / "config.json").read_text())["token_prices"]
    assert saved == {
        "openai/gpt-image-1": {
            "date": "2026-12-01",
            "input_text": 5.0,
            "input_image": 10.0,
            "output_image": 32.0,
        },
        "fal/flux-pro": {"date": "2026-12-07", "per_second": 0.0012},
    }, "the unchanged built-in rows are not saved"
    shown = {r["model"]: r for r in reply["pace"]["token_prices"]}
    assert shown["openai/gpt-image-1"]["changed"] is True
    assert shown["fal/flux-pro"]["builtin"] is False


def test_bad_token_prices_are_refused_in_words(cfg: Path) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))

    def refused(row: dict[str, str]) -> str:
        return page.refused("save", values={"provider": "demo"}, pace=pace([], [row]))

    assert "give the date the price was read" in refused(
        {"model": "openai/gpt-image-2", "output_image": "30", "date": ""}
    )
    assert "like 2026-12-07" in refused(
        {"model": "openai/gpt-image-2", "output_image": "30", "date": "last week"}
    )
    assert "as provider/model" in refused({"model": "gpt-image-2", "output_image": "30"})
    assert 'output image must be dollars per million tokens, zero or more (or empty), not "-1"' in (
        refused({"model": "openai/x", "output_image": "-1", "date": "2026-12-07"})
    )
    assert "give at least one price" in refused({"model": "openai/x", "date": "2026-12-07"})
    assert not (cfg / "config.json").exists()


async def reply_of(page: PanelPage, type: str, **body: Any) -> dict[str, Any]:
    uid = page.request(type, **body)
    while page.reply(uid) is None:
        await asyncio.sleep(0.01)
    reply = page.reply(uid)
    assert reply is not None
    return reply


async def test_the_balance_is_read_from_a_service_that_has_an_api_for_it(cfg: Path) -> None:
    with FakeStability(api_key=STABILITY_KEY) as server:
        server.credits = 12.5
        page = PanelPage(SettingsPanel(config_dir=cfg))
        key = {"which": "provider", "provider": "stability"}
        page.ok("set_key", key=STABILITY_KEY, remember=False, **key)
        values = {"provider": "stability", "base_url": server.url}
        reply = await reply_of(page, "balance", values=values)
        assert reply["ok"] and (reply["available"], reply["amount"], reply["unit"]) == (
            True,
            12.5,
            "credits",
        )
        page.ok("forget_key", **key)
        reply = await reply_of(page, "balance", values=values)
        assert not reply["ok"] and reply["error"]  # no key: said in words
        assert STABILITY_KEY not in json.dumps(page.sent)


def test_a_service_without_a_balance_api_is_said_to_have_none(cfg: Path) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    reply = page.ok("balance", values={"provider": "openai"})
    assert reply["available"] is False and reply["provider"].startswith("OpenAI")


def test_a_rate_limit_set_in_python_on_a_url_with_a_password_is_never_shown(cfg: Path) -> None:
    from nbbatch import Settings

    secret_url = f"https://user:{TOKEN}@gpu.example.com"
    Settings(rate_limits={secret_url: {"requests_per_minute": 30}}).save(cfg / "config.json")
    panel = SettingsPanel(config_dir=cfg)
    page = PanelPage(panel)
    rows = page.ok("hello")["pace"]["rate_limits"]
    # the settings keep a limit by the URL without its user:password@ (the endpoint
    # gates know the server so), so there is nothing to hide here
    assert TOKEN not in (cfg / "config.json").read_text()
    assert rows == [
        {
            "endpoint": "https://gpu.example.com",
            "requests_per_minute": "30",
            "images_per_minute": "",
        }
    ]
    rows[0]["requests_per_minute"] = "20"
    page.ok("save", values={"provider": "demo"}, pace=pace(rows))
    saved = json.loads((cfg / "config.json").read_text())["rate_limits"]
    assert saved == {"https://gpu.example.com": {"requests_per_minute": 20.0}}
    assert TOKEN not in seen(panel, page)
    set_rate_limit(secret_url)
