"""Response bodies are read under caps: a gzip bomb, an endless chunked body and an
oversized error body, sent over real loopback HTTP to every provider and to the planner.

Before the caps (issue 26), ``HttpClient.request()``/``.json()`` read and inflated whole
bodies: 1.1 MB on the wire cost +3 GB of memory, and an endless body grew without end
(bytes keep flowing, so the read timeout never fires). Now each body is held to its cap
on the wire and once inflated; memory is bounded by bytes, measured with tracemalloc
(deterministic, unlike RSS): at most twice the cap (the pieces, then the joined body)
plus a fixed slack. The matrix runs with small caps (cheap on a shared machine); one test
per hostile kind runs at the shipped caps.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import nbbatch
from nbbatch.errors import (
    NbbatchError,
    ProviderError,
    ResponseTooLargeError,
    ServerError,
)
from nbbatch.providers import (
    A1111Provider,
    ComfyUIProvider,
    FalProvider,
    GeminiProvider,
    GenerationRequest,
    HuggingFaceProvider,
    OpenAIProvider,
    ReplicateProvider,
    StabilityProvider,
    _http,
)
from nbbatch.providers._http import BODY_LIMITS, BodyLimits, HttpClient
from nbbatch.testing._hostile import HostileServer

KEY = "test-key-body-caps-0001"
MIB = 1024 * 1024
SLACK = 6 * MIB  # everything that is not the body: clients, parsers, the server's bomb

SMALL = BodyLimits(json=2 * MIB, error=256 * 1024, image=2 * MIB, total=2 * MIB)

PROVIDERS: dict[str, Callable[[str], Any]] = {
    "openai": lambda url: OpenAIProvider(api_key=KEY, base_url=url + "/v1"),
    "a1111": lambda url: A1111Provider(base_url=url, poll_interval=None),
    "comfyui": lambda url: ComfyUIProvider(base_url=url, websocket=False, poll_interval=0.001),
    "stability": lambda url: StabilityProvider(api_key=KEY, base_url=url),
    "replicate": lambda url: ReplicateProvider(api_key=KEY, base_url=url, poll_interval=0.001),
    "gemini": lambda url: GeminiProvider(api_key=KEY, base_url=url),
    "huggingface": lambda url: HuggingFaceProvider(api_key=KEY, base_url=url),
    "fal": lambda url: FalProvider(api_key=KEY, base_url=url, poll_interval=0.001),
}


@contextlib.contextmanager
def traced_peak() -> Iterator[list[int]]:
    """The peak of Python's traced memory inside the block, above where it began."""
    out: list[int] = []
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1] - base)
        if not was_tracing:
            tracemalloc.stop()


async def measured(call: Callable[[], Awaitable[Any]]) -> tuple[BaseException, int]:
    """Run ``call`` (which must fail) under tracemalloc: its error and peak bytes."""
    with traced_peak() as peak:
        try:
            await call()
        except Exception as exc:
            error: BaseException = exc
        else:
            raise AssertionError("the hostile answer was accepted")
    return error, peak[0]


def in_words(exc: BaseException) -> str:
    assert isinstance(exc, NbbatchError), f"untyped {type(exc).__name__}: {exc}"
    text = str(exc)
    assert KEY not in text
    assert len(text) < 3_000  # as the fuzz tests: bounded, whatever the body held
    return text


@pytest.fixture
def small_caps(monkeypatch: pytest.MonkeyPatch) -> BodyLimits:
    monkeypatch.setattr(_http, "BODY_LIMITS", SMALL)
    return SMALL


@pytest.fixture
async def bomb() -> AsyncIterator[HostileServer]:
    async with HostileServer("bomb", inflated=64 * MIB) as server:
        yield server


@pytest.fixture
async def endless() -> AsyncIterator[HostileServer]:
    async with HostileServer("endless", endless_stop=64 * MIB) as server:
        yield server


@pytest.fixture
async def error_bomb() -> AsyncIterator[HostileServer]:
    async with HostileServer("error", inflated=64 * MIB) as server:
        yield server


def too_large(exc: BaseException, cap: int) -> None:
    text = in_words(exc)
    assert isinstance(exc, ResponseTooLargeError), text
    assert exc.limit == cap and not exc.retryable
    assert f"answer larger than {cap // MIB} MiB" in text


