"""How many of ComfyUI's own templates the automatic mapping understands.

Issue 27 item 4: against the templates that ship with ComfyUI (the
``comfyui-workflow-templates`` package, whose JSON is in ``comfyui-workflow-templates-json``),
converted from UI to API format, the prompt was found in 17 of 61 local image templates.
This test installs the JSON package (no media bundles) into a temporary folder when it is
not installed, converts every local (open-source, non-API) template of the "Image"
category and prints ``RESULT comfy_templates_prompt_found N/M``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbbatch.providers import detect_mapping
from tests.providers.comfy_ui_format import ui_to_api

pytestmark = pytest.mark.slow

PACKAGE = "comfyui-workflow-templates-json"
#: measured with comfyui-workflow-templates-json 0.1.123 (docs/providers.md)
FLOOR = 95
#: templates with an Empty*Latent node whose size the mapping sets (89 of 89 in 0.1.123;
#: 45 before a size computed for the latent alone, e.g. by a ResolutionSelector, was
#: replaced by the task's; 73 before a size that also feeds a scheduler, ModelSamplingFlux
#: or a second latent was mapped onto all of those inputs together)
SIZE_FLOOR = 89


def _templates_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        module = importlib.import_module("comfyui_workflow_templates_json")
    except ImportError:
        target = tmp_path_factory.mktemp("templates")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target),
                PACKAGE,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"{PACKAGE} cannot be installed here: {done.stderr.strip()[-300:]}")
        return target / "comfyui_workflow_templates_json" / "templates"
    return Path(module.__file__ or "").parent / "templates"


def test_the_prompt_is_found_in_most_local_image_templates(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = _templates_dir(tmp_path_factory)
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    image = next(c for c in index if c.get("title") == "Image")
    names = [
        t["name"]
        for t in image["templates"]
        if t.get("openSource") is not False and not t["name"].startswith("api")
    ]
    found, sized, with_latent, missing = 0, 0, 0, []
    for name in names:
        graph = ui_to_api(json.loads((folder / f"{name}.json").read_text(encoding="utf-8")))
        mapping = detect_mapping(graph)
        if mapping.prompt is not None:
            found += 1
        else:
            missing.append(name)
        if any(
            v["class_type"].startswith("Empty") and "Latent" in v["class_type"]
            for v in graph.values()
        ):
            with_latent += 1
            sized += mapping.width is not None and mapping.height is not None
    print(f"RESULT comfy_templates_prompt_found {found}/{len(names)}")
    print(f"RESULT comfy_templates_size_found {sized}/{with_latent}")
    print("prompt not found:", ", ".join(missing))
    assert len(names) >= 60
    assert found >= FLOOR
    assert sized >= SIZE_FLOOR
