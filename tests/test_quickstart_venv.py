"""The README's quickstart works after exactly the README's install, in one fresh venv:
the quickstart notebook runs whole, and so does the shell-only CLI line below it.

``pip install . jupyterlab`` brings neither starlette (the stand-in LLM of
``nbbatch.testing``) nor pandas (``batch.to_dataframe``): three of the notebook's cells
broke there once, while CI ran the notebooks with the ``notebooks`` extra.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_install() -> list[str]:
    """What the README tells a new user to pip install (``pip install . jupyterlab``)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"\.venv/bin/pip install ([^&\n]+?) &&", readme)
    assert found, "the README's install command moved: update this test"
    return found.group(1).split()


@pytest.mark.venv
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.environ.get("NBBATCH_SKIP_VENV_TEST") == "1", reason="asked to skip")
def test_the_readme_quickstart_works_after_the_readmes_install(tmp_path: Path) -> None:
    packages = _readme_install()
    assert packages == [".", "jupyterlab"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    # --no-compile: the same packages, without pip byte-compiling each of their files
    # (~20 s of CPU on a CI core; Python compiles what the notebook imports on first use)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    subprocess.run([*pip, *packages], cwd=ROOT, check=True, timeout=1200)
    missing = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('starlette'), "
         "u.find_spec('pandas'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert missing == ["None", "None"], "the README's install now brings them: simplify"

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "01-quickstart.ipynb", work)
    env = {**os.environ, "NBBATCH_CONFIG_DIR": str(tmp_path / "config")}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.run(
        [
            str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
            "--ExecutePreprocessor.timeout=300", "--output", "ran.ipynb", "01-quickstart.ipynb",
        ],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = json.loads((work / "ran.ipynb").read_text(encoding="utf-8"))
    code = [c for c in ran["cells"] if c["cell_type"] == "code"]
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert errors == []
    assert all(c["execution_count"] for c in code), "every code cell ran"
    text = "".join(
        "".join(o.get("text", "")) for c in code for o in c["outputs"] if o.get("name") == "stdout"
    )
    assert "nbbatch[testing]" in text  # the LLM cell said why it skipped, and what to do

    # The README's second quickstart line, the CLI alone, in the same venv.
    cli = subprocess.run(
        [str(venv / "bin" / "nbbatch"), "run", "--workspace", str(tmp_path / "ws"), "-q",
         "a red fox in snow", "a lighthouse at dusk"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "2 succeeded" in cli.stderr
    assert len(list((tmp_path / "ws" / "images").rglob("*.png"))) == 2
