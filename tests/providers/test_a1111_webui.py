"""The a1111 provider against FakeA1111 as A1111 1.10 behaves (issue 31).

Jobs are driven step by step with ``server.hold()`` / ``server.release(n)``; the tests
wait for states the server reaches, never for time to pass.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from nbbatch import Batch, Params, Task, TaskStatus, Workspace
from nbbatch.errors import NotSupportedError, ProviderTimeoutError
from nbbatch.images import read_generation_info
from nbbatch.providers import A1111Provider, GenerationRequest, ImageData, InputImage, Timeouts
from nbbatch.testing import FakeA1111, Fault
from tests.support import FAST, until


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeA1111]:
    with FakeA1111(max_side=256) as s:
        yield s


@pytest.fixture
def server(shared_server: FakeA1111) -> Iterator[FakeA1111]:
    shared_server.reset()
    yield shared_server
    shared_server.release()


@pytest.fixture
async def provider(server: FakeA1111) -> AsyncIterator[A1111Provider]:
    p = A1111Provider(base_url=server.url, poll_interval=0.01)
    yield p
    await p.aclose()


def png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 160, 90)).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- cancel and stop
async def test_stop_right_after_a_cancel_leaves_nothing_running_on_the_webui(
    server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    # Issue 31, item 1: task 0 cancelled mid-job, stop() while it winds down. Before, task
    # 1 was sent at once, queued behind task 0, the second interrupt hit task 0 again and
    # task 1 then ran all its steps for nobody.
    server.hold()
    tasks = [Task(f"task {i}", params=Params(steps=40)) for i in range(2)]
    batch = Batch.create(tasks, workspace=workspace)
    run = batch.start(provider, concurrency=1)
    try:
        server.release(1 + 3)  # task 0: its model load and three steps; a fourth under way
        await until(lambda: server.steps_done == 3, "three steps of task 0")
        run.cancel(batch.tasks[0].id)
        await until(lambda: server.interrupts == 1, "the interrupt")
        run.stop()
        server.release()  # the WebUI goes on with whatever it holds
        await run.wait()
    finally:
        server.release()
    assert server.active == 0  # nothing running or queued on the server
    assert [(r.prompt, r.interrupted) for r in server.runs] == [("task 0", True)]
    assert server.runs[0].steps_done == 4  # stopped at its next step
    assert batch.tasks[0].status is TaskStatus.CANCELLED
    assert batch.tasks[1].status is TaskStatus.IDLE  # never sent: resumable


async def test_stop_takes_back_a_request_still_waiting_on_the_webuis_lock(
    server: FakeA1111, workspace: Workspace
) -> None:
    # A dropped connection does not cancel an A1111 job, and the next job's start clears
    # the interrupt flag: the waiting request is interrupted once its job has started.
    server.hold()
    p = A1111Provider(base_url=server.url, poll_interval=0.01, max_concurrency=2)
    batch = Batch.create([Task(f"task {i}") for i in range(2)], workspace=workspace)
    run = batch.start(p, concurrency=2)
    try:
        await until(lambda: server.active == 2 and server.state["job_count"] == -1, "two jobs")
        run.stop()
        await until(lambda: server.interrupts == 1, "the running job's interrupt")
        server.release(1)  # task 0 ends; task 1 starts and loads its model
        await until(lambda: server.interrupts == 2, "task 1's interrupt once it started")
        server.release()
        await run.wait()
    finally:
        server.release()
        await p.aclose()
    assert server.active == 0
    # the two requests go out together: either may reach the WebUI's lock first
    assert sorted((r.prompt, r.interrupted, r.steps_done) for r in server.runs) == [
        ("task 0", True, 0),
        ("task 1", True, 0),
    ]
    assert [t.status for t in batch.tasks] == [TaskStatus.INTERRUPTED] * 2


async def test_a_cancel_that_the_webui_never_answers_gives_up_after_cancel_timeout(
    server: FakeA1111,
) -> None:
    server.hold()
    p = A1111Provider(base_url=server.url, poll_interval=0.01, cancel_timeout=0.2)
    try:
        job = asyncio.ensure_future(p.generate(GenerationRequest("stuck")))
        await until(lambda: server.active == 1, "the job")
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job  # held by the server past cancel_timeout: given up, with a warning
    finally:
        server.release()
        await p.aclose()
        await until(lambda: server.active == 0, "the job to end")
    assert server.interrupts == 1


@pytest.mark.parametrize("how", ["cancel", "stop"])
async def test_a_job_that_ran_to_its_end_before_the_interrupt_keeps_its_images(
    how: str, server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    # The cancel (or stop) comes while the WebUI decodes: no step is left to notice the
    # interrupt, and the answer holds the whole image. Before, it was thrown away and
    # the task called cancelled / interrupted although its job had run anyway.
    server.hold()
    batch = Batch.create([Task("a fox", params=Params(steps=4, seed=3))], workspace=workspace)
    run = batch.start(provider)
    try:
        server.release(1 + 4)  # load and all four steps; held at the decode
        await until(lambda: server.steps_done == 4, "the last step")
        await until(lambda: (batch.tasks[0].progress or 0) > 0.5, "its progress polled")
        if how == "cancel":
            run.cancel(batch.tasks[0].id)
        else:
            run.stop()
        await until(lambda: server.interrupts == 1, "the interrupt")
        server.release()
        await run.wait()
    finally:
        server.release()
    assert [(r.interrupted, r.steps_done) for r in server.runs] == [(False, 4)]
    task = batch.tasks[0]
    assert task.status is TaskStatus.SUCCEEDED
    assert [im.seed for im in task.images] == [3]


async def test_a_cancel_while_the_answer_is_read_keeps_the_result(
    server: FakeA1111, provider: A1111Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The WebUI has answered; decoding the images (in a worker thread for big answers)
    # is all that is left. Before, a cancel then threw the made result away.
    monkeypatch.setattr("nbbatch.providers._offload.OFFLOAD_BYTES", 0)  # always a thread
    reading, go_on = threading.Event(), threading.Event()
    read = provider._read

    def slow_read(*args: Any, **kwargs: Any) -> list[ImageData]:
        reading.set()
        go_on.wait(30)
        return read(*args, **kwargs)

    monkeypatch.setattr(provider, "_read", slow_read)
    job = asyncio.ensure_future(provider.generate(GenerationRequest("a fox", Params(seed=4))))
    try:
        await until(reading.is_set, "the answer to be read")
        job.cancel()
        await asyncio.sleep(0)  # the cancel lands while the read goes on
    finally:
        go_on.set()
    images = await job
    assert [im.seed for im in images] == [4]
    assert server.interrupts == 0


async def test_a_cancel_still_interrupts_when_progress_cannot_be_read(
    server: FakeA1111,
) -> None:
    server.hold()
    server.add_fault(Fault.status_code(500, times=10_000), path="/sdapi/v1/progress")
    p = A1111Provider(base_url=server.url, poll_interval=0.01)
    try:
        job = asyncio.ensure_future(p.generate(GenerationRequest("blind")))
        await until(lambda: server.active == 1, "the job")
        job.cancel()
        await until(lambda: server.interrupts == 1, "the interrupt")
        server.release()
        with pytest.raises(asyncio.CancelledError):
            await job
    finally:
        server.release()
        await p.aclose()
    assert server.runs[0].interrupted


async def test_our_job_starting_in_the_same_second_as_anothers_is_still_ours(
    server: FakeA1111,
) -> None:
    # job_timestamp is to the second: when another client's job hands the lock straight
    # to ours, only begin() resetting job_count to -1 tells the two apart.
    server.hold()
    p = A1111Provider(base_url=server.url, poll_interval=0.01)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as other:
        try:
            theirs = asyncio.ensure_future(
                other.post("/sdapi/v1/txt2img", json={"prompt": "theirs", "steps": 4})
            )
            await until(lambda: server.active == 1, "their job")
            server.release(1 + 2)  # theirs: load and two steps
            await until(lambda: server.steps_done == 2, "two of their steps")
            seen: list[float | None] = []
            ours = asyncio.ensure_future(
                p.generate(GenerationRequest("ours"), lambda f, _p: seen.append(f))
            )
            await until(lambda: server.active == 2, "our request")
            polls = len(server.calls("/sdapi/v1/progress"))
            await until(lambda: len(server.calls("/sdapi/v1/progress")) >= polls + 2, "polls")
            server.release(2 + 1)  # theirs: two steps and the decode; ours loads, held
            await until(lambda: len(server.runs) == 2 and server.state["job_count"] == -1, "ours")
            assert server.runs[0].finished
            ours.cancel()
            await until(lambda: server.interrupts == 1, "our job's interrupt")
            server.release()
            with pytest.raises(asyncio.CancelledError):
                await ours
            assert (await theirs).status_code == 200
        finally:
            server.release()
            await p.aclose()
    assert [(r.prompt, r.interrupted) for r in server.runs] == [
        ("theirs", False),
        ("ours", True),
    ]
    assert [f for f in seen if f is not None] == []  # their steps never shown as ours


async def test_a_request_that_timed_out_has_its_job_interrupted(server: FakeA1111) -> None:
    # The WebUI keeps running a job whose client stopped waiting; the retry would queue
    # behind all of it.
    server.hold()
    p = A1111Provider(base_url=server.url, poll_interval=None, timeouts=Timeouts(read=0.3))
    try:
        with pytest.raises(ProviderTimeoutError):
            await p.generate(GenerationRequest("too slow"))
        assert server.interrupts == 1
        assert server.state["interrupted"] is True
    finally:
        server.release()
        await p.aclose()
        await until(lambda: server.active == 0, "the job to end")
    assert server.runs[0].interrupted


@pytest.mark.parametrize("given_up", ["read timeout", "cancel_timeout"])
async def test_a_request_given_up_on_while_queued_is_interrupted_when_it_starts(
    given_up: str, server: FakeA1111
) -> None:
    # Issue 31, residual risk: the request was given up on (its read timed out, or a
    # cancel waited cancel_timeout) while its job still waited on the WebUI's lock behind
    # another client's job. Before, the provider forgot it there, and the WebUI later ran
    # all of it for nobody.
    server.hold()
    if given_up == "read timeout":
        p = A1111Provider(base_url=server.url, poll_interval=0.01, timeouts=Timeouts(read=0.3))
    else:
        p = A1111Provider(base_url=server.url, poll_interval=0.01, cancel_timeout=0.3)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as other:
        try:
            theirs = asyncio.ensure_future(
                other.post("/sdapi/v1/txt2img", json={"prompt": "theirs", "steps": 4})
            )
            await until(lambda: server.active == 1, "their job")
            server.release(1 + 2)  # theirs: load and two steps
            await until(lambda: server.steps_done == 2, "two of their steps")
            ours = asyncio.ensure_future(
                p.generate(GenerationRequest("queued too long", Params(steps=4)))
            )
            await until(lambda: server.active == 2, "our request on the lock")
            if given_up == "read timeout":
                with pytest.raises(ProviderTimeoutError):
                    await ours
            else:
                ours.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await ours  # given up after cancel_timeout
            assert server.active == 2 and server.interrupts == 0  # still waiting there
            polls = len(server.calls("/sdapi/v1/progress"))
            await until(lambda: len(server.calls("/sdapi/v1/progress")) >= polls + 2, "polls")
            server.release(2 + 1)  # theirs: two steps and the decode; ours loads, held
            await until(lambda: server.interrupts == 1, "the interrupt of our job")
            assert len(server.runs) == 2 and server.runs[0].finished
            server.release()
            assert (await theirs).status_code == 200
            await until(lambda: server.active == 0, "our job to end")
            await until(lambda: not p._jobs, "the provider to let go of it")
        finally:
            server.release()
            await p.aclose()
    assert [(r.prompt, r.interrupted, r.steps_done) for r in server.runs] == [
        ("theirs", False, 4),
        ("queued too long", True, 0),
    ]


# ---------------------------------------------------------------- progress
async def test_a_waiting_task_never_shows_another_jobs_progress(server: FakeA1111) -> None:
    # Issue 31, item 2: /sdapi/v1/progress describes the whole server.
    server.hold()
    p = A1111Provider(base_url=server.url, poll_interval=0.01, max_concurrency=2)
    seen: dict[str, list[float | None]] = {"first": [], "second": []}

    def listener(name: str) -> Callable[[float | None, bytes | None], None]:
        return lambda fraction, _preview: seen[name].append(fraction)

    try:
        first = asyncio.ensure_future(
            p.generate(GenerationRequest("first", Params(steps=10)), listener("first"))
        )
        await until(lambda: server.active == 1, "the first job")
        second = asyncio.ensure_future(
            p.generate(GenerationRequest("second", Params(steps=10)), listener("second"))
        )
        await until(lambda: server.active == 2, "the second request")
        server.release(1 + 5)  # first: load + five of ten steps
        await until(lambda: any(f and f > 0.4 for f in seen["first"]), "first at 41 %")
        polls = len(server.calls("/sdapi/v1/progress"))
        await until(lambda: len(server.calls("/sdapi/v1/progress")) >= polls + 3, "more polls")
        assert seen["second"] == [None]  # "waiting for the server", never first's 51 %
        server.release()
        await asyncio.gather(first, second)
    finally:
        server.release()
        await p.aclose()
    assert seen["first"][-1] == seen["second"][-1] == 1.0


async def test_a_task_whose_checkpoint_loads_shows_waiting_not_one_percent(
    server: FakeA1111, provider: A1111Provider
) -> None:
    # While the model loads, 1.10 reports progress 0.01 with a huge eta_relative.
    server.hold()
    seen: list[float | None] = []
    try:
        job = asyncio.ensure_future(
            provider.generate(
                GenerationRequest("x", Params(model="sd_xl_base_1.0")),
                lambda fraction, _preview: seen.append(fraction),
            )
        )
        await until(lambda: server.state["job_count"] == -1, "the checkpoint to load")
        polls = len(server.calls("/sdapi/v1/progress"))
        await until(lambda: len(server.calls("/sdapi/v1/progress")) >= polls + 3, "more polls")
        assert seen == [None]
        server.release()
        await job
    finally:
        server.release()
    assert seen[-1] == 1.0


# ---------------------------------------------------------------- the server's own record
async def test_the_saved_image_keeps_the_servers_infotext_beside_nbbatchs_record(
    server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    # Issue 31, item 3: sampler, CFG, model and size left unset are what the server chose.
    server.max_side = 512  # the WebUI's default size, not scaled down by the fake
    batch = Batch.create([Task("a red fox", params=Params(seed=7))], workspace=workspace)
    try:
        await batch.run(provider)
    finally:
        server.max_side = 256
    image = batch.tasks[0].images[0]
    server_text = image.params["info"]["infotext"]
    with Image.open(image.path) as im:
        assert im.info["parameters"] == server_text  # the truth, not nbbatch's rewrite
        assert '"task_id"' in im.info["nbbatch"]  # nbbatch's record beside it
    assert "Sampler: DPM++ 2M, Schedule type: Automatic, CFG scale: 7.0" in server_text
    info = read_generation_info(image)
    assert (info.source, info.sampler, info.model, info.cfg_scale, info.seed) == (
        "nbbatch",
        "DPM++ 2M",
        "v1-5-pruned-emaonly",
        7.0,
        7,
    )
    assert info.extras["Schedule type"] == "Automatic"
    assert info.record is not None and "sampler" not in info.record["params"]  # as asked
    remixed = batch.remix(image)
    assert (remixed.params.sampler, remixed.params.model, remixed.params.size) == (
        "DPM++ 2M",
        "v1-5-pruned-emaonly",
        "512x512",
    )
    assert remixed.parent_id == batch.tasks[0].id


async def test_a_size_sent_verbatim_off_the_grid_is_read_back_as_it_came_back(
    server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    # Extras go out verbatim: the WebUI renders 64x48 and writes "Size: 70x50" in its
    # infotext. The image and a Remix of it say what came back.
    task = Task("a fox", params=Params(extras={"width": 70, "height": 50}))
    batch = Batch.create([task], workspace=workspace)
    await batch.run(provider)
    image = batch.tasks[0].images[0]
    assert "Size: 70x50" in image.params["info"]["infotext"]
    assert image.params["info"]["size"] == "64x48"
    info = read_generation_info(image)
    assert (info.width, info.height) == (64, 48)
    assert batch.remix(image).params.size == "64x48"


# ---------------------------------------------------------------- names the server lacks
async def test_an_unknown_sampler_is_refused_before_anything_is_sent(
    server: FakeA1111, provider: A1111Provider
) -> None:
    # Issue 31, item 4: 1.10 answers 200 and quietly uses its default sampler.
    with pytest.raises(NotSupportedError) as info:
        await provider.generate(GenerationRequest("x", Params(sampler="No Such Sampler")))
    assert "has no sampler 'No Such Sampler'" in str(info.value)
    assert "quietly use 'DPM++ 2M'" in str(info.value)
    assert "Euler a" in str(info.value)  # what it does have
    assert server.calls("/sdapi/v1/txt2img") == []


async def test_an_unknown_checkpoint_is_refused_before_anything_is_sent(
    server: FakeA1111, provider: A1111Provider
) -> None:
    with pytest.raises(NotSupportedError, match=r"has no checkpoint 'no-such-model\.safetensors'"):
        await provider.generate(GenerationRequest("x", Params(model="no-such-model.safetensors")))
    assert server.calls("/sdapi/v1/txt2img") == []


async def test_known_names_pass_and_the_lists_are_fetched_once(
    server: FakeA1111, provider: A1111Provider
) -> None:
    for model in ("sd_xl_base_1.0", "sd_xl_base_1.0.safetensors [31e35c80fc]", "31e35c80fc"):
        images = await provider.generate(
            GenerationRequest("x", Params(sampler="DPM++ 2M Karras", model=model))
        )
        assert images[0].info["sd_model_name"] == "sd_xl_base_1.0"
        assert "notes" not in images[0].info
    assert len(server.calls("/sdapi/v1/samplers")) == 1
    assert len(server.calls("/sdapi/v1/sd-models")) == 1


async def test_without_the_lists_the_answers_info_still_tells_what_was_used(
    server: FakeA1111, provider: A1111Provider
) -> None:
    server.add_fault(Fault.status_code(404), path="/sdapi/v1/samplers")
    images = await provider.generate(GenerationRequest("x", Params(sampler="No Such Sampler")))
    assert images[0].info["sampler_name"] == "DPM++ 2M"
    assert images[0].info["notes"] == [
        "sampler 'No Such Sampler' was asked; the WebUI used 'DPM++ 2M'"
    ]


# ---------------------------------------------------------------- sizes
async def test_img2img_sends_the_references_size_rounded_as_the_webui_rounds(
    server: FakeA1111, provider: A1111Provider
) -> None:
    # Issue 31, item 5: without a size the WebUI answers 512x512 whatever the reference.
    images = await provider.generate(
        GenerationRequest("a fox", Params(strength=0.4), [InputImage("ref", png((100, 60)))])
    )
    assert (server.jobs[0]["width"], server.jobs[0]["height"]) == (96, 56)
    assert images[0].info["size"] == "96x56"
    assert images[0].info["notes"] == [
        "size 100x60 taken from the reference",
        "the WebUI renders multiples of 8: 100x60 was sent as 96x56",
    ]
    await provider.generate(
        GenerationRequest("a fox", Params(size="128x64"), [InputImage("ref", png((100, 60)))])
    )
    assert (server.jobs[1]["width"], server.jobs[1]["height"]) == (128, 64)


async def test_a_size_off_the_grid_is_rounded_before_sending_and_said(
    server: FakeA1111, provider: A1111Provider, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 31, item 6: 70x50 came back 64x48 while the task still said 70x50.
    with caplog.at_level(logging.INFO, logger="nbbatch"):
        images = await provider.generate(GenerationRequest("a fox", Params(size="70x50")))
        await provider.generate(GenerationRequest("a fox", Params(size="70x50")))
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "70x50" in r.getMessage()]
    note = "a1111: the WebUI renders multiples of 8: 70x50 was sent as 64x48"
    assert said == [(logging.WARNING, note), (logging.INFO, note)]  # once per provider
    assert (server.jobs[0]["width"], server.jobs[0]["height"]) == (64, 48)
    assert images[0].info["size"] == "64x48"
    assert images[0].info["notes"] == ["the WebUI renders multiples of 8: 70x50 was sent as 64x48"]
    with Image.open(io.BytesIO(images[0].data)) as im:
        assert im.size == (64, 48)


async def test_a_nans_exception_is_not_retried(
    server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    # Issue 31, item 6: the same request fails the same way; three tries cost ~40 s.
    body = {
        "error": "NansException",
        "detail": "",
        "body": "",
        "errors": "A tensor with all NaNs was produced in Unet.",
    }
    server.add_fault(Fault.status_code(500, body, times=3), path="/sdapi/v1/txt2img")
    batch = Batch.create(["a fox"], workspace=workspace)
    await batch.run(provider, retry=FAST)
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED
    assert task.attempts == 1
    assert len(server.calls("/sdapi/v1/txt2img")) == 1
    assert task.error is not None
    assert "NansException: A tensor with all NaNs was produced in Unet" in task.error
    assert "not retried" in task.error and "--no-half-vae" in task.error
