"""OpenAI Images provider end to end against FakeOpenAI over real loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image

from nbbatch import Batch, Params, Secret, Task, TaskStatus, Workspace
from nbbatch.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    NotSupportedError,
    ProviderConnectionError,
    RateLimitedError,
)
from nbbatch.providers import (
    GenerationRequest,
    InputImage,
    OpenAIProvider,
    provider_info,
)
from nbbatch.testing import FakeOpenAI, Fault
from tests.support import FAST
from tests.support import demo_png as png

KEY = "sk-test-fake-key-0001"


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAI]:
    # One server per module (starting/stopping uvicorn costs ~0.2 s); reset per test.
    with FakeOpenAI(api_key=KEY) as s:
        yield s


@pytest.fixture
def server(shared_server: FakeOpenAI) -> FakeOpenAI:
    s = shared_server
    s.clear_faults()
    s.requests.clear()
    s.generations.clear()
    s.edits.clear()
    s.api_key, s.response, s.echo_key = KEY, "b64", False
    return s


@pytest.fixture
async def provider(server: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url)
    yield p
    await p.aclose()


@pytest.fixture
def workspace(tmp_path) -> Iterator[Workspace]:  # type: ignore[no-untyped-def]
    ws = Workspace(tmp_path / "ws")
    yield ws
    ws.close()


# ---------------------------------------------------------------- success paths
async def test_generation_sends_json_and_returns_decoded_images_with_usage(
    server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    images = await provider.generate(
        GenerationRequest("a red fox", Params(n=2, size="1024x1536", extras={"quality": "low"}))
    )

    assert len(images) == 2
    sent = server.generations[0]
    assert sent == {
        "model": "gpt-image-1",
        "prompt": "a red fox",
        "n": 2,
        "size": "1024x1536",
        "quality": "low",
    }
    assert server.calls("/v1/images/generations")[0].headers["authorization"] == f"Bearer {KEY}"
    with Image.open(io.BytesIO(images[0].data)) as im:
        assert im.format == "PNG"
        assert im.height > im.width  # portrait, as asked
    assert images[0].mime == "image/png"
    assert images[0].info["usage"]["output_tokens"] == 544
    assert "usage" not in images[1].info  # one request, usage recorded once


async def test_params_model_overrides_the_provider_default(
    server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    await provider.generate(GenerationRequest("a fox", Params(model="gpt-image-1.5")))
    assert server.generations[0]["model"] == "gpt-image-1.5"


async def test_edit_with_two_references_and_mask_goes_multipart_as_image_array(
    server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    refs = [InputImage("a.png", png("a")), InputImage("b.png", png("b"))]
    mask = InputImage("mask.png", png("m"))
    images = await provider.generate(
        GenerationRequest("blend them", Params(extras={"input_fidelity": "high"}), refs, mask)
    )

    assert len(images) == 1
    edit = server.edits[0]
    assert edit["image_fields"] == ["image[]", "image[]"]
    assert edit["image_names"] == ["a.png", "b.png"]
    assert edit["images"] == [refs[0].data, refs[1].data]
    assert edit["mask"] == mask.data
    assert edit["fields"] == {
        "model": "gpt-image-1",
        "prompt": "blend them",
        "n": "1",
        "input_fidelity": "high",
    }
    assert server.calls("/v1/images/generations") == []


async def test_edit_with_one_reference_uses_the_plain_image_field(
    server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    await provider.generate(GenerationRequest("x", images=[InputImage("a.png", png())]))
    assert server.edits[0]["image_fields"] == ["image"]


async def test_url_responses_are_downloaded_and_revised_prompt_kept(
    server: FakeOpenAI,
) -> None:
    server.response = "url"
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url, model="dall-e-3")
    try:
        images = await p.generate(GenerationRequest("a lighthouse"))
    finally:
        await p.aclose()
    assert len(server.calls("/v1/files/*")) == 1
    assert images[0].data.startswith(b"\x89PNG")
    assert images[0].info["revised_prompt"] == "A detailed picture of a lighthouse"


async def test_url_download_over_the_byte_cap_is_refused(server: FakeOpenAI) -> None:
    server.response = "url"
    p = OpenAIProvider(
        api_key=KEY, base_url=server.base_url, model="dall-e-2", max_download_bytes=100
    )
    try:
        with pytest.raises(MalformedResponseError, match="limit is 100"):
            await p.generate(GenerationRequest("a lighthouse"))
    finally:
        await p.aclose()


async def test_openai_compatible_server_without_key(server: FakeOpenAI) -> None:
    server.api_key = None  # e.g. a local server that takes no key
    p = OpenAIProvider(api_key=None, base_url=server.base_url, model="flux-schnell")
    try:
        images = await p.generate(GenerationRequest("a cat", Params(extras={"steps": 4})))
    finally:
        await p.aclose()
    assert images
    assert "authorization" not in server.requests[0].headers
    assert server.generations[0]["steps"] == 4  # extras go through verbatim


def test_official_endpoint_without_key_is_a_config_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=provider_info("openai").key_env[0]):
        OpenAIProvider()


def test_key_comes_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-1234")
    p = OpenAIProvider()
    assert "sk-from-env" not in repr(p)
    assert p._http.headers["Authorization"] == "Bearer sk-from-env-1234"


async def test_check_probes_models_and_reports_a_bad_key(server: FakeOpenAI) -> None:
    good = OpenAIProvider(api_key=KEY, base_url=server.base_url)
    bad = OpenAIProvider(api_key="sk-wrong-key-999", base_url=server.base_url)
    try:
        await good.check()
        with pytest.raises(AuthenticationError):
            await bad.check()
    finally:
        await good.aclose()
        await bad.aclose()
    assert [r.path for r in server.requests] == ["/v1/models", "/v1/models"]


# ---------------------------------------------------------------- refused before sending
@pytest.mark.parametrize(
    "params, word",
    [
        (Params(seed=7), "seed"),
        (Params(negative_prompt="blurry"), "negative prompt"),
        (Params(steps=30), "steps"),
        (Params(n=11), "at most 10"),
    ],
)
async def test_unsupported_params_raise_before_any_request(
    server: FakeOpenAI, provider: OpenAIProvider, params: Params, word: str
) -> None:
    with pytest.raises(NotSupportedError, match=word):
        await provider.generate(GenerationRequest("a fox", params))
    assert server.requests == []


async def test_runner_refuses_the_whole_batch_before_sending(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    batch = Batch.create(["a", "b"], workspace=workspace, params=Params(seed=1))
    with pytest.raises(NotSupportedError):
        await batch.run(provider)
    assert server.requests == []


# ---------------------------------------------------------------- errors, one attempt
async def test_moderation_refusal_is_content_refused_and_not_retryable(
    provider: OpenAIProvider,
) -> None:
    with pytest.raises(ContentRefusedError, match="safety system") as info:
        await provider.generate(GenerationRequest("something forbidden"))
    assert info.value.retryable is False
    assert info.value.status_code == 400


async def test_dalle_content_policy_violation_is_also_a_refusal(server: FakeOpenAI) -> None:
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url, model="dall-e-3")
    try:
        with pytest.raises(ContentRefusedError):
            await p.generate(GenerationRequest("forbidden thing"))
    finally:
        await p.aclose()


async def test_insufficient_quota_is_not_retryable_and_says_what_to_do(
    server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    body = {
        "error": {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    server.add_fault(Fault.status_code(429, body, headers={"retry-after": "1"}))
    with pytest.raises(RateLimitedError, match="Add credit") as info:
        await provider.generate(GenerationRequest("a fox"))
    assert info.value.retryable is False


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault.status_code(400), BadRequestError),
        (Fault.status_code(401), AuthenticationError),
        (Fault.status_code(403), AuthenticationError),
        (Fault.status_code(404), BadRequestError),
        (Fault.status_code(422), BadRequestError),
        (Fault.malformed(), MalformedResponseError),
        (Fault.malformed(b'{"created": 1, "data": [{"b64_json": "%%%"}]}'), MalformedResponseError),
        (Fault.malformed(b'{"created": 1, "data": []}'), MalformedResponseError),
        (Fault.malformed(b'{"created": 1}'), MalformedResponseError),
    ],
)
async def test_terminal_errors_fail_the_task_after_exactly_one_call(
    server: FakeOpenAI,
    provider: OpenAIProvider,
    workspace: Workspace,
    fault: Fault,
    error: type[Exception],
) -> None:
    server.add_fault(fault)
    with pytest.raises(error):
        await provider.generate(GenerationRequest("probe"))
    server.add_fault(Fault(fault.kind, fault.status, fault.body, fault.headers))
    batch = Batch.create(["a fox"], workspace=workspace)
    await batch.run(provider, retry=FAST)

    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED
    assert task.attempts == 1
    assert len(server.calls("/v1/images/generations")) == 2  # the probe + one attempt


# ---------------------------------------------------------------- retried faults
@pytest.mark.parametrize("failures", [0, 1, 2])
async def test_server_errors_are_retried_with_exact_attempt_counts(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace, failures: int
) -> None:
    if failures:
        server.add_fault(Fault.status_code(500, times=failures))
    batch = Batch.create(["a fox"], workspace=workspace)
    await batch.run(provider, retry=FAST)

    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED
    assert task.attempts == failures + 1
    assert len(server.calls("/v1/images/generations")) == failures + 1
    assert task.images[0].params["info"]["usage"]["total_tokens"] > 0


async def test_429_waits_the_servers_retry_after_then_succeeds(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    server.add_fault(Fault.status_code(429, headers={"retry-after-ms": "150"}))
    batch = Batch.create(["a fox"], workspace=workspace)
    await batch.run(provider, retry=FAST)

    calls = server.calls("/v1/images/generations")
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert len(calls) == 2
    assert calls[1].time - calls[0].time >= 0.14  # the server's wait, not our 1 ms backoff


async def test_truncated_image_download_is_retried(
    server: FakeOpenAI, workspace: Workspace
) -> None:
    server.response = "url"
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url, model="dall-e-2")
    server.add_fault(Fault.truncate(), path="/v1/files/*")
    with pytest.raises(ProviderConnectionError, match=r"cut short|mid-request") as info:
        await p.generate(GenerationRequest("direct"))
    assert info.value.retryable
    server.add_fault(Fault.truncate(), path="/v1/files/*")
    batch = Batch.create(["a fox"], workspace=workspace)
    try:
        await batch.run(p, retry=FAST)
    finally:
        await p.aclose()
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert batch.tasks[0].attempts == 2
    assert not list((workspace.path / "images").rglob(".tmp-*"))


async def test_connection_refused_is_a_retryable_connection_error() -> None:
    with FakeOpenAI() as s:
        url = s.base_url
    p = OpenAIProvider(api_key=KEY, base_url=url)
    try:
        with pytest.raises(ProviderConnectionError, match="could not connect") as info:
            await p.generate(GenerationRequest("a fox"))
    finally:
        await p.aclose()
    assert info.value.retryable


# ---------------------------------------------------------------- runner integration
async def test_batch_with_references_runs_through_the_runner(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    ref = workspace.add_reference(png("ref", (64, 64)), "ref.png")
    tasks = [Task("a fox"), Task("a fox, painted", references=[ref]), Task("an owl")]
    batch = Batch.create(tasks, workspace=workspace)
    await batch.run(provider, concurrency=3)

    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 3
    assert len(server.generations) == 2
    assert len(server.edits) == 1
    assert server.edits[0]["images"] == [ref.read_bytes()]
    for t in batch.tasks:
        assert t.images[0].path.exists()
        assert t.images[0].params["provider"] == "openai"


async def test_cancel_mid_request_ends_the_task_cancelled(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    server.add_fault(Fault.delay(30.0))
    batch = Batch.create(["slow one"], workspace=workspace)
    runner = batch.start(provider)
    while not server.requests:
        await asyncio.sleep(0.005)
    runner.cancel(batch.tasks[0].id)
    # waiting for the 30 s answer would hit this 10 s bound: the cancel is not raced
    await asyncio.wait_for(runner.wait(), 10)
    assert batch.tasks[0].status is TaskStatus.CANCELLED


# ---------------------------------------------------------------- secrets
async def test_sentinel_key_never_appears_in_errors_reprs_or_the_workspace(
    workspace: Workspace,
) -> None:
    sentinel = "test-key-SENTINEL-4f2a9c71e0b3"
    # A hostile server that echoes the whole key back in its 401 message.
    with FakeOpenAI(api_key="sk-the-right-one", echo_key=True) as s:
        p = OpenAIProvider(api_key=Secret(sentinel), base_url=s.base_url)
        try:
            with pytest.raises(AuthenticationError) as info:
                await p.generate(GenerationRequest("a fox"))
            batch = Batch.create(["a fox"], workspace=workspace)
            await batch.run(p, retry=FAST)
        finally:
            await p.aclose()
        assert sentinel in s.calls()[0].headers["authorization"]  # it was really sent
    err = info.value
    for text in (str(err), repr(err), repr(p), repr(p.__dict__), str(err.args)):
        assert sentinel not in text
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED
    assert sentinel not in (task.error or "")
    assert "***" in (task.error or "")
    assert sentinel not in json.dumps(task.to_record())
    for f in workspace.path.rglob("*"):
        if f.is_file():
            assert sentinel.encode() not in f.read_bytes(), f


async def test_openai_has_no_balance_api_and_says_so_with_none(server: FakeOpenAI) -> None:
    # OpenAI shows credit only on its web dashboard: nothing is asked, nothing invented
    p = OpenAIProvider(api_key=KEY, base_url=server.url)
    try:
        assert await p.balance() is None
        assert server.requests == []
    finally:
        await p.aclose()
