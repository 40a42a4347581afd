"""The offline demo provider: deterministic images rendered locally with Pillow.

It needs no key and no network, so the studio, the CLI, the tests, Binder and the
benchmarks work on a fresh machine. Every image is labelled ``DEMO`` so it is never
mistaken for a real generation. The picture depends on the prompt and the seed only:
the same (prompt, seed, size) always renders the same pixels.

Knobs for exercising the runner: ``latency`` (seconds per image, or a ``(low, high)``
range), ``progress_steps`` (progress events per image), ``failure_rate`` (share of
attempts failing with a retryable server error) and ``fail_prompts`` (prompts containing
any of these words always fail with a non-retryable refusal).
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import io
import random
import textwrap
from collections.abc import Sequence
from typing import ClassVar

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..core._errors import ContentRefusedError, ServerError
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info

__all__ = ["DemoProvider", "render_demo_image"]

INFO = provider_info("demo")
_DEFAULT_SIZE = (512, 512)
_MAX_SIDE = 2048


def _digest(*parts: object) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.digest()


def _colour(rng: random.Random, lightness: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(rng.random(), lightness, 0.55 + 0.4 * rng.random())
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def render_demo_image(
    prompt: str,
    seed: int,
    size: tuple[int, int] = _DEFAULT_SIZE,
    *,
    init_image: Image.Image | None = None,
    strength: float = 0.6,
    index: int = 0,
) -> Image.Image:
    """Render the demo picture for ``prompt`` and ``seed`` (pure function of its inputs)."""
    w, h = max(16, min(size[0], _MAX_SIDE)), max(16, min(size[1], _MAX_SIDE))
    # The palette follows the prompt, the composition follows the seed: two seeds of one
    # prompt look related but different, as a real model's would.
    palette_rng = random.Random(_digest("palette", prompt))
    rng = random.Random(_digest("shapes", prompt, seed, index))
    top, bottom = _colour(palette_rng, 0.35), _colour(palette_rng, 0.7)

    img = Image.linear_gradient("L").resize((w, h))
    img = ImageOps.colorize(img, black=top, white=bottom).convert("RGB")
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(6 + rng.randrange(6)):
        cx, cy = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(max(4, min(w, h) // 12), max(8, min(w, h) // 3))
        fill = (*_colour(palette_rng if rng.random() < 0.5 else rng, 0.55), 150)
        box = (cx - r, cy - r, cx + r, cy + r)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)

    if init_image is not None:
        base = ImageOps.fit(init_image.convert("RGB"), (w, h))
        base = ImageOps.posterize(base, 3)
        # strength 0 keeps the input, 1 replaces it: the same meaning as img2img denoising
        img = Image.blend(base, img, max(0.0, min(1.0, strength)))
        draw = ImageDraw.Draw(img, "RGBA")

    font_size = max(10, min(w, h) // 22)
    font = _font(font_size)
    chars = max(8, int(w / (font_size * 0.55)))
    lines = textwrap.wrap(prompt, width=chars)[:6] or [""]
    text = "\n".join(lines)
    margin = max(6, font_size // 2)
    bbox = draw.multiline_textbbox((margin, margin), text, font=font)
    draw.rectangle((bbox[0] - 4, bbox[1] - 4, bbox[2] + 4, bbox[3] + 4), fill=(0, 0, 0, 140))
    draw.multiline_text((margin, margin), text, font=font, fill=(255, 255, 255, 255))

    label = f"DEMO · seed {seed}"
    lbox = draw.textbbox((0, 0), label, font=font)
    lw, lh = lbox[2] - lbox[0], lbox[3] - lbox[1]
    x, y = w - lw - margin, h - lh - margin - 4
    draw.rectangle((x - 4, y - 2, x + lw + 4, y + lh + 6), fill=(200, 30, 30, 200))
    draw.text((x, y), label, font=font, fill=(255, 255, 255, 255))
    return img


class DemoProvider(Provider):
    """Offline demo provider (labelled ``DEMO`` on every image)."""

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        latency: float | Sequence[float] = 0.0,
        progress_steps: int = 0,
        failure_rate: float = 0.0,
        fail_prompts: Sequence[str] = (),
        format: str = "PNG",
        rng_seed: int | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        if isinstance(latency, (int, float)):
            self._latency: tuple[float, float] = (float(latency), float(latency))
        else:
            low, high = (float(v) for v in latency)
            self._latency = (low, high)
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self.progress_steps = max(0, int(progress_steps))
        self.failure_rate = failure_rate
        self.fail_prompts = tuple(w.lower() for w in fail_prompts)
        self.format = format.upper()
        self.max_concurrency = max_concurrency
        self._rng = random.Random(rng_seed)
        self.calls = 0

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        self.calls += 1
        lowered = request.prompt.lower()
        for word in self.fail_prompts:
            if word in lowered:
                raise ContentRefusedError(
                    f"demo provider refuses prompts containing {word!r} (simulated refusal)",
                    provider=self.name,
                    task_id=request.task_id,
                )
        if self.failure_rate and self._rng.random() < self.failure_rate:
            await self._wait(self._rng.uniform(*self._latency) / 2, None)
            raise ServerError(
                "demo provider simulated a server error (HTTP 500)",
                provider=self.name,
                status_code=500,
                task_id=request.task_id,
            )
        params = request.params
        base_seed = params.seed if params.seed is not None and params.seed >= 0 else None
        if base_seed is None:
            base_seed = self._rng.randrange(2**32)
        size = params.dimensions or _DEFAULT_SIZE
        init = request.images[0].data if request.images else None
        strength = params.strength if params.strength is not None else 0.6
        out: list[ImageData] = []
        for i in range(params.n):
            await self._wait(self._rng.uniform(*self._latency), on_progress, i, params.n)
            seed = base_seed + i
            data = await asyncio.to_thread(
                self._render_bytes, request.prompt, seed, size, init, strength
            )
            out.append(
                ImageData(
                    data=data, mime=f"image/{self.format.lower()}", seed=seed, info={"demo": True}
                )
            )
        if on_progress is not None:
            on_progress(1.0, None)
        return out

    async def _wait(
        self,
        seconds: float,
        on_progress: ProgressCallback | None,
        index: int = 0,
        total: int = 1,
    ) -> None:
        steps = self.progress_steps if on_progress is not None else 0
        if steps <= 0:
            if seconds > 0:
                await asyncio.sleep(seconds)
            return
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            assert on_progress is not None
            on_progress((index + step / steps) / total, None)

    def _render_bytes(
        self,
        prompt: str,
        seed: int,
        size: tuple[int, int],
        init: bytes | None,
        strength: float,
    ) -> bytes:
        init_img = None
        if init is not None:
            # Inputs were validated by the guarded decoder when they entered the workspace.
            init_img = Image.open(io.BytesIO(init))
            init_img.load()
        img = render_demo_image(prompt, seed, size, init_image=init_img, strength=strength)
        buf = io.BytesIO()
        img.save(buf, format=self.format)
        return buf.getvalue()
