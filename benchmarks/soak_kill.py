"""Soak: SIGKILL a running batch at random moments, N times, and count what went wrong.

A child process resumes one batch (the explicit user action) against a demo provider
that appends every task id to a request log *before* answering -- what a paid service
would bill. The parent kills it with SIGKILL at a random moment, reopens the workspace
and checks the invariants; then the next child resumes the same batch. When a batch is
finished a new one is made, so the kills keep landing mid-run. For the second half of
the kills another process holds the workspace open (a notebook kernel), so reopening
cannot run the full reconcile and only the run leases tell the dead run from a live
one; the orphan-file count for those rounds is taken once that process lets go.

Figures (each goal 0), as ``RESULT <name> <value>``:

* ``acknowledged_lost`` -- images the child announced (``TaskSucceeded``, sent only
  after the commit) that are missing from the journal or the disk after reopening;
* ``integrity_failures`` -- ``PRAGMA integrity_check`` results other than ``ok``;
* ``resent_without_resume`` -- provider calls for a task that had already succeeded,
  calls for one task more than once in a round, and calls made while no run was asked
  for (reopening and repairing must never call a provider);
* ``orphan_files`` -- image files without a row, and rows whose file is missing, after
  reconcile;
* ``left_running_or_queued`` -- tasks still ``running``/``queued`` after reopening.

Run::

    python benchmarks/soak_kill.py               # 100 kills
    python benchmarks/soak_kill.py --kills 200
    python benchmarks/soak_kill.py --quick       # 10 kills (what the test suite runs)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from nbbatch import Batch, Params, TaskStatus, Workspace

CHILD = textwrap.dedent(
    """
    import sys
    from nbbatch import Batch, Workspace
    from nbbatch.events import TaskSucceeded
    from nbbatch.providers import DemoProvider

    ws_path, batch_id, calls_log = sys.argv[1:4]

    class LoggingDemo(DemoProvider):
        async def generate(self, request, on_progress=None):
            with open(calls_log, "a") as fh:  # what a provider bills: logged first
                fh.write(request.task_id + "\\n")
                fh.flush()
            return await super().generate(request, on_progress)

    ws = Workspace(ws_path)
    batch = Batch.load(batch_id, ws)

    def acknowledge(event):
        if isinstance(event, TaskSucceeded):
            for im in event.images:
                print("DONE", event.task.id, im.sha256, flush=True)

    batch.subscribe(acknowledge)
    print("STARTED", flush=True)
    batch.run_sync(LoggingDemo(latency=(0.005, 0.03)), concurrency=4)
    print("FINISHED", flush=True)
    """
)

HOLDER = textwrap.dedent(
    """
    import sys
    from nbbatch import Workspace
    ws = Workspace(sys.argv[1])
    print("OPEN", flush=True)
    sys.stdin.read()
    ws.close()
    """
)

FIGURES = (
    "acknowledged_lost",
    "integrity_failures",
    "resent_without_resume",
    "orphan_files",
    "left_running_or_queued",
)


def _calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _kill_child(ws: Path, batch_id: str, log: Path, delay: float) -> tuple[list[str], bool]:
    """Run one child, SIGKILL it ``delay`` s after it started; its stdout and whether
    it had already finished."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ws), batch_id, str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline().strip()
        if first != "STARTED":
            raise RuntimeError(f"the child did not start: {first!r}")
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The kill may land in the middle of a line (seen: "DONE <id>" without its
        # hash): only whole lines were ever acknowledged, the cut-off tail was not.
        lines = proc.stdout.read().split("\n")[:-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return lines, "FINISHED" in lines


def _new_batch(ws_path: Path, tasks: int, number: int) -> str:
    with Workspace(ws_path) as ws:
        prompts = [f"soak {number} image {i}" for i in range(tasks)]
        return Batch.create(workspace=ws, tasks=prompts, params=Params(size="32x32")).id


def _file_mismatches(ws: Workspace) -> int:
    files = {p.name for p in ws.images_dir.rglob("*") if p.is_file()}
    rows = {
        im.path.name for b in ws.batches() for t in Batch.load(b.id, ws).tasks for im in t.images
    }
    return len(files ^ rows)


def soak(
    workdir: Path,
    *,
    kills: int = 100,
    tasks: int = 120,
    seed: int = 1,
    holder: bool = True,
    max_delay: float = 0.3,
    verbose: bool = False,
) -> dict[str, int]:
    """Kill ``kills`` children at random moments; return the five figures (each goal 0)
    and ``killed_mid_run``, how many kills landed before the child had finished."""
    rng = random.Random(seed)
    ws_path = workdir / "ws"
    log = workdir / "calls.log"
    figures = dict.fromkeys(FIGURES, 0)
    acknowledged: dict[str, str] = {}
    batches = 1
    batch_id = _new_batch(ws_path, tasks, batches)
    held: subprocess.Popen[str] | None = None
    mid_run = 0
    try:
        for round_number in range(kills):
            if holder and held is None and round_number >= kills // 2:
                held = subprocess.Popen(
                    [sys.executable, "-c", HOLDER, str(ws_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert held.stdout is not None
                if held.stdout.readline().strip() != "OPEN":
                    raise RuntimeError("the holder did not open the workspace")
            with Workspace(ws_path) as ws:
                before = {t.id: t.status for t in Batch.load(batch_id, ws).tasks}
            if all(s is TaskStatus.SUCCEEDED for s in before.values()):
                batches += 1
                batch_id = _new_batch(ws_path, tasks, batches)
                before = {}
            done_before = {tid for tid, s in before.items() if s is TaskStatus.SUCCEEDED}
            calls_before = len(_calls(log))

            lines, finished = _kill_child(ws_path, batch_id, log, rng.uniform(0.0, max_delay))
            mid_run += not finished
            for line in lines:
                if line.startswith("DONE"):
                    _, task_id, sha = line.split()
                    acknowledged[task_id] = sha
            round_calls = _calls(log)[calls_before:]
            figures["resent_without_resume"] += len(done_before.intersection(round_calls))
            figures["resent_without_resume"] += len(round_calls) - len(set(round_calls))

            calls_at_reopen = len(_calls(log))
            with Workspace(ws_path) as ws:
                all_tasks = {t.id: t for b in ws.batches() for t in Batch.load(b.id, ws).tasks}
                for task_id, sha in acknowledged.items():
                    task = all_tasks.get(task_id)
                    ok = (
                        task is not None
                        and task.status is TaskStatus.SUCCEEDED
                        and any(im.sha256 == sha and im.path.exists() for im in task.images)
                    )
                    figures["acknowledged_lost"] += not ok
                figures["left_running_or_queued"] += sum(
                    t.status in (TaskStatus.RUNNING, TaskStatus.QUEUED) for t in all_tasks.values()
                )
                if ws.recovery.integrity != "ok":
                    figures["integrity_failures"] += 1
                # Rows whose file is missing count always; files without a row only
                # after a full reconcile (with a holder, that waits until it lets go).
                missing = sum(not im.path.exists() for t in all_tasks.values() for im in t.images)
                figures["orphan_files"] += (
                    _file_mismatches(ws) if ws.recovery.reconciled and held is None else missing
                )
            with sqlite3.connect(ws_path / "nbbatch.sqlite3") as conn:
                if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    figures["integrity_failures"] += 1
            figures["resent_without_resume"] += len(_calls(log)) - calls_at_reopen
            if verbose:
                print(f"round {round_number + 1}/{kills}: {figures}", file=sys.stderr)
    finally:
        if held is not None:
            assert held.stdin is not None and held.stdout is not None
            held.stdin.close()
            held.wait(30)
            held.stdout.close()
    # The holder has let go: a full reconcile runs now and must leave no orphan.
    with Workspace(ws_path) as ws:
        assert ws.recovery.reconciled
        figures["orphan_files"] += _file_mismatches(ws)
        figures["left_running_or_queued"] += sum(
            t.status in (TaskStatus.RUNNING, TaskStatus.QUEUED)
            for b in ws.batches()
            for t in Batch.load(b.id, ws).tasks
        )
    return {**figures, "killed_mid_run": mid_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=120, help="tasks per batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-holder", action="store_true", help="never hold the workspace open")
    parser.add_argument("--quick", action="store_true", help="10 kills (a smoke run)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    kills = 10 if args.quick else args.kills
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nbbatch-soak-") as tmp:
        figures = soak(
            Path(tmp),
            kills=kills,
            tasks=args.tasks,
            seed=args.seed,
            holder=not args.no_holder,
            verbose=args.verbose,
        )
    print(f"RESULT soak_kills {kills}")
    print(f"RESULT soak_killed_mid_run {figures['killed_mid_run']}")
    for name in FIGURES:
        print(f"RESULT soak_{name} {figures[name]}")
    print(f"RESULT soak_seconds {time.monotonic() - started:.1f}")
    if any(figures[name] for name in FIGURES):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
