"""ComfyUI as a shared server: prompts that leave its queue, time spent queued, chatter.

Issue 27 item 1 and issue 26 item 6: a prompt removed from ComfyUI's queue (the panel's
"Clear queue", another client's ``POST /queue``) hung its task until the attempt timeout;
the attempt timeout counted time spent queued behind other people's work; and a server
whose ``status`` broadcasts never stop kept a finished task whose final event was missed
waiting, because ``/history`` was only looked at after 5 s of socket silence.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar

import pytest

from nbbatch import Batch, TaskStatus, Workspace
from nbbatch.core._events import TaskRetrying
from nbbatch.errors import ProviderTimeoutError
from nbbatch.providers import (
    Capabilities,
    ComfyUIProvider,
    GenerationRequest,
    ImageData,
    Provider,
)
from nbbatch.providers._base import ProgressCallback
from nbbatch.testing import FakeComfyUI
from tests.support import FAST


async def until(condition: Callable[[], object], seconds: float = 20.0) -> None:
    """Wait (bounded) until ``condition()`` holds; the fake runs in its own thread."""
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as s:
        yield s


@pytest.fixture
def server(shared_server: FakeComfyUI) -> Iterator[FakeComfyUI]:
    s = shared_server
    s.release()
    s.wait_idle()
    s.requests.clear()
    s.events.clear()
    s.prompts.clear()
    s.deleted.clear()
    s.removed.clear()
    s.interrupts.clear()
    s.drop_events.clear()
    s.clear_faults()
    yield s
    s.release()


@pytest.fixture
async def provider(server: FakeComfyUI) -> AsyncIterator[ComfyUIProvider]:
    p = ComfyUIProvider(base_url=server.url, poll_interval=0.01)
    p.fetch_attempts, p.fetch_retry_delay = 3, 0.001
    p.status_check = 0.0
    yield p
    await p.aclose()


def _ids(server: FakeComfyUI) -> list[str]:
    return [str(json.loads(r.body)["prompt_id"]) for r in server.calls("/prompt", "POST")]


@pytest.mark.parametrize("how", ["clear", "delete"])
async def test_a_prompt_removed_from_the_queue_fails_its_attempt_and_is_queued_again(
    server: FakeComfyUI, provider: ComfyUIProvider, workspace: Workspace, how: str
) -> None:
    server.hold()  # the first prompt runs and stays running; the other two wait
    batch = Batch.create(["fox 1", "fox 2", "fox 3"], workspace=workspace)
    retries: list[TaskRetrying] = []
    batch.subscribe(lambda e: retries.append(e) if isinstance(e, TaskRetrying) else None)
    runner = batch.start(provider, concurrency=3, retry=FAST)
    await until(lambda: server._running is not None and len(server._pending) == 2)
    pending = [job.prompt_id for job in server._pending]
    if how == "clear":
        server.clear_queue()  # ComfyUI's "Clear queue", or another client's
    else:
        async with _client(server) as http:
            await http.post("/queue", json={"delete": pending})
    # both removed tasks notice and queue their graph again, behind the running one
    await asyncio.wait_for(until(lambda: len(server.calls("/prompt", "POST")) == 5), 20)
    server.release()
    await asyncio.wait_for(runner.wait(), 30)

    assert server.removed == pending
    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 3
    assert sorted(t.attempts for t in batch.tasks) == [1, 2, 2]
    assert len(retries) == 2
    assert all("removed from ComfyUI's queue" in e.error for e in retries)
    assert server.interrupts == []  # nothing was running to stop


def _client(server: FakeComfyUI) -> Any:
    import httpx

    return httpx.AsyncClient(base_url=server.url, timeout=10)


async def _foreign_prompt(provider: ComfyUIProvider) -> asyncio.Future[list[ImageData]]:
    return asyncio.ensure_future(provider.generate(GenerationRequest("someone else's")))


async def _waiting(server: FakeComfyUI, provider: ComfyUIProvider) -> str:
    """The id of the prompt pending in the fake, once the provider follows it."""
    await until(lambda: len(server._pending) == 1)
    pid = server._pending[0].prompt_id
    looked: list[str] = []
    whereabouts = provider._whereabouts

    async def spy(prompt_id: str, request: GenerationRequest) -> Any:
        looked.append(prompt_id)
        return await whereabouts(prompt_id, request)

    provider._whereabouts = spy  # type: ignore[method-assign]
    async with _client(server) as http:
        await http.post("/queue", json={"delete": []})  # a status broadcast: "look"
    await until(lambda: pid in looked)
    return pid


async def test_time_queued_behind_other_work_does_not_count_toward_the_attempt_timeout(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    now = [0.0]
    provider._clock = lambda: now[0]
    provider.idle_check = 0.05
    server.hold()
    other = await _foreign_prompt(provider)
    await until(lambda: server._running is not None)
    mine = asyncio.ensure_future(provider.generate(GenerationRequest("mine", timeout=100)))
    await _waiting(server, provider)
    now[0] += 1000.0  # ten attempt timeouts spent queued: still well inside queue_timeout
    # the provider looks at /queue (it is still pending) with the clock moved on
    looked = len(server.calls("/queue", "GET"))
    await until(lambda: len(server.calls("/queue", "GET")) > looked)
    server.release()
    images = await asyncio.wait_for(mine, 20)
    await asyncio.wait_for(other, 20)
    assert images and server.deleted == []


async def test_the_attempt_timeout_counts_from_when_the_server_starts_the_prompt(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    now = [0.0]
    provider._clock = lambda: now[0]
    provider.idle_check = 0.05
    server.hold()
    started = asyncio.Event()
    mine = asyncio.ensure_future(
        provider.generate(GenerationRequest("mine", timeout=100), lambda f, _: started.set())
    )
    await asyncio.wait_for(started.wait(), 20)  # it runs, and the provider knows it
    now[0] += 101.0
    with pytest.raises(ProviderTimeoutError, match="no result 100 s after ComfyUI started"):
        await asyncio.wait_for(mine, 20)
    pid = _ids(server)[0]
    assert server.interrupts == [pid]  # it was stopped, not left running


async def test_a_prompt_queued_longer_than_queue_timeout_is_taken_off_the_queue(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    now = [0.0]
    provider._clock = lambda: now[0]
    provider.idle_check = 0.05
    provider.queue_timeout = 3600.0
    server.hold()
    other = await _foreign_prompt(provider)
    await until(lambda: server._running is not None)
    mine = asyncio.ensure_future(provider.generate(GenerationRequest("mine", timeout=100)))
    pid = await _waiting(server, provider)
    now[0] += 3601.0
    with pytest.raises(ProviderTimeoutError, match="waited 3600 s in ComfyUI's queue"):
        await asyncio.wait_for(mine, 20)
    assert server.deleted == [pid] and server.removed == [pid]
    assert server.interrupts == []  # it never ran: nothing to interrupt
    server.release()
    await asyncio.wait_for(other, 20)


class _SlowOwnTimeout(Provider):
    """Times its attempts itself: runs longer than the runner's attempt timeout."""

    name: ClassVar[str] = "slow-own-timeout"
    capabilities: Capabilities = Capabilities()
    own_timeout: ClassVar[bool] = True

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.timeouts: list[float | None] = []

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.timeouts.append(request.timeout)
        await self.gate.wait()
        import io

        from nbbatch.providers import render_demo_image

        buf = io.BytesIO()
        render_demo_image("x", 1, (8, 8)).save(buf, format="PNG")
        return [ImageData(buf.getvalue())]


