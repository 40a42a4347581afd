"""An in-process provider behind a hard rate limit, for the rate-limit tests and benchmark.

:class:`RateLimitedProvider` accepts at most ``requests_per_minute`` requests in any 60
seconds, as a service counting per rolling minute does. A request over the limit is
answered at once with a 429 (:class:`~nbbatch.errors.RateLimitedError`) whose
``retry_after`` is the time until the oldest accepted request leaves the window, as a
real ``Retry-After`` says; accepted requests take ``latency`` seconds and return a tiny
PNG. All time is the running loop's, so it runs on a virtual clock as well as a real one.
It counts what happened: ``accepted``, ``refused`` (429s), ``max_in_flight``.
"""

from __future__ import annotations

import asyncio
import collections
import io
import selectors
from typing import Any, ClassVar

from PIL import Image

from ..core._errors import RateLimitedError
from ..providers._base import (
    Capabilities,
    GenerationRequest,
    ImageData,
    ProgressCallback,
    Provider,
)

__all__ = ["RateLimitedProvider", "VirtualTimeLoop"]

_WINDOW = 60.0


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


class RateLimitedProvider(Provider):
    """A provider with a hard requests-per-minute limit (see the module docstring)."""

    name: ClassVar[str] = "ratelimited"
    capabilities: Capabilities = Capabilities(txt2img=True, max_n=4, seed=True)

    def __init__(self, requests_per_minute: int = 60, *, latency: float = 2.0) -> None:
        self.requests_per_minute = requests_per_minute
        self.latency = latency
        self._accepted_at: collections.deque[float] = collections.deque()
        self.accepted = 0
        self.refused = 0
        self.in_flight = 0
        self.max_in_flight = 0
        #: the loop time of every accepted request
        self.sent_at: list[float] = []
        self._image = _png()

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        now = asyncio.get_running_loop().time()
        window = self._accepted_at
        while window and window[0] <= now - _WINDOW:
            window.popleft()
        if len(window) >= self.requests_per_minute:
            self.refused += 1
            wait = window[0] + _WINDOW - now
            raise RateLimitedError(
                f"{self.name}: HTTP 429: rate limit of {self.requests_per_minute} requests "
                "per minute reached",
                provider=self.name,
                retry_after=max(wait, 0.0),
                task_id=request.task_id,
            )
        window.append(now)
        self.sent_at.append(now)
        self.accepted += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        return [ImageData(self._image, seed=i) for i in range(request.params.n)]


class _VirtualSelector(selectors.DefaultSelector):
    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or self.loop.working:
            # work on other threads (the journal, saves) takes real time: wait for it
            return list(super().select(timeout if timeout is None else min(timeout, 0.05)))
        ready = super().select(0)
        if ready:
            return list(ready)
        self.loop.virtual += max(0.0, timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: when nothing is ready and no work is running on
    another thread (``run_in_executor``: the journal, image saves), its clock jumps to
    the next timer, so a run paced over minutes takes seconds."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self.virtual = 0.0
        #: calls running on other threads now
        self.working = 0

    def time(self) -> float:
        return self.virtual

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Any, *args: Any
    ) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self.working += 1

        def done(_: object) -> None:
            self.working -= 1

        future.add_done_callback(done)
        return future
