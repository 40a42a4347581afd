"""Provider overhead benchmark: the real runner + store + OpenAI provider vs a bare loop.

Runs ``--tasks`` image tasks through a loopback FakeOpenAI server that answers each
request after ``--latency`` seconds, ``--concurrency`` at a time, twice:

1. nbbatch: ``Batch.create`` in a fresh workspace, then ``await batch.run(OpenAIProvider)``
   (journaling, guarded decode, durable file writes, events — the real path);
2. hand-written: ``asyncio.gather`` + ``Semaphore`` + one ``httpx.AsyncClient`` sending
   the same requests and base64-decoding the answers (no store).

Prints ``RESULT efficiency_vs_ideal <x>`` (ideal wall = ceil(tasks/concurrency) ×
latency, divided by nbbatch's wall time; goal ≥ 0.97) and ``RESULT ratio_vs_handwritten
<x>`` (nbbatch wall / hand-written wall; goal ≤ 1.03), both measured in this run.

A third, diagnostic loop (``RESULT ratio_vs_handwritten_with_store``) also does the
durable work nbbatch must do per task (decode check, fsynced file, two SQLite writes),
to tell the cost of durability from the cost of orchestration.

The fake server runs in a separate process by default (``--server process``) so that its
request handling and PNG rendering do not compete with the measured client for the GIL;
``--server thread`` runs it in a thread of this process instead.

    python benchmarks/bench_providers.py                      # 2000 tasks, c=32, 100 ms
    python benchmarks/bench_providers.py --repeat 3 --workdir /dev/shm  # no disk fsync
    python benchmarks/bench_providers.py --quick                         # CI smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import math
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

MODEL = "gpt-image-1"
KEY = "test-key-bench-not-a-real-key"


def _serve(latency: float, max_side: int, conn: Any) -> None:
    """Child process: run FakeOpenAI until the parent closes the pipe."""
    from nbbatch.testing import FakeOpenAI

    with FakeOpenAI(latency=latency, api_key=KEY, max_side=max_side, render="fast") as server:
        conn.send(server.base_url)
        with contextlib.suppress(EOFError):  # the parent died: stop too
            conn.recv()  # blocks until the parent says stop


class Server:
    """The fake OpenAI server, in a child process or in a thread."""

    def __init__(self, mode: str, latency: float, max_side: int) -> None:
        self.mode = mode
        self.latency = latency
        self.max_side = max_side
        self._proc: Any = None
        self._conn: Any = None
        self._thread_server: Any = None

    def __enter__(self) -> str:
        if self.mode == "thread":
            from nbbatch.testing import FakeOpenAI

            self._thread_server = FakeOpenAI(
                latency=self.latency, api_key=KEY, max_side=self.max_side, render="fast"
            ).start()
            return str(self._thread_server.base_url)
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(self.latency, self.max_side, child), daemon=True
        )
        self._proc.start()
        if not self._conn.poll(30):
            raise RuntimeError("the fake server process did not start")
        return str(self._conn.recv())

    def __exit__(self, *exc: object) -> None:
        if self._thread_server is not None:
            self._thread_server.stop()
        if self._proc is not None:
            self._conn.send("stop")
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.terminate()


def prompts(n: int, tag: str) -> list[str]:
    # Distinct prompts: every answer is a different image, so nothing is deduplicated.
    return [f"benchmark {tag} image {i}: a lighthouse at dusk" for i in range(n)]


async def handwritten(base_url: str, tasks: int, concurrency: int, tag: str) -> float:
    """The baseline: gather + Semaphore + httpx, decode each image, nothing stored."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def one(prompt: str) -> int:
            async with sem:
                r = await client.post(
                    "/images/generations", json={"model": MODEL, "prompt": prompt, "n": 1}
                )
                r.raise_for_status()
                return len(base64.b64decode(r.json()["data"][0]["b64_json"]))

        started = time.perf_counter()
        sizes = await asyncio.gather(*(one(p) for p in prompts(tasks, tag)))
        wall = time.perf_counter() - started
    assert all(sizes), "an empty image came back"
    return wall


async def handwritten_with_store(
    base_url: str, tasks: int, concurrency: int, tag: str, root: Path
) -> float:
    """Diagnostic baseline: the bare loop plus the durable work nbbatch must do per task.

    Decode check, sha256, temp file + fsync + rename + folder fsync on a worker thread,
    and a SQLite row written before the request and updated after (WAL, synchronous
    NORMAL, as the workspace) — no events, state machine, retries or claims.
    """
    from nbbatch.images._decode import inspect_image

    folder = root / f"hand-{tag}"
    folder.mkdir()
    db = sqlite3.connect(folder / "db.sqlite3", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE results(task INTEGER PRIMARY KEY, sha TEXT, status TEXT)")

    def save(data: bytes) -> str:
        inspect_image(data)
        sha = hashlib.sha256(data).hexdigest()
        tmp = folder / f".tmp-{sha}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"{sha}.png")
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return sha

    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def one(i: int, prompt: str) -> None:
            async with sem:
                db.execute("INSERT INTO results VALUES (?, NULL, 'running')", (i,))
                r = await client.post(
                    "/images/generations", json={"model": MODEL, "prompt": prompt, "n": 1}
                )
                r.raise_for_status()
                data = base64.b64decode(r.json()["data"][0]["b64_json"])
                sha = await asyncio.to_thread(save, data)
                db.execute("UPDATE results SET sha=?, status='done' WHERE task=?", (sha, i))

        started = time.perf_counter()
        await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts(tasks, tag))))
        wall = time.perf_counter() - started
    db.close()
    return wall


