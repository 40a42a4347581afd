"""Batch API runs (issue 28): memory of a 50,000-task job, ingest speed of 1024² answers.

The fake OpenAI server runs in a process of its own (its memory is not the run's); the
run is measured in a fresh process too, from the moment its batch is loaded.

* ``batchapi_peak_rss_mb_50k``: 50,000 tasks with 64 px answers submitted in one job,
  the input JSONL streamed to disk and uploaded, the output file (~100 MB) downloaded to
  disk and ingested line by line. Printed: the peak RSS growth of the run over the RSS
  after ``Batch.load`` (``ru_maxrss``).
* ``batchapi_ingest_ratio_vs_sync_1024``: 1,000 tasks with 1024x1024 PNG answers
  (~1.8 GB of output file), images saved per second while the batch API run ingests
  them, over images saved per second by a synchronous run of the same tasks against the
  same fake (concurrency 10): both counted from the first saved image to the last.

    python benchmarks/bench_batchapi.py            # 50,000 and 1,000 tasks
    python benchmarks/bench_batchapi.py --quick    # 500 and 20 tasks (smoke)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "bench-key-batchapi-0001"

SERVER = """
import sys
from nbbatch.testing import FakeOpenAI
side = int(sys.argv[1])
with FakeOpenAI(api_key=KEY, render="fast", max_side=side, batch_timing=(0.05, 0.2, 0.05)) as s:
    print(s.base_url, flush=True)
    sys.stdin.read()
""".replace("KEY", repr(KEY))

CHILD = """
import json, resource, sys, time
from nbbatch import Batch, Workspace
from nbbatch.events import TaskSucceeded
from nbbatch.providers import OpenAIProvider

ws_path, batch_id, base_url, mode = sys.argv[1:5]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
ws = Workspace(ws_path)
batch = Batch.load(batch_id, ws)
before = rss()
stamps = []
def saved(event):
    if isinstance(event, TaskSucceeded):
        stamps.append(time.perf_counter())
batch.subscribe(saved)
provider = OpenAIProvider(api_key=KEY, base_url=base_url)
began = time.perf_counter()
if mode == "batch":
    batch.run_sync(provider, batch_api={"poll_steps": [0.2]})
else:
    batch.run_sync(provider, concurrency=10, concurrency_cap=10)
wall = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
print(json.dumps({
    "succeeded": batch.counts.get("succeeded", 0), "wall": wall, "span": span,
    "saved": len(stamps), "rss_before": before, "rss_peak": peak,
}))
ws.close()
""".replace("KEY", repr(KEY))


def _server(side: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(side)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _batch(root: Path, count: int, size: str) -> tuple[Path, str]:
    from nbbatch import Batch, Params, Workspace

    ws_path = root / f"ws-{count}-{size}-{time.monotonic_ns()}"
    with Workspace(ws_path) as ws:
        prompts = [f"bench bird {i}" for i in range(count)]
        batch = Batch.create(prompts, workspace=ws, params=Params(size=size))
        return ws_path, batch.id


def _run(ws_path: Path, batch_id: str, base_url: str, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ws_path), batch_id, base_url, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--tasks", type=int, default=None, help="tasks of the memory run")
    parser.add_argument("--big", type=int, default=None, help="tasks of the 1024² runs")
    args = parser.parse_args()
    small = args.tasks or (500 if args.quick else 50_000)
    big = args.big or (20 if args.quick else 1_000)
    with tempfile.TemporaryDirectory(prefix="nbbatch-bench-batchapi-") as tmp:
        root = Path(tmp)
        server, url = _server(64)
        try:
            ws_path, batch_id = _batch(root, small, "64x64")
            r = _run(ws_path, batch_id, url, "batch")
        finally:
            server.communicate("")
        assert r["succeeded"] == small, r
        growth = (r["rss_peak"] - r["rss_before"]) / 1e6
        print(
            f"{small} tasks through the batch API in {r['wall']:.1f} s "
            f"(RSS {r['rss_before'] / 1e6:.0f} MB after load, peak {r['rss_peak'] / 1e6:.0f} MB)"
        )
        label = "50k" if small == 50_000 else f"{small}"
        print(f"RESULT batchapi_peak_rss_mb_{label} {growth:.1f}")

        server, url = _server(1024)
        try:
            ws_a, id_a = _batch(root, big, "1024x1024")
            api = _run(ws_a, id_a, url, "batch")
            ws_b, id_b = _batch(root, big, "1024x1024")
            sync = _run(ws_b, id_b, url, "sync")
        finally:
            server.communicate("")
        assert api["succeeded"] == sync["succeeded"] == big, (api, sync)
        rate_api = (api["saved"] - 1) / api["span"]
        rate_sync = (sync["saved"] - 1) / sync["span"]
        print(
            f"{big} × 1024² images: batch API ingest {rate_api:.1f} images/s, "
            f"synchronous run {rate_sync:.1f} images/s (walls {api['wall']:.1f} / "
            f"{sync['wall']:.1f} s)"
        )
        label = "1024" if big == 1_000 else f"1024_{big}"
        print(f"RESULT batchapi_ingest_ratio_vs_sync_{label} {rate_api / rate_sync:.2f}")


if __name__ == "__main__":
    main()
