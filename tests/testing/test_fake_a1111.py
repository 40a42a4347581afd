"""FakeA1111 behaves like AUTOMATIC1111 1.10 where a client depends on it (issue 31)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from nbbatch.testing import FakeA1111
from tests.support import until


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeA1111]:
    with FakeA1111(max_side=512) as s:
        yield s


@pytest.fixture
def server(shared_server: FakeA1111) -> Iterator[FakeA1111]:
    shared_server.reset()
    shared_server.unknown_sampler = shared_server.unknown_checkpoint = "fallback"
    yield shared_server
    shared_server.release()


@pytest.fixture
async def client(server: FakeA1111) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


def png(size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (20, 120, 200)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def progress(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = (await client.get("/sdapi/v1/progress")).json()
    assert isinstance(answer, dict)
    return answer


async def test_progress_is_server_wide_and_keeps_the_last_job_stamp(
    server: FakeA1111, client: httpx.AsyncClient
) -> None:
    server.hold()
    post = asyncio.ensure_future(client.post("/sdapi/v1/txt2img", json={"prompt": "a fox"}))
    await until(lambda: server.state["job_count"] == -1, "the job to load its model")
    loading = await progress(client)
    # the checkpoint loads: job_count -1, progress 0.01, a large eta (1.10's formula)
    assert loading["progress"] == 0.01
    assert loading["eta_relative"] > 0
    assert loading["state"]["job"] == "scripts_txt2img"
    assert loading["current_task"] is None  # 1.10 and Forge never fill it in
    server.release(3)  # load + two steps; the third is under way
    await until(lambda: server.steps_done == 2, "two steps")
    running = await progress(client)
    assert running["state"]["job_count"] == 1
    # sampling_step is the index of the last step done, as the sampler's callback sets it
    assert running["state"]["sampling_step"] == 1
    assert running["progress"] == pytest.approx(0.01 + 1 / 10)
    server.release()
    info = json.loads((await post).json()["info"])
    idle = await progress(client)
    assert (idle["progress"], idle["eta_relative"]) == (0, 0)
    assert idle["state"]["job"] == "" and idle["state"]["job_count"] == 0
    # the stamp and job number stay after the job ends, as in State.end(); nextjob() after
    # the decode counted the job and put the step counter back to 0
    assert idle["state"]["job_timestamp"] == info["job_timestamp"] != "0"
    assert (idle["state"]["job_no"], idle["state"]["sampling_step"]) == (1, 0)


@pytest.mark.parametrize(("steps", "cut_short"), [(10, True), (4, False)])
async def test_an_interrupt_is_noticed_when_the_next_step_begins(
    steps: int, cut_short: bool, server: FakeA1111, client: httpx.AsyncClient
) -> None:
    # The denoiser checks the flag when a step begins: the step under way ends first, and
    # an interrupt during the last step stops nothing. Either way the job answers 200.
    server.hold()
    post = asyncio.ensure_future(
        client.post("/sdapi/v1/txt2img", json={"prompt": "a fox", "steps": steps})
    )
    server.release(1 + 3)  # load + three steps; the fourth is under way
    await until(lambda: server.steps_done == 3, "three steps")
    await client.post("/sdapi/v1/interrupt")
    assert server.state["interrupted"] is True
    assert server.state["job_count"] == 1  # still winding down: busy until its next step
    server.release(1)  # the step under way ends; held at the decode
    await until(lambda: server.steps_done == 4, "the fourth step")
    assert (server.state["sampling_step"], server.state["sampling_steps"]) == (3, steps)
    server.release()
    answer = await post
    assert answer.status_code == 200 and len(answer.json()["images"]) == 1
    assert (server.runs[0].steps_done, server.runs[0].interrupted) == (4, cut_short)
    assert server.state["interrupted"] is True  # the flag stays until the next job begins


async def test_an_interrupt_between_jobs_is_lost_when_the_next_job_starts(
    server: FakeA1111, client: httpx.AsyncClient
) -> None:
    await client.post("/sdapi/v1/interrupt")
    assert server.state["interrupted"] is True  # a flag, whatever runs (here: nothing)
    answer = await client.post("/sdapi/v1/txt2img", json={"prompt": "a fox", "steps": 6})
    assert answer.status_code == 200
    assert (server.runs[0].steps_done, server.runs[0].interrupted) == (6, False)


async def test_a_job_whose_client_left_still_runs(
    server: FakeA1111, client: httpx.AsyncClient
) -> None:
    server.hold()
    first = asyncio.ensure_future(client.post("/sdapi/v1/txt2img", json={"prompt": "first"}))
    await until(lambda: server.active == 1, "the first job")
    second = asyncio.ensure_future(client.post("/sdapi/v1/txt2img", json={"prompt": "second"}))
    await until(lambda: server.active == 2, "the second job to wait on the lock")
    for job in (first, second):  # both clients go away
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    server.release()
    await until(lambda: server.active == 0, "both jobs to end")
    assert [(r.prompt, r.finished, r.interrupted) for r in server.runs] == [
        ("first", True, False),
        ("second", True, False),
    ]


async def test_unknown_sampler_and_checkpoint_fall_back_like_1_10(
    server: FakeA1111, client: httpx.AsyncClient
) -> None:
    body = {
        "prompt": "a fox",
        "sampler_name": "No Such Sampler",
        "override_settings": {"sd_model_checkpoint": "no-such-model.safetensors"},
    }
    answer = await client.post("/sdapi/v1/txt2img", json=body)
    assert answer.status_code == 200
    info = json.loads(answer.json()["info"])
    assert (info["sampler_name"], info["sd_model_name"]) == ("DPM++ 2M", "v1-5-pruned-emaonly")
    # "DPM++ 2M Karras" is a sampler plus a schedule type
    karras = await client.post(
        "/sdapi/v1/txt2img", json={"prompt": "a fox", "sampler_name": "DPM++ 2M Karras"}
    )
    assert (
        "Sampler: DPM++ 2M, Schedule type: Karras"
        in json.loads(karras.json()["info"])["infotexts"][0]
    )
    # older versions: 400 "Sampler not found"; Forge: a 500 for an unknown checkpoint
    server.unknown_sampler = server.unknown_checkpoint = "error"
    old = await client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Nope"})
    assert (old.status_code, old.json()["detail"]) == (400, "Sampler not found")
    forge = await client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "x", "override_settings": {"sd_model_checkpoint": "nope"}},
    )
    assert forge.status_code == 500 and "not found" in forge.json()["errors"]


async def test_empty_init_images_is_a_500_and_missing_a_404(client: httpx.AsyncClient) -> None:
    empty = await client.post("/sdapi/v1/img2img", json={"prompt": "x", "init_images": []})
    assert empty.status_code == 500
    missing = await client.post("/sdapi/v1/img2img", json={"prompt": "x"})
    assert missing.status_code == 404


async def test_pngs_carry_the_servers_infotext_and_sizes_are_multiples_of_8(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(
        "/sdapi/v1/txt2img", json={"prompt": "a fox", "width": 70, "height": 50, "seed": 3}
    )
    body = answer.json()
    info = json.loads(body["info"])
    with Image.open(io.BytesIO(base64.b64decode(body["images"][0]))) as im:
        assert im.size == (64, 48)  # the latent is 1/8 of the image
        assert im.info["parameters"] == info["infotexts"][0]
    # the infotext and info keep the size that was asked for, as A1111 does
    assert (info["width"], info["height"]) == (70, 50)
    assert "Size: 70x50" in info["infotexts"][0]
    assert "Version: v1.10.1" in info["infotexts"][0]
    refs = await client.post(
        "/sdapi/v1/img2img", json={"prompt": "x", "init_images": [png((40, 40))]}
    )
    with Image.open(io.BytesIO(base64.b64decode(refs.json()["images"][0]))) as im:
        assert im.size == (512, 512)  # no size given: the default, whatever the reference
