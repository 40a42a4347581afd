"""ComfyUI progress: previews reach subscribers with the fraction; node-level progress.

Issue 27 item 5: ComfyUI sends a binary preview right after each ``progress`` frame; the
provider reported it as ``on_progress(None, preview)``, so the runner set
``task.progress = None`` and its throttle dropped the preview (it came milliseconds after
the progress event). And ``progress_state`` (per-node progress) was ignored, so a graph
whose nodes report no sampler steps showed nothing until the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbbatch import Batch, TaskStatus, Workspace
from nbbatch.core._events import TaskProgress
from nbbatch.providers import ComfyUIProvider, GenerationRequest
from nbbatch.testing import FakeComfyUI


@pytest.fixture(scope="module")
def server() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(cache=False) as s:
        yield s


async def test_each_preview_comes_with_the_fraction_of_its_step(server: FakeComfyUI) -> None:
    server.previews, server.progress_steps, server.progress_state = True, 4, False
    reports: list[tuple[float | None, bool]] = []
    p = ComfyUIProvider(base_url=server.url)
    try:
        await p.generate(GenerationRequest("a fox"), lambda f, pv: reports.append((f, bool(pv))))
    finally:
        await p.aclose()
        server.previews = False
    assert reports == [(0.25, True), (0.5, True), (0.75, True), (0.99, True), (1.0, False)]


async def test_previews_reach_subscribers_without_resetting_task_progress(
    server: FakeComfyUI, workspace: Workspace
) -> None:
    server.previews, server.progress_steps = True, 4
    batch = Batch.create(["a fox"], workspace=workspace)
    seen: list[tuple[float | None, bool, float | None]] = []
    batch.subscribe(
        lambda e: (
            seen.append((e.progress, e.preview is not None, e.task.progress))
            if isinstance(e, TaskProgress)
            else None
        )
    )
    p = ComfyUIProvider(base_url=server.url)
    try:
        await batch.run(p)
    finally:
        await p.aclose()
        server.previews = False
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    with_preview = [s for s in seen if s[1]]
    assert with_preview and all(f is not None and f > 0 for f, _, _ in with_preview)
    assert all(task_progress is not None for _, _, task_progress in seen)


async def test_progress_state_gives_node_level_progress_without_sampler_steps(
    server: FakeComfyUI,
) -> None:
    server.progress_state, server.progress_steps = True, 0  # no node reports steps
    fractions: list[float] = []
    p = ComfyUIProvider(base_url=server.url)
    try:
        await p.generate(
            GenerationRequest("a fox"), lambda f, _: fractions.append(f) if f is not None else None
        )
    finally:
        await p.aclose()
        server.progress_state, server.progress_steps = False, 4
    during = [f for f in fractions if f < 1.0]
    assert len(during) >= 3 and 0 <= during[0] < during[-1] < 1.0
    assert during == sorted(during)
    assert fractions[-1] == 1.0
