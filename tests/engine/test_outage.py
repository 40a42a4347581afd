"""A run whose server stops answering pauses, probes it and resumes by itself.

Issue 27: a ComfyUI (or A1111) restart failed the rest of the batch within seconds, every
queued task spending its attempts on a server that was not there. Now the first task that
meets ``ServerUnavailableError`` goes back to the queue without counting the attempt, the
run pauses with a message in words, and ``provider.check()`` is probed (through the one
retry loop) until the server answers; then the run goes on by itself.

The probes' waits are a test-held gate (``runner.server_wait.sleep``), the fakes go down
and come back when told: nothing here races the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator

import pytest

from nbbatch import Batch, RetryPolicy, TaskStatus, Workspace
from nbbatch.core._events import Event, RunState, RunStateChanged, TaskFailed, TaskStarted
from nbbatch.providers import A1111Provider, ComfyUIProvider
from nbbatch.testing import FakeA1111, FakeComfyUI
from nbbatch.widgets._hub import hub_for

FAST = RetryPolicy(base_delay=0.001, max_delay=0.002)


class Probes:
    """Stands in for the probe's sleep: records each wait, and holds it until allowed."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.asleep = asyncio.Event()
        self._go = asyncio.Semaphore(0)

    async def sleep(self, delay: float) -> None:
        self.waits.append(delay)
        self.asleep.set()
        await self._go.acquire()
        self.asleep.clear()

    def allow(self) -> None:
        self._go.release()


