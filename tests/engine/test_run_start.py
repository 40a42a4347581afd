"""Starting a large run gives the event loop back between slices (issue 25).

100,000 tasks were checked, claimed and queued inside ``start()``, holding a kernel's
loop for ~1.8 s. The figure is measured by ``benchmarks/bench_scale.py --start-only``
(``RESULT run_start_loop_max_ms_100k``); these tests pin the structure without a clock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import nbbatch.engine._runner as runner_module
from nbbatch import Batch
from nbbatch.core._events import RunState, TaskQueued
from nbbatch.errors import NotSupportedError
from tests.support import ControlledProvider, until

N = runner_module.INCREMENTAL_FROM + 500


def statuses(batch: Batch) -> dict[str, int]:
    db = sqlite3.connect(f"file:{batch.workspace.path / 'nbbatch.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT status, COUNT(*) FROM tasks WHERE batch_id=? GROUP BY status", (batch.id,)
        ).fetchall()
    finally:
        db.close()
    return dict(rows)


async def test_a_large_start_queues_in_slices_with_the_loop_served_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "_SLICE_SECONDS", 0.0)  # a yield after every 32
    batch = Batch.create([f"p{i}" for i in range(N)], workspace=tmp_path / "ws")
    queued_since_tick = 0
    most_between_ticks = 0
    ticks = 0

    def on_event(event: object) -> None:
        nonlocal queued_since_tick, most_between_ticks
        if isinstance(event, TaskQueued):
            queued_since_tick += 1
            most_between_ticks = max(most_between_ticks, queued_since_tick)

    async def ticker() -> None:
        nonlocal ticks, queued_since_tick
        while True:
            await asyncio.sleep(0)
            ticks += 1
            queued_since_tick = 0

    batch.subscribe(on_event)
    tick = asyncio.ensure_future(ticker())
    provider = ControlledProvider(gate=asyncio.Event())
    try:
        runner = batch.start(provider, concurrency=1)
        assert runner.progress().queued == 0  # start() itself queued nothing
        await until(lambda: runner.progress().queued + runner.progress().running == N)
        assert most_between_ticks <= 32
        assert ticks > N // 32
        await until(lambda: provider.in_flight == 1)  # the first request is out, held
        runner.stop()
        await runner.wait()
    finally:
        tick.cancel()
        batch.workspace.close()
    assert statuses(batch) == {"idle": N - 1, "interrupted": 1}  # one was being sent


async def test_a_problem_found_after_start_returned_is_raised_by_wait_and_claims_nothing(
    tmp_path: Path,
) -> None:
    prompts = [f"p{i}" for i in range(N)]
    batch = Batch.create(prompts, workspace=tmp_path / "ws")
    last = batch.tasks[-1]
    batch.edit(last, params={"n": 9})  # more images than the provider returns per request
    provider = ControlledProvider()
    try:
        runner = batch.start(provider)  # the first tasks are fine: start returns
        with pytest.raises(NotSupportedError, match="at most 4"):
            await runner.wait()
        assert runner.state is RunState.STOPPED
        assert provider.calls == []
    finally:
        batch.workspace.close()
    assert statuses(batch) == {"idle": N}


async def test_a_problem_in_the_first_tasks_still_raises_from_start(tmp_path: Path) -> None:
    batch = Batch.create([f"p{i}" for i in range(N)], workspace=tmp_path / "ws")
    batch.edit(batch.tasks[0], params={"n": 9})
    try:
        with pytest.raises(NotSupportedError):
            batch.start(ControlledProvider())
    finally:
        batch.workspace.close()
    assert statuses(batch) == {"idle": N}


async def test_a_stop_while_a_large_start_is_under_way_leaves_nothing_queued(
    tmp_path: Path,
) -> None:
    batch = Batch.create([f"p{i}" for i in range(N)], workspace=tmp_path / "ws")
    provider = ControlledProvider()
    try:
        runner = batch.start(provider)
        runner.stop()  # before the claim
        await runner.wait()
        assert runner.state is RunState.STOPPED
    finally:
        batch.workspace.close()
    assert provider.calls == []
    assert statuses(batch) == {"idle": N}
