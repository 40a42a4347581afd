"""The Settings form for ComfyUI: a workflow, its detected mapping, editable, saved once.

Issue 27: the studio's Settings had no mapping for ComfyUI, so a studio-only user could
not run a workflow whose prompt the detection misses. Now the form reads the workflow
(built-in, or an API-format file), offers each slot's node and input from it (inputs
linked to another node are not offered, and refused on Save), and saves the changed
slots in the engine's one Settings, from which "Run all" builds the provider.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbbatch.engine import load_settings
from nbbatch.providers import ComfyUIProvider
from nbbatch.widgets import SettingsPanel
from tests.widgets.page import PanelPage

#: a workflow whose prompt the detection cannot find: a custom text node feeds the encoder
WORKFLOW = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ["9", 0]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
    "4": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    },
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "seed": 1,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        },
    },
    "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
    "9": {
        "class_type": "MyPromptBox",
        "inputs": {"words": "a fox"},
        "_meta": {"title": "<b>Words</b>"},
    },
}


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "flow_api.json"
    path.write_text(json.dumps(WORKFLOW))
    return path


def test_the_form_shows_the_workflows_inputs_and_the_detected_mapping(
    cfg: Path, workflow: Path
) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    built_in = page.ok("workflow", workflow="")
    assert built_in["detected"]["prompt"] == "2.text"
    assert built_in["detected"]["seed"] == "5.seed"
    form = page.ok("workflow", workflow=str(workflow))
    assert form["detected"]["prompt"] is None  # missed: the person maps it
    assert form["detected"]["negative"] == "3.text"
    assert form["detected"]["width"] == "4.width" and form["detected"]["steps"] == "5.steps"
    nodes = {n["id"]: n for n in form["nodes"]}
    assert nodes["9"]["inputs"] == ["words"] and nodes["9"]["title"] == "<b>Words</b>"
    assert "text" not in nodes.get("2", {"inputs": []})["inputs"]  # linked: not offered


def test_a_chosen_mapping_is_saved_in_the_settings_and_runs(cfg: Path, workflow: Path) -> None:
    panel = SettingsPanel(config_dir=cfg)
    page = PanelPage(panel)
    values = {
        "provider": "comfyui",
        "options": {"workflow": str(workflow)},
        # the detected slots come back as they were: only the changed one is kept
        "mapping": {"prompt": "9.words", "negative": "3.text", "seed": "5.seed"},
    }
    page.ok("save", values=values)
    cfg_saved = load_settings(cfg / "config.json").get()
    assert cfg_saved.options["mapping"] == {"prompt": "9.words"}
    provider = cfg_saved.build()
    assert isinstance(provider, ComfyUIProvider)
    assert provider.mapping.prompt == ("9", "words")
    # a new panel (a new kernel) shows what was saved
    again = SettingsPanel(config_dir=cfg)
    assert again.values["mapping"] == {"prompt": "9.words"}
    assert again.values["options"] == {"workflow": str(workflow)}


def test_a_linked_input_or_a_bad_workflow_is_refused_in_words(
    cfg: Path, workflow: Path, tmp_path: Path
) -> None:
    page = PanelPage(SettingsPanel(config_dir=cfg))
    linked = {"provider": "comfyui", "options": {"workflow": str(workflow)}}
    said = page.refused("save", values={**linked, "mapping": {"prompt": "2.text"}})
    assert said.startswith("The mapping does not fit the workflow")
    assert "linked to the output of node 9" in said
    said = page.refused("save", values={**linked, "mapping": {"seed": "42.seed"}})
    assert "no node '42'" in said
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    assert "Save (API Format)" in page.refused("workflow", workflow=str(ui))
    assert "not found" in page.refused("workflow", workflow=str(tmp_path / "none.json"))
    assert not (cfg / "config.json").exists()  # nothing refused was saved
