"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel.

Each one runs from a copy in a temporary folder (nothing is left in the repository), on
the kernel named by ``$NBBATCH_NOTEBOOK_KERNEL`` (default ``python3``: this interpreter).
After its last cell the test runs one more cell of its own that reports what the
notebook's objects hold, and checks that: the notebooks are asserted on their Python
objects, not on how outputs look.

``scripts/test-notebooks`` runs this module on the kernel of a fresh venv made from
``binder/requirements.txt`` (what Binder installs); with ``CI=true`` that is how the
notebooks run, and the plain pytest run leaves them to it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbbatch.testing import FakeA1111

pytestmark = pytest.mark.notebook

nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = os.environ.get("NBBATCH_NOTEBOOK_KERNEL", "python3")
#: seconds for the whole notebook (pytest-timeout) and for any one cell (nbclient);
#: measured runs take 2-15 s each on an idle machine, so these leave room for a busy one
NOTEBOOK_TIMEOUT = {"03-analyze-results.ipynb": 420}
DEFAULT_NOTEBOOK_TIMEOUT = 300
CELL_TIMEOUT = 180
MARK = "NBTEST-FACTS "

# What each notebook's objects hold after its last cell, as JSON (run in its kernel).
PROBES: dict[str, str] = {
    "00-headless-quickstart.ipynb": """{
        "counts": batch.counts,
        "background": more.counts,
        "done": run.progress().done,
        "zip": path.name,
        "zip_exists": path.exists(),
    }""",
    "01-quickstart.ipynb": """{
        "counts": batch.counts,
        "tasks": len(studio.tasks),
        "results": len(studio.results),
        "planned": [t.prompt for t in plan.tasks],
        "boats": len(boats),
        "studio_batch": studio.batch is batch,
        "run_done": run.done,
        "gallery_shows": [
            studio.gallery.shown, studio.gallery.current == batch.succeeded[0].images[1]
        ],
    }""",
    "02-img2img-folder.ipynb": """{
        "tasks": len(tasks),
        "skipped": [s.where for s in tasks.skipped],
        "counts": batch.counts,
        "inputs": sorted(t.references[0].name for t in batch),
        "boat_prompt_from_caption": batch[0].prompt.startswith("a paper boat on a rainy street"),
        "presets_in_prompts": all("watercolor painting" in t.prompt for t in batch),
        "moon": [moon.params.strength, moon.params.seed, moon.images[0].seed],
        "derived": sorted({(d.format, d.width) for d in derived}),
        "derived_outside_images": all("derived" in d.path.parts for d in derived),
        "originals_kept": all(im.path.exists() for im in batch.images),
        "zip_names": len(names),
        "manifest_moon_strength": entry["params"]["strength"],
        "small_zip": sorted(n.rsplit(".", 1)[-1] for n in zipfile.ZipFile(small).namelist()),
    }""",
    "03-analyze-results.ipynb": """{
        "counts": {name: b.counts for name, b in batches.items()},
        "reasons": sorted(set(reasons.error_kind)),
        "flaky_attempts": int(summary.loc["demo-flaky", "attempts"]),
        "plotted": plt is not None,
        "lineage": [t.prompt for t in family.lineage(root)],
        "child_parent": child.parent_id == root.id,
        "nbbatch_info": [info.source, info.prompt],
        "a1111_info": [a1111_info.source, a1111_info.seed, a1111_info.steps,
                       a1111_info.negative_prompt, a1111_info.width],
        "remixed": [remixed.status.value, remixed.params.seed, remixed.images[0].seed],
        "before": before,
        "resumed_calls": resumer.calls,
        "after": reopened.counts,
    }""",
    "04-providers.ipynb": "results",
    "05-scale-out.ipynb": """{
        "counts": batch.counts,
        "status": {r["endpoint"]: [r["healthy"], r["served"], r["in_flight"]]
                   for r in pool.status()},
        "peak": dict(peak),
        "attempts": sorted({t.attempts for t in batch}),
        "where": where.value_counts().to_dict(),
    }""",
}


