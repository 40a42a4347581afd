"""ComfyUI outputs and refusals: videos, the server's cache, error texts, a missing image.

Issue 27 item 6: a video output was refused as "unknown data is not an accepted image
format"; the 400 text ended in " - width" and the missing-node text dropped the node id;
a task without a reference silently ran on the workflow's own LoadImage default. And the
real server answers an identical graph at once from its cache with the same files.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from nbbatch import Params
from nbbatch.errors import BadRequestError, NotSupportedError
from nbbatch.providers import ComfyUIProvider, GenerationRequest
from nbbatch.providers._comfyui import BUILTIN_TXT2IMG
from nbbatch.testing import FakeComfyUI


@pytest.fixture(scope="module")
def server() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as s:
        yield s


async def _run(server: FakeComfyUI, request: GenerationRequest, **kwargs: Any) -> Any:
    p = ComfyUIProvider(base_url=server.url, **kwargs)
    try:
        return await p.generate(request)
    finally:
        await p.aclose()


async def test_a_video_output_is_refused_saying_it_is_a_video(server: FakeComfyUI) -> None:
    graph = copy.deepcopy(BUILTIN_TXT2IMG)
    graph["7"] = {"class_type": "CreateVideo", "inputs": {"images": ["6", 0], "fps": 24}}
    graph["8"] = {"class_type": "SaveVideo", "inputs": {"video": ["7", 0], "filename_prefix": "v"}}
    with pytest.raises(BadRequestError, match=r"output is a video \(v_\d+_\.mp4\)") as info:
        await _run(server, GenerationRequest("a fox"), workflow=graph)
    assert "SaveImage" in str(info.value) and not info.value.retryable


async def test_an_identical_graph_is_answered_from_the_servers_cache(server: FakeComfyUI) -> None:
    # a duplicate task with a fixed seed (or a retry) sends the same graph again: the
    # server answers from its cache with the same files, which nbbatch keeps (the same
    # inputs and seed make the same picture) and marks as cached
    request = GenerationRequest("a cached fox", Params(seed=5))
    first = await _run(server, request)
    cached_before = len(server.cached_prompts)
    second = await _run(server, request)
    assert len(server.cached_prompts) == cached_before + 1
    assert second[0].data == first[0].data and second[0].seed == 5
    assert second[0].info["filename"] == first[0].info["filename"]
    assert second[0].info.get("cached") is True and "cached" not in first[0].info


async def test_rejection_texts_keep_the_node_id_and_drop_repeated_input_names(
    server: FakeComfyUI,
) -> None:
    with pytest.raises(BadRequestError) as info:
        await _run(server, GenerationRequest("a fox", Params(size="8x512")))
    assert str(info.value).endswith(
        "node 4 (EmptyLatentImage) input 'width': Value 8 smaller than min of 16"
    )
    graph = copy.deepcopy(BUILTIN_TXT2IMG)
    graph["50"] = {"class_type": "MyCustomUpscaler", "inputs": {}}
    with pytest.raises(BadRequestError) as info:
        await _run(server, GenerationRequest("a fox"), workflow=graph)
    assert "Node 'MyCustomUpscaler' not found" in str(info.value)
    assert "Node ID '#50'" in str(info.value)


async def test_a_task_without_a_reference_does_not_use_the_workflows_own_image(
    server: FakeComfyUI,
) -> None:
    graph = copy.deepcopy(BUILTIN_TXT2IMG)
    graph["4"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    graph["8"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}}
    graph["5"]["inputs"]["latent_image"] = ["8", 0]
    server.requests.clear()
    with pytest.raises(NotSupportedError, match=r"loads an input image \(node 4, LoadImage\)"):
        await _run(server, GenerationRequest("a fox"), workflow=graph)
    assert server.requests == []


def test_an_unmapped_size_is_refused_with_a_size_mapping_example() -> None:
    # before, every refusal suggested a 'negative' mapping, whatever was missing
    graph = copy.deepcopy(BUILTIN_TXT2IMG)
    graph["4"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    graph["5"]["inputs"]["latent_image"] = ["4", 0]
    p = ComfyUIProvider(workflow=graph)
    with pytest.raises(NotSupportedError) as info:
        p.validate(GenerationRequest("a fox", Params(size="512x512")))
    assert "no input mapped for a size" in str(info.value)
    assert "mapping={'width': '5.width', 'height': '5.height'}" in str(info.value)
    assert "negative" not in str(info.value)
