"""Mapping detection for the workflows ComfyUI users run today (API-format graphs).

Issue 27 item 4: the prompt was only found when a ``CLIPTextEncode`` fed the one
``KSampler`` directly. Missed: conditioning through ``FluxGuidance`` /
``ControlNetApplyAdvanced``; ``SamplerCustomAdvanced`` + ``RandomNoise``; two samplers;
other text encoders; size from ``EmptySD3LatentImage`` and the other
``Empty*LatentImage`` nodes. Item 6: a mapping onto a linked input was accepted and
failed only at execution. The shapes below are those of ComfyUI's own templates.
"""

from __future__ import annotations

from typing import Any

import pytest

from nbbatch import Params
from nbbatch.errors import ConfigError
from nbbatch.providers import ComfyUIProvider, GenerationRequest, WorkflowMapping, detect_mapping


def _flux_custom_advanced() -> dict[str, Any]:
    """Flux dev as in the templates: SamplerCustomAdvanced, guider, RandomNoise."""
    return {
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["11", 0], "text": "a cat"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "f"}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5", "clip_name2": "l"}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["25", 0],
                "guider": ["22", 0],
                "sampler": ["16", 0],
                "sigmas": ["17", 0],
                "latent_image": ["27", 0],
            },
        },
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["12", 0], "scheduler": "simple", "steps": 20, "denoise": 1.0},
        },
        "22": {
            "class_type": "BasicGuider",
            "inputs": {"model": ["12", 0], "conditioning": ["26", 0]},
        },
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
        "26": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["6", 0], "guidance": 3.5}},
        "27": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": ["30", 0], "height": 768, "batch_size": 1},
        },
        "30": {"class_type": "PrimitiveInt", "inputs": {"value": 1024}},
    }


def test_flux_sampler_custom_advanced_through_guider_noise_and_scheduler() -> None:
    m = detect_mapping(_flux_custom_advanced())
    assert m.prompt == ("6", "text")  # through BasicGuider and FluxGuidance
    assert m.seed == ("25", "noise_seed")
    assert (m.steps, m.denoise, m.sampler) == (
        ("17", "steps"),
        ("17", "denoise"),
        ("16", "sampler_name"),
    )
    assert (m.width, m.height, m.batch_size) == (
        ("30", "value"),
        ("27", "height"),
        ("27", "batch_size"),
    )
    assert m.negative is None and m.cfg is None


def test_controlnet_apply_advanced_passes_each_side_through() -> None:
    graph: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "pos"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "neg"}},
        "4": {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {
                "positive": ["2", 0],
                "negative": ["3", 0],
                "control_net": ["9", 0],
                "image": ["10", 0],
                "strength": 0.7,
            },
        },
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["4", 0],
                "negative": ["4", 1],
                "latent_image": ["6", 0],
                "seed": 1,
                "steps": 20,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
        },
        "9": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny"}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "canny.png"}},
    }
    m = detect_mapping(graph)
    assert (m.prompt, m.negative) == (("2", "text"), ("3", "text"))
    assert (m.width, m.seed, m.image) == (("6", "width"), ("5", "seed"), ("10", "image"))


def test_other_encoders_and_a_zeroed_negative() -> None:
    # Qwen image edit: TextEncodeQwenImageEdit (input "prompt"), the negative made by
    # ConditioningZeroOut from the positive (no negative text of its own)
    graph: dict[str, Any] = {
        "1": {
            "class_type": "TextEncodeQwenImageEdit",
            "inputs": {"clip": ["7", 0], "prompt": "x", "vae": ["8", 0], "image": ["9", 0]},
        },
        "2": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["1", 0]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["6", 0],
                "positive": ["1", 0],
                "negative": ["2", 0],
                "latent_image": ["4", 0],
                "seed": 5,
                "steps": 4,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["9", 0], "vae": ["8", 0]}},
        "9": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    }
    m = detect_mapping(graph)
    assert m.prompt == ("1", "prompt") and m.negative is None
    assert m.image == ("9", "image") and m.width is None


def test_two_samplers_the_base_one_starts_the_picture() -> None:
    # SDXL base + refiner: the refiner's latent comes from the base sampler
    def sampler(positive: str, negative: str, latent: str) -> dict[str, Any]:
        return {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": ["1", 0],
                "positive": [positive, 0],
                "negative": [negative, 0],
                "latent_image": [latent, 0],
                "add_noise": "enable",
                "noise_seed": 7,
                "steps": 25,
                "cfg": 8.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "start_at_step": 0,
                "end_at_step": 20,
                "return_with_leftover_noise": "enable",
            },
        }

    graph: dict[str, Any] = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
        },
        "11": sampler("15", "16", "10"),  # refiner, listed first
        "10": sampler("6", "7", "5"),  # base
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "base pos"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "base neg"}},
        "15": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "ref pos"}},
        "16": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "ref neg"}},
    }
    m = detect_mapping(graph)
    assert (m.prompt, m.negative, m.seed) == (("6", "text"), ("7", "text"), ("10", "noise_seed"))
    assert m.width == ("5", "width") and m.model == ("1", "ckpt_name")


