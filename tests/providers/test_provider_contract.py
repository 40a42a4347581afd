"""The contract every provider over HTTP keeps, one suite run against each service's fake.

What the provider files each used to set up and pin again for their own service — a
wrong key, server errors retried with exact counts, a 429 then a 500, a Retry-After
beyond the cap, an answer cut short, a hung server — is written once here and
parametrised over the six cloud services and the two local servers (WebUI, ComfyUI,
which have no key to get wrong). What is particular to one service (its wire format,
its refusals, its polling) stays in ``test_provider_<service>.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from nbbatch import Batch, TaskStatus, Workspace
from nbbatch.errors import AuthenticationError, ProviderConnectionError, ProviderTimeoutError
from nbbatch.providers import GenerationRequest, Provider, Timeouts
from nbbatch.providers._a1111 import A1111Provider
from nbbatch.providers._comfyui import ComfyUIProvider
from nbbatch.providers._fal import FalProvider
from nbbatch.providers._gemini import GeminiProvider
from nbbatch.providers._huggingface import HuggingFaceProvider
from nbbatch.providers._openai import OpenAIProvider
from nbbatch.providers._replicate import ReplicateProvider
from nbbatch.providers._stability import StabilityProvider
from nbbatch.testing import (
    FakeA1111,
    FakeComfyUI,
    FakeFal,
    FakeGemini,
    FakeHuggingFace,
    FakeOpenAI,
    FakeReplicate,
    FakeStability,
    Fault,
)
from tests.support import FAST

KEY = "test-key-CONTRACT-SENTINEL-0a1b2c3d"
WRONG = "test-key-WRONG-SENTINEL-9f8e7d6c"
HF_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"


def _polling(cls: type[Any]) -> Callable[..., Provider]:
    def build(**kw: Any) -> Provider:
        p = cls(poll_interval=0.01, **kw)
        p.fetch_attempts, p.fetch_retry_delay = 3, 0.001
        return p  # type: ignore[no-any-return]

    return build


def _gemini_long_wait(server: Any, path: str) -> None:
    # Gemini says how long to wait in the body (RetryInfo), not in a header
    server.retry_delay = "3600s"
    server.add_fault(Fault.status_code(429), path=path)


def _header_long_wait(server: Any, path: str) -> None:
    server.add_fault(Fault.status_code(429, headers={"retry-after": "3600"}), path=path)


@dataclass(frozen=True)
class Service:
    name: str
    fake: Callable[[], Any]  # a fake server that accepts KEY only
    provider: Callable[..., Provider]  # (api_key=, base_url=, **kw)
    submit: str  # the request that asks for the image (glob), POSTed once per attempt
    auth_says: str | None  # the service's words on a bad key (None: no key to check)
    long_wait: Callable[[Any, str], None] = _header_long_wait  # (server, submit path)
    #: where an answer can be cut short, and whether that request is retried inside the
    #: provider (a download: ``fetch_attempts``) rather than by the runner (an attempt)
    truncate: str | None = None
    retried_inside: bool = False
    server_error: int = 503
    checks: bool = True  # has a ``check()`` that asks the service (an optional hook)
    options: dict[str, Any] = field(default_factory=dict)
    reset: Callable[[Any], None] = lambda server: None


def _reset_gemini(server: Any) -> None:
    server.retry_delay = "0.01s"


def _keyless(cls: type[Any], **options: Any) -> Callable[..., Provider]:
    """A local server's provider (WebUI, ComfyUI): no key; the URL and options only."""

    def build(api_key: str, base_url: str, **kw: Any) -> Provider:
        p = cls(base_url=base_url, poll_interval=0.01, **options, **kw)
        if hasattr(p, "fetch_attempts"):
            p.fetch_attempts, p.fetch_retry_delay = 3, 0.001
        return p  # type: ignore[no-any-return]

    return build


SERVICES = [
    Service(
        "openai",
        lambda: FakeOpenAI(api_key=KEY, render="fast"),
        OpenAIProvider,
        "/v1/images/generations",
        "Incorrect API key",
    ),
    Service(
        "stability",
        lambda: FakeStability(api_key=KEY),
        StabilityProvider,
        "/v2beta/*",
        "invalid or missing",
    ),
    Service(
        "gemini",
        lambda: FakeGemini(api_key=KEY),
        GeminiProvider,
        "*:generateContent",
        "not valid",
        long_wait=_gemini_long_wait,
        reset=_reset_gemini,
    ),
    Service(
        "replicate",
        lambda: FakeReplicate(api_key=KEY),
        _polling(ReplicateProvider),
        "/v1/models/*",
        "You did not pass a valid authentication token",
        truncate="/files/*",
        retried_inside=True,
    ),
    Service(
        "fal",
        lambda: FakeFal(api_key=KEY),
        _polling(FalProvider),
        "/fal-ai/flux/schnell",
        "Unauthorized",
        checks=False,
        truncate="/files/*",
        retried_inside=True,
    ),
    Service(
        "huggingface",
        lambda: FakeHuggingFace(api_key=KEY, models=(HF_MODEL,)),
        HuggingFaceProvider,
        f"/{HF_MODEL}",
        "Invalid credentials",
        checks=False,
        server_error=500,  # its 503 means "model loading", a wait (test_provider_huggingface)
        options={"model": HF_MODEL},
    ),
    Service("a1111", FakeA1111, _keyless(A1111Provider), "/sdapi/v1/txt2img", None),
    Service(
        "comfyui",
        FakeComfyUI,
        _keyless(ComfyUIProvider),
        "/prompt",
        None,
        truncate="/view",
        retried_inside=True,
    ),
]
KEYED = [s for s in SERVICES if s.auth_says is not None]


