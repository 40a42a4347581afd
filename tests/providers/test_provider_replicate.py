"""Replicate adapter against the loopback fake, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator

import pytest
from PIL import Image

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.errors import (
    BadRequestError,
    ConfigError,
    MalformedResponseError,
    NotSupportedError,
    ProviderConnectionError,
    RateLimitedError,
    ServerError,
)
from nbbatch.providers import GenerationRequest, InputImage, provider_info
from nbbatch.providers._replicate import ReplicateProvider
from nbbatch.testing import FakeReplicate, Fault
from tests.support import FAST

KEY = "r8_SENTINEL_replicate_token_42"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeReplicate]:
    with FakeReplicate(api_key=KEY) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(server: FakeReplicate) -> Iterator[None]:
    server.clear_faults()
    server.requests.clear()
    server.cancels.clear()
    server.run_seconds, server.start_seconds, server.output_mode = 0.05, 0.0, "list"
    yield


def provider(server: FakeReplicate, **kw: object) -> ReplicateProvider:
    kw.setdefault("poll_interval", 0.01)
    p = ReplicateProvider(api_key=KEY, base_url=server.url, **kw)  # type: ignore[arg-type]
    p.fetch_attempts, p.fetch_retry_delay = 3, 0.001
    return p


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


def body(call: object) -> dict[str, object]:
    return json.loads(call.body)  # type: ignore[attr-defined,no-any-return]


async def test_model_prediction_sync_wait_returns_images(server: FakeReplicate) -> None:
    p = provider(server, wait=5)
    images = await p.generate(
        GenerationRequest("a red fox", Params(size="96x64", n=2, seed=5, steps=4, cfg_scale=3.5))
    )
    await p.aclose()
    assert len(images) == 2
    assert Image.open(io.BytesIO(images[0].data)).size == (64, 43)  # fit into 64 px side
    assert images[0].seed == 5 and images[0].mime == "image/png"
    create = server.calls("/v1/models/black-forest-labs/flux-schnell/predictions")[0]
    assert create.headers["prefer"] == "wait=5"
    assert create.headers["authorization"] == f"Bearer {KEY}"
    sent = body(create)["input"]
    assert sent == {
        "prompt": "a red fox",
        "seed": 5,
        "width": 96,
        "height": 64,
        "num_outputs": 2,
        "num_inference_steps": 4,
        "guidance_scale": 3.5,
    }
    # The sync wait covered the whole run: no polling was needed.
    assert server.calls("/v1/predictions/*", "GET") == []
    # The file CDN never sees the token.
    assert all("authorization" not in c.headers for c in server.calls("/files/*"))


async def test_polling_until_succeeded_reports_progress_from_logs(server: FakeReplicate) -> None:
    server.run_seconds = 0.15
    p = provider(server, wait=0)
    seen: list[float | None] = []
    images = await p.generate(GenerationRequest("a lighthouse"), lambda f, _: seen.append(f))
    await p.aclose()
    assert len(images) == 1
    assert "prefer" not in server.calls("/v1/models/*")[0].headers
    assert len(server.calls("/v1/predictions/*", "GET")) >= 3
    fractions = [f for f in seen if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(0 < f < 1 for f in fractions)  # intermediate tqdm percentages
    assert images[0].seed is not None  # from "Using seed: N" in the logs


async def test_version_prediction_and_input_renames(server: FakeReplicate) -> None:
    version = "a" * 64
    p = provider(server, model=f"stability-ai/sdxl:{version}", input_names={"num_outputs": None})
    await p.generate(GenerationRequest("x", Params(extras={"scheduler": "K_EULER"})))
    await p.aclose()
    sent = body(server.calls("/v1/predictions", "POST")[0])
    assert sent["version"] == version
    assert sent["input"] == {"prompt": "x", "scheduler": "K_EULER"}


@pytest.mark.parametrize("mode", ["url", "data"])
async def test_single_url_and_data_url_outputs(server: FakeReplicate, mode: str) -> None:
    server.output_mode = mode
    p = provider(server)
    images = await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert Image.open(io.BytesIO(images[0].data)).format == "PNG"
    assert bool(server.calls("/files/*")) is (mode == "url")


async def test_img2img_sends_data_url_and_strength(server: FakeReplicate) -> None:
    src = png()
    p = provider(server)
    await p.generate(
        GenerationRequest("paint it", Params(strength=0.4), images=[InputImage("a.png", src)])
    )
    await p.aclose()
    sent = body(server.calls("/v1/models/*")[0])["input"]
    assert sent["image"] == "data:image/png;base64," + base64.b64encode(src).decode()
    assert sent["prompt_strength"] == 0.4


async def test_cancel_mid_generation_calls_cancel(server: FakeReplicate) -> None:
    server.run_seconds = 30
    p = provider(server, wait=0)
    job = asyncio.create_task(p.generate(GenerationRequest("slow one")))
    while len(server.calls("/v1/predictions/*", "GET")) < 2:
        await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await p.aclose()
    assert len(server.cancels) == 1
    pid = server.cancels[0]
    assert server.calls(f"/v1/predictions/{pid}/cancel", "POST")
    assert server.predictions[pid].canceled_at is not None


async def test_failed_prediction_is_not_retried(server: FakeReplicate, ws: Workspace) -> None:
    batch = Batch.create(["failme please", "a nsfw thing"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=2, retry=FAST)
    await p.aclose()
    by_prompt = {t.prompt: t for t in batch.tasks}
    oom = by_prompt["failme please"]
    assert oom.status is TaskStatus.FAILED and oom.attempts == 1
    assert "CUDA out of memory" in (oom.error or "")
    refused = by_prompt["a nsfw thing"]
    assert refused.error_kind == "refused" and refused.attempts == 1
    assert len(server.calls("/v1/models/*")) == 2


async def test_canceled_elsewhere_is_reported(server: FakeReplicate) -> None:
    server.run_seconds = 30
    p = provider(server, wait=0)
    job = asyncio.create_task(p.generate(GenerationRequest("x")))
    while not server.predictions or not server.calls("/v1/predictions/*", "GET"):
        await asyncio.sleep(0.01)
    for pred in server.predictions.values():
        pred.canceled_at = 0.0
    with pytest.raises(Exception, match="canceled on Replicate") as info:
        await job
    await p.aclose()
    assert info.value.retryable is False  # type: ignore[attr-defined]
    server.predictions.clear()


async def test_429_detail_and_retry_after(server: FakeReplicate) -> None:
    server.add_fault(Fault.status_code(429, headers={"retry-after": "3"}))
    p = provider(server)
    with pytest.raises(RateLimitedError, match="throttled") as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.retry_after == 3.0


async def test_422_invalid_input_is_bad_request(server: FakeReplicate) -> None:
    p = provider(server, input_names={"prompt": None})  # drops the prompt: the model refuses
    with pytest.raises(BadRequestError, match=r"input\.prompt"):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


async def test_truncated_download_that_keeps_failing_is_retryable(server: FakeReplicate) -> None:
    server.add_fault(Fault.truncate(times=10), path="/files/*")
    p = provider(server)
    with pytest.raises(ProviderConnectionError) as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.retryable
    assert len(server.calls("/files/*")) == 3  # the adapter's own tries, then it gave up


async def test_download_byte_cap(server: FakeReplicate) -> None:
    p = provider(server, max_download_bytes=100)
    with pytest.raises(MalformedResponseError, match=r"limit is 100|exceeded 100"):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


async def test_malformed_prediction(server: FakeReplicate) -> None:
    server.add_fault(Fault.malformed(b'{"id": "abc"}'))
    p = provider(server)
    with pytest.raises(MalformedResponseError, match="not a prediction"):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


async def test_unsupported_requests_are_refused_before_sending(server: FakeReplicate) -> None:
    p = provider(server)
    with pytest.raises(NotSupportedError):
        await p.generate(GenerationRequest("x", Params(n=8)))
    with pytest.raises(NotSupportedError):
        await p.generate(
            GenerationRequest("x", images=[InputImage("a", png()), InputImage("b", png())])
        )
    await p.aclose()
    assert server.requests == []


def test_bad_model_names_and_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="owner/name"):
        ReplicateProvider(api_key=KEY, model="just-a-name")
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=provider_info("replicate").key_env[0]):
        ReplicateProvider()


async def test_check_uses_account_endpoint(server: FakeReplicate) -> None:
    p = provider(server)
    await p.check()
    await p.aclose()
    assert server.calls("/v1/account")


async def test_server_error_result_kind(server: FakeReplicate) -> None:
    server.add_fault(Fault.status_code(500))
    p = provider(server)
    with pytest.raises(ServerError) as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.retryable and info.value.status_code == 500


# ---------------------------------------------------------------- one prediction per task
POLL = "/v1/predictions/*"


@pytest.mark.parametrize("dropped", [False, True], ids=["503", "dropped"])
async def test_passing_poll_failure_keeps_the_same_prediction(
    server: FakeReplicate, ws: Workspace, dropped: bool
) -> None:
    fault = Fault.truncate() if dropped else Fault.status_code(503)
    server.run_seconds = 0.1
    server.add_fault(fault, path=POLL)
    batch = Batch.create(["a heron"], workspace=ws)
    p = provider(server, wait=0)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    assert fault.times == 0  # the failure did happen
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 1
    assert len(server.calls("/v1/models/*", "POST")) == 1  # no second (billed) prediction
    assert server.cancels == []


async def test_polls_that_keep_failing_cancel_the_prediction(server: FakeReplicate) -> None:
    server.run_seconds = 30
    # exactly the adapter's three tries fail; the cancel call after them gets through
    server.add_fault(Fault.status_code(503, times=3), path=POLL)
    p = provider(server, wait=0)
    with pytest.raises(ServerError) as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.status_code == 503
    assert len(server.calls("/v1/models/*", "POST")) == 1
    assert len(server.calls(POLL, "GET")) == 3
    (pid,) = server.cancels
    assert server.predictions[pid].canceled_at is not None


async def test_passing_download_failure_keeps_the_same_prediction(
    server: FakeReplicate, ws: Workspace
) -> None:
    server.output_mode = "url"
    server.add_fault(Fault.status_code(502), path="/files/*")
    server.add_fault(Fault.truncate(), path="/files/*")
    batch = Batch.create(["a kite"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 1
    assert len(server.calls("/v1/models/*", "POST")) == 1
    assert len(server.calls("/files/*")) == 3


async def test_poll_rate_limit_waits_retry_after_then_continues(server: FakeReplicate) -> None:
    server.run_seconds = 0.05
    server.add_fault(Fault.status_code(429, headers={"retry-after": "0.05"}), path=POLL)
    p = provider(server, wait=0)
    images = await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert len(images) == 1
    polls = server.calls(POLL, "GET")
    assert polls[1].time - polls[0].time >= 0.04  # waited what the server asked
    assert len(server.calls("/v1/models/*", "POST")) == 1


async def test_prediction_error_text_is_scrubbed(
    server: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        server, "fail_words", {"leakme": f"model crashed; env REPLICATE_API_TOKEN={KEY}"}
    )
    p = provider(server)
    with pytest.raises(ServerError) as info:
        await p.generate(GenerationRequest("leakme"))
    await p.aclose()
    assert "model crashed" in str(info.value)
    assert KEY not in str(info.value)
