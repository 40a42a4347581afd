"""The studio's toolbar says what holds a run back: its budget, deadline or rate limits."""

from __future__ import annotations

import asyncio

import pytest

from nbbatch import Batch, Workspace
from nbbatch.events import RunState
from nbbatch.widgets._hub import hub_for
from tests.support import ControlledProvider, until


async def test_the_summary_carries_the_budget_pause_in_words(workspace: Workspace) -> None:
    batch = Batch.create(["a", "b", "c"], workspace=workspace)
    hub = hub_for(batch)
    assert hub.summary()["pace"] is None
    run = batch.start(ControlledProvider(), concurrency=1, budget=1.0, prices={"controlled": 1})
    await until(lambda: run.state is RunState.PAUSED and run.active == 0)
    summary = hub.summary()
    reason = summary["paused_reason"]
    assert reason is not None and reason.startswith("budget of $1.00 reached: $1.00 spent")
    assert summary["pace"] is None, "said once, as the reason of the pause"
    run.set_budget(5)
    await run.wait()
    assert hub.summary()["pace"] is None


async def test_a_small_studio_run_goes_first_and_a_big_one_does_not(workspace: Workspace) -> None:
    from nbbatch.widgets import StudioSession

    small = Batch.create([f"s{i}" for i in range(20)], workspace=workspace)
    big = Batch.create([f"b{i}" for i in range(21)], workspace=workspace)
    runs = [StudioSession(b, provider=ControlledProvider()).run_all() for b in (small, big)]
    assert [r.pace.priority for r in runs] == ["high", "normal"]
    for r in runs:
        await r.wait()


async def test_the_studio_budget_pauses_run_all_and_raising_it_goes_on(
    workspace: Workspace,
) -> None:
    from nbbatch import Settings
    from nbbatch.widgets import StudioSession

    Settings(prices={"controlled": 1.0}).save()
    batch = Batch.create(["a", "b", "c"], workspace=workspace)
    provider = ControlledProvider()
    session = StudioSession(batch, provider=provider, concurrency=1)
    run = session.run_all(budget="$1", deadline="")
    assert run.pace.budget == 1.0
    await until(lambda: run.state is RunState.PAUSED and run.active == 0)
    assert provider.calls == ["a"]
    assert hub_for(batch).summary()["paused_reason"].startswith("budget of $1.00 reached")
    session.set_budget("5")  # the budget field raised while the run is paused on it
    await run.wait()
    assert provider.calls == ["a", "b", "c"]
    assert session.budget == 5.0


def test_a_budget_or_deadline_that_is_not_one_is_refused_in_words(workspace: Workspace) -> None:
    from nbbatch.widgets import StudioSession
    from nbbatch.widgets._words import UserFacingError

    session = StudioSession(Batch.create(["a"], workspace=workspace))
    for bad in ("twenty", "-3", "nan", "1e999"):
        with pytest.raises(UserFacingError, match="is not an amount of money: type a number"):
            session.set_budget(bad)
    with pytest.raises(UserFacingError, match="is not a time: type a time like 07:00"):
        session.set_deadline("soon")
    assert session.budget is None and session.deadline is None
    assert session.set_budget(" $12.50 ") == 12.5
    assert session.set_budget("") is None
    assert session.set_deadline("07:00") == "07:00"


async def test_run_all_passes_the_deadline_and_the_summary_shows_it(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime

    from nbbatch.engine import _pace
    from nbbatch.widgets import StudioSession, _hub

    now = datetime(2026, 12, 7, 18, 0).timestamp()
    monkeypatch.setattr(_pace, "wall_clock", lambda: now)
    monkeypatch.setattr(_hub, "wall_clock", lambda: now)
    batch = Batch.create(["a"], workspace=workspace)
    provider = ControlledProvider()
    provider.gate = asyncio.Event()
    session = StudioSession(batch, provider=provider)
    assert hub_for(batch).summary()["deadline"] is None
    run = session.run_all(budget="", deadline="23:30")
    assert run.pace.deadline == datetime(2026, 12, 7, 23, 30).timestamp()
    assert hub_for(batch).summary()["deadline"] == "23:30"
    assert hub_for(batch).summary()["pace"] is None, "the deadline is shown once, not twice"
    session.set_deadline("07:00")  # the next 07:00: tomorrow, shown with its date
    assert hub_for(batch).summary()["deadline"] == "2026-12-08 07:00"
    provider.gate.set()
    await run.wait()
    assert hub_for(batch).summary()["deadline"] is None


async def test_run_all_on_a_paused_run_keeps_the_budget_it_was_given(
    workspace: Workspace,
) -> None:
    from nbbatch.widgets import StudioSession

    batch = Batch.create(["a", "b"], workspace=workspace)
    provider = ControlledProvider()
    run = batch.start(provider, concurrency=1, budget=1.0, prices={"controlled": 1})
    await until(lambda: run.state is RunState.PAUSED and run.active == 0)
    session = StudioSession(batch, provider=provider)
    assert session.run_all(budget="", deadline="") is run  # the fields were left empty
    assert run.pace.budget == 1.0
    run.stop()
    await run.wait()