async def test_the_runner_leaves_the_timeout_to_a_provider_that_times_itself(
    workspace: Workspace,
) -> None:
    gate = asyncio.Event()
    provider = _SlowOwnTimeout(gate)
    batch = Batch.create(["a fox"], workspace=workspace)
    runner = batch.start(provider, retry=FAST, attempt_timeout=0.05)
    await until(lambda: provider.timeouts)
    await asyncio.sleep(0.2)  # longer than the runner's 0.05 s: only the provider may end it
    gate.set()
    await asyncio.wait_for(runner.wait(), 20)
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert provider.timeouts == [0.05]


async def test_a_chatty_server_does_not_keep_a_finished_task_waiting() -> None:
    # The final events of the run never reach the socket, while status broadcasts
    # arrive every 20 ms: only /history can tell the provider the run is over.
    with FakeComfyUI(status_interval=0.02) as server:
        server.drop_events = {"executing", "execution_success"}
        p = ComfyUIProvider(base_url=server.url, idle_check=0.2)
        try:
            images = await asyncio.wait_for(p.generate(GenerationRequest("a fox")), 15)
        finally:
            await p.aclose()
        assert images
        assert sum(kind == "status" for _, kind, _ in server.events) > 3


async def test_a_finished_prompt_whose_history_is_gone_fails_instead_of_waiting_forever(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    # a restart between the final event and the /history read loses the entry (ComfyUI
    # keeps its history in memory): /history answers {} from then on
    from nbbatch.errors import ServerError
    from nbbatch.testing import Fault

    server.add_fault(Fault.malformed(b"{}", times=1000), path="/history/*")
    try:
        with pytest.raises(ServerError, match="removed from ComfyUI's queue") as info:
            await asyncio.wait_for(provider.generate(GenerationRequest("a fox")), 20)
    finally:
        server.clear_faults()
    assert info.value.retryable


async def test_a_pause_takes_back_the_prompts_still_pending_and_resume_queues_them_again(
    server: FakeComfyUI, provider: ComfyUIProvider, workspace: Workspace
) -> None:
    # issue 27: a pause let prompts still pending in ComfyUI's queue run, though taking
    # them back costs nothing; the running one finishes either way
    provider.idle_check = 0.1  # how soon a waiting attempt looks at the pause
    server.hold()
    batch = Batch.create(["fox 1", "fox 2", "fox 3"], workspace=workspace)
    runner = batch.start(provider, concurrency=3, retry=FAST)
    await until(lambda: server._running is not None and len(server._pending) == 2)
    running = server._running.prompt_id if server._running is not None else ""
    pending = [job.prompt_id for job in server._pending]
    runner.pause()
    await asyncio.wait_for(until(lambda: sorted(server.removed) == sorted(pending)), 20)
    assert server.interrupts == []  # the running prompt goes on
    server.release()
    await until(lambda: running in server.history)
    assert len(server.calls("/prompt", "POST")) == 3  # nothing queued while paused
    runner.resume()
    await asyncio.wait_for(runner.wait(), 30)

    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 3
    assert [t.attempts for t in batch.tasks] == [1, 1, 1]  # taking back costs no attempt
    assert len(server.calls("/prompt", "POST")) == 5
