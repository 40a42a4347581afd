"""Helpers the tests import: ``from tests.support import png_bytes, ControlledProvider``.

Fixtures stay in the ``conftest.py`` files; this module holds plain functions and classes.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from nbbatch import RetryPolicy
from nbbatch.providers import (
    Capabilities,
    GenerationRequest,
    ImageData,
    Provider,
    render_demo_image,
)
from nbbatch.providers._base import ProgressCallback

#: retries without waiting: provider and runner tests count attempts, not seconds
FAST = RetryPolicy(base_delay=0.001, max_delay=0.002)


async def until(
    condition: Callable[[], object], what: str | None = None, *, timeout: float = 30.0
) -> None:
    """Wait, yielding to the event loop, until ``condition()`` is true.

    Tests wait on the state they need instead of sleeping a guessed time and asserting:
    on a loaded machine a guess is a race. ``timeout`` only turns a hang into a failure,
    which names ``what`` was awaited (also state set by a fake server's thread).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"still waiting after {timeout} s for {what or condition}")
        await asyncio.sleep(0.001)


def demo_png(text: str = "input", size: tuple[int, int] = (48, 48)) -> bytes:
    """A PNG the demo provider would draw for ``text`` (an input image for img2img)."""
    buf = io.BytesIO()
    render_demo_image(text, 1, size).save(buf, format="PNG")
    return buf.getvalue()


def png_bytes(
    size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] | str = (200, 30, 30)
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


#: the sentinel keys of the secrets tests: no artefact may contain either
SENTINEL = "test-key-SENTINEL-reliability-7f3a9c2e"
WRONG = "test-key-wrong-but-echoed-5d1b"


def hits(*artefacts: object) -> list[str]:
    """The artefacts (text, bytes, files, folders) that contain a sentinel."""
    found = []
    for item in artefacts:
        blobs: list[tuple[str, bytes]] = []
        if isinstance(item, Path):
            paths = [p for p in item.rglob("*") if p.is_file()] if item.is_dir() else [item]
            blobs = [(str(p), p.read_bytes()) for p in paths if p.exists()]
        elif isinstance(item, bytes):
            blobs = [("bytes", item)]
        else:
            blobs = [(repr(item)[:60], str(item).encode())]
        for where, data in blobs:
            for key in (SENTINEL, WRONG):
                if key.encode() in data:
                    found.append(f"{key[:14]}... in {where}")
    return found


#: text with NUL, ANSI escapes, bidi overrides, CR and C1 controls, and what is left of it
HOSTILE = "a\x00b \x1b[31mred\x1b[0m \u202efox\u202c\r\nnext\rline\x7f\x85"
CLEAN = "ab [31mred[0m fox\nnext\nline"

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


def with_timeout(fn: Callable[[], object], seconds: float = 10.0) -> object:
    """Run ``fn`` in a thread: a regression to "hangs on a FIFO" fails instead of hanging."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the call hung"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]
