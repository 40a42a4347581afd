"""fal.ai queue adapter against the loopback fake, over real HTTP."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator

import pytest
from PIL import Image

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    NotSupportedError,
    ProviderConnectionError,
    ServerError,
)
from nbbatch.providers import GenerationRequest, InputImage, provider_info
from nbbatch.providers._fal import FalProvider
from nbbatch.testing import FakeFal, Fault
from tests.support import FAST

KEY = "fal-SENTINEL-key:0123456789abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeFal]:
    with FakeFal(api_key=KEY) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(server: FakeFal) -> None:
    server.clear_faults()
    server.requests.clear()
    server.cancels.clear()
    server.queue_seconds, server.run_seconds, server.output_mode = 0.0, 0.03, "url"
    server.queue_polls = server.run_polls = None


def provider(server: FakeFal, **kw: object) -> FalProvider:
    kw.setdefault("poll_interval", 0.01)
    p = FalProvider(api_key=KEY, base_url=server.url, **kw)  # type: ignore[arg-type]
    p.fetch_attempts, p.fetch_retry_delay = 3, 0.001
    return p


async def test_submit_status_result_download(server: FakeFal) -> None:
    server.queue_polls, server.run_polls = 1, 3  # counted in polls: no race with the clock
    p = provider(server)
    seen: list[float | None] = []
    images = await p.generate(
        GenerationRequest("a red fox", Params(size="128x96", n=2, seed=12, steps=4)),
        lambda f, _: seen.append(f),
    )
    await p.aclose()
    assert len(images) == 2
    assert Image.open(io.BytesIO(images[0].data)).size == (64, 48)
    assert images[0].seed == 12 and images[0].mime == "image/png"
    submit = server.calls("/fal-ai/flux/schnell", "POST")[0]
    assert submit.headers["authorization"] == f"Key {KEY}"
    assert json.loads(submit.body) == {
        "prompt": "a red fox",
        "image_size": {"width": 128, "height": 96},
        "num_images": 2,
        "seed": 12,
        "num_inference_steps": 4,
    }
    # status/result/cancel live under the app root, not the model's sub-path
    polls = server.calls("/fal-ai/flux/requests/*/status", "GET")
    assert len(polls) >= 3 and all(c.query == "logs=1" for c in polls)
    results = [c for c in server.calls("/fal-ai/flux/requests/*", "GET") if "/status" not in c.path]
    assert len(results) == 1
    assert all("authorization" not in c.headers for c in server.calls("/files/*"))
    # progress: None while queued, step fractions while running, 1.0 at the end
    assert seen[0] is None
    steps = [f for f in seen if f is not None]
    assert steps[-1] == 1.0 and any(0 < f < 1 for f in steps)
    assert steps == sorted(steps)


async def test_data_uri_results(server: FakeFal) -> None:
    server.output_mode = "data"
    p = provider(server)
    images = await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert Image.open(io.BytesIO(images[0].data)).format == "PNG"
    assert server.calls("/files/*") == []


async def test_image_to_image_model(server: FakeFal) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), "blue").save(buf, "PNG")
    p = provider(server, model="fal-ai/flux/dev/image-to-image")
    await p.generate(
        GenerationRequest(
            "paint", Params(strength=0.8), images=[InputImage("in.png", buf.getvalue())]
        )
    )
    await p.aclose()
    sent = json.loads(server.calls("/fal-ai/flux/dev/image-to-image", "POST")[0].body)
    assert sent["image_url"].startswith("data:image/png;base64,")
    assert sent["strength"] == 0.8


async def test_cancel_mid_generation_calls_cancel(server: FakeFal) -> None:
    server.run_seconds = 30
    p = provider(server)
    job = asyncio.create_task(p.generate(GenerationRequest("slow")))
    while len(server.calls("*/status")) < 2:
        await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await p.aclose()
    assert len(server.cancels) == 1
    assert server.calls(f"/fal-ai/flux/requests/{server.cancels[0]}/cancel", "PUT")
    assert server.jobs[server.cancels[0]].cancelled


async def test_failed_run_is_not_retried(server: FakeFal, ws: Workspace) -> None:
    batch = Batch.create(["failme now"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED and task.attempts == 1
    assert "CUDA out of memory" in (task.error or "")


async def test_all_images_flagged_is_a_refusal(server: FakeFal) -> None:
    p = provider(server)
    with pytest.raises(ContentRefusedError, match="safety checker"):
        await p.generate(GenerationRequest("nsfw thing", Params(n=2)))
    await p.aclose()


async def test_long_retry_after_not_retried(server: FakeFal, ws: Workspace) -> None:
    server.add_fault(Fault.status_code(429, headers={"retry-after": "121"}))
    batch = Batch.create(["a boat"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    assert batch.tasks[0].error_kind == "rate_limited"
    assert len(server.requests) == 1


async def test_unauthorized_and_validation_errors(server: FakeFal) -> None:
    wrong = "fal-WRONG-SENTINEL:ffff"
    p = FalProvider(api_key=wrong, base_url=server.url, poll_interval=0.01)
    with pytest.raises(AuthenticationError, match="Unauthorized") as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert wrong not in str(info.value)
    q = provider(server, input_names={"prompt": None})
    with pytest.raises(BadRequestError, match="field required"):
        await q.generate(GenerationRequest("x"))
    await q.aclose()
    assert len(server.requests) == 2


async def test_truncated_download_and_malformed_status(server: FakeFal) -> None:
    p = provider(server)
    server.add_fault(Fault.truncate(times=3), path="/files/*")
    with pytest.raises(ProviderConnectionError) as info:
        await p.generate(GenerationRequest("x"))
    assert info.value.retryable  # after the adapter's own three tries
    assert len(server.calls("/files/*")) == 3
    server.add_fault(Fault.malformed(b'{"status": "EXPLODED"}'), path="*/status")
    with pytest.raises(MalformedResponseError, match="EXPLODED"):
        await p.generate(GenerationRequest("x"))
    assert len(server.cancels) == 1  # an unreadable status: the request is stopped
    server.add_fault(Fault.malformed(b"{}"), path="/fal-ai/flux/schnell")
    with pytest.raises(MalformedResponseError, match="request_id"):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


async def test_unsupported_refused_before_request(server: FakeFal) -> None:
    p = provider(server)
    with pytest.raises(NotSupportedError):
        await p.generate(GenerationRequest("x", Params(n=5)))
    await p.aclose()
    assert server.requests == []


def test_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    with pytest.raises(ConfigError, match=provider_info("fal").key_env[0]):
        FalProvider()
    with pytest.raises(ConfigError, match="fal-ai/flux/schnell"):
        FalProvider(api_key=KEY, model="flux")


# ---------------------------------------------------------------- one request per task
@pytest.mark.parametrize("where", ["*/status", "/fal-ai/flux/requests/*[0-9a-f]", "/files/*"])
@pytest.mark.parametrize("dropped", [False, True], ids=["503", "dropped"])
async def test_passing_failure_after_submit_keeps_the_same_request(
    server: FakeFal, ws: Workspace, where: str, dropped: bool
) -> None:
    fault = Fault.truncate() if dropped else Fault.status_code(503)
    server.run_seconds = 0.05
    server.add_fault(fault, path=where)
    batch = Batch.create(["a heron"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    assert fault.times == 0  # the failure did happen
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 1
    assert len(server.calls("/fal-ai/flux/schnell", "POST")) == 1  # submitted once
    assert server.cancels == []


async def test_status_polls_that_keep_failing_cancel_the_request(server: FakeFal) -> None:
    server.run_seconds = 30
    server.add_fault(Fault.status_code(502, times=3), path="*/status")
    p = provider(server)
    with pytest.raises(ServerError) as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.status_code == 502 and info.value.retryable
    assert len(server.calls("/fal-ai/flux/schnell", "POST")) == 1
    assert len(server.calls("*/status")) == 3
    assert len(server.cancels) == 1
    assert server.calls("*/cancel", "PUT")


async def test_balance_is_the_platform_api_s_credit_balance(server: FakeFal) -> None:
    server.balance = 18.75
    p = provider(server)
    try:
        balance = await p.balance()
        assert (balance.amount, balance.unit, str(balance)) == (18.75, "USD", "$18.75")
        server.billing_access = False  # an inference-only key
        with pytest.raises(AuthenticationError, match="billing:usage:read") as caught:
            await p.balance()
        assert KEY not in str(caught.value)
    finally:
        server.billing_access = True
        await p.aclose()


async def test_the_real_service_s_balance_is_asked_of_fal_s_platform_api() -> None:
    p = FalProvider(api_key=KEY)
    try:
        assert p._billing_url == "https://api.fal.ai/v1/account/billing"
    finally:
        await p.aclose()