class States:
    """The run's state changes, with an event to wait for the next pause."""

    def __init__(self) -> None:
        self.seen: list[RunStateChanged] = []
        self.failed: list[TaskFailed] = []
        self.paused = asyncio.Event()
        self._event = asyncio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds, looked at after each event of the run."""
        while not condition():
            self._event.clear()
            await self._event.wait()

    def __call__(self, event: Event) -> None:
        self._event.set()
        if isinstance(event, RunStateChanged):
            self.seen.append(event)
            if event.state is RunState.PAUSED:
                self.paused.set()
        elif isinstance(event, TaskFailed):
            self.failed.append(event)


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(cache=False) as server:
        yield server


def _comfy_provider(server: FakeComfyUI) -> ComfyUIProvider:
    # server_wait=0: the provider's own wait for a restart ends at its first failed look
    p = ComfyUIProvider(base_url=server.url, poll_interval=0.01, server_wait=0)
    p.server_probe_interval = 0.001
    return p


async def test_comfyui_down_pauses_the_run_and_it_resumes_when_the_server_answers(
    workspace: Workspace, comfy: FakeComfyUI
) -> None:
    p = _comfy_provider(comfy)
    batch = Batch.create([f"fox {i}" for i in range(3)], workspace=workspace)
    await asyncio.to_thread(comfy.go_down)
    states, probes = States(), Probes()
    try:
        runner = batch.start(p, concurrency=1, retry=FAST)
        runner.subscribe(states)
        runner.server_wait.sleep = probes.sleep
        await asyncio.wait_for(states.paused.wait(), 30)
        reason = runner.paused_reason
        assert reason == (
            f"ComfyUI at {comfy.url} is not answering; waiting for it — 3 tasks left "
            "(Resume to try now, Stop to give up)"
        )
        assert states.seen[-1].reason == reason  # the event says it too
        assert hub_for(batch).summary()["paused_reason"] == reason  # and the studio's toolbar
        # the task went back: queued, its attempt not counted, in memory and journal
        assert [t.status for t in batch.tasks] == [TaskStatus.QUEUED] * 3
        assert [t.attempts for t in batch.tasks] == [0, 0, 0]
        with contextlib.closing(sqlite3.connect(workspace.db_path)) as db:
            row = db.execute(
                "SELECT status, attempts FROM tasks WHERE id = ?", (batch.tasks[0].id,)
            ).fetchall()
        assert row == [("queued", 0)]
        # probed through the retry loop with backoff while it stays down
        await asyncio.wait_for(probes.asleep.wait(), 30)
        probes.allow()  # second probe: still down
        await asyncio.wait_for(_next_sleep(probes, 2), 30)
        assert probes.waits == [1.0, 2.0]
        assert runner.state is RunState.PAUSED
        await asyncio.to_thread(comfy.come_back)
        probes.allow()  # the third probe finds it: the run goes on by itself
        await asyncio.wait_for(runner.wait(), 60)
    finally:
        await p.aclose()
    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 3
    assert [t.attempts for t in batch.tasks] == [1, 1, 1]
    assert states.failed == []
    assert runner.server_wait.pauses == 1 and runner.server_wait.resumes == 1
    assert runner.paused_reason is None


async def _next_sleep(probes: Probes, count: int) -> None:
    while len(probes.waits) < count:
        probes.asleep.clear()
        await probes.asleep.wait()


async def test_stop_while_waiting_for_the_server_ends_the_run_and_the_probes(
    workspace: Workspace, comfy: FakeComfyUI
) -> None:
    p = _comfy_provider(comfy)
    batch = Batch.create([f"fox {i}" for i in range(3)], workspace=workspace)
    await asyncio.to_thread(comfy.go_down)
    states, probes = States(), Probes()
    try:
        runner = batch.start(p, concurrency=2, retry=FAST)
        runner.subscribe(states)
        runner.server_wait.sleep = probes.sleep
        await asyncio.wait_for(states.paused.wait(), 30)
        await asyncio.wait_for(probes.asleep.wait(), 30)
        # both tasks in flight came back (one pause, one probe for the two)
        await asyncio.wait_for(states.until(lambda: runner.progress().running == 0), 30)
        assert runner.server_wait.pauses == 1
        probe = runner.server_wait._outages["comfyui"].probe
        assert probe is not None
        runner.cancel(batch.tasks[2].id)  # the person can still cancel a task
        runner.stop()
        await asyncio.wait_for(runner.wait(), 30)
        await asyncio.wait([probe], timeout=30)
        assert probe.cancelled()  # nothing probes any more
    finally:
        await p.aclose()
    assert runner.state is RunState.STOPPED
    assert [t.status for t in batch.tasks] == [
        TaskStatus.IDLE,
        TaskStatus.IDLE,
        TaskStatus.CANCELLED,
    ]
    assert all(t.attempts == 0 for t in batch.tasks)
    assert states.failed == []
    assert not runner.server_wait.waiting
    assert len(probes.waits) == 1


async def test_resume_while_the_server_is_still_down_pauses_again(
    workspace: Workspace, comfy: FakeComfyUI
) -> None:
    p = _comfy_provider(comfy)
    batch = Batch.create(["fox"], workspace=workspace)
    await asyncio.to_thread(comfy.go_down)
    states, probes = States(), Probes()
    try:
        runner = batch.start(p, concurrency=1, retry=FAST)
        runner.subscribe(states)
        runner.server_wait.sleep = probes.sleep
        await asyncio.wait_for(states.paused.wait(), 30)
        states.paused.clear()
        runner.resume()  # the person tries now: the server is still away
        await asyncio.wait_for(states.paused.wait(), 30)
        assert runner.server_wait.pauses == 2
        assert batch.tasks[0].status is TaskStatus.QUEUED and batch.tasks[0].attempts == 0
        await asyncio.to_thread(comfy.come_back)
        await asyncio.wait_for(_next_sleep(probes, 1), 30)
        probes.allow()
        await asyncio.wait_for(runner.wait(), 60)
    finally:
        await p.aclose()
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED and batch.tasks[0].attempts == 1
    assert states.failed == []


async def test_a_pause_the_person_made_is_not_lifted_by_the_probe(
    workspace: Workspace, comfy: FakeComfyUI
) -> None:
    p = _comfy_provider(comfy)
    batch = Batch.create(["fox", "owl"], workspace=workspace)
    await asyncio.to_thread(comfy.go_down)
    states, probes = States(), Probes()
    try:
        runner = batch.start(p, concurrency=1, retry=FAST)
        runner.subscribe(states)
        runner.subscribe(lambda e: runner.pause() if isinstance(e, TaskStarted) else None)
        runner.server_wait.sleep = probes.sleep
        await asyncio.wait_for(probes.asleep.wait(), 30)  # the task came back; probing
        assert batch.tasks[0].status is TaskStatus.QUEUED
        assert runner.state is RunState.PAUSED and runner.server_wait.pauses == 0
        probe = runner.server_wait._outages["comfyui"].probe
        assert probe is not None
        await asyncio.to_thread(comfy.come_back)
        probes.allow()
        await asyncio.wait_for(probe, 30)  # the server answers ...
        assert not runner.server_wait.waiting
        assert runner.state is RunState.PAUSED  # ... and the person's pause holds
        runner.stop()
        await asyncio.wait_for(runner.wait(), 30)
    finally:
        await p.aclose()
    assert states.failed == []
    assert runner.server_wait.resumes == 0
    assert [t.status for t in batch.tasks] == [TaskStatus.IDLE] * 2


async def test_a1111_down_pauses_the_run_and_it_resumes_when_the_webui_answers(
    workspace: Workspace,
) -> None:
    with FakeA1111() as server:
        p = A1111Provider(base_url=server.url, poll_interval=None)
        batch = Batch.create([f"fox {i}" for i in range(3)], workspace=workspace)
        await asyncio.to_thread(server.go_down)
        states, probes = States(), Probes()
        try:
            runner = batch.start(p, concurrency=1, retry=FAST)
            runner.subscribe(states)
            runner.server_wait.sleep = probes.sleep
            await asyncio.wait_for(states.paused.wait(), 30)
            assert runner.paused_reason == (
                f"Stable Diffusion WebUI (A1111 / Forge) at {server.url} is not answering; "
                "waiting for it — 3 tasks left (Resume to try now, Stop to give up)"
            )
            assert [t.attempts for t in batch.tasks] == [0, 0, 0]
            await asyncio.wait_for(probes.asleep.wait(), 30)
            await asyncio.to_thread(server.come_back)
            probes.allow()
            await asyncio.wait_for(runner.wait(), 60)
        finally:
            await p.aclose()
        assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 3
        assert [t.attempts for t in batch.tasks] == [1, 1, 1]
        assert states.failed == []
        assert len(server.runs) == 3