def _execute(name: str, tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a copy of ``name`` in ``tmp_path``; return its probe's facts (or {})."""
    copy = tmp_path / name
    shutil.copy(ROOT / "notebooks" / name, copy)
    nb = nbformat.read(copy, as_version=4)
    probe = PROBES.get(name)
    if probe is not None:
        code = f"import json, zipfile\nprint({MARK!r} + json.dumps({probe}, default=str))"
        nb.cells.append(nbformat.v4.new_code_cell(code))
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},
        store_widget_state=False,
    )
    client.execute(env={**os.environ, **(env or {})})
    errors = [
        (i, o.ename, o.evalue)
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == "error"
    ]
    assert not errors, f"{name}: cells raised {errors}"
    _executed[name] = nb
    if probe is None:
        return {}
    texts = [o.text for o in nb.cells[-1].outputs if o.output_type == "stream"]
    line = next(t for t in "".join(texts).splitlines() if t.startswith(MARK))
    return json.loads(line.removeprefix(MARK))


_executed: dict[str, nbformat.NotebookNode] = {}


def _outputs(name: str) -> list[Any]:
    nb = _executed[name]
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def _repo_listing() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir()) + sorted(
        p.name for p in (ROOT / "notebooks").iterdir()
    )


def _skip_in_ci_main_run() -> None:
    if os.environ.get("CI") == "true" and "NBBATCH_NOTEBOOK_KERNEL" not in os.environ:
        pytest.skip("with CI=true the notebooks run on the Binder venv's kernel: see scripts/test")


def test_every_notebook_is_covered_and_committed_clean() -> None:
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        raw = path.read_bytes()
        assert len(raw) < 100_000, f"{path.name} is {len(raw):,} bytes (limit 100 KB)"
        nb = nbformat.reads(raw.decode(), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        assert "widgets" not in nb.metadata, f"{path.name} carries widget state"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: committed with outputs"
                assert cell.execution_count is None, f"{path.name}: committed executed"
        # nothing that looks like a real key (the fakes' sentinel keys say test-key)
        for pattern in (r"sk-[A-Za-z0-9]{20,}", r"r8_[A-Za-z0-9]{20,}", r"hf_[A-Za-z]{20,}",
                        r"AIza[0-9A-Za-z_-]{30,}"):  # fmt: skip
            assert not re.search(pattern, raw.decode()), f"{path.name}: {pattern}"
    assert {p.name for p in NOTEBOOKS} >= set(PROBES), "a probed notebook is missing"


def test_the_notebooks_run_on_the_kernel_asked_for(tmp_path: Path) -> None:
    """scripts/test-notebooks names the Binder venv's python: the kernel must be it."""
    _skip_in_ci_main_run()
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import sys, nbbatch\nprint(sys.executable)")]
    )
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    executable = nb.cells[0].outputs[0].text.strip()
    expected = os.environ.get("NBBATCH_NOTEBOOK_PYTHON")
    if expected is not None:
        assert Path(executable) == Path(expected), "the notebooks ran on another python"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(
            p,
            id=p.stem,
            marks=pytest.mark.timeout(NOTEBOOK_TIMEOUT.get(p.name, DEFAULT_NOTEBOOK_TIMEOUT)),
        )
        for p in NOTEBOOKS
    ],
)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    _skip_in_ci_main_run()
    before = _repo_listing()
    facts = _execute(path.name, tmp_path)
    check = CHECKS.get(path.name)
    if check is not None:
        check(facts)
    assert _repo_listing() == before, "the notebook wrote into the repository"


@pytest.mark.timeout(DEFAULT_NOTEBOOK_TIMEOUT)
def test_providers_notebook_checks_a_real_server_when_its_address_is_set(tmp_path: Path) -> None:
    """With NBBATCH_A1111_URL set, the a1111 section checks that server (free, no image)."""
    _skip_in_ci_main_run()
    with FakeA1111() as webui:
        facts = _execute(
            "04-providers.ipynb",
            tmp_path,
            env={"NBBATCH_A1111_URL": webui.url, "NBBATCH_NOTEBOOK_FAKES": "no"},
        )
        generated = webui.calls("/sdapi/v1/txt2img")
    assert facts["a1111"] == "connected"
    assert generated == [], "GENERATE_REAL is off: the check generates nothing"
    assert not any("(fake)" in k for k in facts), "fakes were off"
    assert facts["comfyui"] == facts["openai"] == "skipped"


# ------------------------------------------------------------------ per-notebook checks
def _check_00(facts: dict[str, Any]) -> None:
    assert facts["counts"] == {"succeeded": 3}
    assert facts["background"] == {"succeeded": 6} and facts["done"] == 6
    assert facts["zip"] == "quickstart.zip" and facts["zip_exists"]
    assert any("image/png" in o.get("data", {}) for o in _outputs("00-headless-quickstart.ipynb"))


