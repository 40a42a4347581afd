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
    pace = hub.summary()["pace"]
    assert pace is not None and pace.startswith("budget of $1.00 reached: $1.00 spent")
    run.set_budget(5)
    await run.wait()
    assert hub.summary()["pace"] is None