async def with_nbbatch(
    base_url: str, tasks: int, concurrency: int, tag: str, root: Path
) -> tuple[float, Any]:
    """The real path: workspace + batch + runner + OpenAI provider."""
    from nbbatch import Batch, TaskStatus, Workspace
    from nbbatch.providers import OpenAIProvider

    ws = Workspace(root / f"ws-{tag}")
    provider = OpenAIProvider(api_key=KEY, base_url=base_url, model=MODEL)
    try:
        batch = Batch.create(prompts(tasks, tag), workspace=ws)
        started = time.perf_counter()
        await batch.run(provider, concurrency=concurrency, concurrency_cap=concurrency)
        wall = time.perf_counter() - started
        bad = [t for t in batch.tasks if t.status is not TaskStatus.SUCCEEDED]
        if bad:
            raise RuntimeError(f"{len(bad)} tasks did not succeed, e.g. {bad[0].error}")
        return wall, batch.runner.max_in_flight if batch.runner else None
    finally:
        await provider.aclose()
        ws.close()


async def main(args: argparse.Namespace) -> int:
    ideal = math.ceil(args.tasks / args.concurrency) * args.latency
    print(
        f"tasks={args.tasks} concurrency={args.concurrency} latency={args.latency}s "
        f"server={args.server} repeat={args.repeat} python={sys.version.split()[0]}"
    )
    print(f"ideal wall time: {ideal:.3f} s")
    with (
        Server(args.server, args.latency, args.max_side) as base_url,
        tempfile.TemporaryDirectory(prefix="nbbatch-bench-", dir=args.workdir) as tmp,
    ):
        root = Path(tmp)
        warm = min(args.tasks, 2 * args.concurrency)
        await handwritten(base_url, warm, args.concurrency, "warm-h")
        await with_nbbatch(base_url, warm, args.concurrency, "warm-n", root)
        hand_walls: list[float] = []
        nb_walls: list[float] = []
        store_walls: list[float] = []
        sides = ["hand", "nb"] + (["store"] if args.store_baseline else [])
        for r in range(args.repeat):
            # rotate the order so drift (disk cache, other load) hits every side alike
            order = sides[r % len(sides) :] + sides[: r % len(sides)]
            for which in order:
                if which == "hand":
                    wall = await handwritten(base_url, args.tasks, args.concurrency, f"h{r}")
                    hand_walls.append(wall)
                    print(f"  run {r + 1}: hand-written          {wall:.3f} s")
                elif which == "store":
                    wall = await handwritten_with_store(
                        base_url, args.tasks, args.concurrency, f"s{r}", root
                    )
                    store_walls.append(wall)
                    print(f"  run {r + 1}: hand-written + store  {wall:.3f} s")
                else:
                    wall, peak = await with_nbbatch(
                        base_url, args.tasks, args.concurrency, f"n{r}", root
                    )
                    nb_walls.append(wall)
                    print(
                        f"  run {r + 1}: nbbatch runner        {wall:.3f} s (max in flight {peak})"
                    )
    nb, hand = statistics.median(nb_walls), statistics.median(hand_walls)
    print(f"median wall: nbbatch {nb:.3f} s, hand-written {hand:.3f} s")
    print(f"RESULT efficiency_vs_ideal {ideal / nb:.4f}")
    print(f"RESULT ratio_vs_handwritten {nb / hand:.4f}")
    print(f"RESULT handwritten_efficiency_vs_ideal {ideal / hand:.4f}")
    if store_walls:
        store = statistics.median(store_walls)
        print(f"RESULT ratio_vs_handwritten_with_store {nb / store:.4f}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.1, help="server latency per request (s)")
    ap.add_argument("--repeat", type=int, default=1, help="measurements per side (median)")
    ap.add_argument("--server", choices=["process", "thread"], default="process")
    ap.add_argument("--max-side", type=int, default=64, help="rendered image size (px)")
    ap.add_argument("--workdir", default=None, help="where the temporary workspaces go")
    ap.add_argument(
        "--no-store-baseline",
        dest="store_baseline",
        action="store_false",
        help="skip the diagnostic hand-written loop that also writes durably",
    )
    ap.add_argument("--quick", action="store_true", help="tiny CI smoke run (not a measurement)")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.concurrency, args.latency, args.repeat = 64, 8, 0.02, 1
    if args.tasks < 1 or args.concurrency < 1 or args.latency <= 0:
        ap.error("--tasks and --concurrency must be >= 1 and --latency > 0")
    return args


if __name__ == "__main__":
    os.environ.setdefault("NBBATCH_MAX_CONCURRENCY", "1024")
    sys.exit(asyncio.run(main(parse())))
