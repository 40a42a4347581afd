"""Keys stay masked: reprs, logs, error messages built from server text."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from pathlib import Path

import httpx
import pytest

from nbbatch import ProviderConfig, Settings, save_settings
from nbbatch._cli import main as cli_main
from nbbatch.core._errors import ProviderConnectionError
from nbbatch.core._secrets import Secret, redact_url, resolve_key, scrub, split_url_credentials
from nbbatch.providers import (
    A1111Provider,
    ProviderInfo,
    get_provider,
    provider_catalog,
)
from nbbatch.providers._base import GenerationRequest
from nbbatch.providers._http import HttpClient, error_from_response, redact_headers
from nbbatch.testing import FakeA1111, FakeOpenAI, Fault

SENTINEL = "test-key-test-SENTINEL-0123456789abcdef"


def test_secret_never_prints_its_value() -> None:
    s = Secret(SENTINEL)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % s):  # noqa: UP031 (old-style formatting is a leak path too)
        assert SENTINEL not in text
    assert s.reveal() == SENTINEL
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(s)


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECOND_KEY", "from-env-2")
    assert resolve_key("explicit-key", ["FIRST_KEY", "SECOND_KEY"]).reveal() == "explicit-key"  # type: ignore[union-attr]
    assert resolve_key(None, ["FIRST_KEY", "SECOND_KEY"]).reveal() == "from-env-2"  # type: ignore[union-attr]
    assert resolve_key(None, ["FIRST_KEY"]) is None


def test_scrub_and_log_filter(caplog: pytest.LogCaptureFixture) -> None:
    Secret(SENTINEL)
    assert scrub(f"url?key={SENTINEL}&x") == "url?key=***&x"
    with caplog.at_level(logging.INFO, logger="nbbatch"):
        logging.getLogger("nbbatch").info("sending with %s", SENTINEL)
    assert SENTINEL not in caplog.text and "***" in caplog.text


def test_server_echoing_the_key_does_not_leak_into_the_error() -> None:
    Secret(SENTINEL)
    response = httpx.Response(
        401,
        json={"error": {"message": f"Incorrect API key provided: {SENTINEL}"}},
        request=httpx.Request("POST", "http://x"),
    )
    err = error_from_response(response, "openai")
    assert SENTINEL not in str(err) and "Incorrect API key" in str(err)


def test_logged_tracebacks_are_scrubbed_too(caplog: pytest.LogCaptureFixture) -> None:
    Secret(SENTINEL)
    with caplog.at_level(logging.ERROR, logger="nbbatch"):
        try:
            raise RuntimeError(f"upstream said: bad key {SENTINEL}")
        except RuntimeError:
            logging.getLogger("nbbatch").exception("request failed")
    assert "bad key ***" in caplog.text
    assert SENTINEL not in caplog.text


async def test_clients_carrying_a_key_do_not_follow_redirects() -> None:
    from nbbatch.providers._http import HttpClient

    keyed = HttpClient("x", "http://127.0.0.1:9", headers={"x-goog-api-key": "k" * 8})
    plain = HttpClient("x", "http://127.0.0.1:9", headers={"accept": "image/*"})
    assert not keyed.follow_redirects and plain.follow_redirects
    await keyed.aclose()
    await plain.aclose()


# -- credentials in URLs and headers ------------------------------------------------
# Defect 7 of the provider review: keys in base URLs and credential headers other than
# Authorization were shown, logged and saved.


URL_SENTINEL = "test-key-DEFECT7-URL_SENTINEL-5f3e2a"


def test_url_credentials_are_split_into_a_masked_secret() -> None:
    clean, creds = split_url_credentials(f"http://user:{URL_SENTINEL}@127.0.0.1:7860/x")
    assert clean == "http://127.0.0.1:7860/x"
    assert creds is not None and creds[0] == "user" and creds[1].reveal() == URL_SENTINEL
    assert URL_SENTINEL not in redact_url(f"http://user:{URL_SENTINEL}@host:1/")
    assert split_url_credentials("http://127.0.0.1:1/") == ("http://127.0.0.1:1/", None)


def test_a_key_in_base_url_is_never_saved_printed_or_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ProviderConfig("a1111", name="gpu1", base_url=f"http://me:{URL_SENTINEL}@127.0.0.1:9")
    assert config.base_url == "http://127.0.0.1:9"
    # the CLI's -o options copy a saved configuration: the credentials go along, hidden
    copied = dataclasses.replace(config, options={"poll_interval": 0.5})
    assert copied.base_url_for_build() == config.base_url_for_build() != config.base_url
    assert URL_SENTINEL not in repr(config) and URL_SENTINEL not in str(config)
    assert URL_SENTINEL not in json.dumps(config.to_dict())
    settings = Settings()
    settings.add(config)
    path = save_settings(settings)  # $NBBATCH_CONFIG_DIR from conftest
    assert URL_SENTINEL not in path.read_text()
    assert cli_main(["providers"]) == 0
    out = capsys.readouterr()
    assert "gpu1" in out.out and URL_SENTINEL not in out.out + out.err


async def test_url_credentials_become_basic_auth_and_stay_out_of_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeA1111(auth=("me", URL_SENTINEL)) as server:
        host = server.url.removeprefix("http://")
        config = ProviderConfig("a1111", base_url=f"http://me:{URL_SENTINEL}@{host}")
        provider = config.build()
        assert isinstance(provider, A1111Provider)
        assert URL_SENTINEL not in provider.base_url
        with caplog.at_level(logging.DEBUG):
            images = await provider.generate(GenerationRequest("a fox behind basic auth"))
        await provider.aclose()
    assert images
    assert "HTTP Request" in caplog.text  # httpx's INFO line was captured...
    assert URL_SENTINEL not in caplog.text  # ...without the password


async def test_connection_errors_never_quote_url_credentials() -> None:
    client = HttpClient("x", f"http://me:{URL_SENTINEL}@127.0.0.1:9")  # nothing listens on 9
    with pytest.raises(ProviderConnectionError) as info:
        await client.request("GET", "/")
    await client.aclose()
    assert URL_SENTINEL not in str(info.value)


@pytest.mark.parametrize(
    "header", ["Authorization", "x-goog-api-key", "x-api-key", "X-Auth-Token", "Cookie"]
)
async def test_every_credential_header_is_scrubbed_from_errors(header: str) -> None:
    value = f"Bearer {URL_SENTINEL}" if header == "Authorization" else URL_SENTINEL
    with FakeOpenAI() as server:
        # a hostile server that quotes the credential back in its error text
        server.add_fault(Fault.status_code(400, {"error": {"message": f"bad {value}"}}))
        client = HttpClient("x", server.base_url, headers={header: value})
        with pytest.raises(Exception) as info:
            await client.json("GET", "/models")
        await client.aclose()
    assert URL_SENTINEL not in str(info.value)


def test_logged_header_maps_never_show_credentials(caplog: pytest.LogCaptureFixture) -> None:
    HttpClient("x", "http://127.0.0.1:9", headers={"x-goog-api-key": URL_SENTINEL})
    headers = httpx.Headers({"x-goog-api-key": URL_SENTINEL, "Accept": "image/png"})
    assert URL_SENTINEL not in repr(redact_headers(headers))
    assert redact_headers(headers)["accept"] == "image/png"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("nbbatch").info("sent %r", headers)
        logging.getLogger("httpx").info("sent %r", headers)
    assert URL_SENTINEL not in caplog.text


def test_llm_headers_values_are_secrets() -> None:
    from nbbatch.core._secrets import scrub
    from nbbatch.planning._llm import LLMConfig, _Chat

    _Chat(LLMConfig(base_url="http://127.0.0.1:9/v1", headers={"api-key": URL_SENTINEL}))
    assert URL_SENTINEL not in scrub(f"server said: {URL_SENTINEL}")


@pytest.mark.parametrize(
    "info", [i for i in provider_catalog() if i.default_base_url], ids=lambda i: i.name
)
def test_no_provider_keeps_url_credentials_where_they_show(info: ProviderInfo) -> None:
    options = {"api_key": "test-key-other-0002"} if info.key_rule != "never" else {}
    provider = get_provider(info.name, base_url=f"http://me:{URL_SENTINEL}@127.0.0.1:9", **options)
    assert URL_SENTINEL not in str(getattr(provider, "base_url", ""))
    assert URL_SENTINEL not in repr(provider)
