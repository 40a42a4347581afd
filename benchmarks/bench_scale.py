"""Scale benchmark: a 100,000-task batch created and reopened, 1,000 batches listed.

* **create** — ``Batch.create(prompts, workspace=ws)``: the tasks are built and journaled
  in one transaction;
* **reopen** — a fresh ``Workspace(path)`` (with its reconcile on open) followed by
  ``Batch.load(batch_id)``, as after a kernel restart;
* **list** — ``Workspace.batches()`` over N batches of 20 tasks each, and
  ``Workspace.history()`` (what the History panel lists: also images, success rate and
  mean duration) over the same batches, the first two tasks of each run on "demo".

Each is measured at several sizes to show how it grows (best of ``--repeat`` wall times;
the machine is shared). Prints ``RESULT create_100k_s``, ``RESULT reopen_100k_s``,
``RESULT list_1000_batches_s`` and ``RESULT history_1000_batches_s`` for the largest
sizes (goals: ≤ 2 s, ≤ 1.5 s, ≤ 0.2 s, ≤ 0.2 s).

    python benchmarks/bench_scale.py              # 10k / 30k / 100k tasks, 100 / 300 / 1000
    python benchmarks/bench_scale.py --quick      # CI smoke run (not a measurement)
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path


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


def main(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="nbbatch-scale-", dir=args.workdir))
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
    ap.add_argument("--quick", action="store_true", help="tiny CI smoke run (not a measurement)")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.batches, args.repeat = [2_000], [50], 1
    return args


if __name__ == "__main__":
    sys.exit(main(parse()))
