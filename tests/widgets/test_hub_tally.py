"""The hub's summary is kept from the batch's events, not recounted per hello / patch."""

from __future__ import annotations

import asyncio
from typing import Any

import nbbatch
from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.widgets import TaskGrid
from nbbatch.widgets._hub import hub_for
from tests.widgets.page import FakeClock, Page


def quick_demo(**options: Any) -> nbbatch.Provider:
    return nbbatch.get_provider("demo", latency=0.0, fail_prompts=["FAILME"], **options)


def counted(batch: Batch) -> dict[str, Any]:
    """The figures as a walk over every task says them."""
    tasks = batch.tasks
    return {
        "total": len(tasks),
        "counts": {s.value: sum(1 for t in tasks if t.status is s) for s in TaskStatus},
        "images": sum(len(t.images) for t in tasks),
        "starred": sum(1 for t in tasks if t.starred),
        "refs": any(t.references for t in tasks),
        "shown": sum(1 for t in tasks if t.status is TaskStatus.SUCCEEDED and t.images),
    }


def kept(batch: Batch) -> dict[str, Any]:
    hub = hub_for(batch)
    summary = hub.summary()
    return {
        "total": summary["total"],
        "counts": summary["counts"],
        "images": summary["images"],
        "starred": summary["starred"],
        "refs": summary["refs"],
        "shown": hub.figures().shown,
    }


class CountingList(list):  # type: ignore[type-arg]
    """A task list that counts how often something walks it."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        CountingList.walks += 1
        return super().__iter__()


def test_hello_and_the_first_rows_do_not_walk_every_task(workspace: Workspace) -> None:
    batch = nbbatch.Batch.create(workspace=workspace, tasks=[f"task {i}" for i in range(500)])
    page = Page(TaskGrid(batch))  # the hub counts once, when it is made
    batch.tasks = CountingList(batch.tasks)
    CountingList.walks = 0
    hello = page.ok("hello")
    rows = page.ok("rows", start=200, end=230)
    assert CountingList.walks == 0
    assert hello["summary"]["total"] == 500 and hello["summary"]["counts"]["idle"] == 500
    assert [r["n"] for r in rows["rows"]] == list(range(201, 231))


async def test_the_kept_summary_matches_a_recount_through_every_kind_of_change(
    workspace: Workspace,
) -> None:
    batch = nbbatch.Batch.create(
        workspace=workspace,
        tasks=["a fox", "a lighthouse", "FAILME a storm", "a koi pond", "a cabin"],
        params=Params(size="32x32", n=2),
    )
    grid = TaskGrid(batch)
    assert kept(batch) == counted(batch)

    await batch.run(quick_demo(), tasks=batch.tasks[:3])
    assert kept(batch) == counted(batch)
    assert kept(batch)["images"] == 4 and kept(batch)["counts"]["failed"] == 1

    batch.star(batch.tasks[0].images[1])
    assert kept(batch)["starred"] == 1 == counted(batch)["starred"]
    batch.star(batch.tasks[0].images[1], starred=False)
    assert kept(batch) == counted(batch)

    batch.edit(batch.tasks[3], prompt="a koi pond at night")
    batch.retry(batch.tasks[2])
    assert kept(batch) == counted(batch)

    batch.remove(batch.tasks[1])  # a task with images leaves
    batch.add(["a new task", "another"])
    batch.duplicate(batch.tasks[0])
    batch.move(batch.tasks[-1], 0)
    assert kept(batch) == counted(batch)

    # a stopped run sends its queued tasks back to idle without one event each
    runner = batch.start(nbbatch.get_provider("demo", latency=5.0), concurrency=1)
    assert kept(batch)["counts"]["queued"] > 0
    runner.stop()
    await runner.wait()
    await asyncio.sleep(0)
    assert kept(batch) == counted(batch)
    assert kept(batch)["counts"]["queued"] == 0

    # another process ran it: re-read from the journal, the hub is told
    batch.refresh()
    hub_for(batch).refreshed()
    assert kept(batch) == counted(batch)
    grid.close()


async def test_elapsed_counts_the_batchs_runs_across_pause_resume_and_a_retry(
    workspace: Workspace,
) -> None:
    batch = nbbatch.Batch.create(
        workspace=workspace, tasks=["a fox", "a lighthouse"], params=Params(size="32x32")
    )
    grid = TaskGrid(batch)
    hub = hub_for(batch)
    clock = FakeClock()
    hub.clock = clock
    clock.now = 100.0
    runner = batch.start(quick_demo(), tasks=batch.tasks[:1])
    clock.now = 105.0
    runner.pause()
    clock.now = 110.0
    runner.resume()  # announces "running" again: the same run goes on
    clock.now = 112.0
    await runner.wait()
    summary = hub.summary()
    assert (summary["elapsed"], summary["ticking"]) == (12.0, False)

    # the next run (a retry of one task, say) adds its own time and ticks while it goes:
    # "elapsed" is the batch's, not back to 0:00 (the time between runs does not count)
    clock.now = 200.0
    runner = batch.start(quick_demo(), tasks=batch.tasks[1:])
    summary = hub.summary()
    assert (summary["elapsed"], summary["ticking"]) == (12.0, True)
    clock.now = 203.0
    await runner.wait()
    summary = hub.summary()
    assert (summary["elapsed"], summary["ticking"]) == (15.0, False)
    grid.close()
