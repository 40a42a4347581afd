"""ComfyUI provider end to end against FakeComfyUI (HTTP + WebSocket on one port)."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from nbbatch import Batch, Params, Task, TaskStatus, Workspace
from nbbatch.core._events import TaskProgress
from nbbatch.errors import (
    BadRequestError,
    ConfigError,
    MalformedResponseError,
    NotSupportedError,
    ServerError,
)
from nbbatch.providers import (
    ComfyUIProvider,
    GenerationRequest,
    InputImage,
    WorkflowMapping,
    detect_mapping,
)
from nbbatch.providers._comfyui import BUILTIN_TXT2IMG
from nbbatch.testing import FakeComfyUI, Fault
from tests.support import FAST, demo_png

#: A custom export with other node ids, a LoadImage and an extra preview output.
CUSTOM: dict[str, Any] = {
    "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
    "11": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["10", 1], "text": "old"}},
    "12": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["10", 1], "text": "old neg"}},
    "13": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
    "14": {"class_type": "VAEEncode", "inputs": {"pixels": ["13", 0], "vae": ["10", 2]}},
    "15": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["10", 0],
            "positive": ["11", 0],
            "negative": ["12", 0],
            "latent_image": ["14", 0],
            "seed": 1,
            "steps": 12,
            "cfg": 5.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.5,
        },
    },
    "16": {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["10", 2]}},
    "17": {"class_type": "SaveImage", "inputs": {"images": ["16", 0], "filename_prefix": "x"}},
    "18": {"class_type": "PreviewImage", "inputs": {"images": ["16", 0]}},
}


def png(text: str = "input", size: tuple[int, int] = (48, 40)) -> bytes:
    return demo_png(text, size)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as s:
        yield s


@pytest.fixture
def server(shared_server: FakeComfyUI) -> FakeComfyUI:
    s = shared_server
    s.clear_faults()
    s.wait_idle()  # an earlier test's prompt must not be what this one waits behind
    s.requests.clear()
    s.events.clear()
    s.prompts.clear()
    s.deleted.clear()
    s.interrupts.clear()
    s.step_delay, s.progress_steps, s.fail_class = 0.0, 4, None
    s.websocket, s.previews = True, False
    s.interrupt_ignores_prompt_id = False
    return s


@pytest.fixture
async def provider(server: FakeComfyUI) -> AsyncIterator[ComfyUIProvider]:
    p = ComfyUIProvider(base_url=server.url, poll_interval=0.01)
    p.fetch_attempts, p.fetch_retry_delay = 3, 0.001
    yield p
    await p.aclose()


# ---------------------------------------------------------------- workflow + mapping
def test_builtin_graph_mapping_is_detected() -> None:
    m = detect_mapping(BUILTIN_TXT2IMG)
    assert m == WorkflowMapping(
        prompt=("2", "text"),
        negative=("3", "text"),
        seed=("5", "seed"),
        width=("4", "width"),
        height=("4", "height"),
        batch_size=("4", "batch_size"),
        steps=("5", "steps"),
        cfg=("5", "cfg"),
        sampler=("5", "sampler_name"),
        denoise=("5", "denoise"),
        model=("1", "ckpt_name"),
    )


def test_detection_follows_the_sampler_links_not_node_order() -> None:
    graph = copy.deepcopy(CUSTOM)
    # swap which text node is positive: detection must follow the links
    graph["15"]["inputs"]["positive"], graph["15"]["inputs"]["negative"] = ["12", 0], ["11", 0]
    m = detect_mapping(graph)
    assert (m.prompt, m.negative, m.image) == (("12", "text"), ("11", "text"), ("13", "image"))
    assert m.width is None and m.batch_size is None  # no EmptyLatentImage here


def test_explicit_mapping_overrides_detection_and_is_checked() -> None:
    p = ComfyUIProvider(workflow=CUSTOM, mapping={"prompt": "12.text", "output": "17"})
    assert p.mapping.prompt == ("12", "text")
    assert p.mapping.seed == ("15", "seed")
    with pytest.raises(ConfigError, match=r"node 15 \(KSampler\) has no input 'sed'"):
        ComfyUIProvider(workflow=CUSTOM, mapping={"seed": "15.sed"})
    with pytest.raises(ConfigError, match="no node '99'"):
        ComfyUIProvider(workflow=CUSTOM, mapping={"prompt": ["99", "text"]})
    with pytest.raises(ConfigError, match="unknown mapping key"):
        ComfyUIProvider(workflow=CUSTOM, mapping={"positive": "11.text"})


def test_workflow_from_file_and_ui_format_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(CUSTOM))
    assert ComfyUIProvider(workflow=path).workflow == CUSTOM
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(ConfigError, match="Save \\(API Format\\)"):
        ComfyUIProvider(workflow=ui)
    with pytest.raises(ConfigError, match="not found"):
        ComfyUIProvider(workflow=tmp_path / "nope.json")


# ---------------------------------------------------------------- txt2img
async def test_txt2img_fills_the_graph_follows_the_socket_and_downloads_outputs(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    seen: list[float | None] = []
    params = Params(n=2, seed=77, steps=9, cfg_scale=4.5, size="768x512", negative_prompt="blurry")
    images = await provider.generate(
        GenerationRequest("a red fox", params), lambda f, _p: seen.append(f)
    )

    body = server.prompts[0]
    graph = body["prompt"]
    assert graph["2"]["inputs"]["text"] == "a red fox"
    assert graph["3"]["inputs"]["text"] == "blurry"
    assert graph["4"]["inputs"] == {"width": 768, "height": 512, "batch_size": 2}
    k = graph["5"]["inputs"]
    assert (k["seed"], k["steps"], k["cfg"]) == (77, 9, 4.5)
    # the run's events went to the socket with the prompt's client id
    assert {cid for cid, kind, _ in server.events if kind != "status"} == {body["client_id"]}
    assert len(images) == 2
    assert [im.seed for im in images] == [77, 77]
    assert [im.info["batch_index"] for im in images] == [0, 1]
    views = server.calls("/view")
    assert len(views) == 2 and "type=output" in views[0].query
    with Image.open(io.BytesIO(images[0].data)) as im:
        assert im.format == "PNG" and im.width > im.height
    assert seen[:4] == [0.25, 0.5, 0.75, 0.99] and seen[-1] == 1.0


async def test_socket_events_arrive_in_the_real_order(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    await provider.generate(GenerationRequest("a fox"))
    kinds = [kind for _, kind, _ in server.events]
    assert kinds[:3] == ["status", "execution_start", "execution_cached"]
    assert kinds[-3:] == ["execution_success", "executing", "status"]
    assert server.events[-2][2]["node"] is None
    first_progress = kinds.index("progress")
    assert kinds[first_progress - 1] == "executing"
    assert server.events[first_progress - 1][2]["node"] == "5"  # the KSampler
    assert kinds.index("executed") > kinds.index("progress")


async def test_each_task_without_seed_gets_a_fresh_random_seed(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    a = await provider.generate(GenerationRequest("a fox"))
    b = await provider.generate(GenerationRequest("a fox"))
    sent = [p["prompt"]["5"]["inputs"]["seed"] for p in server.prompts]
    assert sent[0] != sent[1]
    assert [a[0].seed, b[0].seed] == sent


async def test_extras_set_any_node_input(server: FakeComfyUI, provider: ComfyUIProvider) -> None:
    await provider.generate(GenerationRequest("a fox", Params(extras={"5.scheduler": "karras"})))
    assert server.prompts[0]["prompt"]["5"]["inputs"]["scheduler"] == "karras"
    with pytest.raises(ConfigError, match="names no node"):
        await provider.generate(GenerationRequest("a fox", Params(extras={"scheduler": "x"})))


# ---------------------------------------------------------------- img2img
async def test_builtin_img2img_uploads_the_reference_and_loads_it(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    source = png("source")
    images = await provider.generate(
        GenerationRequest("a fox, painted", Params(strength=0.4), [InputImage("s.png", source)])
    )
    upload = server.calls("/upload/image")[0]
    assert b'name="image"; filename="nbbatch-' in upload.body
    name = next(iter(server.uploads))
    assert server.uploads[name] == source
    graph = server.prompts[0]["prompt"]
    assert graph["4"] == {"class_type": "LoadImage", "inputs": {"image": name}}
    assert graph["8"]["class_type"] == "VAEEncode"
    assert graph["5"]["inputs"]["denoise"] == 0.4
    with Image.open(io.BytesIO(images[0].data)) as im:
        assert im.size == (48, 40)  # the input's size, as img2img keeps it


async def test_custom_workflow_with_mapped_output_node(server: FakeComfyUI) -> None:
    p = ComfyUIProvider(base_url=server.url, workflow=CUSTOM, mapping={"output": "17"})
    try:
        images = await p.generate(GenerationRequest("a fox", images=[InputImage("s", png())]))
    finally:
        await p.aclose()
    assert [im.info["node"] for im in images] == ["17"]  # not the PreviewImage of node 18


async def test_missing_mapping_is_refused_before_any_request(server: FakeComfyUI) -> None:
    graph = {k: v for k, v in CUSTOM.items() if k != "12"}
    graph["15"] = copy.deepcopy(CUSTOM["15"])
    graph["15"]["inputs"]["negative"] = ["11", 0]
    p = ComfyUIProvider(base_url=server.url, workflow=graph)
    try:
        with pytest.raises(NotSupportedError, match="negative prompt"):
            await p.generate(GenerationRequest("a fox", Params(negative_prompt="ugly")))
        with pytest.raises(NotSupportedError, match="n > 1"):
            await p.generate(GenerationRequest("a fox", Params(n=2)))
    finally:
        await p.aclose()
    assert server.requests == []


# ---------------------------------------------------------------- errors
async def test_node_errors_are_readable_and_not_retried(
    server: FakeComfyUI, provider: ComfyUIProvider, workspace: Workspace
) -> None:
    with pytest.raises(BadRequestError) as info:
        await provider.generate(GenerationRequest("a fox", Params(cfg_scale=250)))
    assert str(info.value) == (
        "comfyui: the workflow was rejected: Prompt outputs failed validation; "
        "node 5 (KSampler) input 'cfg': Value 250 bigger than max of 100.0"
    )
    server.requests.clear()
    batch = Batch.create(
        [Task("a fox", params=Params(model="nope.safetensors"))], workspace=workspace
    )
    await batch.run(provider, retry=FAST)
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED and task.attempts == 1
    assert "node 1 (CheckpointLoaderSimple) input 'ckpt_name': Value not in list" in (
        task.error or ""
    )
    assert len(server.calls("/prompt")) == 1


async def test_execution_error_fails_the_task_with_the_node_message(
    server: FakeComfyUI, provider: ComfyUIProvider, workspace: Workspace
) -> None:
    server.fail_class = "KSampler"
    batch = Batch.create(["a fox"], workspace=workspace)
    await batch.run(provider, retry=FAST)
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED
    assert task.attempts == 1
    assert task.error == (
        "comfyui: node 5 (KSampler) failed: torch.OutOfMemoryError: "
        "CUDA out of memory. Tried to allocate 2.00 GiB"
    )


async def test_execution_error_is_also_read_from_history_when_polling(
    server: FakeComfyUI,
) -> None:
    server.fail_class = "VAEDecode"
    p = ComfyUIProvider(base_url=server.url, websocket=False, poll_interval=0.01)
    try:
        with pytest.raises(ServerError, match=r"node 6 \(VAEDecode\) failed"):
            await p.generate(GenerationRequest("a fox"))
    finally:
        await p.aclose()


@pytest.mark.parametrize(
    "fault, path, attempts",
    [
        (Fault.status_code(500, times=2), "/prompt", 3),
        (Fault.status_code(429, headers={"retry-after": "0.01"}), "/prompt", 2),
        # after the prompt is queued, a passing failure is retried for the same prompt
        (Fault.truncate(), "/view", 1),
        (Fault.status_code(503), "/history/*", 1),
        (Fault.truncate(), "/history/*", 1),
        (Fault.status_code(503), "/upload/image", 2),
    ],
)
async def test_transient_faults_are_retried(
    server: FakeComfyUI,
    provider: ComfyUIProvider,
    workspace: Workspace,
    fault: Fault,
    path: str,
    attempts: int,
) -> None:
    ref = workspace.add_reference(png(), "ref.png")
    server.add_fault(fault, path=path)
    batch = Batch.create([Task("a fox", references=[ref])], workspace=workspace)
    await batch.run(provider, retry=FAST)
    assert batch.tasks[0].status is TaskStatus.SUCCEEDED
    assert batch.tasks[0].attempts == attempts
    assert len(server.calls("/upload/image")) == attempts
    assert len(server.prompts) == 1  # the graph was queued once
    # and that run was not cancelled (a failed POST /prompt's own id may be deleted)
    assert server.prompts[0]["prompt_id"] not in server.deleted


async def test_malformed_prompt_answer_is_not_retried(
    server: FakeComfyUI, provider: ComfyUIProvider, workspace: Workspace
) -> None:
    server.add_fault(Fault.malformed(b'{"number": 1}'), path="/prompt")
    with pytest.raises(MalformedResponseError, match="prompt_id"):
        await provider.generate(GenerationRequest("a fox"))


# ---------------------------------------------------------------- fallback, progress, cancel
async def test_without_websocket_the_provider_polls_history(server: FakeComfyUI) -> None:
    server.websocket = False
    server.step_delay = 0.01
    p = ComfyUIProvider(base_url=server.url, poll_interval=0.01)
    try:
        images = await p.generate(GenerationRequest("a fox"))
    finally:
        await p.aclose()
    assert images
    assert len(server.calls("/history/*")) >= 2  # empty first, then filled


async def test_binary_preview_frames_reach_the_progress_callback(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    server.previews = True
    previews: list[bytes] = []
    await provider.generate(
        GenerationRequest("a fox"), lambda _f, pv: previews.append(pv) if pv else None
    )
    assert len(previews) == 4
    assert previews[0][:2] == b"\xff\xd8"  # JPEG, after the 8-byte header


async def test_cancel_mid_generation_deletes_and_interrupts_the_prompt(
    server: FakeComfyUI, provider: ComfyUIProvider, workspace: Workspace
) -> None:
    server.step_delay, server.progress_steps = 0.05, 20
    batch = Batch.create(["a slow fox"], workspace=workspace)
    events: list[object] = []
    batch.subscribe(events.append)
    runner = batch.start(provider)
    while not any(isinstance(e, TaskProgress) and e.progress for e in events):
        await asyncio.sleep(0.01)
    runner.cancel(batch.tasks[0].id)
    await runner.wait()

    assert batch.tasks[0].status is TaskStatus.CANCELLED
    assert len(server.deleted) == 1
    assert server.interrupts == server.deleted  # both name the same prompt id
    for _ in range(100):
        if server.deleted[0] in server.history:
            break
        await asyncio.sleep(0.01)
    assert server.history[server.deleted[0]]["status"]["status_str"] == "error"


async def test_batch_runs_through_the_runner_with_progress(
    server: FakeComfyUI, provider: ComfyUIProvider, workspace: Workspace
) -> None:
    ref = workspace.add_reference(png(), "ref.png")
    tasks = [Task(f"fox {i}", params=Params(seed=i)) for i in range(4)]
    tasks.append(Task("fox from photo", references=[ref], params=Params(strength=0.3)))
    batch = Batch.create(tasks, workspace=workspace)
    progress: list[float] = []
    batch.subscribe(
        lambda e: (
            progress.append(e.progress)
            if isinstance(e, TaskProgress) and e.progress is not None
            else None
        )
    )
    await batch.run(provider, concurrency=3)

    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 5
    assert [t.images[0].seed for t in batch.tasks[:4]] == [0, 1, 2, 3]
    assert len(server.prompts) == 5
    # the first report of each task and its completion always reach subscribers; the
    # ones in between are thinned to at most 4 a second per task
    assert 0.25 in progress and 1.0 in progress


async def test_model_default_fills_the_checkpoint_of_both_builtin_graphs(
    server: FakeComfyUI,
) -> None:
    p = ComfyUIProvider(base_url=server.url, model="sd_xl_base_1.0.safetensors")
    try:
        await p.generate(GenerationRequest("a fox"))
        await p.generate(GenerationRequest("a fox", images=[InputImage("s", png())]))
        await p.generate(GenerationRequest("a fox", Params(model="model.safetensors")))
    finally:
        await p.aclose()
    sent = [body["prompt"]["1"]["inputs"]["ckpt_name"] for body in server.prompts]
    assert sent == [
        "sd_xl_base_1.0.safetensors",
        "sd_xl_base_1.0.safetensors",
        "model.safetensors",
    ]


def test_provider_config_builds_the_comfyui_and_webui_providers(server: FakeComfyUI) -> None:
    from nbbatch.engine._settings import ProviderConfig

    comfy = ProviderConfig("comfyui", base_url=server.url, model="model.safetensors").build()
    assert isinstance(comfy, ComfyUIProvider) and comfy.model == "model.safetensors"
    webui = ProviderConfig("a1111", base_url=server.url, model="v1-5", concurrency=2).build()
    assert webui.max_concurrency == 2


async def test_cancel_while_queueing_deletes_the_id_the_client_chose(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    server.add_fault(Fault.delay(0.3), path="/prompt")
    job = asyncio.ensure_future(provider.generate(GenerationRequest("a fox")))
    while not server.calls("/prompt"):
        await asyncio.sleep(0.005)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    sent = json.loads(server.calls("/prompt")[0].body)
    assert server.deleted == [sent["prompt_id"]]
    assert server.interrupts == []  # it was not running: nothing to interrupt
    # the delayed POST still reaches the fake after the cancel: let it queue, so that
    # the next test's fixture waits for it to end instead of running behind it
    for _ in range(500):
        if server.prompts:
            break
        await asyncio.sleep(0.01)


async def test_check_probes_system_stats(server: FakeComfyUI, provider: ComfyUIProvider) -> None:
    await provider.check()
    assert [r.path for r in server.requests] == ["/system_stats"]


# ---------------------------------------------------------------- cancel / give up safely
def _prompt_id(server: FakeComfyUI, index: int) -> str:
    return str(json.loads(server.calls("/prompt", "POST")[index].body)["prompt_id"])


async def test_history_that_keeps_failing_dequeues_and_interrupts_the_prompt(
    server: FakeComfyUI,
) -> None:
    # The prompt runs for up to 10 s unless interrupted; the provider's history fetches
    # only start once the fake reports it running, so giving up always finds it running
    # (no race between the fake's worker and the provider's retries on a busy machine).
    server.step_delay, server.progress_steps = 0.05, 200
    server.add_fault(Fault.status_code(503, times=3), path="/history/*")
    p = ComfyUIProvider(base_url=server.url, poll_interval=0.01, websocket=False)
    p.fetch_attempts, p.fetch_retry_delay = 3, 0.0
    fetch = p._fetch

    async def fetch_once_running(call: Any) -> Any:
        for _ in range(1000):  # bounded: at most ~10 s
            if server._running is not None:
                break
            await asyncio.sleep(0.01)
        return await fetch(call)

    p._fetch = fetch_once_running  # type: ignore[method-assign]
    try:
        with pytest.raises(ServerError) as info:
            await p.generate(GenerationRequest("a fox"))
    finally:
        await p.aclose()
    assert info.value.retryable and info.value.status_code == 503
    assert len(server.calls("/prompt", "POST")) == 1
    pid = _prompt_id(server, 0)
    assert server.deleted == [pid]
    assert server.interrupts == [pid]  # /queue listed it as running


async def test_cancelling_a_pending_prompt_never_interrupts_the_running_one(
    server: FakeComfyUI, provider: ComfyUIProvider
) -> None:
    # an older server: /interrupt stops whatever runs, whatever prompt_id it names
    server.interrupt_ignores_prompt_id = True
    server.step_delay, server.progress_steps = 0.02, 8
    # the first prompt runs until released: the second is still in the queue when it is
    # deleted, however slowly this machine gets there (8 steps took less than the delete
    # on a loaded CI machine, and the second prompt was running by then)
    server.hold()
    started = asyncio.Event()
    first = asyncio.ensure_future(
        provider.generate(GenerationRequest("first"), lambda f, _: started.set())
    )
    await asyncio.wait_for(started.wait(), 5)
    server.prompt_gate = gate = threading.Event()
    second = asyncio.ensure_future(provider.generate(GenerationRequest("second")))
    while len(server.calls("/prompt", "POST")) < 2:
        await asyncio.sleep(0.005)
    # cancelled while its POST /prompt is still in flight: the provider waits for the
    # answer before deleting (a delete that reached the server first found nothing, and
    # the prompt then ran for nobody; the test used to sleep 20 ms here instead)
    second.cancel()
    # time for a provider that does not wait to send its too-early delete; the outcome
    # does not depend on this pause
    await asyncio.sleep(0.05)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert server.deleted == [_prompt_id(server, 1)]
    assert server.removed == [_prompt_id(server, 1)]  # it was in the queue when deleted
    assert server.interrupts == []
    server.release()
    images = await first  # ran to the end, not cut short
    assert len(images) == 1
    assert server.history[_prompt_id(server, 0)]["status"]["status_str"] == "success"
