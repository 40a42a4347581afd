"""Runs through the OpenAI Batch API (issue 28): journal first, resumable, never twice.

The real OpenAI adapter talks to the loopback ``FakeOpenAI`` over HTTP; the fake's job
clock is a ``BatchClock`` that the run's poll sleep advances, so a job's 24 hours pass
without anyone waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from nbbatch import Batch, Params, Task, TaskStatus, Workspace
from nbbatch.core._events import RemoteJobChanged, RunState, RunStateChanged
from nbbatch.engine._batchapi import _WHERE, BATCH_API_KIND, BatchApiRunner, remote_jobs, where
from nbbatch.errors import ConfigError
from nbbatch.providers import GeminiProvider, OpenAIProvider
from nbbatch.providers._batchapi import RemoteJob
from nbbatch.providers._openai_batch import OpenAIBatchApi
from nbbatch.testing import BatchClock, FakeGemini, FakeOpenAI, Fault
from tests.support import png_bytes

KEY = "test-key-batchapi-0001"


SHARED_CLOCK = BatchClock()


@pytest.fixture
def clock() -> BatchClock:
    return SHARED_CLOCK


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(
        api_key=KEY,
        render="fast",
        max_side=64,
        batch_clock=SHARED_CLOCK,
        batch_timing=(10, 100, 10),
    ) as s:
        yield s


@pytest.fixture
def server(shared_server: FakeOpenAI) -> FakeOpenAI:
    # one server for the module (starting one costs ~0.3 s on a busy machine), as new
    shared_server.clear_faults()
    for seen in (
        shared_server.requests,
        shared_server.generations,
        shared_server.edits,
        shared_server.batch_api.created,
    ):
        seen.clear()
    shared_server.batch_api.jobs.clear()
    shared_server.batch_api.files.clear()
    return shared_server


@pytest.fixture
async def provider(server: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url)
    yield p
    await p.aclose()


class Killed(BaseException):
    """The process is gone (raised where a SIGKILL would land)."""


def options(clock: BatchClock, **more: Any) -> dict[str, Any]:
    """Batch API options whose poll sleep moves the fake's clock instead of waiting."""

    async def sleep(seconds: float) -> None:
        clock.advance(max(seconds, 40.0))

    return {"sleep": sleep, **more}


def make(workspace: Workspace, prompts: list[str]) -> Batch:
    return Batch.create(
        [Task(p, params=Params(size="64x64")) for p in prompts], workspace=workspace
    )


async def test_a_batch_goes_through_the_batch_api_and_its_results_land_in_the_batch(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, ["a fox", "an owl", "a forbidden cat", "a heron"])
    await batch.run(provider, batch_api=options(clock))
    by_prompt = {t.prompt: t for t in batch.tasks}
    assert [t.status for t in batch.tasks].count(TaskStatus.SUCCEEDED) == 3
    refused = by_prompt["a forbidden cat"]
    assert refused.status is TaskStatus.FAILED and refused.error_kind == "refused"
    # one job, its metadata naming the batch, no synchronous request at all
    assert len(server.batch_api.created) == 1
    assert server.batch_api.created[0]["metadata"]["nbbatch_batch"] == batch.id
    assert not server.calls("/v1/images/generations", "POST")
    image = by_prompt["a fox"].images[0]
    assert image.path.is_file() and image.width == 64
    info = image.params["info"]
    assert info["usage"]["output_tokens"] == 272 and info["batch_api"] == "openai"
    [job] = remote_jobs(workspace, batch.id)
    assert job["phase"] == "done" and job["remote_state"] == "completed"
    # the input file was one JSONL line per task, custom_id = the task id
    [upload] = server.calls("/v1/files", "POST")
    assert all(t.id.encode() in upload.body for t in batch.tasks)


