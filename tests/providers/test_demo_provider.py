"""The offline demo provider: deterministic, visibly different, img2img, knobs."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops

from nbbatch import Params
from nbbatch.errors import ContentRefusedError, ServerError
from nbbatch.providers import DemoProvider, GenerationRequest, InputImage, get_provider
from tests.support import png_bytes


def image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def differs(a: bytes, b: bytes) -> bool:
    return ImageChops.difference(image(a), image(b)).getbbox() is not None


async def generate(prompt: str, **params: object) -> bytes:
    out = await DemoProvider().generate(GenerationRequest(prompt, Params(**params)))  # type: ignore[arg-type]
    return out[0].data


async def test_same_prompt_and_seed_give_the_same_pixels() -> None:
    assert not differs(await generate("a fox", seed=1), await generate("a fox", seed=1))


async def test_prompt_and_seed_each_change_the_picture() -> None:
    base = await generate("a fox", seed=1)
    assert differs(base, await generate("a fox", seed=2))
    assert differs(base, await generate("a whale", seed=1))


async def test_size_n_and_reported_seeds() -> None:
    out = await DemoProvider().generate(
        GenerationRequest("x", Params(size="320x200", n=3, seed=10))
    )
    assert [im.seed for im in out] == [10, 11, 12]
    assert image(out[0].data).size == (320, 200)


async def test_img2img_keeps_the_input_visible() -> None:
    red = png_bytes((256, 256), (255, 0, 0))
    request = GenerationRequest(
        "make it blue",
        Params(seed=1, size="256x256", strength=0.2),
        images=(InputImage("red.png", red),),
    )
    (out,) = await DemoProvider().generate(request)
    r, g, b = image(out.data).resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    assert r > g and r > b, "strength 0.2 keeps mostly the red input"
    assert differs(out.data, await generate("make it blue", seed=1, size="256x256"))


async def test_failure_knobs() -> None:
    with pytest.raises(ServerError) as info:
        await DemoProvider(failure_rate=1.0).generate(GenerationRequest("x"))
    assert info.value.retryable
    with pytest.raises(ContentRefusedError, match="forbidden"):
        await DemoProvider(fail_prompts=["forbidden"]).generate(
            GenerationRequest("a Forbidden thing")
        )


async def test_progress_steps_are_reported_in_order() -> None:
    seen: list[float | None] = []
    await DemoProvider(progress_steps=4).generate(
        GenerationRequest("x", Params(n=2)), lambda f, _: seen.append(f)
    )
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 9


def test_registered_by_name() -> None:
    assert isinstance(get_provider("demo"), DemoProvider)
    assert isinstance(get_provider("DEMO", latency=0.1), DemoProvider)
