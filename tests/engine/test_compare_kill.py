"""A comparison survives a SIGKILL of the process running it, and resumes.

A child process reopens a journaled comparison (12 tasks x 4 configurations) and runs
it; it is killed with SIGKILL once some cells are done. Reopened here: every cell the
child acknowledged is done with its image, nothing is left running, and resuming runs
only the cells that are not done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nbbatch
from nbbatch import Params, TaskStatus, Workspace
from nbbatch.engine import Comparison

CHILD = textwrap.dedent(
    """
    import sys
    from nbbatch import Workspace
    from nbbatch.engine import Comparison
    from nbbatch.events import TaskSucceeded

    ws_path, cmp_id = sys.argv[1:3]
    cmp = Comparison.load(cmp_id, Workspace(ws_path))

    def acknowledge(event):
        if isinstance(event, TaskSucceeded):
            print("DONE", event.task.id, flush=True)

    cmp.batch.subscribe(acknowledge)
    print("STARTED", flush=True)
    cmp.run_sync(retry=0)
    print("FINISHED", flush=True)
    """
)

ROUNDS = 2  # the smallest that shows a resume of a resume


@pytest.mark.kill
def test_a_killed_comparison_resumes_where_it_was(tmp_path: Path) -> None:
    ws_path = tmp_path / "ws"
    configs = [
        ("demo", {"label": "fast", "latency": 0.01}),
        ("demo", {"label": "slow", "latency": 0.05, "concurrency": 1}),
        ("demo", {"label": "faulty", "latency": 0.02, "fail_prompts": ["castle"]}),
        ("demo", {"label": "steps", "steps": 8, "latency": 0.03}),
    ]
    prompts = [f"scene {i}" for i in range(11)] + ["a castle"]
    with Workspace(ws_path) as ws:
        cmp_id = nbbatch.compare(prompts, configs, workspace=ws, params=Params(size="64x64")).id
    acknowledged: set[str] = set()
    for _ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ws_path), cmp_id],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "STARTED"
            for _ in range(6):  # kill after a few more cells are done
                line = proc.stdout.readline()
                if not line.startswith("DONE"):
                    break
                acknowledged.add(line.split()[1])
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
    with Workspace(ws_path) as ws:
        cmp = Comparison.load(cmp_id, ws)
        statuses = {c.task.id: c.status for c in cmp.cells()}
        assert TaskStatus.RUNNING not in statuses.values()
        for task_id in acknowledged:
            assert statuses[task_id] is TaskStatus.SUCCEEDED
            assert cmp.batch[task_id].images[0].path.is_file()
        left = {i for i, s in statuses.items() if s is not TaskStatus.SUCCEEDED}
        assert left  # the kill came before the end
        attempts = {i: cmp.batch[i].attempts for i in statuses if i not in left}
        cmp.run_sync(retry=0)
        assert cmp.counts == {"succeeded": 47, "failed": 1}
        assert cmp.cell(11, "faulty").status is TaskStatus.FAILED
        for task_id, before in attempts.items():  # done before the kill: not sent again
            assert cmp.batch[task_id].attempts == before
