"""The studio's Settings for ComfyUI in a real browser: a workflow opened from the
browser's machine (ComfyUI's "Export (API)" downloads it there), a slot chosen from its
inputs, another one set to "not mapped", both saved as chosen.

Issue 27: a slot could not be unmapped from the form (Save put the detected input back),
and the form took only the built-in graph or a path on the kernel's machine.
"""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.browser.test_inputs_flow import studio_cell

# the prompt comes from a custom text node, which detection does not follow
from tests.widgets.test_settings_comfyui import WORKFLOW

SAVED = """
import json
from nbbatch.engine import load_settings
cfg = load_settings().get()
print(json.dumps({"mapping": cfg.options["mapping"], "workflow": cfg.options["workflow"]}))
"""


def test_a_workflow_opened_in_the_browser_and_an_unmapped_slot_are_saved(lab) -> None:
    page = lab.open_notebook([studio_cell(provider=None)])
    page.locator(".nbb-set").first.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    dialog.get_by_role("combobox", name="Provider").select_option("comfyui")
    expect(dialog.get_by_role("combobox", name="Mapping: Negative prompt")).to_have_value("3.text")
    dialog.get_by_role("combobox", name="Workflow", exact=True).select_option("paste")
    # nothing given yet: no inputs to choose from, and where to get the export
    expect(dialog.get_by_role("combobox", name="Mapping: Prompt")).to_have_count(0)
    expect(dialog.get_by_text("Workflow → Export (API)").first).to_be_visible()
    dialog.locator("input[type=file]").set_input_files(
        {
            "name": "fox_api.json",
            "mimeType": "application/json",
            "buffer": json.dumps(WORKFLOW).encode(),
        }
    )
    json_box = dialog.get_by_role("textbox", name="Workflow JSON (API format)")
    expect(json_box).to_have_value(json.dumps(WORKFLOW))
    prompt = dialog.get_by_role("combobox", name="Mapping: Prompt")
    expect(prompt).to_have_value("")  # not detected: the person picks it
    prompt.select_option("9.words")
    negative = dialog.get_by_role("combobox", name="Mapping: Negative prompt")
    expect(negative).to_have_value("3.text")
    negative.select_option("")  # "— not mapped"
    lab.screenshot(page, "1-pasted-workflow-mapping")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.get_by_role("status")).to_contain_text("Saved to")
    saved = json.loads(lab.execute(page, SAVED))
    assert saved["mapping"] == {"prompt": "9.words", "negative": None}
    assert saved["workflow"].endswith("_api.json") and "comfyui-workflows" in saved["workflow"]
    # shown again as saved (another provider, then ComfyUI again): the kept file, the
    # prompt chosen, the negative not mapped (not the detected input put back)
    dialog.get_by_role("combobox", name="Provider").select_option("a1111")
    dialog.get_by_role("combobox", name="Provider").select_option("comfyui")
    expect(dialog.get_by_role("combobox", name="Workflow", exact=True)).to_have_value("file")
    path = dialog.get_by_role("textbox", name="Workflow (API format)", exact=True)
    expect(path).to_have_value(saved["workflow"])
    expect(dialog.get_by_role("combobox", name="Mapping: Prompt")).to_have_value("9.words")
    expect(dialog.get_by_role("combobox", name="Mapping: Negative prompt")).to_have_value("")
    lab.screenshot(page, "2-saved-mapping-shown-again")
