"""Shared fixtures: a temp workspace, a controllable provider, no keys from the host."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from nbbatch import Workspace
from nbbatch.providers import Capabilities, GenerationRequest, ImageData, Provider, provider_catalog
from nbbatch.providers._base import ProgressCallback

#: every provider's key variables (the catalogue's) plus nbbatch's own settings
KEY_VARS = (
    *(var for info in provider_catalog() for var in info.key_env),
    "NBBATCH_WORKSPACE",
    "NBBATCH_MAX_CONCURRENCY",
)


@pytest.fixture(autouse=True)
def _no_host_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A developer's real keys must never reach a test (or a fake server's log), and
    # their saved provider settings must not change what a test does.
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBBATCH_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(tmp_path / "ws")
    yield ws
    ws.close()


def png_bytes(
    size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


class ControlledProvider(Provider):
    """A provider the test drives: counts calls and in-flight requests, can block.

    ``script`` maps a prompt to a list of outcomes consumed per attempt: an exception
    instance to raise, or ``"ok"``. When ``gate`` is set, every request waits on it.
    """

    name: ClassVar[str] = "controlled"
    capabilities: Capabilities = Capabilities(
        txt2img=True, img2img=True, max_references=2, max_n=4, seed=True
    )

    def __init__(
        self,
        *,
        delay: float = 0.0,
        gate: asyncio.Event | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        self.delay = delay
        self.gate = gate
        self.max_concurrency = max_concurrency
        self.script: dict[str, list[object]] = {}
        self.calls: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.closed = 0
        self.colour = 0

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.calls.append(request.prompt)
        self.started.append(request.task_id or "")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if on_progress is not None:
                on_progress(0.5, None)
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            outcomes = self.script.get(request.prompt)
            if outcomes:
                outcome = outcomes.pop(0)
                if isinstance(outcome, BaseException):
                    raise outcome
            self.colour = (self.colour + 1) % 250
            return [
                ImageData(png_bytes(colour=(self.colour, i, 7)), seed=100 + i)
                for i in range(request.params.n)
            ]
        except asyncio.CancelledError:
            self.cancelled.append(request.task_id or "")
            raise
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed += 1
