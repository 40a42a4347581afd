"""Runner + store overhead, measured against the ideal and a hand-written baseline.

(a) Orchestration overhead: 10,000 tasks through a provider that answers at once with
    a (distinct, pre-rendered) tiny PNG, the workspace journal on. Reports CPU time per
    task for nbbatch and for a plain hand-written loop doing the same essential work
    (semaphore + decode check + durable file write + one SQLite commit per task).
(b) Efficiency: 2,000 tasks through a provider with a fixed 100 ms latency at
    concurrency 32; efficiency = ideal wall time / measured wall time, where ideal =
    ceil(tasks / concurrency) x latency. The same for the hand-written loop.

Every figure is printed as ``RESULT <name> <value>``. Run:

    python benchmarks/bench_runner.py                 # full size
    python benchmarks/bench_runner.py --quick         # CI-sized smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import math
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from PIL import Image

from nbbatch import Batch, Workspace
from nbbatch.images._decode import inspect_image
from nbbatch.providers import Capabilities, GenerationRequest, ImageData, Provider


def tiny_pngs(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 7)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


class InstantProvider(Provider):
    name: ClassVar[str] = "instant"
    capabilities: Capabilities = Capabilities()

    def __init__(self, images: list[bytes], latency: float = 0.0) -> None:
        self.images = images
        self.latency = latency
        self.i = 0

    async def generate(self, request: GenerationRequest, on_progress=None) -> list[ImageData]:  # type: ignore[no-untyped-def]
        if self.latency:
            await asyncio.sleep(self.latency)
        self.i += 1
        return [ImageData(self.images[self.i % len(self.images)])]


async def run_nbbatch(
    root: Path, images: list[bytes], tasks: int, concurrency: int, latency: float
) -> tuple[float, float]:
    with Workspace(root / f"ws-{time.monotonic_ns()}") as ws:
        batch: Batch = Batch.create(workspace=ws, tasks=[f"task {i}" for i in range(tasks)])
        provider = InstantProvider(images, latency)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await batch.run(provider, concurrency=concurrency, concurrency_cap=max(concurrency, 10))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        assert batch.status == "succeeded", batch
    return wall, cpu


async def run_handwritten(
    root: Path, images: list[bytes], tasks: int, concurrency: int, latency: float
) -> tuple[float, float]:
    """What a careful person would write by hand: no events, no state machine, no retries."""
    folder = root / f"hand-{time.monotonic_ns()}"
    folder.mkdir()
    db = sqlite3.connect(folder / "db.sqlite3", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE results(task INTEGER PRIMARY KEY, sha TEXT, status TEXT)")
    provider = InstantProvider(images, latency)
    sem = asyncio.Semaphore(concurrency)

    def save(data: bytes) -> str:
        inspect_image(data)
        sha = hashlib.sha256(data).hexdigest()
        tmp = folder / f".tmp-{sha}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"{sha}.png")
        return sha

    async def one(i: int) -> None:
        async with sem:
            db.execute("INSERT INTO results VALUES (?, NULL, 'running')", (i,))
            (image,) = await provider.generate(GenerationRequest(f"task {i}"))
            sha = await asyncio.to_thread(save, image.data)
            db.execute("UPDATE results SET sha=?, status='done' WHERE task=?", (sha, i))

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(tasks)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    db.close()
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overhead-tasks", type=int, default=10_000)
    ap.add_argument("--latency-tasks", type=int, default=2_000)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; medians reported")
    ap.add_argument("--quick", action="store_true", help="small CI-sized run")
    args = ap.parse_args()
    if args.quick:
        args.overhead_tasks, args.latency_tasks, args.repeats = 500, 320, 1
    images = tiny_pngs(min(args.overhead_tasks, 4096))

    with tempfile.TemporaryDirectory(prefix="nbbatch-bench-") as tmp:
        root = Path(tmp)
        ours_cpu, hand_cpu = [], []
        for _ in range(args.repeats):
            # Concurrency 10 (the default cap) for the overhead run: it measures CPU per
            # task, which concurrency barely changes with an instant provider.
            _, cpu = asyncio.run(run_nbbatch(root, images, args.overhead_tasks, 10, 0.0))
            ours_cpu.append(cpu / args.overhead_tasks * 1000)
            _, cpu = asyncio.run(run_handwritten(root, images, args.overhead_tasks, 10, 0.0))
            hand_cpu.append(cpu / args.overhead_tasks * 1000)
        ours_ms, hand_ms = statistics.median(ours_cpu), statistics.median(hand_cpu)
        print(f"RESULT overhead_cpu_ms_per_task {ours_ms:.3f}")
        print(f"RESULT handwritten_cpu_ms_per_task {hand_ms:.3f}")
        print(f"RESULT overhead_ratio_vs_handwritten {ours_ms / hand_ms:.2f}")

        ideal = math.ceil(args.latency_tasks / args.concurrency) * args.latency
        ours_eff, hand_eff = [], []
        for _ in range(args.repeats):
            wall, _ = asyncio.run(
                run_nbbatch(root, images, args.latency_tasks, args.concurrency, args.latency)
            )
            ours_eff.append(ideal / wall)
            wall, _ = asyncio.run(
                run_handwritten(root, images, args.latency_tasks, args.concurrency, args.latency)
            )
            hand_eff.append(ideal / wall)
        ours, hand = statistics.median(ours_eff), statistics.median(hand_eff)
        print(f"RESULT efficiency_vs_ideal {ours:.3f}")
        print(f"RESULT handwritten_efficiency_vs_ideal {hand:.3f}")
        print(f"RESULT efficiency_ratio_vs_handwritten {ours / hand:.3f}")


if __name__ == "__main__":
    main()
