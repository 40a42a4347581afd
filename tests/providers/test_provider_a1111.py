"""Stable Diffusion WebUI (A1111 / Forge) provider end to end against FakeA1111.

A hung WebUI and an answer cut short are in the contract suite
(``test_provider_contract.py``, parametrised over every provider), with the retries.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image

from nbbatch import Batch, Params, Task, TaskStatus, Workspace, get_provider
from nbbatch.core._events import TaskProgress
from nbbatch.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    MalformedResponseError,
    NotSupportedError,
)
from nbbatch.providers import (
    A1111Provider,
    GenerationRequest,
    ImageData,
    InputImage,
)
from nbbatch.testing import FakeA1111, Fault
from tests.support import FAST
from tests.support import demo_png as png


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeA1111]:
    with FakeA1111() as s:
        yield s


@pytest.fixture
def server(shared_server: FakeA1111) -> FakeA1111:
    s = shared_server
    s.reset()
    s.auth, s.style, s.step_delay, s.extra_images = None, "a1111", 0.0, 0
    return s


@pytest.fixture
async def provider(server: FakeA1111) -> AsyncIterator[A1111Provider]:
    p = A1111Provider(base_url=server.url, poll_interval=0.01)
    yield p
    await p.aclose()


# ---------------------------------------------------------------- request mapping
async def test_txt2img_maps_params_and_reads_seeds_from_info(
    server: FakeA1111, provider: A1111Provider
) -> None:
    params = Params(
        n=3,
        seed=1234,
        steps=25,
        cfg_scale=6.5,
        sampler="DPM++ 2M",
        size="768x512",
        negative_prompt="blurry",
        model="sd_xl_base_1.0.safetensors [31e35c80fc]",
        extras={"scheduler": "Karras", "override_settings": {"CLIP_stop_at_last_layers": 2}},
    )
    images = await provider.generate(GenerationRequest("a red fox", params))

    job = server.jobs[0]
    assert server.calls("/sdapi/v1/txt2img")
    assert {k: job[k] for k in ("prompt", "negative_prompt", "seed", "steps", "cfg_scale")} == {
        "prompt": "a red fox",
        "negative_prompt": "blurry",
        "seed": 1234,
        "steps": 25,
        "cfg_scale": 6.5,
    }
    assert (job["sampler_name"], job["width"], job["height"], job["batch_size"]) == (
        "DPM++ 2M",
        768,
        512,
        3,
    )
    assert job["scheduler"] == "Karras"
    assert job["override_settings"] == {
        "sd_model_checkpoint": "sd_xl_base_1.0.safetensors [31e35c80fc]",
        "CLIP_stop_at_last_layers": 2,
    }
    assert [im.seed for im in images] == [1234, 1235, 1236]
    assert images[0].info["sd_model_name"] == "sd_xl_base_1.0"
    assert "Seed: 1235" in images[1].info["infotext"]
    with Image.open(io.BytesIO(images[0].data)) as im:
        assert im.format == "PNG"
        assert im.width > im.height


async def test_random_seed_is_sent_as_minus_one_and_the_real_one_recorded(
    server: FakeA1111, provider: A1111Provider
) -> None:
    images = await provider.generate(GenerationRequest("a fox"))
    assert server.jobs[0]["seed"] == -1
    assert isinstance(images[0].seed, int) and images[0].seed >= 0


async def test_img2img_sends_bare_base64_init_image_and_denoising_strength(
    server: FakeA1111, provider: A1111Provider
) -> None:
    source = png("source", (64, 64))
    images = await provider.generate(
        GenerationRequest("a fox, oil painting", Params(strength=0.35), [InputImage("s", source)])
    )
    job = server.jobs[0]
    assert server.calls("/sdapi/v1/img2img")
    assert base64.b64decode(job["init_images"][0]) == source
    assert job["denoising_strength"] == 0.35
    assert len(images) == 1


async def test_extra_images_after_the_batch_are_not_results(
    server: FakeA1111, provider: A1111Provider
) -> None:
    server.extra_images = 2  # e.g. ControlNet detect maps appended by Forge
    images = await provider.generate(GenerationRequest("a fox", Params(n=2, seed=9)))
    assert [im.seed for im in images] == [9, 10]


def test_registered_under_its_aliases(server: FakeA1111) -> None:
    for name in ("a1111", "forge", "sdwebui"):
        p = get_provider(name, base_url=server.url)
        assert isinstance(p, A1111Provider)


def test_webui_defaults_to_one_request_in_flight() -> None:
    assert A1111Provider().max_concurrency == 1


async def test_too_many_references_are_refused_before_any_request(
    server: FakeA1111, provider: A1111Provider
) -> None:
    refs = [InputImage("a", png()), InputImage("b", png())]
    with pytest.raises(NotSupportedError, match="at most 1"):
        await provider.generate(GenerationRequest("x", images=refs))
    assert server.requests == []


# ---------------------------------------------------------------- auth and error bodies
async def test_basic_auth_is_sent_and_a_wrong_password_is_an_auth_error(
    server: FakeA1111,
) -> None:
    server.auth = ("alice", "s3cret-pass")
    good = A1111Provider(base_url=server.url, username="alice", password="s3cret-pass")
    bad = A1111Provider(base_url=server.url, username="alice", password="wrong-pass")
    try:
        await good.check()
        assert (await good.generate(GenerationRequest("a fox")))[0].data
        with pytest.raises(AuthenticationError, match="Incorrect username or password") as info:
            await bad.generate(GenerationRequest("a fox"))
    finally:
        await good.aclose()
        await bad.aclose()
    assert "--api-auth" in str(info.value)
    assert "wrong-pass" not in str(info.value)


def test_basic_auth_needs_both_parts() -> None:
    with pytest.raises(ConfigError, match="both username and password"):
        A1111Provider(username="alice")


@pytest.mark.parametrize("style", ["a1111", "forge"])
async def test_both_error_body_styles_read_cleanly(
    server: FakeA1111, provider: A1111Provider, style: str
) -> None:
    server.style = style
    # what A1111 before 1.10 answered to an unknown sampler
    body = server.error_body(400, "Sampler not found")
    server.add_fault(Fault.status_code(400, body), path="/sdapi/v1/txt2img")
    with pytest.raises(BadRequestError) as info:
        await provider.generate(GenerationRequest("x"))
    assert str(info.value) == "a1111: HTTP 400: Sampler not found"
    assert len(server.calls("/sdapi/v1/txt2img")) == 1


async def test_validation_errors_name_the_field(server: FakeA1111, provider: A1111Provider) -> None:
    with pytest.raises(BadRequestError, match=r"HTTP 422: steps: value is not a valid integer"):
        await provider.generate(GenerationRequest("x", Params(extras={"steps": "many"})))


async def test_a1111_500_body_shows_the_exception_and_is_retried(
    server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    body = {
        "error": "RuntimeError",
        "detail": "",
        "body": "",
        "errors": "CUDA error: out of memory",
    }
    # only the generation call: a progress poll taking one of them would leave one failure
    server.add_fault(Fault.status_code(500, body, times=2), path="/sdapi/v1/txt2img")
    batch = Batch.create(["a fox"], workspace=workspace)
    messages: list[str] = []
    batch.subscribe(lambda e: messages.append(e.error) if hasattr(e, "error") else None)
    await batch.run(provider, retry=FAST)

    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert batch.tasks[0].attempts == 3
    assert len(server.calls("/sdapi/v1/txt2img")) == 3
    assert messages[0] == "a1111: HTTP 500: RuntimeError: CUDA error: out of memory"


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault.status_code(401), AuthenticationError),
        (Fault.status_code(404), BadRequestError),
        (Fault.malformed(), MalformedResponseError),
        (Fault.malformed(b'{"images": ["not base64!"], "info": "{}"}'), MalformedResponseError),
        (
            Fault.malformed(b'{"images": [], "parameters": {}, "info": "{}"}'),
            MalformedResponseError,
        ),
    ],
)
async def test_terminal_faults_fail_after_one_call(
    server: FakeA1111, workspace: Workspace, provider: A1111Provider, fault: Fault, error: type
) -> None:
    server.add_fault(fault, path="/sdapi/v1/txt2img")
    batch = Batch.create(["a fox"], workspace=workspace)
    await batch.run(provider, retry=FAST)
    assert batch.tasks[0].status is TaskStatus.FAILED
    assert batch.tasks[0].error_kind == error.kind  # type: ignore[attr-defined]
    assert len(server.calls("/sdapi/v1/txt2img")) == 1


async def test_unreadable_info_still_returns_the_images_without_seeds(
    server: FakeA1111, provider: A1111Provider
) -> None:
    body = json.dumps({"images": [base64.b64encode(png()).decode()], "info": "not json"})
    server.add_fault(Fault.malformed(body.encode()), path="/sdapi/v1/txt2img")
    images = await provider.generate(GenerationRequest("a fox"))
    assert len(images) == 1 and images[0].seed is None


# ---------------------------------------------------------------- progress and cancel
async def test_progress_is_polled_on_a_second_connection_while_the_post_blocks(
    server: FakeA1111, provider: A1111Provider
) -> None:
    server.step_delay = 0.02
    seen: list[float | None] = []
    await provider.generate(
        GenerationRequest("a fox", Params(steps=8)), lambda f, _p: seen.append(f)
    )
    polls = server.calls("/sdapi/v1/progress")
    post = server.calls("/sdapi/v1/txt2img")[0]
    assert len(polls) >= 3
    assert any(p.time > post.time for p in polls)
    assert polls[0].query == "skip_current_image=true"
    middle = [f for f in seen[:-1] if f is not None]
    assert middle and all(0 < f < 1 for f in middle)
    assert middle == sorted(middle)  # never goes backwards
    assert seen[-1] == 1.0


async def test_failing_progress_polls_never_fail_the_task(
    server: FakeA1111, provider: A1111Provider
) -> None:
    server.step_delay = 0.02
    server.add_fault(Fault.status_code(500, times=1000), path="/sdapi/v1/progress")
    images = await provider.generate(GenerationRequest("a fox"), lambda f, _p: None)
    assert images
    assert server.calls("/sdapi/v1/progress")


async def test_previews_come_from_current_image(server: FakeA1111) -> None:
    server.step_delay = 0.015
    p = A1111Provider(base_url=server.url, poll_interval=0.01, previews=True)
    previews: list[bytes] = []
    try:
        await p.generate(
            GenerationRequest("a fox"), lambda _f, pv: previews.append(pv) if pv else None
        )
    finally:
        await p.aclose()
    assert previews and previews[0].startswith(b"\x89PNG")


async def test_cancel_mid_generation_calls_interrupt(
    server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    server.step_delay = 0.05
    batch = Batch.create([Task("a slow fox", params=Params(steps=10))], workspace=workspace)
    events: list[object] = []
    batch.subscribe(events.append)
    runner = batch.start(provider)
    while not any(isinstance(e, TaskProgress) and e.progress for e in events):
        await asyncio.sleep(0.01)
    runner.cancel(batch.tasks[0].id)
    await runner.wait()

    assert batch.tasks[0].status is TaskStatus.CANCELLED
    assert len(server.calls("/sdapi/v1/interrupt", "POST")) == 1
    assert server.interrupts == 1


# ---------------------------------------------------------------- runner
async def test_batch_of_txt2img_and_img2img_runs_through_the_runner(
    server: FakeA1111, provider: A1111Provider, workspace: Workspace
) -> None:
    ref = workspace.add_reference(png("ref", (64, 64)), "ref.png")
    tasks = [
        Task("a fox", params=Params(seed=5, n=2)),
        Task("a fox, watercolour", params=Params(seed=6, strength=0.5), references=[ref]),
    ]
    batch = Batch.create(tasks, workspace=workspace)
    await batch.run(provider, concurrency=2)

    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 2
    assert [im.seed for im in batch.tasks[0].images] == [5, 6]
    assert batch.tasks[1].images[0].seed == 6
    assert "infotext" in batch.tasks[1].images[0].params["info"]
    assert len(server.calls("/sdapi/v1/img2img")) == 1


async def test_provider_model_is_the_default_checkpoint(server: FakeA1111) -> None:
    p = A1111Provider(base_url=server.url, model="v1-5-pruned-emaonly", poll_interval=None)
    try:
        await p.generate(GenerationRequest("a fox"))
        await p.generate(GenerationRequest("a fox", Params(model="sd_xl_base_1.0")))
    finally:
        await p.aclose()
    assert [j["override_settings"]["sd_model_checkpoint"] for j in server.jobs] == [
        "v1-5-pruned-emaonly",
        "sd_xl_base_1.0",
    ]


async def test_a_pool_of_webuis_spreads_tasks_and_skips_a_dead_one(
    server: FakeA1111, workspace: Workspace
) -> None:
    from nbbatch.providers import PoolProvider

    with FakeA1111() as dead:
        dead_url = dead.url  # stopped again: connections to it are refused
    with FakeA1111() as second:
        server.step_delay = second.step_delay = 0.005
        members = [
            A1111Provider(base_url=server.url, poll_interval=None),
            A1111Provider(base_url=second.url, poll_interval=None),
            A1111Provider(base_url=dead_url, poll_interval=None),  # nothing listens here
        ]
        pool = PoolProvider(members, cooldown=60)
        batch = Batch.create([f"fox {i}" for i in range(6)], workspace=workspace)
        try:
            await batch.run(pool, concurrency=3, retry=FAST)
        finally:
            for m in members:
                await m.aclose()
        assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 6
        assert len(server.jobs) >= 1 and len(second.jobs) >= 1
        assert len(server.jobs) + len(second.jobs) == 6


# ---------------------------------------------------------------- cancel with concurrency
async def _two_in_flight(
    server: FakeA1111, provider: A1111Provider
) -> tuple[asyncio.Future[list[ImageData]], asyncio.Future[list[ImageData]]]:
    """Start "first" (running on the WebUI) and "second" (waiting on its lock)."""
    server.step_delay = 0.02
    params = Params(steps=10)
    first = asyncio.ensure_future(provider.generate(GenerationRequest("first", params)))
    while not server.jobs:
        await asyncio.sleep(0.005)
    second = asyncio.ensure_future(provider.generate(GenerationRequest("second", params)))
    while len(server.jobs) < 2:
        await asyncio.sleep(0.005)
    return first, second


async def _idle(server: FakeA1111, jobs: int) -> None:
    # a dropped request still runs on the WebUI: wait for it before the next test
    for _ in range(500):
        if server.finished >= jobs:
            return
        await asyncio.sleep(0.01)


async def test_cancelling_a_waiting_request_lets_the_running_one_finish(
    server: FakeA1111,
) -> None:
    # The WebUI still runs a request whose connection was dropped: the cancelled one is
    # interrupted once its own job has started, not the one running now.
    p = A1111Provider(base_url=server.url, poll_interval=None, max_concurrency=2)
    server.hold()
    try:
        first, second = await _two_in_flight(server, p)
        second.cancel()
        server.release(1 + 10 + 1)  # "first": load, ten steps, decode; "second" starts
        images = await first
        for _ in range(1000):  # the poller sees "second" start (every 0.5 s here)
            if server.interrupts:
                break
            await asyncio.sleep(0.01)
        server.release()
        with pytest.raises(asyncio.CancelledError):
            await second
    finally:
        server.release()
        await p.aclose()
        await _idle(server, 2)
    assert server.interrupted == ["second"]  # "first" ran all its steps
    assert (server.runs[0].prompt, server.runs[0].steps_done) == ("first", 10)
    assert len(images) == 1


async def test_cancelling_the_running_request_interrupts_it_only(server: FakeA1111) -> None:
    p = A1111Provider(base_url=server.url, poll_interval=None, max_concurrency=2)
    try:
        first, second = await _two_in_flight(server, p)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        images = await second
    finally:
        await p.aclose()
        await _idle(server, 2)
    assert server.interrupts == 1
    assert server.interrupted == ["first"]
    assert len(images) == 1
