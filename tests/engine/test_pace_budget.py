"""Budgets: projected spend checked before each request, a pause in words, resume on raise."""

from __future__ import annotations

import asyncio

import pytest

from nbbatch import Batch, Workspace
from nbbatch.errors import ConfigError
from nbbatch.events import RunState, RunStateChanged
from tests.support import ControlledProvider, until

PRICES = {"controlled": 1.0}


async def test_a_budget_pauses_before_the_request_that_would_pass_it_and_says_why(
    workspace: Workspace,
) -> None:
    batch = Batch.create([f"p{i}" for i in range(5)], workspace=workspace)
    provider = ControlledProvider()
    reasons: list[str | None] = []
    batch.subscribe(
        lambda e: (
            reasons.append(e.reason)
            if isinstance(e, RunStateChanged) and e.state is RunState.PAUSED
            else None
        )
    )
    run = batch.start(provider, concurrency=1, budget=2.5, prices=PRICES)
    await until(lambda: run.state is RunState.PAUSED)
    await until(lambda: run.active == 0)
    assert provider.calls == ["p0", "p1"], "nothing is sent past the budget"
    expected = (
        "budget of $2.50 reached: $2.00 spent, 3 tasks left, about $3.00 more. "
        "Raise the budget (run.set_budget(...)) to go on"
    )
    assert run.paused_reason == expected
    assert reasons == [expected]
    run.set_budget(10)  # raising it resumes
    await run.wait()
    assert provider.calls == [f"p{i}" for i in range(5)]
    assert run.progress().succeeded == 5
    assert run.pace.spent == pytest.approx(5.0)


async def test_the_projection_counts_requests_in_flight(workspace: Workspace) -> None:
    gate = asyncio.Event()
    batch = Batch.create([f"p{i}" for i in range(4)], workspace=workspace)
    provider = ControlledProvider(gate=gate)
    run = batch.start(provider, concurrency=4, budget=2.0, prices=PRICES)
    await until(lambda: run.state is RunState.PAUSED and provider.in_flight == 2)
    assert run.paused_reason is not None and "$2.00 spent, 2 tasks left" in run.paused_reason
    assert provider.calls == ["p0", "p1"], "two in flight already hold the whole budget"
    gate.set()
    await until(lambda: run.active == 0)
    assert run.paused_reason is not None and "$2.00 spent, 2 tasks left" in run.paused_reason
    run.stop()
    await run.wait()


async def test_the_budget_is_journaled_and_holds_after_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(tmp_path / "ws")
    batch = Batch.create([f"p{i}" for i in range(4)], workspace=ws)
    first = ControlledProvider()
    run = batch.start(first, concurrency=1, budget=2.0, prices=PRICES)
    await until(lambda: run.state is RunState.PAUSED and run.active == 0)
    run.stop()
    await run.wait()
    ws.close()

    # a new kernel: the same workspace opened again, the run started without a budget
    again = Workspace(tmp_path / "ws")
    try:
        reopened = Batch.load(batch.id, again)
        second = ControlledProvider()
        run2 = reopened.start(second)
        await until(lambda: run2.state is RunState.PAUSED)
        assert second.calls == [], "the journaled budget is spent already"
        assert run2.paused_reason is not None
        assert run2.paused_reason.startswith("budget of $2.00 reached: $2.00 spent, 2 tasks left")
        reopened.set_budget(4.0)
        await run2.wait()
        assert second.calls == ["p2", "p3"]
    finally:
        again.close()


async def test_an_unknown_price_is_refused_under_a_budget_unless_allowed(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["a", "b"], workspace=workspace)
    provider = ControlledProvider()
    with pytest.raises(ConfigError, match=r"price of controlled is unknown.*allow_unknown_prices"):
        batch.start(provider, budget=5.0)
    assert provider.calls == []
    await batch.run_async(provider, budget=5.0, allow_unknown_prices=True)
    assert provider.calls == ["a", "b"]


async def test_prices_given_to_the_run_win_over_the_saved_table(workspace: Workspace) -> None:
    from nbbatch import Settings

    Settings(prices={"controlled": 100.0}).save()
    batch = Batch.create(["a", "b", "c"], workspace=workspace)
    provider = ControlledProvider()
    run = batch.start(provider, concurrency=1, budget=1.0, prices={"controlled": 0.5})
    await until(lambda: run.state is RunState.PAUSED and run.active == 0)
    assert provider.calls == ["a", "b"]
    run.stop()
    await run.wait()


async def test_an_awaited_run_ends_at_its_budget_and_the_next_run_goes_on(
    workspace: Workspace,
) -> None:
    batch = Batch.create([f"p{i}" for i in range(4)], workspace=workspace)
    provider = ControlledProvider()
    await batch.run_async(provider, concurrency=1, budget=2.0, prices=PRICES)
    assert batch.counts == {"succeeded": 2, "idle": 2}, "nobody is there to press Resume"
    assert batch.runner is not None and batch.runner.pace.reason is not None
    assert batch.runner.pace.reason.startswith("budget of $2.00 reached: $2.00 spent")
    await batch.run_async(provider, budget=4.0)  # the prices are the batch's (journaled)
    assert batch.counts == {"succeeded": 4}
