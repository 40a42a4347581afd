"""Deadlines and start times, on a virtual clock (the loop's time, and the wall clock with it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from nbbatch import Batch, Workspace
from nbbatch.engine import _pace
from nbbatch.engine._pace import journaled_budget, parse_when
from nbbatch.errors import ConfigError
from nbbatch.events import RunState
from nbbatch.providers import DemoProvider
from nbbatch.testing import RateLimitedProvider, VirtualTimeLoop

EPOCH = 1_800_000_000.0


def on_virtual_time(monkeypatch: pytest.MonkeyPatch) -> VirtualTimeLoop:
    loop = VirtualTimeLoop()
    monkeypatch.setattr(_pace, "wall_clock", lambda: EPOCH + loop.time())
    return loop


def test_no_request_starts_after_the_deadline_and_the_run_pauses_saying_so(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = on_virtual_time(monkeypatch)
    provider = RateLimitedProvider(1000, latency=10.0)
    states: list[RunState] = []
    shown: list[str | None] = []

    async def main() -> tuple[list[float], str | None, int]:
        batch = Batch.create([f"p{i}" for i in range(10)], workspace=workspace)
        run = batch.start(provider, concurrency=2, deadline=25)  # seconds from now
        shown.append(run.pace.describe())
        await_paused = loop.create_future()
        run.subscribe(
            lambda e: (
                await_paused.done() or await_paused.set_result(None)
                if getattr(e, "state", None) is RunState.PAUSED
                else None
            )
        )
        await await_paused
        reason = run.paused_reason
        while run.active:
            await asyncio.sleep(1)
        sent = list(provider.sent_at)
        run.resume()  # after its deadline, Resume goes on
        await run.wait()
        states.append(run.state)
        return sent, reason, run.progress().succeeded

    try:
        sent, reason, succeeded = loop.run_until_complete(main())
    finally:
        loop.close()
    assert [round(t) for t in sent] == [0, 0, 10, 10, 20, 20], "none starts after 25 s"
    assert reason is not None
    assert reason.startswith("deadline ") and "reached: 4 tasks not started" in reason
    assert succeeded == 10 and states == [RunState.FINISHED]
    when = datetime.fromtimestamp(EPOCH + 25).strftime("%Y-%m-%d %H:%M")
    assert shown == [f"no request starts after {when}"], "the studio shows the deadline"


def test_nothing_is_sent_before_start_at(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = on_virtual_time(monkeypatch)
    provider = RateLimitedProvider(1000, latency=1.0)

    async def main() -> str | None:
        batch = Batch.create(["a", "b"], workspace=workspace)
        run = batch.start(provider, start_at=3600)
        said = run.pace.describe()
        await run.wait()
        return said

    try:
        said = loop.run_until_complete(main())
    finally:
        loop.close()
    assert said is not None and said.startswith("waits to start at")
    assert min(provider.sent_at) >= 3600


def test_a_deadline_is_a_datetime_seconds_from_now_or_the_next_such_local_time() -> None:
    now = datetime(2026, 12, 7, 22, 30).timestamp()
    assert parse_when(90, now=now) == now + 90
    assert parse_when(datetime(2026, 12, 8, 1, 0), now=now) == datetime(2026, 12, 8, 1).timestamp()
    assert parse_when("07:00", now=now) == datetime(2026, 12, 8, 7, 0).timestamp()
    assert parse_when("23:00", now=now) == datetime(2026, 12, 7, 23, 0).timestamp()
    with pytest.raises(ConfigError, match="'07:00'"):
        parse_when("tomorrow-ish", now=now)


def test_the_deadline_is_journaled_and_holds_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = on_virtual_time(monkeypatch)

    async def first_kernel() -> str:
        ws = Workspace(tmp_path / "ws")
        batch = Batch.create([f"p{i}" for i in range(6)], workspace=ws)
        provider = RateLimitedProvider(1000, latency=10.0)
        run = batch.start(provider, concurrency=1, deadline=25)
        while run.progress().succeeded < 1:
            await asyncio.sleep(1)
        run.stop()  # the kernel goes away before the deadline
        await run.wait()
        ws.close()
        return batch.id

    async def second_kernel(batch_id: str) -> tuple[list[float], str | None, float | None]:
        ws = Workspace(tmp_path / "ws")  # a new Workspace object on the same file
        try:
            batch = Batch.load(batch_id, ws)
            provider = RateLimitedProvider(1000, latency=10.0)
            run = batch.start(provider, concurrency=1)  # resumed without a deadline
            deadline = run.pace.deadline
            while run.state is not RunState.PAUSED or run.active:
                await asyncio.sleep(1)
            reason = run.paused_reason
            run.stop()
            await run.wait()
            return list(provider.sent_at), reason, deadline
        finally:
            ws.close()

    try:
        batch_id = loop.run_until_complete(first_kernel())
        restarted_at = loop.time()
        sent, reason, deadline = loop.run_until_complete(second_kernel(batch_id))
    finally:
        loop.close()
    assert deadline == EPOCH + 25, "the resumed run keeps 'run until' of the first"
    assert all(restarted_at <= t < 25 for t in sent) and sent, "none starts after it"
    assert reason is not None and reason.startswith("deadline ")


def test_a_journaled_deadline_that_has_passed_is_dropped_on_the_next_run(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = on_virtual_time(monkeypatch)

    async def main() -> tuple[float | None, dict[str, int], dict[str, object] | None]:
        batch = Batch.create(["a", "b", "c"], workspace=workspace)
        run = batch.start(RateLimitedProvider(1000, latency=10.0), concurrency=1, deadline=5)
        while run.state is not RunState.PAUSED or run.active:
            await asyncio.sleep(1)
        run.stop()
        await run.wait()
        # the next morning: the person runs the batch again, and it runs
        again = batch.start(RateLimitedProvider(1000, latency=10.0), concurrency=1)
        deadline = again.pace.deadline
        await again.wait()
        return deadline, dict(batch.counts), journaled_budget(workspace, batch.id)

    try:
        deadline, counts, kept = loop.run_until_complete(main())
    finally:
        loop.close()
    assert deadline is None and counts == {"succeeded": 3}
    assert (kept or {}).get("deadline") is None, "the journal forgets it too"


def test_set_deadline_is_journaled_for_the_next_run(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = on_virtual_time(monkeypatch)

    async def main() -> dict[str, object] | None:
        batch = Batch.create(["a", "b"], workspace=workspace)
        provider = RateLimitedProvider(1000, latency=10.0)
        run = batch.start(provider, concurrency=1)
        run.pace.set_deadline(3600)
        run.stop()
        await run.wait()
        return journaled_budget(workspace, batch.id)

    try:
        kept = loop.run_until_complete(main())
    finally:
        loop.close()
    assert kept is not None and kept["deadline"] == EPOCH + 3600


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from nbbatch import Batch, Workspace
    from nbbatch.providers import DemoProvider

    ws_path, batch_id, deadline = sys.argv[1:4]

    class Stuck(DemoProvider):
        async def generate(self, request, on_progress=None):
            print("SENT", flush=True)
            await asyncio.Event().wait()  # the kernel dies with this request in flight

    async def main():
        batch = Batch.load(batch_id, Workspace(ws_path))
        run = batch.start(Stuck(), concurrency=1, deadline=float(deadline))
        await run.wait()

    asyncio.run(main())
    """
)


