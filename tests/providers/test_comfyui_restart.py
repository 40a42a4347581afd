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

import pytest

from nbbatch import Batch, Params, TaskStatus, Workspace
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
        p = ComfyUIProvider(base_url=server.url, poll_interval=0.01)
        p.fetch_attempts, p.fetch_retry_delay = 2, 0.001
        p.server_probe_interval = 0.01
        batch = Batch.create([f"fox {i}" for i in range(6)], workspace=workspace)
        try:
            server.hold()
            runner = batch.start(p, concurrency=3, retry=FAST)
            await until(lambda: server._running is not None and len(server._pending) == 2)
            server.release()
            await asyncio.to_thread(server.go_down)  # the queue and the running prompt go
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
    assert "has not answered for 0.3 s" in str(info.value)
    assert "start it again" in str(info.value)
    assert "could not cancel" not in caplog.text  # it was never accepted: no cancel
