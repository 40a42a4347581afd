"""Stability AI v2beta adapter against the loopback fake, over real HTTP."""

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
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    NotSupportedError,
    RateLimitedError,
)
from nbbatch.providers import Balance, GenerationRequest, InputImage, provider_info
from nbbatch.providers._stability import StabilityProvider
from nbbatch.testing import FakeStability, Fault
from tests.support import FAST

KEY = "test-key-stability-SENTINEL-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeStability]:
    with FakeStability(api_key=KEY) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(server: FakeStability) -> None:
    server.clear_faults()
    server.requests.clear()
    server.forms.clear()


def provider(server: FakeStability, **kw: object) -> StabilityProvider:
    return StabilityProvider(api_key=KEY, base_url=server.url, **kw)  # type: ignore[arg-type]


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


async def test_core_txt2img_sends_multipart_fields_and_reads_seed_header(
    server: FakeStability,
) -> None:
    p = provider(server)
    req = GenerationRequest(
        "a red fox",
        Params(
            size="1344x768", seed=1234, negative_prompt="blurry", extras={"style_preset": "anime"}
        ),
    )
    images = await p.generate(req)
    await p.aclose()
    assert len(images) == 1
    img = Image.open(io.BytesIO(images[0].data))
    assert img.format == "PNG" and img.width > img.height  # 16:9 came back landscape
    assert images[0].seed == 1234
    assert images[0].mime == "image/png"
    form = server.forms[0]
    assert form["endpoint"] == "core"
    assert form["prompt"] == "a red fox"
    assert form["aspect_ratio"] == "16:9"
    assert form["negative_prompt"] == "blurry"
    assert form["seed"] == "1234"
    assert form["style_preset"] == "anime"
    call = server.calls("/v2beta/stable-image/generate/core")[0]
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers["accept"] == "image/*"
    assert call.headers["content-type"].startswith("multipart/form-data")


async def test_json_mode_decodes_base64_and_seed(server: FakeStability) -> None:
    p = provider(server, accept="json", output_format="webp")
    images = await p.generate(GenerationRequest("a lighthouse", Params(seed=77)))
    await p.aclose()
    assert Image.open(io.BytesIO(images[0].data)).format == "WEBP"
    assert images[0].seed == 77
    assert server.calls()[0].headers["accept"] == "application/json"


async def test_sd3_image_to_image_sends_image_strength_and_mode(server: FakeStability) -> None:
    p = provider(server, model="sd3.5-large")
    src = png()
    req = GenerationRequest(
        "make it blue", Params(strength=0.35, cfg_scale=5.0), images=[InputImage("in.png", src)]
    )
    images = await p.generate(req)
    await p.aclose()
    form = server.forms[0]
    assert form["endpoint"] == "sd3"
    assert form["model"] == "sd3.5-large"
    assert form["mode"] == "image-to-image"
    assert form["strength"] == "0.35"
    assert form["cfg_scale"] == "5.0"
    assert form["image"].data == src
    assert "aspect_ratio" not in form  # text-to-image only field
    assert Image.open(io.BytesIO(images[0].data)).format == "PNG"


async def test_ultra_img2img_defaults_strength(server: FakeStability) -> None:
    p = provider(server, model="ultra")
    await p.generate(GenerationRequest("x", images=[InputImage("a.png", png())]))
    await p.aclose()
    assert server.forms[0]["endpoint"] == "ultra"
    assert float(server.forms[0]["strength"]) == pytest.approx(0.6)


async def test_core_refuses_input_image_before_any_request(server: FakeStability) -> None:
    p = provider(server)
    with pytest.raises(NotSupportedError, match="text-to-image only"):
        await p.generate(GenerationRequest("x", images=[InputImage("a.png", png())]))
    with pytest.raises(NotSupportedError, match="at most 1 image"):
        await p.generate(GenerationRequest("x", Params(n=2)))
    await p.aclose()
    assert server.requests == []


async def test_moderation_403_is_a_refusal_and_never_retried(server: FakeStability) -> None:
    p = provider(server)
    with pytest.raises(ContentRefusedError) as info:
        await p.generate(GenerationRequest("something forbidden"))
    await p.aclose()
    assert info.value.retryable is False
    assert info.value.status_code == 403
    assert "content moderation" in str(info.value)


