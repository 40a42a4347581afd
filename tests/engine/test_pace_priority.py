"""Priority between runs sharing one endpoint, driven by which requests the test lets end."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from nbbatch import Batch, Workspace
from nbbatch.providers import Capabilities, GenerationRequest, ImageData, Provider
from nbbatch.providers._base import ProgressCallback
from tests.support import png_bytes, until


class Allowed(Provider):
    """Each request ends only when the test allows one more (first come, first allowed)."""

    name: ClassVar[str] = "allowed"
    capabilities: Capabilities = Capabilities(txt2img=True)

    def __init__(self) -> None:
        self.started: list[str] = []
        self._allow = asyncio.Semaphore(0)

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self._allow.release()

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.started.append(request.prompt)
        await self._allow.acquire()
        return [ImageData(png_bytes(), seed=len(self.started))]


async def test_a_high_priority_run_gets_free_slots_first_and_a_low_one_keeps_one(
    workspace: Workspace,
) -> None:
    provider = Allowed()
    low = Batch.create([f"l{i}" for i in range(6)], workspace=workspace)
    high = Batch.create([f"h{i}" for i in range(3)], workspace=workspace)
    background = low.start(provider, concurrency=3, priority="low")
    await until(lambda: len(provider.started) == 3)
    quick = high.start(provider, concurrency=3, priority="high")
    assert provider.started == ["l0", "l1", "l2"], "the endpoint's 3 slots are taken"
    expected = ["l0", "l1", "l2", "h0", "h1", "l3", "h2", "l4", "l5"]
    for count in range(4, 10):
        provider.allow(1)  # one request ends: its slot goes to whoever comes first
        await until(lambda: len(provider.started) == count)  # noqa: B023
        assert provider.started == expected[:count]
    provider.allow(9)
    await asyncio.gather(background.wait(), quick.wait())
    assert len(low.succeeded) == 6 and len(high.succeeded) == 3


async def test_runs_on_different_endpoints_do_not_share_slots(workspace: Workspace) -> None:
    one, two = Allowed(), Allowed()
    a = Batch.create(["a0", "a1"], workspace=workspace).start(one, concurrency=2, priority="low")
    b = Batch.create(["b0", "b1"], workspace=workspace).start(two, concurrency=2, priority="high")
    await until(lambda: len(one.started) == 2 and len(two.started) == 2)
    one.allow(2)
    two.allow(2)
    await asyncio.gather(a.wait(), b.wait())
