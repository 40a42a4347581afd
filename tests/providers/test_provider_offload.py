"""Shared adapter helpers: big base64 work leaves the event loop; bounded GET retries.

``offload`` keeps small data inline and moves multi-MB base64 coding / hashing to a
worker thread; the adapter tests below spy on ``asyncio.to_thread`` to pin that each
adapter really routes its big payloads through it. ``retry_fetch`` is the bounded retry
used for GETs on a remote job that already exists.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from nbbatch import Params
from nbbatch.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    RateLimitedError,
    ServerError,
)
from nbbatch.providers import (
    A1111Provider,
    ComfyUIProvider,
    GeminiProvider,
    GenerationRequest,
    InputImage,
    OpenAIProvider,
)
from nbbatch.providers._fetch import retry_fetch
from nbbatch.providers._offload import OFFLOAD_BYTES, offload

BIG = os.urandom(OFFLOAD_BYTES + 4096)  # random bytes: the adapters only move them
SMALL = os.urandom(1024)


@pytest.fixture
def offloaded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of the functions that went through ``asyncio.to_thread``."""
    names: list[str] = []
    real = asyncio.to_thread

    async def spy(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    yield names


# ---------------------------------------------------------------- offload
async def test_offload_keeps_small_work_inline_and_moves_big_work_to_a_thread() -> None:
    loop_thread = threading.get_ident()
    assert await offload(threading.get_ident, size=OFFLOAD_BYTES) == loop_thread
    assert await offload(threading.get_ident, size=OFFLOAD_BYTES + 1) != loop_thread


async def test_offload_passes_arguments_and_errors_through() -> None:
    assert await offload(len, BIG, size=len(BIG)) == len(BIG)
    with pytest.raises(ValueError, match=r"Incorrect padding|Invalid base64"):
        await offload(lambda: base64.b64decode("a" * 5, validate=True), size=len(BIG))


# ---------------------------------------------------------------- retry_fetch
class Flaky:
    """An async call that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def server_error() -> ServerError:
    return ServerError("fake: HTTP 503", provider="fake", status_code=503)


async def test_retry_fetch_repeats_retryable_errors_until_success() -> None:
    call = Flaky(server_error(), ProviderConnectionError("reset", provider="fake"))
    assert await retry_fetch(call, attempts=3, delay=0.001) == "ok"
    assert call.calls == 3


async def test_retry_fetch_gives_up_after_the_last_attempt() -> None:
    call = Flaky(*(server_error() for _ in range(5)))
    with pytest.raises(ServerError):
        await retry_fetch(call, attempts=3, delay=0.001)
    assert call.calls == 3


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("fake: HTTP 401", provider="fake"),
        BadRequestError("fake: HTTP 404", provider="fake"),
        RateLimitedError("fake: HTTP 429", retry_after=600, provider="fake"),
    ],
    ids=["401", "404", "429-retry-after-600"],
)
async def test_retry_fetch_raises_at_once_when_waiting_cannot_help(error: Exception) -> None:
    call = Flaky(error)
    with pytest.raises(type(error)):
        await retry_fetch(call, attempts=4, delay=0.001)
    assert call.calls == 1


async def test_retry_fetch_waits_what_retry_after_asks() -> None:
    call = Flaky(RateLimitedError("fake: HTTP 429", retry_after=0.08, provider="fake"))
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await retry_fetch(call, attempts=2, delay=0.001) == "ok"
    assert loop.time() - start >= 0.07


# ---------------------------------------------------------------- adapters
def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    "data, fast, moved",
    [(BIG, False, True), (SMALL, False, False), (BIG, True, False)],
    ids=["big-stdlib", "small-stdlib", "big-simd"],
)
async def test_openai_decodes_a_big_b64_json_off_the_loop(
    offloaded: list[str],
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    fast: bool,
    moved: bool,
) -> None:
    # The standard library's decode holds the loop for ~5 ms per MB: a worker thread
    # takes it. The SIMD decoder takes ~0.1 ms, less than the thread hop: it stays.
    from nbbatch.providers import _codec, _openai

    if not fast:
        monkeypatch.setattr(_codec, "_pybase64", None)
    monkeypatch.setattr(_openai, "FAST_BASE64", fast)
    body = {"data": [{"b64_json": base64.b64encode(data).decode()}]}
    p = OpenAIProvider(
        api_key="sk-offload-0000",
        base_url="http://api.test/v1",
        transport=mock(lambda r: httpx.Response(200, json=body)),
    )
    try:
        images = await p.generate(GenerationRequest("x"))
    finally:
        await p.aclose()
    assert images[0].data == data
    assert ("_strict_b64" in offloaded) is moved


async def test_gemini_encodes_big_references_and_decodes_big_answers_off_the_loop(
    offloaded: list[str],
) -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(BIG).decode()}}
        return httpx.Response(200, json={"candidates": [{"content": {"parts": [part]}}]})

    p = GeminiProvider(
        api_key="gm-offload-0000", base_url="http://api.test", transport=mock(handler)
    )
    try:
        images = await p.generate(
            GenerationRequest("x", images=[InputImage("ref.png", BIG, "image/png")])
        )
    finally:
        await p.aclose()
    assert images[0].data == BIG
    inline = sent[0]["contents"][0]["parts"][1]["inlineData"]
    assert base64.b64decode(inline["data"]) == BIG
    assert offloaded == ["_body", "_images"]


async def test_webui_encodes_a_big_init_image_off_the_loop(offloaded: list[str]) -> None:
    sent: list[dict[str, Any]] = []
    png = base64.b64encode(SMALL).decode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/progress"):  # the look at the server before sending
            return httpx.Response(200, json={"progress": 0, "state": {"job_count": 0}})
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"images": [png], "info": "{}"})

    p = A1111Provider(base_url="http://webui.test", transport=mock(handler), poll_interval=None)
    try:
        await p.generate(
            GenerationRequest("x", Params(strength=0.5), images=[InputImage("i.png", BIG)])
        )
    finally:
        await p.aclose()
    assert base64.b64decode(sent[0]["init_images"][0]) == BIG
    assert offloaded == ["payload"]  # the small answer was decoded inline


async def test_comfyui_hashes_a_big_upload_off_the_loop(offloaded: list[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"name": "up.png", "subfolder": "", "type": "input"})

    p = ComfyUIProvider(base_url="http://comfy.test", transport=mock(handler))
    try:
        name = await p._upload(BIG, "image/png", GenerationRequest("x"))
        small = await p._upload(SMALL, "image/png", GenerationRequest("x"))
    finally:
        await p.aclose()
    assert name == small == "up.png"
    assert len(offloaded) == 1  # only the big one


# -- Retry-After on a poll (defect 3 of the provider review) --------------------


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
