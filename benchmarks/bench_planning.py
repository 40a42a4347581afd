"""Planning costs: templates, prompt files, image folders, tolerant JSON, the LLM planner.

Every figure is printed as ``RESULT <name> <value>`` and measured in this run:

* ``count_100k_s`` -- :func:`nbbatch.count_prompts` on a template with exactly 100,000
  prompts (walks dynamicprompts' own generator).
* ``refuse_explosion_ms`` -- :func:`nbbatch.expand` refusing a 10^8-prompt template at
  the default cap of 1,000 (it stops one past the cap).
* ``expand_1000_ms`` -- expanding 1,000 prompts into tasks.
* ``txt_10k_lines_ms`` -- reading a 10,000-line prompts file with A1111 options.
* ``folder_50_images_ms`` -- checking and storing 50 PNGs (512x512) as references.
* ``extract_hostile_2mb_ms`` -- :func:`nbbatch.planning.extract_json` on the worst input we know
  (2 MB of an unclosed JSON list with braces in prose), which it must refuse.
* ``plan_50_tasks_ms`` -- median wall time of ``nbbatch.plan`` for 50 tasks against the
  loopback FakeChat (HTTP + parsing + validation; the fake answers at once).

    python benchmarks/bench_planning.py            # full size
    python benchmarks/bench_planning.py --quick    # CI-sized smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

import nbbatch
from nbbatch.testing import FakeChat


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 15

    ten = "{" + "|".join("abcdefghij") + "}"
    template = " ".join([ten] * 5)  # 10^5 prompts
    nbbatch.count_prompts("warm {up|}")
    if not args.quick:
        seconds = timed(lambda: nbbatch.count_prompts(template, limit=100_000))
        print(f"RESULT count_100k_s {seconds:.2f}")

    huge = " ".join([ten] * 8)
    start = time.perf_counter()
    with contextlib.suppress(nbbatch.errors.TemplateTooLargeError):
        nbbatch.expand(huge)
    print(f"RESULT refuse_explosion_ms {(time.perf_counter() - start) * 1000:.1f}")

    three = " ".join([ten] * 3)
    print(f"RESULT expand_1000_ms {timed(lambda: nbbatch.expand(three)) * 1000:.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = [
            f'prompt number {i} --seed {i} --steps 20 --negative_prompt "blurry, dark"'
            for i in range(10_000)
        ]
        source = root / "prompts.txt"
        source.write_text("\n".join(lines), encoding="utf-8")
        ms = timed(lambda: nbbatch.read_prompts(source)) * 1000
        print(f"RESULT txt_10k_lines_ms {ms:.0f}")

        folder = root / "images"
        folder.mkdir()
        for i in range(50):
            buf = io.BytesIO()
            Image.new("RGB", (512, 512), (i * 5, 100, 200)).save(buf, "PNG")
            (folder / f"img{i:02d}.png").write_bytes(buf.getvalue())
        with nbbatch.Workspace(root / "ws") as ws:
            ms = timed(lambda: nbbatch.tasks_from_folder(folder, "restyle", workspace=ws)) * 1000
        print(f"RESULT folder_50_images_ms {ms:.0f}")

    # many "[" each opening a long list that never closes: every start decodes to the end
    hostile = ("Here {is} some {prose} " + "[" + "1," * 4999) * 200
    start = time.perf_counter()
    with contextlib.suppress(nbbatch.errors.PlannerNoJSONError):
        nbbatch.planning.extract_json(hostile[:2_000_000])
    print(f"RESULT extract_hostile_2mb_ms {(time.perf_counter() - start) * 1000:.0f}")

    master = "; ".join(f"scene {i}" for i in range(50))
    with FakeChat("openai") as server:
        llm = {"base_url": server.base_url, "model": "m", "api_key": "sk-bench-0000"}
        nbbatch.plan(master, llm=llm)  # warm-up (connection, imports)
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            plan = nbbatch.plan(master, llm=llm)
            walls.append(time.perf_counter() - start)
        assert len(plan.tasks) == 50
    print(f"RESULT plan_50_tasks_ms {statistics.median(walls) * 1000:.1f}")


if __name__ == "__main__":
    main()
