"""The runner: concurrency, pause/resume, cancel/stop, retries, timeouts, events."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from nbbatch import Batch, RetryPolicy, Task, TaskStatus, Workspace
from nbbatch.errors import (
    AuthenticationError,
    ConfigError,
    ContentRefusedError,
    NotSupportedError,
    RateLimitedError,
    ServerError,
)
from nbbatch.events import (
    BatchProgress,
    RunState,
    RunStateChanged,
    TaskFailed,
    TaskProgress,
    TaskRetrying,
    TaskStarted,
    TaskSucceeded,
)
from tests.support import FAST, ControlledProvider, until


def prompts(n: int) -> list[str]:
    return [f"prompt {i}" for i in range(n)]


def leaked_tasks() -> list[asyncio.Task[object]]:
    me = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not me and not t.done()]


@pytest.mark.parametrize("limit", [1, 3, 7])
async def test_concurrency_limit_is_reached_and_never_exceeded(
    workspace: Workspace, limit: int
) -> None:
    provider = ControlledProvider(delay=0.01)
    batch = Batch.create(workspace=workspace, tasks=prompts(limit * 10))
    runner = batch.start(provider, concurrency=limit)
    await runner.wait()
    assert provider.max_in_flight == limit
    assert runner.max_in_flight == limit
    assert len(batch.succeeded) == limit * 10
    assert leaked_tasks() == []


async def test_per_provider_cap_below_global_limit(workspace: Workspace) -> None:
    provider = ControlledProvider(delay=0.005, max_concurrency=2)
    batch = Batch.create(workspace=workspace, tasks=prompts(12))
    await batch.run(provider, concurrency=6)
    assert provider.max_in_flight == 2
    assert batch.status == "succeeded"


async def test_pause_starts_nothing_new_and_resume_finishes(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(10))
    runner = batch.start(provider, concurrency=3)
    while len(provider.calls) < 3:  # event-driven: no real sleep racing the runner
        await asyncio.sleep(0)
    runner.pause()
    gate.set()  # the three in flight may now finish
    while runner.active:
        await asyncio.sleep(0.001)
    for _ in range(20):  # give a wrongly woken dispatcher every chance to start one
        await asyncio.sleep(0)
    assert len(provider.calls) == 3, "nothing may start while paused"
    assert len(batch.succeeded) == 3
    assert runner.state is RunState.PAUSED
    runner.resume()
    await runner.wait()
    assert len(provider.calls) == 10
    assert batch.status == "succeeded"


async def test_cancel_one_queued_and_one_running_task(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(4))
    runner = batch.start(provider, concurrency=1)
    await until(lambda: len(provider.started) == 1)
    running, queued = batch.tasks[0], batch.tasks[3]
    runner.cancel(running.id)
    runner.cancel(queued.id)
    # the gate is still shut: the running request is cancelled, not waited for
    await until(lambda: provider.cancelled == [running.id])
    assert running.status is TaskStatus.CANCELLED
    assert queued.status is TaskStatus.CANCELLED
    assert provider.cancelled == [running.id]
    gate.set()
    await runner.wait()
    assert [t.status for t in batch.tasks] == [
        TaskStatus.CANCELLED,
        TaskStatus.SUCCEEDED,
        TaskStatus.SUCCEEDED,
        TaskStatus.CANCELLED,
    ]
    assert queued.prompt not in provider.calls
    # journaled: a fresh read of the workspace agrees
    assert [t.status for t in Batch.load(batch.id, workspace).tasks] == [
        t.status for t in batch.tasks
    ]
    assert leaked_tasks() == []


async def test_cancel_pending_lets_in_flight_finish(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(8))
    runner = batch.start(provider, concurrency=2)
    await until(lambda: len(provider.started) == 2)
    runner.cancel_pending()
    gate.set()
    await runner.wait()
    assert batch.counts == {"succeeded": 2, "cancelled": 6}
    assert len(provider.calls) == 2


async def test_stop_interrupts_in_flight_and_requeues_nothing_silently(
    workspace: Workspace,
) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(6))
    runner = batch.start(provider, concurrency=2)
    await until(lambda: len(provider.started) == 2)
    runner.stop()
    await runner.wait()
    assert runner.state is RunState.STOPPED
    assert batch.counts == {"interrupted": 2, "idle": 4}
    assert sorted(provider.cancelled) == sorted(t.id for t in batch.tasks[:2])
    assert leaked_tasks() == []
    # resuming runs exactly the unfinished ones
    provider.gate = None
    await batch.run(provider, concurrency=2)
    assert batch.status == "succeeded"
    assert len(provider.calls) == 2 + 6


async def test_retries_are_counted_exactly(workspace: Workspace) -> None:
    provider = ControlledProvider()
    provider.script["flaky"] = [ServerError("boom", retryable=True), ServerError("boom"), "ok"]
    provider.script["hopeless"] = [ServerError("down")] * 5
    batch = Batch.create(workspace=workspace, tasks=["flaky", "hopeless", "fine"])
    events: list[object] = []
    batch.subscribe(events.append)
    await batch.run(provider, retry=FAST)
    flaky, hopeless, fine = batch.tasks
    assert (flaky.status, flaky.attempts) == (TaskStatus.SUCCEEDED, 3)
    assert (hopeless.status, hopeless.attempts) == (TaskStatus.FAILED, 3)
    assert (fine.status, fine.attempts) == (TaskStatus.SUCCEEDED, 1)
    assert provider.calls.count("hopeless") == 3
    assert hopeless.error_kind == "server"
    assert sum(isinstance(e, TaskRetrying) for e in events) == 4
    assert workspace.task(hopeless.id).attempts == 3


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("bad key"),
        ContentRefusedError("refused"),
        ServerError("no", retryable=False),
    ],
)
async def test_non_retryable_errors_fail_after_one_attempt(
    workspace: Workspace, error: Exception
) -> None:
    provider = ControlledProvider()
    provider.script["p"] = [error, "ok"]
    batch = Batch.create(workspace=workspace, tasks=["p"])
    await batch.run(provider, retry=FAST)
    assert batch.tasks[0].status is TaskStatus.FAILED
    assert provider.calls == ["p"]
    assert batch.tasks[0].error == str(error)


async def test_retry_after_is_honoured(workspace: Workspace) -> None:
    provider = ControlledProvider()
    provider.script["p"] = [RateLimitedError("slow down", retry_after=0.15), "ok"]
    batch = Batch.create(workspace=workspace, tasks=["p"])
    stamps: list[float] = []
    delays: list[float] = []
    batch.subscribe(
        lambda e: stamps.append(time.monotonic()) if isinstance(e, TaskStarted) else None
    )
    batch.subscribe(lambda e: delays.append(e.delay) if isinstance(e, TaskRetrying) else None)
    await batch.run(provider, retry=FAST)
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert delays == [0.15]  # the server's wait, not FAST's own backoff
    assert stamps[1] - stamps[0] >= 0.14  # and it was waited out (a sleep never ends early)


async def test_retry_after_longer_than_cap_fails_at_once_saying_when(
    workspace: Workspace,
) -> None:
    provider = ControlledProvider()
    provider.script["p"] = [RateLimitedError("quota", retry_after=3600), "ok"]
    batch = Batch.create(workspace=workspace, tasks=["p"])
    retrying: list[TaskRetrying] = []
    batch.subscribe(lambda e: retrying.append(e) if isinstance(e, TaskRetrying) else None)
    await batch.run(provider, retry=FAST)
    task = batch.tasks[0]
    assert retrying == []  # no wait was even scheduled
    assert task.status is TaskStatus.FAILED and task.error_kind == "rate_limited"
    assert "3600 s" in (task.error or "")
    assert provider.calls == ["p"]


async def test_attempt_timeout_is_retried_then_fails(workspace: Workspace) -> None:
    provider = ControlledProvider(delay=5)
    batch = Batch.create(workspace=workspace, tasks=["slow"])
    await batch.run(
        provider, retry=RetryPolicy(max_retries=1, base_delay=0.001), attempt_timeout=0.05
    )
    task = batch.tasks[0]
    assert (task.status, task.error_kind, task.attempts) == (TaskStatus.FAILED, "timeout", 2)


async def test_unsupported_request_is_refused_before_anything_is_sent(
    workspace: Workspace,
) -> None:
    provider = ControlledProvider()
    batch = Batch.create(workspace=workspace, tasks=[Task("too many", params={"n": 9})])
    with pytest.raises(NotSupportedError, match="at most 4"):
        batch.start(provider)
    assert provider.calls == []
    assert batch.tasks[0].status is TaskStatus.IDLE


async def test_concurrency_out_of_range_is_a_config_error(workspace: Workspace) -> None:
    batch = Batch.create(workspace=workspace, tasks=["x"])
    for bad in (0, 11, -1, 2.5, True):
        with pytest.raises(ConfigError, match="concurrency"):
            batch.start(ControlledProvider(), concurrency=bad)  # type: ignore[arg-type]
    runner = batch.start(ControlledProvider(), concurrency=32, concurrency_cap=64)
    await runner.wait()


async def test_run_next_jumps_the_queue(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(6))
    runner = batch.start(provider, concurrency=1)
    await until(lambda: len(provider.started) == 1)
    runner.run_next(batch.tasks[5].id)
    gate.set()
    await runner.wait()
    assert provider.calls[:2] == ["prompt 0", "prompt 5"]


async def test_set_concurrency_takes_effect_mid_run(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(10))
    runner = batch.start(provider, concurrency=1)
    await until(lambda: len(provider.started) == 1)
    runner.set_concurrency(4)
    await until(lambda: provider.in_flight == 4)
    gate.set()
    await runner.wait()
    assert provider.max_in_flight == 4


async def test_events_follow_the_journal_and_progress_has_eta(workspace: Workspace) -> None:
    provider = ControlledProvider(delay=0.005)
    batch = Batch.create(workspace=workspace, tasks=prompts(8))
    seen: list[object] = []

    def check(event: object) -> None:
        seen.append(event)
        if isinstance(event, TaskSucceeded):
            stored = workspace.task(event.task.id)
            assert stored.status is TaskStatus.SUCCEEDED
            assert stored.images[0].path.exists()

    batch.subscribe(check)
    await batch.run(provider, concurrency=2)
    assert any(isinstance(e, TaskProgress) and e.progress == 0.5 for e in seen)
    progress = [e for e in seen if isinstance(e, BatchProgress)]
    assert progress[-1].done == 8 and progress[-1].fraction == 1.0
    assert any(p.eta is not None and p.eta > 0 for p in progress)
    states = [e.state for e in seen if isinstance(e, RunStateChanged)]
    assert states == [RunState.RUNNING, RunState.FINISHED]


async def test_a_raising_subscriber_does_not_stop_the_run(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    batch = Batch.create(workspace=workspace, tasks=prompts(3))

    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    batch.subscribe(broken)
    await batch.run(ControlledProvider())
    assert batch.status == "succeeded"
    assert "subscriber raised" in caplog.text


async def test_unexpected_provider_bug_fails_the_task_not_the_run(
    workspace: Workspace,
) -> None:
    provider = ControlledProvider()
    provider.script["bug"] = [ZeroDivisionError("oops")]
    batch = Batch.create(workspace=workspace, tasks=["bug", "fine"])
    failed: list[TaskFailed] = []
    batch.subscribe(lambda e: failed.append(e) if isinstance(e, TaskFailed) else None)
    await batch.run(provider)
    assert batch.counts == {"failed": 1, "succeeded": 1}
    assert failed[0].kind == "internal" and "ZeroDivisionError" in failed[0].error


async def test_provider_returning_garbage_image_fails_cleanly(workspace: Workspace) -> None:
    from nbbatch.providers import ImageData

    class Garbage(ControlledProvider):
        async def generate(self, request, on_progress=None):  # type: ignore[no-untyped-def]
            return [ImageData(b"<html>not an image</html>")]

    batch = Batch.create(workspace=workspace, tasks=["x"])
    await batch.run(Garbage(), retry=FAST)
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED and task.error_kind == "bad_image"
    assert "not an accepted image format" in (task.error or "")
    assert list(workspace.images_dir.rglob("*.png")) == []


async def test_cancelling_the_awaiting_cell_stops_cleanly(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(4))
    cell = asyncio.ensure_future(batch.run(provider, concurrency=2))
    await until(lambda: len(provider.started) == 2)
    cell.cancel()  # what Jupyter's "interrupt kernel" does to an awaiting cell
    with pytest.raises(asyncio.CancelledError):
        await cell
    assert batch.counts == {"interrupted": 2, "idle": 2}
    assert leaked_tasks() == []


def test_run_sync_from_a_script(tmp_path) -> None:  # type: ignore[no-untyped-def]
    batch = Batch.create(prompts(3), workspace=tmp_path / "ws")
    batch.run_sync("demo", concurrency=2)
    assert batch.status == "succeeded"
    assert all(im.path.exists() for im in batch.images)
    batch.workspace.close()


async def test_run_sync_inside_a_running_loop_uses_a_worker_thread(
    tmp_path,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    batch = Batch.create(prompts(2), workspace=tmp_path / "ws")
    batch.run_sync("demo")
    assert batch.status == "succeeded"
    assert "worker thread" in caplog.text
    batch.workspace.close()


async def test_owned_provider_is_closed_and_passed_instance_is_not(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbbatch.providers import register_provider

    made: list[ControlledProvider] = []

    def factory() -> ControlledProvider:
        made.append(ControlledProvider())
        return made[-1]

    register_provider("controlled-test", factory, replace=True)
    batch = Batch.create(workspace=workspace, tasks=prompts(2))
    await batch.run("controlled-test")
    assert made[0].closed == 1
    mine = ControlledProvider()
    batch2 = Batch.create(workspace=workspace, tasks=prompts(2))
    await batch2.run(mine)
    assert mine.closed == 0


async def test_two_runs_of_one_batch_never_send_a_task_twice(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create(workspace=workspace, tasks=prompts(4))
    same_batch_elsewhere = Batch.load(batch.id, workspace)  # e.g. a second notebook
    first = batch.start(provider, concurrency=1)
    await until(lambda: len(provider.started) == 1)
    second = same_batch_elsewhere.start(provider, concurrency=4)
    gate.set()
    await first.wait()
    await second.wait()
    assert sorted(provider.calls) == prompts(4)
    assert second.progress().total == 0


async def test_a_succeeded_task_is_not_rerun_by_accident(workspace: Workspace) -> None:
    batch = Batch.create(workspace=workspace, tasks=["x"])
    await batch.run(ControlledProvider())
    with pytest.raises(ConfigError, match="already succeeded"):
        batch.start(ControlledProvider(), tasks=[batch.tasks[0]])


async def test_cancelling_a_task_handed_out_but_not_started_is_clean(
    workspace: Workspace,
) -> None:
    provider = ControlledProvider(delay=0.01)
    batch = Batch.create(workspace=workspace, tasks=prompts(4))
    runner = batch.start(provider, concurrency=4)
    await asyncio.sleep(0)  # the dispatcher has handed out all four; none has started
    runner.cancel(batch.tasks[1].id)
    runner.cancel_pending()
    await runner.wait()
    assert batch.tasks[1].status is TaskStatus.CANCELLED
    assert "prompt 1" not in provider.calls
    assert all(t.status in (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED) for t in batch.tasks)
    assert leaked_tasks() == []


async def test_a_retry_waits_while_paused(workspace: Workspace) -> None:
    provider = ControlledProvider()
    provider.script["flaky"] = [ServerError("boom"), "ok"]
    batch = Batch.create(workspace=workspace, tasks=["flaky"])
    starts: list[int] = []
    retrying: list[TaskRetrying] = []
    batch.subscribe(lambda e: starts.append(e.attempt) if isinstance(e, TaskStarted) else None)
    batch.subscribe(lambda e: retrying.append(e) if isinstance(e, TaskRetrying) else None)
    runner = batch.start(provider, retry=RetryPolicy(base_delay=0.05, max_delay=0.05))
    await until(lambda: retrying)  # the first attempt failed; the retry waits its delay
    runner.pause()
    # the delay is over and the retry is parked until resume (instead of sleeping a guess)
    await until(lambda: runner._parked == 1)
    assert starts == [1] and provider.calls == ["flaky"], "no retry is sent while paused"
    assert runner.active == 0  # the CLI's Ctrl-C can stop now
    runner.resume()
    await runner.wait()
    assert starts == [1, 2] and batch.tasks[0].status is TaskStatus.SUCCEEDED


async def test_stop_while_saving_keeps_the_paid_result(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbbatch.engine._runner import Runner

    original = Runner._save_files
    saving, saved_may_go_on = threading.Event(), threading.Event()

    def held_save(self, *args):  # type: ignore[no-untyped-def]
        saving.set()
        saved_may_go_on.wait(30)
        return original(self, *args)

    monkeypatch.setattr(Runner, "_save_files", held_save)
    batch = Batch.create(workspace=workspace, tasks=["x"])
    runner = batch.start(ControlledProvider())
    await until(saving.is_set)  # the provider answered; the image is being written
    runner.stop()
    saved_may_go_on.set()
    await runner.wait()
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED and task.images[0].path.exists()
    assert workspace.task(task.id).status is TaskStatus.SUCCEEDED


async def test_a_task_pinned_to_another_provider_is_refused_not_rerouted(
    workspace: Workspace,
) -> None:
    paid = ControlledProvider()
    batch = Batch.create(workspace=workspace, tasks=[Task("pinned", provider="demo"), Task("free")])
    with pytest.raises(ConfigError, match="asks for provider 'demo'"):
        batch.start(paid)
    assert paid.calls == [] and batch.counts == {"idle": 2}
    await batch.run(paid, providers={"demo": "demo"})
    assert paid.calls == ["free"] and batch.status == "succeeded"
    assert batch.tasks[0].images[0].params["provider"] == "demo"
