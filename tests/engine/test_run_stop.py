"""Ending a large run gives the event loop back between slices (issue 25).

``runner.stop()`` sent 100,000 queued tasks back to idle, and ``cancel_pending()``
cancelled them, in one go on the loop (transitions, events, one journal transaction of
every row, then the lease's rows): ~2 s of a kernel's loop. The figure is measured by
``benchmarks/bench_scale.py --stop-only`` (``RESULT run_stop_loop_max_ms_100k``,
``RESULT run_cancel_pending_loop_max_ms_100k``); these tests pin the structure without
a clock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import nbbatch.engine._runner as runner_module
import nbbatch.engine._settle as settle_module
from nbbatch import Batch
from nbbatch.core._events import RunState, TaskCancelled
from nbbatch.engine._runner import Runner
from tests.support import ControlledProvider, until

N = 300  # with the threshold lowered to 100 below (the real one is 1,000: slower tests)


def journal(batch: Batch, sql: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{batch.workspace.path / 'nbbatch.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def statuses(batch: Batch) -> dict[object, object]:
    rows = journal(
        batch, "SELECT status, COUNT(*) FROM tasks WHERE batch_id=? GROUP BY status", batch.id
    )
    return dict(rows)  # type: ignore[arg-type]


class Watcher:
    """Runs on the loop between the run's steps and notes what it sees there."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.seen: list[tuple[int, int]] = []  # (queued, settled) at each turn

    async def run(self, settled: str) -> None:
        while True:
            await asyncio.sleep(0)
            p = self.runner.progress()
            self.seen.append((p.queued, getattr(p, settled)))

    def partway(self, total: int) -> list[tuple[int, int]]:
        """Turns the loop gave others while some tasks were settled and some not yet."""
        return [(q, s) for q, s in self.seen if 0 < q < total and s > 0]


async def queued_run(batch: Batch, provider: ControlledProvider) -> Runner:
    runner = batch.start(provider, concurrency=1)
    await until(lambda: runner.progress().queued == N - 1 and provider.in_flight == 1)
    return runner


@pytest.fixture
def sliced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "SETTLE_IN_SLICES_FROM", 100)
    monkeypatch.setattr(settle_module, "SLICE_SECONDS", 0.0)  # a yield after every 64


@pytest.mark.usefixtures("sliced")
async def test_stopping_a_large_run_sends_its_queued_tasks_back_in_slices(
    tmp_path: Path,
) -> None:
    batch = Batch.create([f"p{i}" for i in range(N)], workspace=tmp_path / "ws")
    provider = ControlledProvider(gate=asyncio.Event())
    try:
        runner = await queued_run(batch, provider)
        watcher = Watcher(runner)
        runner.stop()
        watch = asyncio.ensure_future(watcher.run("cancelled"))
        await runner.wait()
        watch.cancel()
        assert runner.state is RunState.STOPPED
        # the loop ran other work while the queued tasks went back (old: not once)
        assert len({q for q, _ in watcher.seen if 0 < q < N - 1}) >= 3
        assert runner.progress().queued == 0
        assert [t.status.value for t in batch.tasks].count("idle") == N - 1
    finally:
        batch.workspace.close()
    assert statuses(batch) == {"idle": N - 1, "interrupted": 1}  # one was being sent
    assert journal(batch, "SELECT COUNT(*) FROM leases") == [(0,)]  # released off the loop


@pytest.mark.usefixtures("sliced")
async def test_cancelling_the_pending_tasks_of_a_large_run_starts_none_and_yields(
    tmp_path: Path,
) -> None:
    batch = Batch.create([f"p{i}" for i in range(N)], workspace=tmp_path / "ws")
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    cancelled: list[str] = []
    journaled_first: list[bool] = []

    def on_event(event: object) -> None:
        if isinstance(event, TaskCancelled):
            cancelled.append(event.task.id)
            if len(cancelled) == 1:  # announced only once it is in the journal
                rows = journal(batch, "SELECT status FROM tasks WHERE id=?", event.task.id)
                journaled_first.append(rows == [("cancelled",)])

    batch.subscribe(on_event)
    try:
        runner = await queued_run(batch, provider)
        watcher = Watcher(runner)
        watch = asyncio.ensure_future(watcher.run("cancelled"))
        runner.cancel_pending()
        assert runner.state is RunState.RUNNING
        gate.set()  # the one request in flight ends; nothing else may start
        await runner.wait()
        watch.cancel()
        assert runner.state is RunState.FINISHED
        assert len(watcher.partway(N - 1)) >= 3  # the loop was served in between
    finally:
        batch.workspace.close()
    assert provider.calls == ["p0"]
    assert len(cancelled) == N - 1 and len(set(cancelled)) == N - 1
    assert journaled_first == [True]
    assert statuses(batch) == {"cancelled": N - 1, "succeeded": 1}


@pytest.mark.usefixtures("sliced")
async def test_a_task_removed_while_the_run_stops_in_slices_stays_removed(
    tmp_path: Path,
) -> None:
    batch = Batch.create([f"p{i}" for i in range(N)], workspace=tmp_path / "ws")
    provider = ControlledProvider(gate=asyncio.Event())
    try:
        runner = await queued_run(batch, provider)
        last = batch.tasks[-1]
        runner.stop()
        await until(lambda: 0 < runner.progress().queued < N - 1)  # partway
        batch.remove(last)  # still queued (the slices go in batch order) or already idle
        await runner.wait()
        assert runner.state is RunState.STOPPED
    finally:
        batch.workspace.close()
    assert statuses(batch) == {"idle": N - 2, "interrupted": 1}
    assert journal(batch, "SELECT COUNT(*) FROM tasks WHERE id=?", last.id) == [(0,)]
