"""Hugging Face Inference text-to-image adapter against the loopback fake."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.errors import (
    BadRequestError,
    ConfigError,
    MalformedResponseError,
    NotSupportedError,
    RateLimitedError,
)
from nbbatch.providers import GenerationRequest, InputImage, provider_info
from nbbatch.providers._huggingface import HuggingFaceProvider
from nbbatch.testing import FakeHuggingFace, Fault
from tests.support import FAST

KEY = "hf_SENTINEL_token_abcdefgh"
MODEL = "stabilityai/stable-diffusion-xl-base-1.0"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHuggingFace]:
    with FakeHuggingFace(api_key=KEY, models=(MODEL,)) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(server: FakeHuggingFace) -> None:
    server.clear_faults()
    server.requests.clear()
    server.bodies.clear()
    server.estimated_time = 0.01


def provider(server: FakeHuggingFace, **kw: object) -> HuggingFaceProvider:
    kw.setdefault("model", MODEL)
    return HuggingFaceProvider(api_key=KEY, base_url=server.url, **kw)  # type: ignore[arg-type]


async def test_raw_bytes_with_parameters(server: FakeHuggingFace) -> None:
    p = provider(server)
    images = await p.generate(
        GenerationRequest(
            "an owl",
            Params(
                size="128x64",
                seed=3,
                steps=20,
                cfg_scale=7.5,
                negative_prompt="blurry",
                sampler="DPMSolverMultistepScheduler",
            ),
        )
    )
    await p.aclose()
    img = Image.open(io.BytesIO(images[0].data))
    assert img.format == "JPEG" and img.size == (64, 32)
    assert images[0].mime == "image/jpeg" and images[0].seed == 3
    assert server.bodies[0] == {
        "inputs": "an owl",
        "parameters": {
            "negative_prompt": "blurry",
            "width": 128,
            "height": 64,
            "num_inference_steps": 20,
            "guidance_scale": 7.5,
            "scheduler": "DPMSolverMultistepScheduler",
            "seed": 3,
        },
    }
    call = server.calls(f"/{MODEL}")[0]
    assert call.headers["authorization"] == f"Bearer {KEY}"


async def test_prompt_only_sends_no_parameters(server: FakeHuggingFace) -> None:
    p = provider(server)
    await p.generate(GenerationRequest("an owl"))
    await p.aclose()
    assert server.bodies[0] == {"inputs": "an owl"}


async def test_loading_503_becomes_a_wait_of_estimated_time(server: FakeHuggingFace) -> None:
    server.estimated_time = 42.0
    server.add_fault(Fault.status_code(503))
    p = provider(server)
    with pytest.raises(RateLimitedError, match="loading") as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.retry_after == 42.0 and info.value.status_code == 503


async def test_batch_waits_for_loading_model(server: FakeHuggingFace, ws: Workspace) -> None:
    server.add_fault(Fault.status_code(503, times=2))  # estimated_time 0.01 s
    batch = Batch.create(["a barn owl"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 3
    assert task.images[0].format == "JPEG"


async def test_batch_gives_up_when_loading_takes_too_long(
    server: FakeHuggingFace, ws: Workspace
) -> None:
    server.estimated_time = 900.0
    server.add_fault(Fault.status_code(503))
    batch = Batch.create(["x"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    assert batch.tasks[0].status is TaskStatus.FAILED
    assert len(server.requests) == 1


async def test_unknown_model_404_not_retried(server: FakeHuggingFace, ws: Workspace) -> None:
    batch = Batch.create(["x"], workspace=ws)
    p = provider(server, model="nobody/nothing")
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED and task.error_kind == "bad_request"
    assert "does not exist" in (task.error or "")
    assert len(server.requests) == 1


async def test_json_200_and_empty_prompt_errors(server: FakeHuggingFace) -> None:
    p = provider(server)
    server.add_fault(Fault.malformed(b'{"generated_text": "not an image"}'))
    with pytest.raises(MalformedResponseError, match="expected image bytes"):
        await p.generate(GenerationRequest("x"))
    server.add_fault(Fault.status_code(422, {"error": "Input validation error"}))
    with pytest.raises(BadRequestError, match="Input validation error"):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


async def test_img2img_and_n_refused_before_request(server: FakeHuggingFace) -> None:
    p = provider(server)
    with pytest.raises(NotSupportedError, match="input images"):
        await p.generate(GenerationRequest("x", images=[InputImage("a.png", b"\x89PNG")]))
    with pytest.raises(NotSupportedError):
        await p.generate(GenerationRequest("x", Params(n=3)))
    await p.aclose()
    assert server.requests == []


def test_token_required_for_public_router(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=provider_info("huggingface").key_env[0]):
        HuggingFaceProvider()


async def test_self_hosted_endpoint_without_token(
    server: FakeHuggingFace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server.api_key = None
    try:
        p = HuggingFaceProvider(base_url=server.url, model=MODEL)
        images = await p.generate(GenerationRequest("x"))
        await p.aclose()
    finally:
        server.api_key = KEY
    assert images and "authorization" not in server.requests[0].headers