async def test_after_a_restart_the_tasks_say_where_they_are_and_a_run_collects_them(
    tmp_path: Path, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    ws = Workspace(tmp_path / "ws")
    batch = make(ws, ["a fox", "an owl"])

    async def stop_at_first_poll(seconds: float) -> None:
        assert batch.runner is not None
        batch.runner.stop()

    runner = batch.start(provider, batch_api={"sleep": stop_at_first_poll})
    await runner.wait()
    assert runner.state is RunState.STOPPED
    ws.close()
    # a new kernel: the workspace reconciles on open, the tasks stay at the provider
    ws = Workspace(tmp_path / "ws")
    again = Batch.load(batch.id, workspace=ws)
    assert {t.status for t in again.tasks} == {TaskStatus.RUNNING}
    assert {t.error_kind for t in again.tasks} == {BATCH_API_KIND}
    assert {t.error for t in again.tasks} == {"submitted to the batch API: queued at OpenAI"}
    assert again.runnable() == []
    assert "submitted to the batch API: queued at OpenAI" in again.task_html(again.tasks[0])
    await again.run(provider, batch_api=options(clock))
    assert {t.status for t in again.tasks} == {TaskStatus.SUCCEEDED}
    assert len(server.batch_api.created) == 1  # re-attached, never re-sent
    assert all(len(t.images) == 1 for t in again.tasks)
    ws.close()


async def test_a_job_created_but_not_journaled_is_found_by_its_metadata_not_made_again(
    workspace: Workspace,
    server: FakeOpenAI,
    provider: OpenAIProvider,
    clock: BatchClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = make(workspace, ["a fox", "an owl"])
    real = BatchApiRunner._journal_job

    def die_before_journaling_the_job(self: BatchApiRunner, job: Any, **changes: Any) -> None:
        if changes.get("phase") == "submitted":
            raise Killed  # the process is gone after the create, before the commit
        real(self, job, **changes)

    monkeypatch.setattr(BatchApiRunner, "_journal_job", die_before_journaling_the_job)
    with pytest.raises(Killed):
        await batch.run(provider, batch_api=options(clock))
    assert len(server.batch_api.created) == 1
    assert [j["phase"] for j in remote_jobs(workspace, batch.id)] == ["uploaded"]
    monkeypatch.setattr(BatchApiRunner, "_journal_job", real)
    again = Batch.load(batch.id, workspace=workspace)
    await again.run(provider, batch_api=options(clock))
    assert len(server.batch_api.created) == 1
    assert {t.status for t in again.tasks} == {TaskStatus.SUCCEEDED}


async def test_an_expired_job_keeps_what_finished_and_the_rest_is_runnable_with_the_reason(
    workspace: Workspace, provider: OpenAIProvider
) -> None:
    clock = BatchClock()
    with FakeOpenAI(
        api_key=KEY,
        render="fast",
        max_side=64,
        batch_clock=clock,
        batch_timing=(0, 100, 0),
        batch_window=50,
    ) as server:
        p = OpenAIProvider(api_key=KEY, base_url=server.base_url)
        batch = make(workspace, [f"a bird {i}" for i in range(10)])
        await batch.run(p, batch_api=options(clock))
        await p.aclose()
    done = [t for t in batch.tasks if t.status is TaskStatus.SUCCEEDED]
    waiting = [t for t in batch.tasks if t.status is TaskStatus.INTERRUPTED]
    assert len(done) == 5 and len(waiting) == 5
    assert {t.error_kind for t in waiting} == {"batch_expired"}
    assert "expired" in (waiting[0].error or "")
    assert sorted(t.id for t in batch.runnable()) == sorted(t.id for t in waiting)


async def test_cancelling_cancels_the_job_at_openai_and_keeps_the_results_made(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, [f"a bird {i}" for i in range(10)])
    polls = 0

    async def cancel_halfway(seconds: float) -> None:
        nonlocal polls
        polls += 1
        clock.advance(30)  # 10 s validating, then 20 of the 100 s in progress
        if polls == 2:
            assert batch.runner is not None
            batch.runner.cancel_pending()

    await batch.run(provider, batch_api={"sleep": cancel_halfway})
    done = [t for t in batch.tasks if t.status is TaskStatus.SUCCEEDED]
    rest = [t for t in batch.tasks if t.status is TaskStatus.INTERRUPTED]
    assert len(done) == 5 and len(rest) == 5  # 50 of the 100 s had run at the cancel
    assert {t.error_kind for t in rest} == {"batch_cancelled"}
    assert len(server.calls("/v1/batches/*/cancel", "POST")) == 1


async def test_a_large_batch_is_split_into_jobs_of_the_services_limit(
    workspace: Workspace,
    server: FakeOpenAI,
    provider: OpenAIProvider,
    clock: BatchClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(OpenAIBatchApi, "max_requests", 2)
    batch = make(workspace, [f"a bird {i}" for i in range(5)])
    await batch.run(provider, batch_api=options(clock))
    assert len(server.batch_api.created) == 3
    assert {t.status for t in batch.tasks} == {TaskStatus.SUCCEEDED}
    lines = [r.body.count(b'"custom_id"') for r in server.calls("/v1/files", "POST")]
    assert lines == [2, 2, 1]


async def test_a_provider_without_a_batch_api_is_refused_in_words(workspace: Workspace) -> None:
    batch = make(workspace, ["a fox"])
    with pytest.raises(ConfigError, match="no batch API"):
        await batch.run("demo", batch_api=True)
    assert batch.tasks[0].status is TaskStatus.IDLE


async def test_a_synchronous_run_leaves_tasks_at_the_batch_api_alone(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, ["a fox", "an owl"])

    async def stop(seconds: float) -> None:
        assert batch.runner is not None
        batch.runner.stop()

    await batch.run(provider, batch_api={"sleep": stop})
    await batch.run(provider)  # nothing runnable: nothing sent synchronously
    assert not server.calls("/v1/images/generations", "POST")
    assert {t.status for t in batch.tasks} == {TaskStatus.RUNNING}


async def test_progress_counts_tasks_and_its_eta_follows_the_providers_request_counts(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, [f"a bird {i}" for i in range(10)])
    seen: list[Any] = []

    async def look(seconds: float) -> None:
        assert batch.runner is not None
        seen.append(batch.runner.progress())
        clock.advance(30)

    await batch.run(provider, batch_api={"sleep": look, "clock": clock})
    # 10 s validating then 100 s for 10 requests: 2 done at 30 s, 5 at 60 s -> 50 s left
    assert [(p.running, p.succeeded) for p in seen[:3]] == [(10, 0)] * 3
    assert seen[2].eta == pytest.approx(50.0)
    assert batch.runner is not None and batch.runner.progress().succeeded == 10


async def test_pausing_stops_polling_and_resuming_polls_again(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, ["a fox"])
    polls: list[int] = []  # GETs of the job when paused, then when resumed

    def count() -> int:
        return len(server.calls("/v1/batches/*", "GET"))

    def resume() -> None:
        polls.append(count())
        assert batch.runner is not None
        batch.runner.resume()

    async def pause_for_a_while(seconds: float) -> None:
        runner = batch.runner
        assert runner is not None
        clock.advance(40)
        if not polls:
            runner.pause()
            polls.append(count())
            # the loop turns several times before the resume: nothing is polled meanwhile
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, resume)

    await batch.run(provider, batch_api={"sleep": pause_for_a_while})
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert polls[0] == polls[1] and count() > polls[1]


async def test_an_unusable_image_in_a_result_line_fails_only_its_task(
    workspace: Workspace,
    server: FakeOpenAI,
    provider: OpenAIProvider,
    clock: BatchClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = server._batch_answer

    def broken_for_owls(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, answer = real(body)
        if "owl" in body["prompt"]:
            answer["data"][0]["b64_json"] = "aGVsbG8gd29ybGQ="  # "hello world": no image
        return status, answer

    monkeypatch.setattr(server.batch_api, "_answer", broken_for_owls)
    batch = make(workspace, ["a fox", "an owl"])
    await batch.run(provider, batch_api=options(clock))
    fox, owl = batch.tasks
    assert fox.status is TaskStatus.SUCCEEDED
    assert owl.status is TaskStatus.FAILED and owl.error_kind == "bad_image"
    assert "unusable image" in (owl.error or "")


async def test_a_batch_goes_through_gemini_batch_mode_and_is_found_again_after_a_kill(
    workspace: Workspace, clock: BatchClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = BatchApiRunner._journal_job

    def die_once_after_the_create(self: BatchApiRunner, job: Any, **changes: Any) -> None:
        if changes.get("phase") == "submitted" and not died:
            died.append(True)
            raise Killed
        real(self, job, **changes)

    died: list[bool] = []
    monkeypatch.setattr(BatchApiRunner, "_journal_job", die_once_after_the_create)
    with FakeGemini(api_key=KEY, batch_clock=clock, batch_timing=(10, 100, 10)) as server:
        p = GeminiProvider(api_key=KEY, base_url=server.url)
        batch = make(workspace, ["a fox", "a blocked owl", "a heron"])
        with pytest.raises(Killed):
            await batch.run(p, batch_api=options(clock))
        again = Batch.load(batch.id, workspace=workspace)
        await again.run(p, batch_api=options(clock))
        await p.aclose()
        created = list(server.batch_api.created)
    assert len(created) == 1  # found by the nbbatch job id in its display name
    fox, owl, heron = again.tasks
    assert fox.status is heron.status is TaskStatus.SUCCEEDED
    assert owl.status is TaskStatus.FAILED and owl.error_kind == "refused"
    info = fox.images[0].params["info"]
    assert info["batch_api"] == "gemini" and info["usage"]


async def test_a_refused_poll_stops_the_run_in_words_and_a_later_run_collects(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, ["a fox"])
    server.add_fault(Fault.status_code(401), path="/v1/batches/batch-*")
    runner = batch.start(provider, batch_api=options(clock))
    ended: list[RunStateChanged] = []
    runner.subscribe(lambda e: ended.append(e) if isinstance(e, RunStateChanged) else None)
    await runner.wait()
    assert runner.state is RunState.STOPPED
    assert isinstance(runner, BatchApiRunner) and "authentication" in (runner.problem or "")
    # the run says why it stopped (the studio's toolbar shows it), not a bare "Stopped"
    assert runner.stop_reason == (
        f"{runner.problem} (the batch API jobs stay in the journal: Run all resumes them)"
    )
    assert ended[-1].state is RunState.STOPPED and ended[-1].reason == runner.stop_reason
    assert batch.tasks[0].status is TaskStatus.RUNNING  # still at OpenAI
    await batch.run(provider, batch_api=options(clock))
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert len(server.batch_api.created) == 1


async def test_edits_go_in_their_own_job_with_each_reference_uploaded_once(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    ref = workspace.add_reference(png_bytes((32, 32)), "cat.png")
    tasks = [
        Task("a fox", params=Params(size="64x64")),
        Task("the cat as a watercolour", params=Params(size="64x64"), references=[ref]),
        Task("the cat in snow", params=Params(size="64x64"), references=[ref]),
    ]
    batch = Batch.create(tasks, workspace=workspace)
    await batch.run(provider, batch_api=options(clock))
    assert {t.status for t in batch.tasks} == {TaskStatus.SUCCEEDED}
    assert sorted(c["endpoint"] for c in server.batch_api.created) == [
        "/v1/images/edits",
        "/v1/images/generations",
    ]
    images = [f for f in server.batch_api.files.values() if f.purpose == "vision"]
    assert len(images) == 1  # one upload for both edits
    assert [e["images"][0] == png_bytes((32, 32)) for e in server.edits] == [True, True]


async def test_a_task_added_during_the_run_goes_in_a_job_of_its_own(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, ["a fox"])
    added: list[Task] = []

    async def add_once(seconds: float) -> None:
        clock.advance(40)
        if not added:
            added.extend(batch.add([Task("a late heron", params=Params(size="64x64"))]))

    await batch.run(provider, batch_api={"sleep": add_once})
    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 2
    assert len(server.batch_api.created) == 2


async def test_the_tasks_follow_the_jobs_state_in_memory_with_one_event_a_move(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    # The journal had each state's label; the tasks in memory (what a studio's rows
    # show) kept "being submitted" until a reload.
    batch = make(workspace, ["a fox", "an owl", "a heron"])
    moves: list[RemoteJobChanged] = []
    journaled: list[set[str | None]] = []

    def seen(event: object) -> None:
        if isinstance(event, RemoteJobChanged):
            moves.append(event)
            # announced after the journal took it
            rows = workspace._query("SELECT error FROM tasks WHERE batch_id=?", (batch.id,))
            journaled.append({r[0] for r in rows})

    batch.subscribe(seen)
    steps = [20.0, 95.0, 10.0]  # timing (10, 100, 10): in progress, finalizing, completed
    labels: list[set[str | None]] = []

    async def step(seconds: float) -> None:
        labels.append({t.error for t in batch.tasks})  # what memory says between polls
        clock.advance(steps.pop(0) if steps else 40.0)

    await batch.run(provider, batch_api={"sleep": step})
    assert [m.state for m in moves] == ["validating", "in_progress", "finalizing", "completed"]
    assert [m.label for m in moves] == [
        "submitted to the batch API: queued at OpenAI",
        "submitted to the batch API: in progress at OpenAI",
        "submitted to the batch API: finishing at OpenAI",
        "submitted to the batch API: done at OpenAI, collecting the results",
    ]
    assert labels[:3] == [{m.label} for m in moves[:3]]
    assert journaled == [{m.label} for m in moves]
    # one event for the whole job, carrying the batch's own task objects
    for move in moves:
        assert [t.id for t in move.tasks] == [t.id for t in batch.tasks]
        assert all(a is b for a, b in zip(move.tasks, batch.tasks, strict=True))
        assert move.total == 3 and move.batch_id == batch.id and move.remote_id
    assert (moves[-1].completed, moves[-1].failed) == (3, 0)
    assert {t.status for t in batch.tasks} == {TaskStatus.SUCCEEDED}
    assert {t.error for t in batch.tasks} == {None}


async def test_poll_now_asked_while_a_poll_is_under_way_skips_the_next_nap(
    workspace: Workspace, server: FakeOpenAI, provider: OpenAIProvider, clock: BatchClock
) -> None:
    batch = make(workspace, ["a fox"])
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)  # nothing moves meanwhile: the polls back off

    runner = batch.start(provider, batch_api={"sleep": nap})
    assert isinstance(runner, BatchApiRunner)
    real_get = runner.api.get
    gets = 0

    async def get(remote_id: str) -> RemoteJob:
        nonlocal gets
        gets += 1
        answer = await real_get(remote_id)
        if gets == 3:
            # the job ends just after the provider answered "validating", and someone
            # asks to look now: the wake-up lands while this poll is under way
            clock.advance(200.0)
            runner.poll_now()
        return answer

    runner.api.get = get  # type: ignore[method-assign]
    await runner.wait()
    # a nap after a poll that found nothing new; none after the one asked during
    assert naps == [2.0]
    assert gets == 4 and batch.tasks[0].status is TaskStatus.SUCCEEDED


@pytest.mark.parametrize("state", sorted(set(_WHERE) - {"uploaded"}))
def test_a_tasks_label_reads_back_to_the_jobs_state_and_provider(state: str) -> None:
    assert where(_WHERE[state].format(label="Gemini")) == (state, "Gemini")


def test_other_words_are_no_batch_api_label() -> None:
    assert where(None) is None and where("") is None
    assert where("rate limited by OpenAI") is None
    assert where("submitted to the batch API: queued at ") is None  # no provider named