@dataclass
class Case:
    service: Service
    server: Any

    def provider(self, api_key: str = KEY, **kw: Any) -> Provider:
        url = getattr(self.server, "base_url", None) or self.server.url
        return self.service.provider(api_key=api_key, base_url=url, **self.service.options, **kw)

    def submits(self) -> int:
        return len(self.server.calls(self.service.submit, "POST"))

    async def run(self, workspace: Workspace, prompt: str = "a lighthouse at dusk") -> Batch:
        batch = Batch.create([prompt], workspace=workspace)
        p = self.provider()
        try:
            await batch.run(p, concurrency=1, retry=FAST)
        finally:
            await p.aclose()
        return batch


@pytest.fixture(scope="module", params=SERVICES, ids=[s.name for s in SERVICES])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Service, Any]]:
    # one server per service for the module (starting one costs ~0.2 s); reset per test
    service: Service = request.param
    with service.fake() as server:
        yield service, server


@pytest.fixture
def case(served: tuple[Service, Any]) -> Case:
    service, server = served
    server.clear_faults()
    server.requests.clear()
    service.reset(server)
    return Case(service, server)


@pytest.mark.parametrize("served", KEYED, ids=[s.name for s in KEYED], indirect=True)
async def test_a_wrong_key_is_refused_once_in_the_services_words_without_the_key(
    case: Case,
) -> None:
    p = case.provider(api_key=WRONG)
    try:
        with pytest.raises(AuthenticationError) as info:
            await p.generate(GenerationRequest("x"))
        if case.service.checks:
            with pytest.raises(AuthenticationError):
                await p.check()
    finally:
        await p.aclose()
    assert case.service.auth_says is not None and case.service.auth_says in str(info.value)
    assert not info.value.retryable
    assert WRONG not in str(info.value) and WRONG not in repr(info.value) and WRONG not in repr(p)
    assert case.submits() == 1  # never retried (``check()`` asks elsewhere)


async def test_server_errors_are_retried_then_the_task_fails_after_exactly_three_calls(
    case: Case, ws: Workspace
) -> None:
    case.server.add_fault(
        Fault.status_code(case.service.server_error, times=5), path=case.service.submit
    )
    batch = await case.run(ws)
    task = batch.tasks[0]
    assert (task.status, task.error_kind, task.attempts) == (TaskStatus.FAILED, "server", 3)
    assert case.submits() == 3  # 1 + max_retries (2)


async def test_a_429_then_a_500_are_retried_and_the_third_attempt_succeeds(
    case: Case, ws: Workspace
) -> None:
    submit = case.service.submit
    case.server.add_fault(Fault.status_code(429, headers={"retry-after": "0.01"}), path=submit)
    case.server.add_fault(Fault.status_code(500), path=submit)
    batch = await case.run(ws)
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 3
    assert case.submits() == 3
    assert task.images[0].path.exists() and task.images[0].width > 0


async def test_a_retry_after_beyond_the_cap_fails_at_once_saying_how_long(
    case: Case, ws: Workspace
) -> None:
    case.service.long_wait(case.server, case.service.submit)
    batch = await case.run(ws)
    task = batch.tasks[0]
    assert (task.status, task.error_kind, task.attempts) == (TaskStatus.FAILED, "rate_limited", 1)
    assert "3600 s" in (task.error or "")
    assert case.submits() == 1


async def test_an_answer_cut_short_is_retried_and_nothing_partial_is_kept(
    case: Case, ws: Workspace
) -> None:
    path = case.service.truncate or case.service.submit
    if not case.service.retried_inside:
        # the provider reports it as a retryable connection error ...
        case.server.add_fault(Fault.truncate(), path=path)
        p = case.provider()
        try:
            with pytest.raises(ProviderConnectionError) as info:
                await p.generate(GenerationRequest("direct"))
        finally:
            await p.aclose()
        assert info.value.retryable
    # ... and in a batch the next attempt (or the provider's own re-fetch) gets it whole
    case.server.add_fault(Fault.truncate(), path=path)
    before = case.submits()
    batch = await case.run(ws)
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED
    assert task.attempts == (1 if case.service.retried_inside else 2)
    assert case.submits() - before == task.attempts  # one request asked per attempt
    assert not list(ws.path.rglob(".tmp-*"))


async def test_a_hung_server_is_a_retryable_timeout(case: Case) -> None:
    case.server.add_fault(Fault.hang(5.0), path=case.service.submit)
    p = case.provider(timeouts=Timeouts(read=0.15))
    try:
        # the 0.15 s read timeout gives up long before the 5 s hang ends (the pytest
        # timeout, not a wall-clock assertion, catches a provider that waits it out)
        with pytest.raises(ProviderTimeoutError) as info:
            await p.generate(GenerationRequest("x"))
    finally:
        await p.aclose()
    assert info.value.retryable
