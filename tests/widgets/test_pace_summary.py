"""The studio's toolbar says what holds a run back: its budget, deadline or rate limits."""

from __future__ import annotations

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
