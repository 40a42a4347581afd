"""The studio's run mode: "now" or through the provider's batch API (issue 28)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import nbbatch
from nbbatch import Batch, Params, ProviderConfig, TaskStatus, Workspace
from nbbatch.engine import load_settings, save_settings
from nbbatch.engine._batchapi import BATCH_API_KIND, BatchApiRunner
from nbbatch.events import RemoteJobChanged
from nbbatch.providers import OpenAIProvider
from nbbatch.testing import BatchClock, FakeOpenAI
from nbbatch.widgets import StudioSession, TaskGrid, _hub, _rows
from tests.widgets.page import FakeClock, FakeScheduler, Page

KEY = "test-key-runmode-0001"


@pytest.fixture
def batch(workspace: Workspace) -> Batch:
    return nbbatch.Batch.create(
        workspace=workspace, tasks=["a fox", "an owl"], params=Params(size="64x64")
    )


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY, render="fast", max_side=64) as s:
        yield s


@pytest.fixture
async def provider(server: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url)
    yield p
    await p.aclose()


def ask(widget: Any, type: str, **body: Any) -> dict[str, Any]:
    """Send ``type`` as the page would and return the widget's reply."""
    sent: list[dict[str, Any]] = []
    widget.send = lambda content, buffers=None: sent.append(content)
    widget._on_msg(widget, {"type": type, "uuid": "u1", **body}, [])
    (reply,) = [c for c in sent if c.get("uuid") == "u1"]
    return reply


def save_prices(prices: dict[str, float]) -> None:
    settings = load_settings()
    settings.prices.update(prices)
    save_settings(settings)


def test_the_run_mode_is_offered_only_for_a_provider_with_a_batch_api(batch: Batch) -> None:
    save_prices({"openai": 0.04})
    session = StudioSession(batch, provider="demo")
    grid = TaskGrid(session=session)
    try:
        assert grid.run_modes == {} and not session.has_batch_api()
        # choosing the batch API where there is none leaves the run mode "now"
        assert ask(grid, "set_run_mode", batch_api=True)["ok"]
        assert grid.batch_api is False and session.batch_api is False
        session.use_provider("openai")
        assert grid.run_modes == {"now": 0.04, "batch": 0.02}  # the ledger's batch rate
        assert ask(grid, "set_run_mode", batch_api=True)["ok"] and grid.batch_api is True
        session.use_provider(ProviderConfig(provider="gemini", name="my gemini"))
        # no price saved for Gemini: unknown both ways, never a made-up figure
        assert grid.run_modes == {"now": None, "batch": None}
        assert grid.batch_api is True
        session.use_provider("demo")
        assert grid.run_modes == {} and grid.batch_api is False
        assert not ask(grid, "set_run_mode", batch_api="yes")["ok"]
    finally:
        grid.close()


def test_a_saved_configuration_is_priced_by_its_provider_and_model(batch: Batch) -> None:
    save_prices({"openai": 0.04, "openai/gpt-image-1-mini": 0.01})
    session = StudioSession(
        batch, provider=ProviderConfig(provider="openai", name="mini", model="gpt-image-1-mini")
    )
    assert session.run_mode_prices() == {"now": 0.01, "batch": 0.005}