def test_a_killed_kernel_s_deadline_holds_for_the_batch_resumed_after_it(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    batch = Batch.create(["a", "b"], workspace=ws)
    ws.close()
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "ws"), batch.id, "3600"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "SENT"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    again = Workspace(tmp_path / "ws")
    try:
        kept = journaled_budget(again, batch.id)
        assert kept is not None and isinstance(kept["deadline"], float)
        # 3600 s from the child's start: about an hour from now (no clock is raced here:
        # it is only known to lie between the test's start and now + 3600)
        assert time.time() < kept["deadline"] <= time.time() + 3600
        deadline = kept["deadline"]

        async def resume() -> float | None:
            run = Batch.load(batch.id, again).start(DemoProvider(latency=0.0))
            await run.wait()
            return run.pace.deadline

        assert asyncio.run(resume()) == deadline
    finally:
        again.close()


def test_a_start_time_still_ahead_is_journaled_and_kept_by_the_next_run(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = on_virtual_time(monkeypatch)

    async def main() -> tuple[float | None, list[float]]:
        batch = Batch.create(["a"], workspace=workspace)
        first = batch.start(RateLimitedProvider(1000, latency=1.0), start_at=3600)
        first.stop()  # the kernel goes away while the run waits for its start time
        await first.wait()
        provider = RateLimitedProvider(1000, latency=1.0)
        again = batch.start(provider)  # started again without a start time
        kept = again.pace.start_at
        await again.wait()
        return kept, list(provider.sent_at)

    try:
        kept, sent = loop.run_until_complete(main())
    finally:
        loop.close()
    assert kept == EPOCH + 3600
    assert sent and min(sent) >= 3600, "nothing is sent before it"
