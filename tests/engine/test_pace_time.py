"""Deadlines and start times, on a virtual clock (the loop's time, and the wall clock with it)."""

from __future__ import annotations

from datetime import datetime

import pytest

from nbbatch import Batch, Workspace
from nbbatch.engine import _pace
from nbbatch.engine._pace import parse_when
from nbbatch.errors import ConfigError
from nbbatch.events import RunState
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
            await __import__("asyncio").sleep(1)
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