def test_a_node_titled_prompt_marks_the_slot() -> None:
    graph = _flux_custom_advanced()
    graph["40"] = {
        "class_type": "PrimitiveStringMultiline",
        "inputs": {"value": "hi"},
        "_meta": {"title": "Prompt"},
    }
    graph["6"]["inputs"]["text"] = ["40", 0]
    graph["41"] = {"class_type": "PrimitiveInt", "inputs": {"value": 3}, "_meta": {"title": "seed"}}
    m = detect_mapping(graph)
    assert m.prompt == ("40", "value") and m.seed == ("41", "value")


def test_a_mapping_onto_a_linked_input_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match=r"linked to the output of node 8 \(VAEDecode\)"):
        ComfyUIProvider(workflow=_flux_custom_advanced(), mapping={"prompt": "9.images"})
    with pytest.raises(ConfigError, match="linked"):
        WorkflowMapping.from_dict({"width": "27.width"}).check(_flux_custom_advanced())


def test_the_prompt_primitive_is_found_behind_a_preview_and_a_switch() -> None:
    # Krea 2 / Ernie templates: the person's text, or an LLM's rewrite of it, chosen by a
    # ComfySwitchNode and shown by PreviewAny on its way to the encoder
    graph = _flux_custom_advanced()
    graph["40"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a cat"}}
    graph["41"] = {"class_type": "TextGenerate", "inputs": {"prompt": ["40", 0], "clip": ["11", 0]}}
    graph["42"] = {
        "class_type": "ComfySwitchNode",
        "inputs": {"switch": False, "on_false": ["40", 0], "on_true": ["41", 0]},
    }
    graph["43"] = {"class_type": "PreviewAny", "inputs": {"source": ["42", 0]}}
    graph["6"]["inputs"]["text"] = ["43", 0]
    assert detect_mapping(graph).prompt == ("40", "value")


def test_one_encoder_making_both_sides_maps_its_negative_prompt() -> None:
    graph = _flux_custom_advanced()
    graph["6"] = {
        "class_type": "TextEncodeQwenImage21",
        "inputs": {"clip": ["11", 0], "prompt": "a cat", "negative_prompt": "", "resolution": 1024},
    }
    graph["22"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": ["12", 0], "positive": ["6", 0], "negative": ["6", 1], "cfg": 4.0},
    }
    m = detect_mapping(graph)
    assert (m.prompt, m.negative, m.cfg) == (
        ("6", "prompt"),
        ("6", "negative_prompt"),
        ("22", "cfg"),
    )


def _sized_by_selector(*, shared: bool = False) -> dict[str, Any]:
    """Qwen/Z-Image templates: a ResolutionSelector computes the latent's size."""
    graph = _flux_custom_advanced()
    graph["27"]["inputs"].update(width=["31", 0], height=["31", 1])
    graph["31"] = {
        "class_type": "ResolutionSelector",
        "inputs": {"aspect_ratio": "1:1 (Square)", "megapixels": 1.0, "multiple": 16},
    }
    if shared:  # Flux 2: the scheduler takes the same numbers
        graph["17"]["inputs"].update(width=["31", 0], height=["31", 1])
    return graph


def test_a_size_computed_for_the_latent_alone_is_replaced_by_the_tasks_size() -> None:
    m = detect_mapping(_sized_by_selector())
    assert (m.width, m.height) == (("27", "width"), ("27", "height"))
    assert m.replaces == {"width", "height"}
    p = ComfyUIProvider(workflow=_sized_by_selector())  # the check takes these links
    graph, _ = p.build_graph(GenerationRequest("a fox", Params(size="768x512", seed=1)))
    assert graph["27"]["inputs"]["width"] == 768 and graph["27"]["inputs"]["height"] == 512
    # no size asked: the workflow's own selector decides, as it would in ComfyUI
    graph, _ = p.build_graph(GenerationRequest("a fox", Params(seed=1)))
    assert graph["27"]["inputs"]["width"] == ["31", 0]
    # a person's own mapping onto a linked input is still refused
    with pytest.raises(ConfigError, match="linked"):
        WorkflowMapping.from_dict({"width": "27.width"}).check(_sized_by_selector())


def test_a_size_other_nodes_also_use_sets_all_of_them_together() -> None:
    """16 templates got no size: their computed size fed the latent and a scheduler (or
    ModelSamplingFlux, a second latent, a bounding-box canvas). The slot now holds every
    input fed by it, set together; a task without a size keeps the workflow's links."""
    m = detect_mapping(_sized_by_selector(shared=True))
    assert m.targets("width") == (("27", "width"), ("17", "width"))
    assert m.targets("height") == (("27", "height"), ("17", "height"))
    assert (m.width, m.height) == (("27", "width"), ("27", "height"))
    assert m.replaces == {"width", "height"}
    p = ComfyUIProvider(workflow=_sized_by_selector(shared=True))
    graph, _ = p.build_graph(GenerationRequest("a fox", Params(size="768x512", seed=1)))
    for node in ("27", "17"):
        assert graph[node]["inputs"]["width"] == 768
        assert graph[node]["inputs"]["height"] == 512
    graph, _ = p.build_graph(GenerationRequest("a fox", Params(seed=1)))
    assert graph["17"]["inputs"]["width"] == ["31", 0]


def test_a_size_that_also_feeds_something_else_is_not_cut_out_of_the_graph() -> None:
    graph = _sized_by_selector(shared=True)
    # a node using the width for another meaning (a text built from it, an upscale)
    graph["40"] = {"class_type": "StringConcat", "inputs": {"string_a": ["31", 0]}}
    m = detect_mapping(graph)
    assert m.width is None and m.height is None and m.replaces == frozenset()
    with pytest.raises(ConfigError, match="no input mapped for a size"):
        ComfyUIProvider(workflow=graph).validate(GenerationRequest("a fox", Params(size="768x512")))


def test_a_square_size_fed_by_one_output_gives_each_input_its_own_value() -> None:
    graph = _sized_by_selector(shared=True)
    for node in ("27", "17"):
        graph[node]["inputs"].update(width=["31", 0], height=["31", 0])
    p = ComfyUIProvider(workflow=graph)
    built, _ = p.build_graph(GenerationRequest("a fox", Params(size="768x512", seed=1)))
    assert [built["17"]["inputs"][k] for k in ("width", "height")] == [768, 512]
    assert [built["27"]["inputs"][k] for k in ("width", "height")] == [768, 512]


def test_mapping_dicts_take_several_inputs_none_and_the_old_single_input_forms() -> None:
    m = WorkflowMapping.from_dict(
        {
            "prompt": "6.text",  # the old forms still load
            "steps": ["17", "steps"],
            "width": ["27.width", "17.width"],  # several, set together
            "height": [["27", "height"], ["17", "height"]],
            "cfg": "98:31.values.a",  # node ids hold no dot; an input name may
            "negative": None,  # not mapped, even where detected
        }
    )
    assert m.prompt == ("6", "text") and m.steps == ("17", "steps")
    assert m.targets("width") == (("27", "width"), ("17", "width"))
    assert m.targets("height") == (("27", "height"), ("17", "height"))
    assert m.cfg == ("98:31", "values.a")
    assert m.negative is None and m.unmapped == {"negative"}
    assert WorkflowMapping.from_dict(m.to_dict()) == m
    assert m.to_dict()["width"] == ["27.width", "17.width"]
    assert m.to_dict()["negative"] is None
    with pytest.raises(ConfigError, match="a list of those"):
        WorkflowMapping.from_dict({"width": ["27.width", 5]})


def test_a_slot_left_unmapped_on_purpose_stays_unmapped_over_detection() -> None:
    p = ComfyUIProvider(mapping={"negative": None, "seed": None})
    assert p.mapping.negative is None and p.mapping.seed is None
    assert p.mapping.prompt == ("2", "text")  # the rest is still detected
    graph, seed = p.build_graph(GenerationRequest("a fox"))
    assert seed is None and graph["5"]["inputs"]["seed"] == 0  # the workflow's own
    with pytest.raises(ConfigError, match="no input mapped for a negative prompt"):
        p.validate(GenerationRequest("a fox", Params(negative_prompt="blurry")))
    # mapped again by a later override
    again = p.mapping.merged(WorkflowMapping.from_dict({"negative": "3.text"}))
    assert again.negative == ("3", "text") and again.unmapped == {"seed"}


def test_several_mapped_inputs_are_checked_each() -> None:
    bad = WorkflowMapping.from_dict({"height": ["27.height", "17.height"]})
    with pytest.raises(ConfigError, match=r"node 17 \(BasicScheduler\) has no input .height."):
        bad.check(_flux_custom_advanced())
