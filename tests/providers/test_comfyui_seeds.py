"""ComfyUI seeds: drawn inside the mapped input's range, none where nothing takes one.

Issue 27 item 3: random seeds were drawn up to 2**48 while many seed inputs (ComfyUI's API
nodes, custom nodes) stop at 2**31-1 or 2**32-1, so every task without a seed got a 400;
and a seed was drawn and recorded on the image even when no seed input was mapped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbbatch import Params
from nbbatch.engine import ProviderConfig, Settings, load_settings, save_settings
from nbbatch.providers import ComfyUIProvider, GenerationRequest
from nbbatch.providers._comfyui import BUILTIN_TXT2IMG
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


async def test_a_saved_mapping_onto_several_inputs_sets_them_all_on_the_server(
    server: FakeComfyUI, tmp_path: Path
) -> None:
    """A graph making two pictures of one prompt (two samplers, two latents): a saved
    configuration maps the seed and the size onto both, and both get the same values;
    the seed is drawn within the smaller maximum of its inputs."""
    graph = copy.deepcopy(BUILTIN_TXT2IMG)
    graph["14"] = copy.deepcopy(graph["4"])
    graph["15"] = copy.deepcopy(graph["5"])
    graph["15"]["inputs"]["latent_image"] = ["14", 0]
    graph["16"] = {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["1", 2]}}
    graph["17"] = {"class_type": "SaveImage", "inputs": {"images": ["16", 0]}}
    graph["17"]["inputs"]["filename_prefix"] = "second"
    workflow = tmp_path / "two_api.json"
    workflow.write_text(json.dumps(graph))
    settings = Settings()
    settings.add(
        ProviderConfig(
            provider="comfyui",
            base_url=server.url,
            options={
                "workflow": str(workflow),
                "mapping": {
                    "prompt": "2.text",
                    "seed": ["5.seed", "15.seed"],
                    "width": ["4.width", "14.width"],
                    "height": ["4.height", "14.height"],
                },
            },
        )
    )
    path = save_settings(settings, tmp_path / "config.json")
    p = load_settings(path).get().build()
    assert isinstance(p, ComfyUIProvider)
    server.prompts.clear()
    server.seed_max["KSampler"] = 1000
    try:
        images = await p.generate(GenerationRequest("a fox", Params(size="96x64")))
    finally:
        await p.aclose()
        server.seed_max["KSampler"] = 0xFFFFFFFFFFFFFFFF
    sent = server.prompts[-1]["prompt"]
    assert sent["5"]["inputs"]["seed"] == sent["15"]["inputs"]["seed"] == images[0].seed
    assert 0 <= images[0].seed <= 1000
    for node in ("4", "14"):
        assert (sent[node]["inputs"]["width"], sent[node]["inputs"]["height"]) == (96, 64)