def _check_01(facts: dict[str, Any]) -> None:
    # 3 prompts in the first cell, 4 from the template, 3 scenes from the LLM stand-in
    assert facts["boats"] == 4 and len(facts["planned"]) == 3
    assert facts["tasks"] == 10 and facts["studio_batch"] and facts["run_done"]
    assert facts["counts"] == {"succeeded": 10}
    assert facts["gallery_shows"] == [True, True], "the gallery opened at the second image"
    assert facts["results"] == 3 * 2 + 7, "n=2 for the first three, 1 for the added ones"
    assert any("image/png" in o.get("data", {}) for o in _outputs("01-quickstart.ipynb"))


def _check_02(facts: dict[str, Any]) -> None:
    assert facts["tasks"] == 4 and facts["skipped"] == ["notes.md"]
    assert facts["counts"] == {"succeeded": 4}
    assert facts["inputs"] == ["boat.png", "house.png", "moon.png", "tree.png"]
    assert facts["boat_prompt_from_caption"] and facts["presets_in_prompts"]
    assert facts["moon"] == [0.85, 1234, 1234], "the per-image override was used"
    assert facts["derived"] == [["WEBP", 256]]
    assert facts["derived_outside_images"] and facts["originals_kept"]
    assert facts["zip_names"] == 5 and facts["manifest_moon_strength"] == 0.85
    assert facts["small_zip"] == ["jpg"] * 4 + ["json"]


def _check_03(facts: dict[str, Any]) -> None:
    counts = facts["counts"]
    assert counts["a1111 (fake)"] == {"succeeded": 10}
    assert counts["demo"] == {"succeeded": 14}, "10 + 3 edits + 1 remix"
    assert counts["demo-flaky"]["failed"] >= 2, counts
    assert facts["reasons"] == ["refused", "server"]
    assert facts["flaky_attempts"] > 10, "the simulated 500s were retried"
    assert facts["plotted"], "matplotlib comes with nbbatch[notebooks]"
    plots = [o for o in _outputs("03-analyze-results.ipynb") if o.output_type == "display_data"]
    assert any("image/png" in o.data for o in plots), "the durations plot is shown"
    assert facts["lineage"] == [
        "a lighthouse at dusk, study 0",
        "the same lighthouse at night, stars",
        "the same lighthouse in a snow storm",
        "the same lighthouse in fog",
    ]
    assert facts["child_parent"]
    assert facts["nbbatch_info"] == ["nbbatch", "the same lighthouse in a snow storm"]
    assert facts["a1111_info"] == ["a1111", 424242, 28, "blurry, lowres", 512]
    assert facts["remixed"] == ["succeeded", 424242, 424242]
    before, after = facts["before"], facts["after"]
    assert before.get("succeeded", 0) >= 3 and before.get("interrupted", 0) >= 1, before
    assert sum(before.values()) == 12
    assert facts["resumed_calls"] == 12 - before["succeeded"], "done tasks were not re-sent"
    assert after == {"succeeded": 12}


def _check_04(results: dict[str, Any]) -> None:
    real = ["openai", "stability", "replicate", "gemini", "huggingface", "fal", "a1111", "comfyui"]
    assert {name: results[name] for name in real} == dict.fromkeys(real, "skipped")
    for name in real:
        assert results[f"{name} (fake)"] == "succeeded", name
    assert results["stability refusal (fake)"] == "refused"


def _check_05(facts: dict[str, Any]) -> None:
    assert facts["counts"] == {"succeeded": 24}
    status = facts["status"]
    assert status["gpu2"][0] is False, "the dead endpoint is marked unhealthy"
    assert all(status[n][0] for n in ("gpu1", "gpu3", "gpu4"))
    assert sum(s[1] for s in status.values()) == 24 and all(s[2] == 0 for s in status.values())
    assert status["gpu2"][1] < min(status[n][1] for n in ("gpu1", "gpu3", "gpu4"))
    assert facts["peak"]["gpu4"] <= 2 and all(facts["peak"][n] <= 1 for n in ("gpu1", "gpu3"))
    assert facts["attempts"] == [1], "re-routing happens within one attempt"
    assert sum(facts["where"].values()) == 24


CHECKS = {
    "00-headless-quickstart.ipynb": _check_00,
    "01-quickstart.ipynb": _check_01,
    "02-img2img-folder.ipynb": _check_02,
    "03-analyze-results.ipynb": _check_03,
    "04-providers.ipynb": _check_04,
    "05-scale-out.ipynb": _check_05,
}
