"""Regressions for defects found by trying to break the providers (issue 13: 2, 3, 7).

2. one provider object used on a second event loop;
3. ``Retry-After`` honoured on every retried status, not only 429;
7. credentials in URLs and in every credential header are secrets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path

import httpx
import pytest

from nbbatch import Batch, ProviderConfig, Settings, Workspace, save_settings
from nbbatch._cli import main as cli_main
from nbbatch.core._errors import ProviderConnectionError, ServerError
from nbbatch.core._retry import RetryPolicy
from nbbatch.core._secrets import redact_url, split_url_credentials
from nbbatch.providers import (
    A1111Provider,
    Endpoint,
    ImageData,
    OpenAIProvider,
    PoolProvider,
    ProviderInfo,
    get_provider,
    provider_catalog,
)
from nbbatch.providers._base import GenerationRequest
from nbbatch.providers._http import HttpClient, redact_headers
from nbbatch.providers._support import retry_fetch
from nbbatch.testing import FakeA1111, FakeOpenAI, Fault

SENTINEL = "test-key-DEFECT7-SENTINEL-5f3e2a"


# ---------------------------------------------------------------------- defect 2
def test_one_provider_instance_works_on_a_second_event_loop() -> None:
    with FakeOpenAI() as server:
        provider = OpenAIProvider(api_key="test-key-loops", base_url=server.base_url)
        request = GenerationRequest("a fox on two loops")
        # each asyncio.run is a new loop that is closed at the end, as in run_sync
        first = asyncio.run(provider.generate(request))
        second = asyncio.run(provider.generate(request))
        assert first[0].data and second[0].data
        asyncio.run(provider.aclose())


def test_two_run_sync_calls_share_one_provider(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        provider = OpenAIProvider(api_key="test-key-loops", base_url=server.base_url)
        for i in range(2):
            with Workspace(tmp_path / f"ws{i}") as ws:
                batch = Batch.create([f"fox {i}"], workspace=ws)
                batch.run_sync(provider, retry=0)
                assert [t.status.value for t in batch.tasks] == ["succeeded"], batch.tasks[0].error


def test_a_pool_works_on_a_second_event_loop() -> None:
    with FakeOpenAI(latency=0.05) as server:
        member = OpenAIProvider(api_key="test-key-pool", base_url=server.base_url)
        pool = PoolProvider([Endpoint(member, 1)])
        request = GenerationRequest("a pooled fox")

        async def two_at_once() -> list[list[ImageData]]:
            # the second waits for the only slot: that ties the pool's Event to this loop
            return list(await asyncio.gather(pool.generate(request), pool.generate(request)))

        first, second = asyncio.run(two_at_once()), asyncio.run(two_at_once())
        # each of the four requests came back with its image (on the second loop too)
        assert [len(images) for images in (*first, *second)] == [1, 1, 1, 1]
        assert all(images[0].data.startswith(b"\x89PNG") for images in (*first, *second))
        assert [r.path for r in server.requests].count("/v1/images/generations") == 4
        asyncio.run(pool.aclose())


# ---------------------------------------------------------------------- defect 3
async def test_a_503_with_retry_after_waits_what_the_server_asked() -> None:
    with FakeOpenAI() as server:
        server.add_fault(Fault.status_code(503, headers={"retry-after": "2"}))
        provider = OpenAIProvider(api_key="test-key-503", base_url=server.base_url)
        with pytest.raises(ServerError) as info:
            await provider.generate(GenerationRequest("a fox"))
        await provider.aclose()
    assert info.value.retry_after == 2.0
    # the runner's decision, with jitter that would otherwise give 0.375-0.5 s
    assert RetryPolicy().delay_for(info.value, 1) == 2.0


async def test_retry_after_on_a_poll_503_is_waited_out_for_the_same_job() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:  # an injected clock: nothing really waits
        pauses.append(seconds)

    calls = 0

    async def poll() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ServerError("busy", status_code=503, retry_after=2.0)
        return "done"

    assert await retry_fetch(poll, delay=0.5, sleep=sleep) == "done"
    assert pauses == [2.0]


def test_a_retry_after_above_the_cap_still_fails_at_once() -> None:
    err = ServerError("busy", status_code=503, retry_after=600.0)
    assert RetryPolicy().delay_for(err, 1) is None


# ---------------------------------------------------------------------- defect 7
def test_url_credentials_are_split_into_a_masked_secret() -> None:
    clean, creds = split_url_credentials(f"http://user:{SENTINEL}@127.0.0.1:7860/x")
    assert clean == "http://127.0.0.1:7860/x"
    assert creds is not None and creds[0] == "user" and creds[1].reveal() == SENTINEL
    assert SENTINEL not in redact_url(f"http://user:{SENTINEL}@host:1/")
    assert split_url_credentials("http://127.0.0.1:1/") == ("http://127.0.0.1:1/", None)


def test_a_key_in_base_url_is_never_saved_printed_or_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ProviderConfig("a1111", name="gpu1", base_url=f"http://me:{SENTINEL}@127.0.0.1:9")
    assert config.base_url == "http://127.0.0.1:9"
    # the CLI's -o options copy a saved configuration: the credentials go along, hidden
    copied = dataclasses.replace(config, options={"poll_interval": 0.5})
    assert copied.base_url_for_build() == config.base_url_for_build() != config.base_url
    assert SENTINEL not in repr(config) and SENTINEL not in str(config)
    assert SENTINEL not in json.dumps(config.to_dict())
    settings = Settings()
    settings.add(config)
    path = save_settings(settings)  # $NBBATCH_CONFIG_DIR from conftest
    assert SENTINEL not in path.read_text()
    assert cli_main(["providers"]) == 0
    out = capsys.readouterr()
    assert "gpu1" in out.out and SENTINEL not in out.out + out.err


async def test_url_credentials_become_basic_auth_and_stay_out_of_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeA1111(auth=("me", SENTINEL)) as server:
        host = server.url.removeprefix("http://")
        config = ProviderConfig("a1111", base_url=f"http://me:{SENTINEL}@{host}")
        provider = config.build()
        assert isinstance(provider, A1111Provider)
        assert SENTINEL not in provider.base_url
        with caplog.at_level(logging.DEBUG):
            images = await provider.generate(GenerationRequest("a fox behind basic auth"))
        await provider.aclose()
    assert images
    assert "HTTP Request" in caplog.text  # httpx's INFO line was captured...
    assert SENTINEL not in caplog.text  # ...without the password


async def test_connection_errors_never_quote_url_credentials() -> None:
    client = HttpClient("x", f"http://me:{SENTINEL}@127.0.0.1:9")  # nothing listens on 9
    with pytest.raises(ProviderConnectionError) as info:
        await client.request("GET", "/")
    await client.aclose()
    assert SENTINEL not in str(info.value)


@pytest.mark.parametrize(
    "header", ["Authorization", "x-goog-api-key", "x-api-key", "X-Auth-Token", "Cookie"]
)
async def test_every_credential_header_is_scrubbed_from_errors(header: str) -> None:
    value = f"Bearer {SENTINEL}" if header == "Authorization" else SENTINEL
    with FakeOpenAI() as server:
        # a hostile server that quotes the credential back in its error text
        server.add_fault(Fault.status_code(400, {"error": {"message": f"bad {value}"}}))
        client = HttpClient("x", server.base_url, headers={header: value})
        with pytest.raises(Exception) as info:
            await client.json("GET", "/models")
        await client.aclose()
    assert SENTINEL not in str(info.value)


def test_logged_header_maps_never_show_credentials(caplog: pytest.LogCaptureFixture) -> None:
    HttpClient("x", "http://127.0.0.1:9", headers={"x-goog-api-key": SENTINEL})
    headers = httpx.Headers({"x-goog-api-key": SENTINEL, "Accept": "image/png"})
    assert SENTINEL not in repr(redact_headers(headers))
    assert redact_headers(headers)["accept"] == "image/png"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("nbbatch").info("sent %r", headers)
        logging.getLogger("httpx").info("sent %r", headers)
    assert SENTINEL not in caplog.text


def test_llm_headers_values_are_secrets() -> None:
    from nbbatch.core._secrets import scrub
    from nbbatch.planning._llm import LLMConfig, _Chat

    _Chat(LLMConfig(base_url="http://127.0.0.1:9/v1", headers={"api-key": SENTINEL}))
    assert SENTINEL not in scrub(f"server said: {SENTINEL}")


@pytest.mark.parametrize(
    "info", [i for i in provider_catalog() if i.default_base_url], ids=lambda i: i.name
)
def test_no_provider_keeps_url_credentials_where_they_show(info: ProviderInfo) -> None:
    options = {"api_key": "test-key-other-0002"} if info.key_rule != "never" else {}
    provider = get_provider(info.name, base_url=f"http://me:{SENTINEL}@127.0.0.1:9", **options)
    assert SENTINEL not in str(getattr(provider, "base_url", ""))
    assert SENTINEL not in repr(provider)