# ---------------------------------------------------------------- every provider


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_a_gzip_bomb_is_refused_at_its_cap_by_every_provider(
    name: str, small_caps: BodyLimits, bomb: HostileServer
) -> None:
    provider = PROVIDERS[name](bomb.url)
    try:
        exc, peak = await measured(lambda: provider.generate(GenerationRequest("x")))
    finally:
        await provider.aclose()
    too_large(exc, small_caps.json if name not in ("huggingface", "stability") else 2 * MIB)
    assert peak < 2 * small_caps.total + SLACK, f"{peak / MIB:.1f} MiB held"


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_an_endless_body_stops_at_its_cap_for_every_provider(
    name: str, small_caps: BodyLimits, endless: HostileServer
) -> None:
    provider = PROVIDERS[name](endless.url)
    try:
        exc, peak = await measured(lambda: provider.generate(GenerationRequest("x")))
    finally:
        await provider.aclose()
    too_large(exc, 2 * MIB)
    assert peak < 2 * small_caps.total + SLACK, f"{peak / MIB:.1f} MiB held"
    # the reading stopped at the cap: the server was cut off long before its end
    assert endless.sent < 16 * MIB


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_an_oversized_error_body_is_cut_and_the_status_still_decides(
    name: str, small_caps: BodyLimits, error_bomb: HostileServer
) -> None:
    provider = PROVIDERS[name](error_bomb.url)
    try:
        exc, peak = await measured(lambda: provider.generate(GenerationRequest("x")))
    finally:
        await provider.aclose()
    text = in_words(exc)
    assert isinstance(exc, ProviderError) and exc.retryable, text  # a 500 stays retryable
    assert "500" in text
    assert peak < 2 * small_caps.error + SLACK, f"{peak / MIB:.1f} MiB held"


# ---------------------------------------------------------------- the planner


@pytest.mark.parametrize("mode", ["bomb", "endless", "error"])
async def test_the_planner_refuses_hostile_answers_at_the_caps(
    mode: Any, small_caps: BodyLimits
) -> None:
    async with HostileServer(mode, inflated=64 * MIB, endless_stop=64 * MIB) as server:
        llm = {
            "base_url": server.url + "/v1",
            "api_key": KEY,
            "model": "m",
            "retry": nbbatch.RetryPolicy(max_retries=0),
        }
        exc, peak = await measured(lambda: nbbatch.planning.plan_async("a fox", llm=llm))
    text = in_words(exc)
    assert "planner" in text
    if mode == "error":
        assert isinstance(exc, ProviderError) and "500" in text, text
        assert peak < 2 * small_caps.error + SLACK, f"{peak / MIB:.1f} MiB held"
    else:
        # the planner raises the provider family's errors, saying where and what
        too_large(exc, small_caps.json)
        assert peak < 2 * small_caps.json + SLACK, f"{peak / MIB:.1f} MiB held"


# ---------------------------------------------------------------- the shipped caps


@pytest.mark.parametrize("mode", ["bomb", "endless"])
async def test_the_shipped_json_cap_holds_a_bomb_and_an_endless_body(mode: Any) -> None:
    cap = BODY_LIMITS.json
    async with HostileServer(mode, inflated=2 * cap, endless_stop=2 * cap) as server:
        client = HttpClient("hostile", server.url)
        try:
            exc, peak = await measured(lambda: client.json("POST", "/answer", json={}))
        finally:
            await client.aclose()
        sent = server.sent
    too_large(exc, cap)
    assert peak < 2 * cap + SLACK, f"{peak / MIB:.1f} MiB held"
    if mode == "endless":
        assert sent < cap + 16 * MIB


async def test_the_shipped_error_cap_holds_an_oversized_error_body() -> None:
    async with HostileServer("error", inflated=64 * MIB, status=503) as server:
        client = HttpClient("hostile", server.url)
        try:
            exc, peak = await measured(lambda: client.json("GET", "/answer"))
        finally:
            await client.aclose()
    assert isinstance(exc, ServerError) and exc.retryable
    assert peak < 2 * BODY_LIMITS.error + SLACK, f"{peak / MIB:.1f} MiB held"


def test_the_caps_are_decided_once() -> None:
    from nbbatch.images import DEFAULT_LIMITS
    from nbbatch.providers._support import DEFAULT_MAX_DOWNLOAD

    assert BODY_LIMITS.image == DEFAULT_LIMITS.max_bytes == DEFAULT_MAX_DOWNLOAD
    assert max(BODY_LIMITS.json, BODY_LIMITS.error, BODY_LIMITS.image) <= BODY_LIMITS.total
    assert BODY_LIMITS.cap(10**12) == BODY_LIMITS.total
    with pytest.raises(ValueError, match="whole number"):
        BodyLimits(json=0)
