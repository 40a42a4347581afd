"""ComfyUI restarts and an unreachable server.

Issue 27 item 2: a ComfyUI restart of ~9 s failed 5 of 6 tasks within seconds (3 attempts
each, spent while the server was down) and logged "could not cancel prompt" 10 times,
some for prompts whose POST /prompt never got an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
import pytest

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.core._events import Event, RunState, RunStateChanged
from nbbatch.errors import ServerUnavailableError
from nbbatch.providers import ComfyUIProvider, GenerationRequest
from nbbatch.testing import FakeComfyUI
from tests.support import FAST


async def until(condition: Callable[[], object], seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_a_restart_costs_the_lost_prompts_one_attempt_and_nothing_else(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbbatch")
    with FakeComfyUI(cache=False) as server:
        # a wait long enough for this restart: each attempt sees the server back itself
        p = ComfyUIProvider(base_url=server.url, poll_interval=0.01, unreachable_wait=60)
        p.fetch_attempts, p.fetch_retry_delay = 2, 0.001
        p.server_probe_interval = 0.01
        batch = Batch.create([f"fox {i}" for i in range(6)], workspace=workspace)
        try:
            server.hold()
            runner = batch.start(p, concurrency=3, retry=FAST)
            await until(lambda: server._running is not None and len(server._pending) == 2)
            # down while the prompt still runs (released first, it could finish before
            # the server stops, and its task would not be one of the lost ones)
            await asyncio.to_thread(server.go_down)  # the queue and the running prompt go
            server.release()
            await until(lambda: p.waiting_for_server == 3)  # every attempt waits, none fails
            await asyncio.to_thread(server.come_back)
            await asyncio.wait_for(runner.wait(), 60)
        finally:
            await p.aclose()
        assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 6
        # the three prompts the restart lost are queued again once; the rest never failed
        assert sorted(t.attempts for t in batch.tasks) == [1, 1, 1, 2, 2, 2]
        assert server.deleted == [] and server.interrupts == []
    assert "could not cancel" not in caplog.text
    assert "does not answer" in caplog.text and "answers again" in caplog.text


async def test_a_server_that_stays_down_ends_the_attempt_with_server_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeComfyUI() as server:
        url = server.url
    # nothing listens there any more; an explicit seed goes straight to POST /prompt
    p = ComfyUIProvider(base_url=url, server_wait=0.3)
    p.server_probe_interval = 0.01
    started = time.monotonic()
    try:
        with pytest.raises(ServerUnavailableError) as info:
            await p.generate(GenerationRequest("a fox", Params(seed=3)))
    finally:
        await p.aclose()
    assert time.monotonic() - started < 20
    assert info.value.retryable and info.value.kind == "unavailable"
    assert "cannot be reached" in str(info.value)
    assert "start it again" in str(info.value)
    assert "could not cancel" not in caplog.text  # it was never accepted: no cancel


class VirtualClock:
    """The provider's clock and its sleep between probes: a sleep moves the clock on at
    once instead of waiting (the monotonic clock plus the time skipped)."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    async def sleep(self, delay: float) -> None:
        self.skipped += delay
        await asyncio.sleep(0)


class HeldProbes:
    """The run's probe sleep: held until the test allows the next probe."""

    def __init__(self) -> None:
        self.asleep = asyncio.Event()
        self._go = asyncio.Semaphore(0)

    async def sleep(self, delay: float) -> None:
        self.asleep.set()
        await self._go.acquire()


async def test_a_server_that_is_down_pauses_the_run_promptly_not_after_server_wait(
    workspace: Workspace,
) -> None:
    """Before, every running task waited its whole ``server_wait`` (90 s) for a server that
    refused connections before the run paused; now the first refused probes end the wait
    after ``unreachable_wait`` (1 s), the run pauses, and goes on when it is back."""
    with FakeComfyUI(cache=False) as server:
        await asyncio.to_thread(server.go_down)
        p = ComfyUIProvider(base_url=server.url, poll_interval=0.01)
        assert p.server_wait == 90 and p.unreachable_wait == 1
        clock = VirtualClock()
        p._clock, p._sleep = clock, clock.sleep
        batch = Batch.create([f"fox {i}" for i in range(3)], workspace=workspace)
        paused = asyncio.Event()
        probes = HeldProbes()

        def on_event(event: Event) -> None:
            if isinstance(event, RunStateChanged) and event.state is RunState.PAUSED:
                paused.set()

        try:
            runner = batch.start(p, concurrency=2, retry=FAST)
            runner.subscribe(on_event)
            runner.server_wait.sleep = probes.sleep
            await asyncio.wait_for(paused.wait(), 30)
            # the provider's wait took a little over unreachable_wait, far from 90 s
            assert p.unreachable_wait <= clock.skipped < 10
            assert runner.paused_reason is not None
            assert "is not answering; waiting for it — 3 tasks left" in runner.paused_reason
            # the other running task comes back too, its attempt not counted either
            await until(lambda: all(t.status is TaskStatus.QUEUED for t in batch.tasks))
            assert [t.attempts for t in batch.tasks] == [0, 0, 0]
            await asyncio.wait_for(probes.asleep.wait(), 30)
            await asyncio.to_thread(server.come_back)
            probes._go.release()  # the next probe finds it: the run goes on by itself
            await asyncio.wait_for(runner.wait(), 60)
        finally:
            await p.aclose()
    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 3
    assert [t.attempts for t in batch.tasks] == [1, 1, 1]
    assert runner.server_wait.pauses == 1 and runner.server_wait.resumes == 1


async def test_a_server_that_takes_connections_but_does_not_answer_is_waited_for_longer() -> None:
    """A probe that connects and times out (a busy server, a slow network) is not taken
    for a server that is gone: the attempt waits up to ``server_wait``."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/system_stats":
            raise httpx.ReadTimeout("no answer", request=request)
        raise httpx.ReadError("connection reset", request=request)

    p = ComfyUIProvider(
        base_url="http://127.0.0.1:9", server_wait=40, transport=httpx.MockTransport(handler)
    )
    clock = VirtualClock()
    p._clock, p._sleep = clock, clock.sleep
    try:
        with pytest.raises(ServerUnavailableError) as info:
            await p.generate(GenerationRequest("a fox", Params(seed=3)))
    finally:
        await p.aclose()
    assert clock.skipped >= 40  # waited the whole server_wait, on the virtual clock
    assert "has not answered for 40 s" in str(info.value)
    assert seen[0] == "/prompt" and seen.count("/system_stats") > 5
