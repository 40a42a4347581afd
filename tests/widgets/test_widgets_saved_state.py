"""Widget state saved into a notebook holds no prompts, no image bytes and no key."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

SENTINEL_KEY = "test-key-never-in-notebooks-0123456789"

CELLS = [
    f"""
import os, tempfile, nbbatch
os.environ["OPENAI_API_KEY"] = {SENTINEL_KEY!r}
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace(tempfile.mkdtemp())
prompts = [f"zebra-sentinel prompt {{i}}" for i in range(50)]
batch = nbbatch.Batch.create(prompts, workspace=ws, params=nbbatch.Params(size="64x64"))
await batch.run(nbbatch.get_provider("demo", latency=0), tasks=batch.tasks[:5])
studio = BatchStudio(batch, provider="openai")
studio.grid.selection = [t.id for t in batch.tasks[:3]]
studio
""",
    "print(len(studio.results))",
]


@pytest.mark.notebook
def test_saved_widget_state_is_small_and_holds_nothing_private(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        store_widget_state=True,  # what nbmake / nbconvert --execute do
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    assert nb.cells[1].outputs[0]["text"] == "5\n"
    saved = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    ours = [
        m["state"]
        for m in saved.values()
        if m["state"].get("_anywidget_id", "").endswith("TaskGrid")
    ]
    assert len(ours) == 1
    state = dict(ours[0])
    state.pop("_esm")
    state.pop("_css")
    text = json.dumps(state)
    assert len(text) < 2000, text  # three selected ids, counts, names, flags
    whole = json.dumps(nb.metadata["widgets"])
    assert "zebra-sentinel" not in whole
    assert SENTINEL_KEY not in whole
    assert "RIFF" not in whole and "iVBOR" not in whole  # no WebP / PNG bytes, not even base64
    assert state["count"] == 50 and len(state["selection"]) == 3
