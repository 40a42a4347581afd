"""Scale benchmark: a 100,000-task batch created and reopened, 1,000 batches listed.

* **create** — ``Batch.create(prompts, workspace=ws)``: the tasks are built and journaled
  in one transaction;
* **reopen** — a fresh ``Workspace(path)`` (with its reconcile on open) followed by
  ``Batch.load(batch_id)``, as after a kernel restart;
* **list** — ``Workspace.batches()`` over N batches of 20 tasks each, and
  ``Workspace.history()`` (what the History panel lists: also images, success rate and
  mean duration) over the same batches, the first two tasks of each run on "demo".
* **run start** — ``batch.start(provider)`` on the largest batch, on a running event
  loop, while a ticker coroutine wakes every millisecond: the longest gap between two
  of its wake-ups, from the call until every task is queued, is the longest time the
  start held the loop (a kernel's loop: widgets and other cells wait that long).
* **run stop / cancel** — the same run, once every task is queued, stopped with
  ``runner.stop()`` (every queued task back to idle, journaled) or ended with
  ``runner.cancel_pending()`` (every queued task cancelled, journaled) and awaited: the
  longest gap of the same ticker from the call until the run has ended.

Each is measured at several sizes to show how it grows (best of ``--repeat`` wall times;
the machine is shared). Prints ``RESULT create_100k_s``, ``RESULT reopen_100k_s``,
``RESULT list_1000_batches_s``, ``RESULT history_1000_batches_s`` and
``RESULT run_start_loop_max_ms_100k``, ``RESULT run_stop_loop_max_ms_100k`` and
``RESULT run_cancel_pending_loop_max_ms_100k`` for the largest sizes (goals: ≤ 2 s,
≤ 1.5 s, ≤ 0.2 s, ≤ 0.2 s, ≤ 50 ms, ≤ 50 ms, ≤ 50 ms).

    python benchmarks/bench_scale.py              # 10k / 30k / 100k tasks, 100 / 300 / 1000
    python benchmarks/bench_scale.py --start-only # only the run start, on 100k tasks
    python benchmarks/bench_scale.py --stop-only  # only stop / cancel_pending, on 100k tasks
    python benchmarks/bench_scale.py --quick      # CI smoke run (not a measurement)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def best(times: list[float]) -> float:
    return min(times)


class Clock:
    """Wall and CPU seconds of a block (CPU time says more on a shared machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def create_and_reopen(root: Path, n: int, repeat: int) -> tuple[float, float, float]:
    from nbbatch import Batch, Params, Workspace

    creates: list[float] = []
    opens: list[float] = []
    loads: list[float] = []
    cpu_create: list[float] = []
    cpu_reopen: list[float] = []
    for r in range(repeat):
        path = root / f"tasks-{n}-{r}"
        prompts = [f"a lighthouse at dusk, variation {i}" for i in range(n)]
        ws = Workspace(path)
        gc.collect()
        with Clock() as made:
            batch = Batch.create(prompts, workspace=ws, params=Params(size="1024x1024"))
        creates.append(made.wall)
        cpu_create.append(made.cpu)
        batch_id = batch.id
        ws.close()
        del batch
        gc.collect()
        with Clock() as reopened:
            t0 = time.perf_counter()
            ws = Workspace(path)
            opens.append(time.perf_counter() - t0)
            again = Batch.load(batch_id, workspace=ws)
        assert len(again) == n
        loads.append(reopened.wall)
        cpu_reopen.append(reopened.cpu)
        ws.close()
        del again
    print(
        f"{n:>7,} tasks: CPU time create {best(cpu_create):.3f} s, reopen {best(cpu_reopen):.3f} s"
    )
    return best(creates), best(opens), best(loads)


def listing(root: Path, batches: int, repeat: int) -> tuple[float, float]:
    from nbbatch import Batch, Workspace

    path = root / f"batches-{batches}"
    with Workspace(path) as ws:
        for b in range(batches):
            batch = Batch.create([f"batch {b} prompt {i}" for i in range(20)], workspace=ws)
            batch.run_sync("demo", tasks=batch.tasks[:2])
    times: list[float] = []
    history: list[float] = []
    with Workspace(path) as ws:
        for _ in range(repeat):
            t0 = time.perf_counter()
            found = ws.batches()
            times.append(time.perf_counter() - t0)
            assert len(found) == batches
            t0 = time.perf_counter()
            rows = ws.history()
            history.append(time.perf_counter() - t0)
            assert len(rows) == batches and rows[0].images == 2
    return best(times), best(history)


class Ticker:
    """Wakes every millisecond on the loop and keeps the longest gap between wake-ups:
    in wall time (what a person waits) and in this thread's CPU time (the work that
    held the loop, without the time the shared machine gave to other processes)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.running = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last, last_cpu = loop.time(), time.thread_time()
        while self.running:
            await asyncio.sleep(0.001)
            now, cpu = loop.time(), time.thread_time()
            self.wall, self.cpu = max(self.wall, now - last), max(self.cpu, cpu - last_cpu)
            last, last_cpu = now, cpu


def busy_baseline(seconds: float) -> tuple[float, float]:
    """The same ticker beside plain Python work in 5 ms slices (no nbbatch): the floor
    this machine sets for the figure (a busy process waits its turn for a core)."""

    async def measure() -> tuple[float, float]:
        ticker = Ticker()
        tick = asyncio.ensure_future(ticker.run())
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            spin = time.perf_counter() + 0.005
            while time.perf_counter() < spin:
                pass
            await asyncio.sleep(0)
        ticker.running = False
        await tick
        return ticker.wall, ticker.cpu

    return asyncio.run(measure())


def end_stall(root: Path, n: int, how: str) -> tuple[float, float, float]:
    """(longest loop stall wall, its CPU, seconds until the run ended) while a run of
    ``n`` queued tasks is ended by ``how`` ("stop" or "cancel_pending")."""
    from nbbatch import Batch, Workspace

    ws = Workspace(root / f"{how}-{n}")
    batch = Batch.create([f"a lighthouse at dusk, variation {i}" for i in range(n)], workspace=ws)
    gc.collect()

    async def measure() -> tuple[float, float, float]:
        runner = batch.start(_held_provider(), concurrency=1)
        while runner.progress().queued + runner.progress().running < n and not runner.done:
            await asyncio.sleep(0.001)
        ticker = Ticker()
        tick = asyncio.ensure_future(ticker.run())
        await asyncio.sleep(0.01)
        ticker.wall = ticker.cpu = 0.0
        began = time.perf_counter()
        if how == "stop":
            runner.stop()
        else:
            runner.cancel_pending()
            runner.stop()  # the one task in flight (held forever) ends interrupted
        await runner.wait()
        ended_after = time.perf_counter() - began
        ticker.running = False
        await tick
        return ticker.wall, ticker.cpu, ended_after

    try:
        return asyncio.run(measure())
    finally:
        ws.close()


def report_end(root: Path, n: int) -> None:
    for how in ("stop", "cancel_pending"):
        wall, cpu, ended = end_stall(root, n, how)
        print(
            f"{n:>7,} queued tasks, {how}: the run ended after {ended:.2f} s; longest loop "
            f"stall {wall * 1000:.1f} ms wall ({cpu * 1000:.1f} ms CPU)"
        )
        print(f"RESULT run_{how}_loop_max_ms_100k {wall * 1000:.1f}")
        print(f"RESULT run_{how}_loop_max_cpu_ms_100k {cpu * 1000:.1f}")


def _held_provider() -> Any:
    from nbbatch.providers import Capabilities, GenerationRequest, ImageData, Provider

    class Held(Provider):
        """Answers nothing until the run stops: only the start or the end is measured."""

        name = "held"
        capabilities = Capabilities(txt2img=True)

        async def generate(
            self, request: GenerationRequest, on_progress: object = None
        ) -> list[ImageData]:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    return Held()


def start_stall(root: Path, n: int) -> tuple[float, float, float]:
    """(longest loop stall wall, its CPU, seconds until all queued) while ``n`` start."""
    from nbbatch import Batch, Workspace

    ws = Workspace(root / f"start-{n}")
    batch = Batch.create([f"a lighthouse at dusk, variation {i}" for i in range(n)], workspace=ws)
    gc.collect()

    async def measure() -> tuple[float, float, float]:
        ticker = Ticker()
        tick = asyncio.ensure_future(ticker.run())
        await asyncio.sleep(0.01)
        ticker.wall = ticker.cpu = 0.0
        began = time.perf_counter()
        runner = batch.start(_held_provider(), concurrency=1)
        while runner.progress().queued + runner.progress().running < n and not runner.done:
            await asyncio.sleep(0.001)
        queued_after = time.perf_counter() - began
        ticker.running = False
        await tick
        runner.stop()
        await runner.wait()
        return ticker.wall, ticker.cpu, queued_after

    try:
        return asyncio.run(measure())
    finally:
        ws.close()


def report_start(root: Path, n: int) -> None:
    wall, cpu, queued = start_stall(root, n)
    floor_wall, floor_cpu = busy_baseline(min(queued, 10.0))
    print(
        f"{n:>7,} tasks started: all queued after {queued:.2f} s; longest loop stall "
        f"{wall * 1000:.1f} ms wall ({cpu * 1000:.1f} ms CPU); the same ticker beside "
        f"plain 5 ms slices of work: {floor_wall * 1000:.1f} ms wall "
        f"({floor_cpu * 1000:.1f} ms CPU)"
    )
    print(f"RESULT run_start_loop_max_ms_100k {wall * 1000:.1f}")
    print(f"RESULT run_start_loop_max_cpu_ms_100k {cpu * 1000:.1f}")
    print(f"RESULT busy_loop_max_ms_same_machine {floor_wall * 1000:.1f}")


def main(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="nbbatch-scale-", dir=args.workdir))
    if args.start_only or args.stop_only:
        try:
            if args.start_only:
                report_start(root, args.tasks[-1])
            if args.stop_only:
                report_end(root, args.tasks[-1])
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return 0
    try:
        print(f"python={sys.version.split()[0]} repeat={args.repeat}")
        result: tuple[float, float, float] = (0.0, 0.0, 0.0)
        for n in args.tasks:
            result = create_and_reopen(root, n, args.repeat)
            create, open_, reopen = result
            print(
                f"{n:>7,} tasks: wall create {create:.3f} s ({create / n * 1e6:.1f} µs/task), "
                f"open workspace {open_:.3f} s, reopen (open + load) {reopen:.3f} s "
                f"({reopen / n * 1e6:.1f} µs/task)"
            )
        listed = history = 0.0
        for b in args.batches:
            listed, history = listing(root, b, args.repeat)
            each = listed / b * 1e6
            print(
                f"{b:>7,} batches listed: {listed * 1000:.1f} ms ({each:.0f} µs each), "
                f"history {history * 1000:.1f} ms"
            )
        report_start(root, args.tasks[-1])
        report_end(root, args.tasks[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"RESULT create_100k_s {result[0]:.3f}")
    print(f"RESULT reopen_100k_s {result[2]:.3f}")
    print(f"RESULT list_1000_batches_s {listed:.4f}")
    print(f"RESULT history_1000_batches_s {history:.4f}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="where the temporary workspaces go")
    ap.add_argument(
        "--start-only", action="store_true", help="measure only the run start (largest size)"
    )
    ap.add_argument(
        "--stop-only",
        action="store_true",
        help="measure only stop / cancel_pending of a queued run (largest size)",
    )
    ap.add_argument("--quick", action="store_true", help="tiny CI smoke run (not a measurement)")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.batches, args.repeat = [2_000], [50], 1
    return args


if __name__ == "__main__":
    sys.exit(main(parse()))
