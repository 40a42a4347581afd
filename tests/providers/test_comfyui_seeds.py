"""ComfyUI seeds: drawn inside the mapped input's range, none where nothing takes one.

Issue 27 item 3: random seeds were drawn up to 2**48 while many seed inputs (ComfyUI's API
nodes, custom nodes) stop at 2**31-1 or 2**32-1, so every task without a seed got a 400;
and a seed was drawn and recorded on the image even when no seed input was mapped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbbatch import Params
from nbbatch.providers import ComfyUIProvider, GenerationRequest
from nbbatch.testing import FakeComfyUI


@pytest.fixture(scope="module")
def server() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(cache=False) as s:
        yield s


async def test_drawn_seeds_stay_within_the_seed_inputs_maximum(server: FakeComfyUI) -> None:
    server.seed_max["KSampler"] = 2**31 - 1
    server.requests.clear()
    server.prompts.clear()
    p = ComfyUIProvider(base_url=server.url)
    p._rng.seed(7)
    try:
        seeds = [(await p.generate(GenerationRequest("a fox")))[0].seed for _ in range(8)]
        # an explicit seed is sent as given (the server judges it), and costs no lookup
        await p.generate(GenerationRequest("a fox", Params(seed=12)))
    finally:
        await p.aclose()
        server.seed_max["KSampler"] = 0xFFFFFFFFFFFFFFFF
    sent = [body["prompt"]["5"]["inputs"]["seed"] for body in server.prompts]
    assert sent == [*seeds, 12]
    assert all(isinstance(s, int) and 0 <= s <= 2**31 - 1 for s in seeds)
    assert len(set(seeds)) == 8
    assert len(server.calls("/object_info/KSampler")) == 1  # read once per server


async def test_no_seed_is_drawn_or_recorded_where_no_seed_input_is_mapped(
    server: FakeComfyUI,
) -> None:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "3": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}},
    }
    server.requests.clear()
    p = ComfyUIProvider(base_url=server.url, workflow=graph, mapping={"prompt": "2.text"})
    try:
        assert p.mapping.seed is None
        images = await p.generate(GenerationRequest("a fox"))
    finally:
        await p.aclose()
    assert [im.seed for im in images] == [None]  # nothing received a seed: none claimed
    assert server.calls("/object_info*") == []
