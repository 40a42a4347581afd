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

from nbbatch.engine import ProviderConfig, Settings, load_settings, save_settings
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


def test_a_slot_set_to_not_mapped_is_saved_unmapped_and_stays_so(cfg: Path, workflow: Path) -> None:
    """Before, "— not mapped" on a detected slot was dropped on Save and detection put
    the input back: a slot could not be unmapped from the form."""
    page = PanelPage(SettingsPanel(config_dir=cfg))
    values = {
        "provider": "comfyui",
        "options": {"workflow": str(workflow)},
        "mapping": {"prompt": "9.words", "negative": "", "seed": "5.seed"},
    }
    page.ok("save", values=values)
    saved = load_settings(cfg / "config.json").get()
    assert saved.options["mapping"] == {"prompt": "9.words", "negative": None}
    provider = saved.build()
    assert isinstance(provider, ComfyUIProvider)
    assert provider.mapping.negative is None and provider.mapping.seed == ("5", "seed")
    again = SettingsPanel(config_dir=cfg)  # a new kernel shows it unmapped, not detected
    assert again.values["mapping"] == {"prompt": "9.words", "negative": None}
    # saved again without the page's mapping (the box not shown): still unmapped
    PanelPage(again).ok("save", values={"provider": "comfyui"})
    assert load_settings(cfg / "config.json").get().options["mapping"]["negative"] is None
    # and mapped again when chosen
    PanelPage(again).ok("save", values={"provider": "comfyui", "mapping": {"negative": "3.text"}})
    assert "negative" not in load_settings(cfg / "config.json").get().options["mapping"]


def test_a_workflow_given_as_json_is_read_and_kept_beside_the_settings(cfg: Path) -> None:
    """ComfyUI's "Export (API)" downloads to the browser's machine: the form takes the
    JSON itself (pasted, or opened in the browser) and keeps it as a file."""
    page = PanelPage(SettingsPanel(config_dir=cfg))
    text = json.dumps(WORKFLOW)
    form = page.ok("workflow", workflow="", workflow_json=text)
    assert form["detected"]["negative"] == "3.text" and form["detected"]["prompt"] is None
    values = {
        "provider": "comfyui",
        "options": {"workflow": ""},
        "workflow_json": text,
        "mapping": {"prompt": "9.words"},
    }
    page.ok("save", values=values)
    saved = load_settings(cfg / "config.json").get()
    kept = Path(saved.options["workflow"])
    assert kept.parent == cfg / "comfyui-workflows" and json.loads(kept.read_text()) == WORKFLOW
    provider = saved.build()
    assert isinstance(provider, ComfyUIProvider) and provider.mapping.prompt == ("9", "words")
    page.ok("save", values=values)  # the same workflow again: the same one file
    assert list(kept.parent.iterdir()) == [kept]
    ui = json.dumps({"nodes": [], "links": []})
    assert "Save (API Format)" in page.refused("workflow", workflow="", workflow_json=ui)
    assert "not JSON" in page.refused("workflow", workflow="", workflow_json="{nodes")


def test_inputs_set_together_are_shown_and_a_saved_list_is_kept(cfg: Path, tmp_path: Path) -> None:
    graph = json.loads(json.dumps(WORKFLOW))
    graph["9"]["inputs"]["words"] = "a fox"  # the prompt is the custom node's words
    graph["4"]["inputs"].update(width=["20", 0], height=["20", 1])
    graph["20"] = {"class_type": "ResolutionSelector", "inputs": {"megapixels": 1.0}}
    graph["21"] = {
        "class_type": "ModelSamplingFlux",
        "inputs": {"model": ["1", 0], "width": ["20", 0], "height": ["20", 1]},
    }
    path = tmp_path / "shared_api.json"
    path.write_text(json.dumps(graph))
    page = PanelPage(SettingsPanel(config_dir=cfg))
    form = page.ok("workflow", workflow=str(path))
    assert form["detected"]["width"] == "4.width"
    assert form["also"] == {"width": ["21.width"], "height": ["21.height"]}
    # a mapping saved in code onto several inputs (and an output) survives the form
    settings = Settings()
    mapping = {"prompt": "9.words", "seed": ["5.seed", "3.text"], "output": "7"}
    settings.add(
        ProviderConfig(provider="comfyui", options={"workflow": str(path), "mapping": mapping})
    )
    save_settings(settings, cfg / "config.json")
    panel = SettingsPanel(config_dir=cfg)
    assert panel.values["mapping"]["seed"] == ["5.seed", "3.text"]
    PanelPage(panel).ok(
        "save",
        values={"provider": "comfyui", "mapping": {"prompt": "9.words", "seed": "5.seed"}},
    )
    assert load_settings(cfg / "config.json").get().options["mapping"] == mapping