async def test_run_all_in_the_batch_api_mode_submits_through_the_batch_api(
    batch: Batch, server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    session = StudioSession(batch, provider=provider)
    grid = TaskGrid(session=session)
    try:
        assert ask(grid, "set_run_mode", batch_api=True)["ok"]
        assert ask(grid, "run_all")["ok"]
        runner = batch.runner
        assert runner is not None

        async def job_created() -> None:
            while not server.batch_api.created:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(job_created(), 10)
        # a second studio shown during the run shows its mode (each studio has its own
        # session; the new one said "now")
        second = StudioSession(batch)
        assert second.batch_api is True
        runner.stop()
        await runner.wait()
        # one job at OpenAI, no synchronous request; the tasks stay there, labelled
        assert len(server.batch_api.created) == 1
        assert not server.calls("/v1/images/generations", "POST")
        assert {t.status for t in batch.tasks} == {TaskStatus.RUNNING}
        assert {t.error_kind for t in batch.tasks} == {BATCH_API_KIND}
        rows = ask(grid, "rows", start=0, count=2)["rows"]
        # the rows carry the label the engine gives the tasks (the page shows it)
        labels = [t.error for t in batch.tasks]
        # (where the job had got to: being submitted, or queued at OpenAI)
        assert all(label and "batch API" in label and "OpenAI" in label for label in labels)
        assert [r["er"] for r in rows] == labels
        assert {r["ek"] for r in rows} == {BATCH_API_KIND}
    finally:
        grid.close()
        await asyncio.sleep(0)


async def test_the_rows_follow_the_batch_api_job_as_it_moves_without_a_reload(
    batch: Batch,
) -> None:
    # The rows kept "being submitted to the OpenAI batch API" for the whole run: the
    # job's later states reached only the journal (a reload showed them).
    job_clock = BatchClock()
    moved: asyncio.Queue[RemoteJobChanged] = asyncio.Queue()
    batch.subscribe(lambda e: moved.put_nowait(e) if isinstance(e, RemoteJobChanged) else None)
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    with FakeOpenAI(
        api_key=KEY, render="fast", max_side=64, batch_clock=job_clock, batch_timing=(10, 100, 10)
    ) as server:
        provider = OpenAIProvider(api_key=KEY, base_url=server.base_url)
        grid = TaskGrid(
            session=StudioSession(batch, provider=provider), _clock=clock, _scheduler=scheduler
        )
        page = Page(grid)
        try:
            page.ok("rows", start=0, end=2)  # both rows on screen
            page.ok("set_run_mode", batch_api=True)
            page.ok("run_all")
            runner = batch.runner
            assert isinstance(runner, BatchApiRunner)
            shown: list[list[str]] = []
            for advance in (20.0, 95.0, 10.0, None):  # the fake job's own clock
                move = await moved.get()
                page.sent.clear()
                scheduler.advance(1.0)  # the grid's coalescer sends what changed
                (patch,) = page.of_type("patch")
                # the rows come whole (the label is more than a status): no re-read
                assert [r["id"] for r in patch["full"]] == [t.id for t in batch.tasks]
                assert {r["st"] for r in patch["full"]} == {"running"}
                shown.append([r["er"] for r in patch["full"]])
                assert shown[-1] == [move.label] * 2
                if advance is not None:
                    job_clock.advance(advance)
                    runner.poll_now()
            await runner.wait()
        finally:
            grid.close()
            await provider.aclose()
    assert [s[0].split(": ", 1)[1] for s in shown] == [
        "queued at OpenAI",
        "in progress at OpenAI",
        "finishing at OpenAI",
        "done at OpenAI, collecting the results",
    ]
    page.sent.clear()
    scheduler.advance(1.0)
    (patch,) = page.of_type("patch")
    assert {r["st"] for r in patch["full"]} == {"succeeded"}
    assert all("er" not in r and r["ni"] == 1 for r in patch["full"])


def test_a_row_says_where_its_task_is_at_the_batch_api_in_the_pages_language() -> None:
    # the engine journals the label in English: a Chinese studio showed it as it was
    task = nbbatch.Task("a fox")
    task.transition(TaskStatus.QUEUED)
    task.transition(TaskStatus.RUNNING)
    task.error = "submitted to the batch API: in progress at OpenAI"
    task.error_kind = BATCH_API_KIND
    assert _rows.row(task, 1, "zh")["er"] == "已提交到批量 API：OpenAI 处理中"
    assert _rows.row(task, 1, "en")["er"] == task.error
    task.error_kind = "rate_limited"  # any other error is shown as it is
    assert _rows.row(task, 1, "zh")["er"] == task.error


async def test_a_batch_api_run_stopped_by_a_refused_key_says_why_in_the_toolbar(
    batch: Batch, server: FakeOpenAI
) -> None:
    wrong = OpenAIProvider(api_key="test-key-runmode-WRONG", base_url=server.base_url)
    grid = TaskGrid(batch)
    try:
        runner = batch.start(wrong, batch_api={"sleep": lambda s: asyncio.sleep(0)})
        await runner.wait()
        hub = _hub.hub_for(batch)
        reason = hub.summary()["paused_reason"]
        assert hub.run_state() == "stopped"
        assert reason is not None and "Run all resumes them" in reason
        assert "test-key-runmode-WRONG" not in reason  # the key never reaches the page
    finally:
        grid.close()
        await wrong.aclose()
