"""Gemini image adapter against the loopback fake, over real HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from PIL import Image

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.errors import (
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    NotSupportedError,
    RateLimitedError,
)
from nbbatch.providers import GenerationRequest, InputImage, provider_info
from nbbatch.providers._gemini import GeminiProvider
from nbbatch.testing import FakeGemini, Fault
from nbbatch.testing._render import render_png
from tests.support import FAST

KEY = "AIza-SENTINEL-gemini-key-000111"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=KEY) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(server: FakeGemini) -> None:
    server.clear_faults()
    server.requests.clear()
    server.bodies.clear()
    server.image_only = False
    server.retry_delay = "0.01s"


def provider(server: FakeGemini, **kw: object) -> GeminiProvider:
    return GeminiProvider(api_key=KEY, base_url=server.url, **kw)  # type: ignore[arg-type]


def png(colour: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, "PNG")
    return buf.getvalue()


async def test_text_and_image_parts(server: FakeGemini) -> None:
    p = provider(server)
    images = await p.generate(
        GenerationRequest(
            "a tiny robot", Params(size="1920x1080", seed=9, extras={"image_size": "2K"})
        )
    )
    await p.aclose()
    assert len(images) == 1
    img = Image.open(io.BytesIO(images[0].data))
    assert img.format == "PNG" and img.width > img.height
    assert images[0].info["text"] == "Here is the image you asked for."
    assert images[0].info["usage"]["candidatesTokenCount"] == 1290
    call = server.calls("/v1beta/models/gemini-2.5-flash-image:generateContent")[0]
    assert call.headers["x-goog-api-key"] == KEY
    assert "key=" not in call.query  # the key never travels in the URL
    sent = server.bodies[0]
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "a tiny robot"}]}]
    assert sent["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
        "seed": 9,
    }


async def test_image_only_answer(server: FakeGemini) -> None:
    server.image_only = True
    p = provider(server, response_modalities=["IMAGE"])
    images = await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert len(images) == 1 and "text" not in images[0].info
    assert server.bodies[0]["generationConfig"]["responseModalities"] == ["IMAGE"]


async def test_thought_parts_are_skipped(server: FakeGemini) -> None:
    p = provider(server)
    images = await p.generate(GenerationRequest("think hard about a cat", Params(seed=4)))
    await p.aclose()
    assert len(images) == 1
    # the kept image is the final one (seed 4), not the draft thought image
    assert images[0].data == render_png("think hard about a cat", 4, (64, 64))
    assert images[0].data != render_png("draft think hard about a cat", 5, (64, 64))
    assert "Planning" not in images[0].info.get("text", "")


async def test_reference_images_become_inline_data_parts(server: FakeGemini) -> None:
    refs = [InputImage("a.png", png()), InputImage("b.png", png((200, 0, 0)))]
    p = provider(server)
    await p.generate(GenerationRequest("combine these", images=refs))
    await p.aclose()
    parts = server.bodies[0]["contents"][0]["parts"]
    assert parts[0] == {"text": "combine these"}
    assert [pt["inlineData"]["mimeType"] for pt in parts[1:]] == ["image/png", "image/png"]
    assert base64.b64decode(parts[2]["inlineData"]["data"]) == refs[1].data


async def test_reference_limit_depends_on_model(server: FakeGemini) -> None:
    refs = [InputImage(f"{i}.png", png()) for i in range(4)]
    flash = provider(server)
    with pytest.raises(NotSupportedError, match="at most 3"):
        await flash.generate(GenerationRequest("x", images=refs))
    await flash.aclose()
    pro = provider(server, model="gemini-3-pro-image-preview")
    images = await pro.generate(GenerationRequest("x", images=refs))
    await pro.aclose()
    assert len(images) == 1
    assert len(server.bodies) == 1


async def test_negative_prompt_and_n_refused_before_request(server: FakeGemini) -> None:
    p = provider(server)
    with pytest.raises(NotSupportedError, match="negative prompt"):
        await p.generate(GenerationRequest("x", Params(negative_prompt="blur")))
    with pytest.raises(NotSupportedError):
        await p.generate(GenerationRequest("x", Params(n=2)))
    await p.aclose()
    assert server.requests == []


@pytest.mark.parametrize(
    ("prompt", "match"),
    [("an unsafe scene", "IMAGE_SAFETY"), ("a blocked scene", "blocked \\(SAFETY\\)")],
)
async def test_safety_blocks_are_refusals(server: FakeGemini, prompt: str, match: str) -> None:
    p = provider(server)
    with pytest.raises(ContentRefusedError, match=match) as info:
        await p.generate(GenerationRequest(prompt))
    await p.aclose()
    assert info.value.retryable is False


async def test_no_image_reports_what_the_model_said(server: FakeGemini) -> None:
    p = provider(server)
    with pytest.raises(MalformedResponseError, match="will not draw it"):
        await p.generate(GenerationRequest("textonly please"))
    await p.aclose()


async def test_resource_exhausted_uses_retry_info(server: FakeGemini) -> None:
    server.retry_delay = "17.5s"
    server.add_fault(Fault.status_code(429))
    p = provider(server)
    with pytest.raises(RateLimitedError, match="quota") as info:
        await p.generate(GenerationRequest("x"))
    await p.aclose()
    assert info.value.retry_after == 17.5


async def test_batch_waits_retry_delay_then_succeeds(server: FakeGemini, ws: Workspace) -> None:
    server.add_fault(Fault.status_code(429))  # retryDelay 0.01s
    server.add_fault(Fault.status_code(503))
    batch = Batch.create(["a kite"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 3
    assert len(server.calls("*:generateContent")) == 3


async def test_batch_gives_up_on_long_retry_delay(server: FakeGemini, ws: Workspace) -> None:
    server.retry_delay = "3600s"
    server.add_fault(Fault.status_code(429))
    batch = Batch.create(["a kite", "an unsafe kite"], workspace=ws)
    p = provider(server)
    await batch.run(p, concurrency=1, retry=FAST)
    await p.aclose()
    kinds = {t.prompt: (t.status, t.error_kind, t.attempts) for t in batch.tasks}
    statuses = sorted(v[1] for v in kinds.values())
    assert statuses == ["rate_limited", "refused"]
    assert all(v[2] == 1 for v in kinds.values())
    assert len(server.calls("*:generateContent")) == 2


async def test_malformed_and_bad_base64(server: FakeGemini) -> None:
    p = provider(server)
    server.add_fault(Fault.malformed())
    with pytest.raises(MalformedResponseError):
        await p.generate(GenerationRequest("x"))
    part = b'{"inlineData": {"mimeType": "image/png", "data": "%%%"}}'
    bad = b'{"candidates": [{"content": {"parts": [' + part + b"]}}]}"
    server.add_fault(Fault.malformed(bad))
    with pytest.raises(MalformedResponseError, match="base64"):
        await p.generate(GenerationRequest("x"))
    await p.aclose()


def test_key_from_google_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=provider_info("gemini").key_env[0]):
        GeminiProvider()
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    assert GeminiProvider().model == "gemini-2.5-flash-image"


async def test_check_reads_model(server: FakeGemini) -> None:
    p = provider(server)
    await p.check()
    await p.aclose()
    assert server.calls("/v1beta/models/gemini-2.5-flash-image", "GET")


def test_usage_of_an_answer_with_two_images_is_on_the_first_only() -> None:
    # Workspace.stats() sums the usage of images: one answer must count once.
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png()).decode()}}
    answer = {
        "candidates": [{"content": {"parts": [part, part]}, "finishReason": "STOP"}],
        "usageMetadata": {"totalTokenCount": 1300},
        "modelVersion": "gemini-2.5-flash-image",
    }
    first, second = GeminiProvider(api_key=KEY)._images(answer, GenerationRequest("two"))
    assert first.info["usage"] == {"totalTokenCount": 1300}
    assert "usage" not in second.info and second.info["modelVersion"] == "gemini-2.5-flash-image"
