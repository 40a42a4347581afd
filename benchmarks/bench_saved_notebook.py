"""What one displayed studio adds to a notebook saved with its widget state.

A notebook is executed the way nbconvert --execute / nbmake do it (nbclient with
``store_widget_state=True``): one cell makes a small batch, then N cells each display a
``BatchStudio`` with its input panels. The saved ``application/vnd.jupyter.widget-
state+json`` is measured for N = 1 and N = 2; the difference is the cost of one more
displayed studio. Most of it is the front-end code: every anywidget model carries its
``_esm`` and ``_css`` (the bundles in src/nbbatch/widgets/static) in its saved state.

    python benchmarks/bench_saved_notebook.py           # prints RESULT lines
    python benchmarks/bench_saved_notebook.py --quick   # the same (it takes seconds)

RESULT saved_notebook_bytes_per_studio N   the bytes one more displayed studio adds
RESULT saved_notebook_code_bytes_per_studio N   of which _esm + _css
RESULT saved_notebook_widget_models_per_studio N
RESULT static_bundle_bytes N   all of src/nbbatch/widgets/static on disk
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "src" / "nbbatch" / "widgets" / "static"

SETUP = """
import tempfile, nbbatch
from nbbatch.widgets import BatchStudio
ws = nbbatch.Workspace(tempfile.mkdtemp())
batch = nbbatch.Batch.create([f"a study of light {i}" for i in range(20)], workspace=ws)
"""
SHOW = "BatchStudio(batch)"  # every panel (inputs=True is the deprecated spelling)


def saved_state(studios: int, workdir: Path) -> dict[str, Any]:
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    nb.cells += [nbformat.v4.new_code_cell(SHOW) for _ in range(studios)]
    client = nbclient.NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    state: dict[str, Any] = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    return state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="same run (it is already quick)")
    ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nbbatch-bench-saved-") as tmp:
        # the settings panel reads and may write the settings folder: a private one
        os.environ["NBBATCH_CONFIG_DIR"] = str(Path(tmp) / "config")
        one = saved_state(1, Path(tmp))
        two = saved_state(2, Path(tmp))

    def size(state: dict[str, Any]) -> int:
        return len(json.dumps(state).encode())

    def code(state: dict[str, Any]) -> int:
        return sum(
            len(json.dumps(m["state"].get(k, "")).encode())
            for m in state["state"].values()
            for k in ("_esm", "_css")
            if k in m["state"]
        )

    per_studio = size(two) - size(one)
    print(f"RESULT saved_notebook_bytes_per_studio {per_studio}")
    print(f"RESULT saved_notebook_code_bytes_per_studio {code(two) - code(one)}")
    print(f"RESULT saved_notebook_widget_models_per_studio {len(two['state']) - len(one['state'])}")
    print(f"RESULT static_bundle_bytes {sum(p.stat().st_size for p in STATIC.iterdir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
