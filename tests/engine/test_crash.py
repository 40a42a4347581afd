"""SIGKILL a process mid-batch, many times: nothing acknowledged is lost, nothing re-sent.

Each round starts a child that resumes the same batch (the explicit user action), kills
it with SIGKILL at a random moment, then reopens the workspace in this process and
checks the invariants of reliability.md §B3/B8 row 12.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

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
            # Record the call before anything is sent: this is what a provider bills.
            with open(calls_log, "a") as fh:
                fh.write(request.task_id + "\\n")
            return await super().generate(request, on_progress)

    ws = Workspace(ws_path)
    batch = Batch.load(batch_id, ws)

    def acknowledge(event):
        if isinstance(event, TaskSucceeded):
            for im in event.images:
                print("DONE", event.task.id, im.sha256, flush=True)

    batch.subscribe(acknowledge)
    print("STARTED", flush=True)
    batch.run_sync(LoggingDemo(latency=(0.01, 0.05)), concurrency=4)
    print("FINISHED", flush=True)
    """
)

ROUNDS = 12
TASKS = 240


def _run_child_and_kill(ws: Path, batch_id: str, calls: Path, rng: random.Random) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ws), batch_id, str(calls)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        first = proc.stdout.readline()
        assert first.strip() == "STARTED", first
        deadline = time.monotonic() + rng.uniform(0.0, 0.25)
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        os.set_blocking(proc.stdout.fileno(), True)
        # the kill may cut the last line short ("DONE <id>" without its hash): only
        # whole lines were ever acknowledged
        lines = proc.stdout.read().split("\n")[:-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return lines


@pytest.mark.kill
def test_sigkill_at_random_moments_loses_nothing_and_resends_nothing(tmp_path: Path) -> None:
    rng = random.Random(1234)
    ws_path = tmp_path / "ws"
    calls = tmp_path / "calls.log"
    calls.touch()
    with Workspace(ws_path) as ws:
        prompts = [f"crash test image {i}" for i in range(TASKS)]
        batch_id = Batch.create(workspace=ws, tasks=prompts, params=Params(size="64x64")).id

    acknowledged: dict[str, str] = {}
    killed_mid_run = 0
    for _ in range(ROUNDS):
        with Workspace(ws_path) as ws:
            before = {t.id: t.status for t in Batch.load(batch_id, ws).tasks}
        done_before = {tid for tid, st in before.items() if st is TaskStatus.SUCCEEDED}
        calls_before = len(calls.read_text().split())

        lines = _run_child_and_kill(ws_path, batch_id, calls, rng)
        if "FINISHED" not in lines:
            killed_mid_run += 1
        for line in lines:
            if line.startswith("DONE"):
                _, task_id, sha = line.split()
                acknowledged[task_id] = sha

        round_calls = calls.read_text().split()[calls_before:]
        # Never re-sent: a task that had succeeded is not called again.
        assert done_before.isdisjoint(round_calls)

        with Workspace(ws_path) as ws:
            assert ws.recovery.reconciled and ws.recovery.integrity == "ok"
            tasks = {t.id: t for t in Batch.load(batch_id, ws).tasks}
            # Every acknowledged image is in the journal and on disk, byte for byte.
            for task_id, sha in acknowledged.items():
                task = tasks[task_id]
                assert task.status is TaskStatus.SUCCEEDED, task
                assert any(im.sha256 == sha for im in task.images)
                for im in task.images:
                    assert im.path.exists()
            assert not any(t.status is TaskStatus.RUNNING for t in tasks.values())
            assert not any(t.status is TaskStatus.QUEUED for t in tasks.values())
            # A task the child was running when killed is interrupted (or made it).
            for task_id in set(round_calls) - set(acknowledged):
                assert tasks[task_id].status in (TaskStatus.INTERRUPTED, TaskStatus.SUCCEEDED), (
                    tasks[task_id]
                )
            files = {p.name for p in ws.images_dir.rglob("*") if p.is_file()}
            rows = {im.path.name for t in tasks.values() for im in t.images}
            assert files == rows, "no orphan and no missing file after reconcile"
        # Opening the workspace (reconcile) itself never calls a provider.
        assert len(calls.read_text().split()) == calls_before + len(round_calls)
        with sqlite3.connect(ws_path / "nbbatch.sqlite3") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    assert killed_mid_run >= ROUNDS // 2, "the kills should mostly land mid-run"
    # Finally an explicit resume finishes the batch.
    with Workspace(ws_path) as ws:
        batch = Batch.load(batch_id, ws)
        batch.run_sync("demo", concurrency=4)
        assert batch.status == "succeeded"
        assert len(batch.images) == TASKS
