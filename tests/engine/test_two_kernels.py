"""Two kernels on one batch (issue 26, items 4 and 5), with two real processes.

Process A runs the batch; this process (B) has it loaded too. The decision: B's edit or
removal of a task A's live run holds is refused with who holds it, and B's ``run`` says
the tasks are being run by another kernel instead of pretending to finish, then can
follow A's run from the journal. An edit B makes *before* A's run claims the task is
taken by A when it claims it (A sends what the journal says, not its stale copy).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.errors import HeldElsewhereError, TaskStateError
from nbbatch.images import read_generation_info

# A kernel running the batch with one request at a time; every request waits until the
# test writes a line to its stdin, so what B sees meanwhile is fixed, not a race.
RUNNER = textwrap.dedent(
    """
    import asyncio, sys
    from nbbatch import Batch, Workspace
    from nbbatch.events import TaskStarted
    from nbbatch.providers import DemoProvider

    gate = []

    class Gated(DemoProvider):
        async def generate(self, request, on_progress=None):
            if not gate:
                gate.append(asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline)))
            await asyncio.shield(gate[0])
            return await super().generate(request, on_progress)

    ws = Workspace(sys.argv[1])
    batch = Batch.load(sys.argv[2], ws)

    def tell(event):
        if isinstance(event, TaskStarted):
            print("RUNNING", event.task.id, flush=True)

    batch.subscribe(tell)
    if sys.argv[3:] == ["loaded"]:      # say the batch is loaded, then wait to run it
        print("LOADED", flush=True)
        sys.stdin.readline()
        batch.run_sync(DemoProvider(), concurrency=1)
    else:
        batch.run_sync(Gated(), concurrency=1)
    print("DONE", batch.status, flush=True)
    ws.close()
    """
)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[Path, Batch]]:
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        batch = Batch.create(
            ["a red fox", "a blue car", "a green tree"], workspace=ws, params=Params(size="64x64")
        )
        yield path, batch


@pytest.fixture
def kernel_a(shared: tuple[Path, Batch]) -> Iterator[subprocess.Popen[str]]:
    path, batch = shared
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(path), batch.id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("RUNNING ")  # A holds all three now
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def test_edit_and_remove_of_a_task_another_kernel_runs_are_refused_with_its_holder(
    shared: tuple[Path, Batch], kernel_a: subprocess.Popen[str]
) -> None:
    _, batch = shared  # loaded before A claimed: its copy says idle
    queued = batch.tasks[2]
    with pytest.raises(HeldElsewhereError, match="being run by another kernel") as err:
        batch.edit(queued, prompt="a purple tree")
    assert f"process {kernel_a.pid}" in str(err.value)
    assert [h.pid for h in err.value.holders] == [kernel_a.pid]  # type: ignore[attr-defined]
    assert isinstance(err.value, TaskStateError)
    assert queued.prompt == "a green tree"  # nothing changed here ...
    assert batch.workspace.task(queued.id).prompt == "a green tree"  # ... nor in the journal
    with pytest.raises(HeldElsewhereError, match=str(kernel_a.pid)):
        batch.remove(queued)
    assert [t.id for t in batch.tasks][2] == queued.id

    assert kernel_a.stdin is not None and kernel_a.stdout is not None
    kernel_a.stdin.write("go\n")
    kernel_a.stdin.flush()
    assert kernel_a.stdout.read().splitlines()[-1] == "DONE succeeded"
    # A sent what the journal says: the image carries the original prompt.
    done = batch.refresh().tasks[2]
    assert done.status is TaskStatus.SUCCEEDED and done.prompt == "a green tree"
    assert batch.held_elsewhere() == []


def test_run_in_a_second_kernel_says_another_kernel_runs_the_tasks_then_follows_them(
    shared: tuple[Path, Batch], kernel_a: subprocess.Popen[str]
) -> None:
    _, batch = shared
    (holder,) = batch.held_elsewhere()
    assert holder.pid == kernel_a.pid and sorted(holder.task_ids) == sorted(
        t.id for t in batch.tasks
    )
    assert holder.describe().startswith(f"process {kernel_a.pid} on host ")
    with pytest.raises(HeldElsewhereError, match=r"3 task\(s\) of batch .* another kernel"):
        batch.run_sync("demo")
    assert batch.runner is None  # nothing started, nothing reported finished
    assert batch.refresh().status == "running"

    assert kernel_a.stdin is not None
    kernel_a.stdin.write("go\n")
    kernel_a.stdin.flush()
    changed: list[str] = []
    batch.follow(  # returns when A's run has ended
        interval=0.02, timeout=60, on_change=lambda ts: changed.extend(t.id for t in ts)
    )
    assert [t.status for t in batch.tasks] == [TaskStatus.SUCCEEDED] * 3
    assert sorted(set(changed)) == sorted(t.id for t in batch.tasks)  # each one told
    assert all(t.images for t in batch.tasks)
    assert batch.held_elsewhere() == []


def test_an_edit_made_after_another_kernel_loaded_the_batch_is_what_it_sends(
    shared: tuple[Path, Batch],
) -> None:
    path, batch = shared
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(path), batch.id, "loaded"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "LOADED\n"  # A holds the original prompts
        batch.edit(batch.tasks[1], prompt="a purple car")  # nothing holds it yet
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.read().splitlines()[-1] == "DONE succeeded"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    edited = batch.refresh().tasks[1]
    assert edited.prompt == "a purple car" and edited.status is TaskStatus.SUCCEEDED
    # the image carries the prompt A sent: the edited one
    assert read_generation_info(edited.images[0]).prompt == "a purple car"
