"""The quickstart notebook runs top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs_in_a_kernel(tmp_path: Path) -> None:
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("data", {}).get("text/plain", "") for o in outputs]
    assert "{'succeeded': 3}" in texts
    assert any("image/png" in o.get("data", {}) for o in outputs), "the image shows itself"
    # the background run finished while other cells ran, and both batches are journaled
    assert any("done=6" in t and "succeeded=6" in t for t in texts)
    assert "(['succeeded', 'succeeded'], 'quickstart.zip')" in texts
    assert (tmp_path / "nbbatch-workspace" / "nbbatch.sqlite3").exists()
