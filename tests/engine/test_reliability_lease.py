"""Defect 1: a run that died while another process had the workspace open is repaired.

Each run holds a lease (a lock file its process keeps locked, and one row per claimed
task). Opening the workspace tells a dead run -- lock free -- from a live one, even when
the full reconcile cannot run because someone else has the workspace open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch._cli import main

HOLDER = textwrap.dedent(
    """
    import sys
    from nbbatch import Workspace
    ws = Workspace(sys.argv[1])   # a notebook kernel with the workspace open
    print("OPEN", flush=True)
    sys.stdin.read()              # until the test closes our stdin
    ws.close()
    """
)

RUNNER = textwrap.dedent(
    """
    import asyncio, sys
    from nbbatch import Batch, Workspace
    from nbbatch.events import TaskStarted
    from nbbatch.providers import DemoProvider

    class Stuck(DemoProvider):
        async def generate(self, request, on_progress=None):
            await asyncio.Event().wait()   # a request that never answers

    ws = Workspace(sys.argv[1])
    batch = Batch.load(sys.argv[2], ws)
    started = set()

    def tell(event):
        if isinstance(event, TaskStarted) and not started:
            started.add(event.task.id)
            print("RUNNING", event.task.id, flush=True)

    batch.subscribe(tell)
    batch.run_sync(Stuck(), concurrency=2)
    """
)


class Child:
    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def end(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def holder(ws_path: Path) -> Iterator[Child]:
    Workspace(ws_path).close()
    child = Child(HOLDER, str(ws_path))
    assert child.line() == "OPEN"
    yield child
    child.end()


def _batch(ws_path: Path, n: int = 4) -> str:
    with Workspace(ws_path) as ws:
        prompts = [f"lease test {i}" for i in range(n)]
        return Batch.create(workspace=ws, tasks=prompts, params=Params(size="64x64")).id


def _start_stuck_run(ws_path: Path, batch_id: str) -> tuple[Child, str]:
    runner = Child(RUNNER, str(ws_path), batch_id)
    word, task_id = runner.line().split()
    assert word == "RUNNING"
    return runner, task_id


def test_run_killed_while_another_process_holds_the_workspace_is_repaired_on_open(
    ws_path: Path, holder: Child
) -> None:
    batch_id = _batch(ws_path)
    runner, running_id = _start_stuck_run(ws_path, batch_id)
    runner.kill()
    runner.end()

    with Workspace(ws_path) as ws:
        assert not ws.recovery.reconciled or ws.recovery.dead_runs  # not the full reconcile
        statuses = {t.id: t.status for t in Batch.load(batch_id, ws).tasks}
        assert statuses[running_id] is TaskStatus.INTERRUPTED
        assert set(statuses.values()) <= {TaskStatus.INTERRUPTED, TaskStatus.IDLE}
        assert running_id in ws.recovery.interrupted
        assert ws.batches()[0].status == "interrupted"
    assert not list((ws_path / "runs").glob("*.lock")), "the dead run's lock file is gone"


def test_history_no_longer_shows_a_dead_run_as_running(
    ws_path: Path, holder: Child, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = _batch(ws_path)
    runner, _ = _start_stuck_run(ws_path, batch_id)
    runner.kill()
    runner.end()
    assert main(["history", "--workspace", str(ws_path)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(batch_id) and " interrupted " in line


def test_resume_after_a_dead_run_resumes_its_tasks_instead_of_leaving_them(
    ws_path: Path, holder: Child, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = _batch(ws_path)
    runner, _ = _start_stuck_run(ws_path, batch_id)
    runner.kill()
    runner.end()
    code = main(["resume", batch_id, "--workspace", str(ws_path), "--quiet"])
    err = capsys.readouterr().err
    assert "leaving them" not in err and "not run here" not in err
    assert code == 0
    with Workspace(ws_path) as ws:
        assert Batch.load(batch_id, ws).status == "succeeded"


def test_a_live_run_elsewhere_keeps_its_tasks_and_resume_does_not_exit_0(
    ws_path: Path, holder: Child, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = _batch(ws_path, n=2)
    runner, running_id = _start_stuck_run(ws_path, batch_id)
    try:
        with Workspace(ws_path) as ws:
            assert ws.recovery.interrupted == [] and ws.recovery.requeued == []
            task = ws.task(running_id)
            assert task.status is TaskStatus.RUNNING  # alive: not taken for a crash
        code = main(["resume", batch_id, "--workspace", str(ws_path), "--quiet"])
        err = capsys.readouterr().err
        assert code == 1, err
        assert "another live run" in err and str(runner.proc.pid) in err, err
    finally:
        runner.kill()
        runner.end()
    with Workspace(ws_path) as ws:
        assert ws.task(running_id).status is TaskStatus.INTERRUPTED


def test_a_lease_is_alive_while_held_in_this_process_and_released_at_the_end(
    ws_path: Path,
) -> None:
    batch_id = _batch(ws_path, n=2)
    with Workspace(ws_path) as ws:
        tasks = Batch.load(batch_id, ws).tasks
        lease = ws.open_lease()
        assert ws.claim(tasks, lease) == {t.id for t in tasks}
        assert ws.repair_dead_runs().interrupted == []  # held: alive
        assert ws.claimed_elsewhere([t.id for t in tasks]) == {t.id: os.getpid() for t in tasks}
        lease._release()  # the process "dies" without ending the run
        report = ws.repair_dead_runs()
        assert sorted(report.requeued) == sorted(t.id for t in tasks)
        assert report.dead_runs == [lease.id]
        assert {ws.task(t.id).status for t in tasks} == {TaskStatus.IDLE}
        ws.release_lease(lease)  # idempotent after the fact


def test_tasks_claimed_without_a_lease_wait_for_the_full_reconcile(ws_path: Path) -> None:
    batch_id = _batch(ws_path, n=1)
    with Workspace(ws_path) as ws:
        (task,) = Batch.load(batch_id, ws).tasks
        ws.claim([task])  # as an older nbbatch claims: no run lease, owner unknown
        assert ws.repair_dead_runs().requeued == []  # it may be alive: left alone
    with Workspace(ws_path) as ws:  # opened by nobody else: the full reconcile
        assert ws.recovery.requeued == [task.id]
        assert ws.task(task.id).status is TaskStatus.IDLE


def test_a_finished_run_leaves_no_lease_behind(ws_path: Path) -> None:
    batch_id = _batch(ws_path, n=3)
    with Workspace(ws_path) as ws:
        batch = Batch.load(batch_id, ws)
        batch.run_sync("demo")
        assert batch.status == "succeeded"
        assert ws._query("SELECT count(*) FROM leases") == [(0,)]
    assert not list((ws_path / "runs").glob("*"))
