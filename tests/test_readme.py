"""Every code sample in README.md runs as written.

The fenced blocks are read from the README with the marker comment right above each
one (``<!-- readme-test: ... -->``), which says how that block is tested:

* ``python`` blocks run in order in one fresh kernel in a temporary folder, as cells of
  a notebook (top-level ``await`` works). ``setup "NAME"`` first runs ``SETUPS[NAME]``
  below: the files or state the sample takes for granted, named in the marker.
* ``bash`` blocks without a marker run with bash in a temporary folder.
  ``covered by TEST`` (setup commands only) names the test that runs them: it must
  exist. ``synopsis`` (a usage summary) is checked against ``nbbatch COMMAND --help``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from nbbatch.testing import FakeChat

nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[a-z]*)\s*$")
MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<what>.*?)\s*-->", re.S)
OLLAMA_PORT = 11434


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    marker: str | None


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None or not m["lang"]:
            i += 1
            continue
        indent = len(m["indent"])
        start = i
        body: list[str] = []
        i += 1
        while not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:])
            i += 1
        # the marker: an HTML comment ending on the line above the fence
        marker = None
        above = "\n".join(lines[max(0, start - 4) : start])
        if above.rstrip().endswith("-->"):
            found = list(MARKER.finditer(above))
            if found:
                marker = " ".join(found[-1]["what"].split())
        blocks.append(Block(m["lang"], "\n".join(body), start + 1, marker))
        i += 1
    return blocks


BLOCKS = readme_blocks()

SETUPS = {
    # A batch in the state the editing sample takes for granted, and an A1111 PNG.
    "editing": """
import nbbatch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

batch = nbbatch.Batch.create(
    ["a red fox in snow", "a lighthouse at dusk", "a koi pond", "a paper boat", "a forbidden door"]
)
demo = nbbatch.get_provider("demo", fail_prompts=["forbidden"])
await batch.run(demo, tasks=[batch[3], batch[4]])
assert [t.status.value for t in batch] == ["idle"] * 3 + ["succeeded", "failed"]
info = PngInfo()
info.add_text("parameters", "a castle on a hill\\nNegative prompt: blurry\\n"
              "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512")
Image.new("RGB", (64, 48), (90, 90, 140)).save("a1111-output.png", pnginfo=info)
""",
    # The files the planning sample reads (the chat server is started by the test).
    "planning": """
from pathlib import Path
from PIL import Image

Image.new("RGB", (64, 48), (200, 120, 40)).save("fox.png")
Path("prompts.txt").write_text("a red fox in snow --seed 5 --steps 20\\na lighthouse at dusk\\n")
Path("photos").mkdir()
for name, colour in (("a.png", (10, 120, 200)), ("b.jpg", (200, 30, 30))):
    Image.new("RGB", (64, 48), colour).save(Path("photos") / name)
""",
}

# What the samples leave behind, checked after the last block.
PROBE = """
import json
print("README-FACTS " + json.dumps({
    "foxes_zip": Path("foxes.zip").is_file(),
    "plan_tasks": len(plan.tasks) if hasattr(plan, "tasks") else len(plan),
    "expanded": len(nbbatch.expand("a {red|blue} {car|boat}")),
    "folder_tasks": len(tasks),
    "last_batch": len(batch),
    "child_parent": child.parent_id is not None,
}))
"""


@contextlib.contextmanager
def _ollama_port() -> Iterator[FakeChat]:
    """A fake chat server at localhost:11434, one test run on this machine at a time."""
    lock_path = Path(os.environ.get("TMPDIR", "/tmp")) / "nbbatch-readme-test-11434.lock"
    with open(lock_path, "a+b") as lock:
        deadline = time.monotonic() + 600
        while True:  # other worktrees' suites may hold the port for a while
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{lock_path} stayed locked for 10 minutes")
                time.sleep(0.5)
        chat = FakeChat()
        chat.port = OLLAMA_PORT
        try:
            chat.start()
        except OSError as exc:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"port {OLLAMA_PORT} is taken here (a real Ollama?): {exc}")
        try:
            yield chat
        finally:
            chat.stop()


def test_every_block_is_tested_one_way() -> None:
    langs = {b.lang for b in BLOCKS}
    assert langs <= {"python", "bash"}, f"README has blocks in {langs}: teach this test"
    for b in BLOCKS:
        if b.marker is None:
            continue
        ok = (
            b.marker.startswith("covered by ")
            or b.marker.startswith("synopsis")
            or re.match(r'setup "(\w+)"', b.marker)
        )
        assert ok, f"README line {b.line}: unknown marker {b.marker!r}"
        if b.lang == "python":
            assert not b.marker.startswith(("covered", "synopsis")), (
                f"README line {b.line}: python samples run; only setup markers apply"
            )


def test_covered_blocks_name_a_test_that_exists() -> None:
    covered = [b for b in BLOCKS if b.marker and b.marker.startswith("covered by ")]
    assert covered
    for b in covered:
        target = b.marker.removeprefix("covered by ").split()[0]
        path, _, name = target.partition("::")
        source = (ROOT / path).read_text()
        if name:
            assert re.search(rf"^def {re.escape(name)}\(", source, re.M), target
        else:  # a script: it must run the block's command itself
            assert b.code.strip() in source, f"{path} does not run {b.code.strip()!r}"


def test_cli_synopsis_matches_the_help() -> None:
    (synopsis,) = [b for b in BLOCKS if b.marker and b.marker.startswith("synopsis")]
    for line in synopsis.code.strip().split("\n"):
        words = shlex.split(line)
        assert words[0] == "nbbatch", line
        proc = subprocess.run(
            [sys.executable, "-m", "nbbatch", words[1], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        for option in re.findall(r"--[a-z][a-z-]*", line):
            assert option in proc.stdout, (
                f"`{line}`: {option} is not in `nbbatch {words[1]} --help`"
            )


def test_unmarked_bash_blocks_run(tmp_path: Path) -> None:
    plain = [b for b in BLOCKS if b.lang == "bash" and b.marker is None]
    for b in plain:
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", b.code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"README line {b.line}: {proc.stderr}"


@pytest.mark.timeout(400)
def test_python_samples_run_in_order_in_a_fresh_kernel(tmp_path: Path) -> None:
    cells: list[nbformat.NotebookNode] = []
    origin: list[str] = []
    for b in (b for b in BLOCKS if b.lang == "python"):
        setup = re.match(r'setup "(\w+)"', b.marker or "")
        if setup:
            cells.append(nbformat.v4.new_code_cell(SETUPS[setup[1]]))
            origin.append(f"setup {setup[1]!r} for README line {b.line}")
        cells.append(nbformat.v4.new_code_cell(b.code))
        origin.append(f"README line {b.line}")
    cells.append(nbformat.v4.new_code_cell("from pathlib import Path\n" + PROBE))
    origin.append("the probe")
    nb = nbformat.v4.new_notebook(cells=cells)
    with _ollama_port():
        client = nbclient.NotebookClient(
            nb,
            timeout=180,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()
    for where, cell in zip(origin, nb.cells, strict=True):
        for o in cell.outputs:
            assert o.output_type != "error", f"{where}: {o.ename}: {o.evalue}"
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    facts = json.loads(text.split("README-FACTS ", 1)[1])
    assert facts["foxes_zip"]
    assert facts["plan_tasks"] >= 1 and facts["expanded"] == 4
    assert facts["folder_tasks"] == 2 and facts["last_batch"] == 2
    assert facts["child_parent"], "the edited image's child knows its parent"
    assert list(tmp_path.iterdir()), "the samples ran in the temporary folder"