async def test_content_filtered_200_is_a_refusal(server: FakeStability) -> None:
    p = provider(server, accept="json")
    with pytest.raises(ContentRefusedError, match="CONTENT_FILTERED"):
        await p.generate(GenerationRequest("please blurme"))
    await p.aclose()


async def test_plain_403_without_moderation_name_is_auth(server: FakeStability) -> None:
    server.add_fault(Fault.status_code(403, {"id": "x", "name": "forbidden", "errors": ["no"]}))
    p = provider(server)
    with pytest.raises(AuthenticationError):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


async def test_missing_key_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STABILITY_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=provider_info("stability").key_env[0]):
        StabilityProvider()


async def test_key_from_environment(server: FakeStability, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STABILITY_API_KEY", KEY)
    p = StabilityProvider(base_url=server.url)
    await p.check()
    await p.aclose()
    assert server.calls("/v1/user/balance")[0].headers["authorization"] == f"Bearer {KEY}"


async def test_bad_request_400_carries_service_message(server: FakeStability) -> None:
    server.add_fault(
        Fault.status_code(400, {"id": "1", "name": "bad_request", "errors": ["seed: too big"]})
    )
    p = provider(server)
    with pytest.raises(BadRequestError, match="seed: too big") as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.retryable is False


async def test_malformed_json_answer(server: FakeStability) -> None:
    p = provider(server, accept="json")
    server.add_fault(Fault.malformed(b'{"image": "@@not-base64@@", "seed": 1}'))
    with pytest.raises(MalformedResponseError, match="base64"):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


async def test_429_carries_retry_after(server: FakeStability) -> None:
    server.add_fault(Fault.status_code(429, headers={"retry-after": "7"}))
    p = provider(server)
    with pytest.raises(RateLimitedError) as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.retry_after == 7.0


async def run(batch: Batch, p: StabilityProvider, concurrency: int = 1) -> None:
    try:
        await batch.run(p, concurrency=concurrency, retry=FAST)
    finally:
        await p.aclose()


async def test_batch_moderation_fails_once(server: FakeStability, ws: Workspace) -> None:
    batch = Batch.create(["forbidden thing", "a tree"], workspace=ws)
    await run(batch, provider(server), 2)
    by_prompt = {t.prompt: t for t in batch.tasks}
    assert by_prompt["forbidden thing"].status is TaskStatus.FAILED
    assert by_prompt["forbidden thing"].error_kind == "refused"
    assert by_prompt["a tree"].status is TaskStatus.SUCCEEDED
    assert len(server.calls("/v2beta/*")) == 2


async def test_cancel_mid_request_closes_it_promptly(server: FakeStability) -> None:
    # Stability has no cancel endpoint: cancelling means dropping the connection.
    server.add_fault(Fault.delay(30.0), path="/v2beta/*")
    p = provider(server)
    job = asyncio.create_task(p.generate(GenerationRequest("slow")))
    while not server.calls("/v2beta/*"):
        await asyncio.sleep(0.005)
    job.cancel()
    # a provider that waited for the 30 s answer would hit this 10 s bound (TimeoutError),
    # whatever the machine's load: no race between the bound and the cancel
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(job, 10)
    await p.aclose()


async def test_image_that_does_not_decode_fails_the_task(
    server: FakeStability, ws: Workspace
) -> None:
    garbage = base64.b64encode(b"\x89PNG\r\n\x1a\n but the rest is not an image").decode()
    server.add_fault(Fault.malformed(json.dumps({"image": garbage, "seed": 1}).encode()))
    batch = Batch.create(["x"], workspace=ws)
    await run(batch, provider(server, accept="json"))
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED and task.error_kind == "bad_image"
    assert task.attempts == 1


async def test_balance_is_the_account_s_credits(server: FakeStability) -> None:
    server.credits = 7.25
    p = provider(server)
    try:
        balance = await p.balance()
        assert balance == Balance(7.25, "credits") and str(balance) == "7.25 credits"
        await p.check()  # the connection probe reads the same answer
    finally:
        server.credits = 42.5
        await p.aclose()
