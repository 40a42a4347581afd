"""The runner keeps the event loop free: journal commits and saves off the loop, in order.

Each test pins one guarantee that moving work off the loop must keep: a status is
journaled before it is announced or acted on, a task is succeeded in memory only once
its row has committed, a stop arriving during a commit lands after it, and the threads
that do the heavy work give the loop the CPU first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from nbbatch import Batch, TaskStatus, Workspace
from nbbatch.core._aio import BACKGROUND_NICE, lower_thread_priority
from nbbatch.events import TaskStarted, TaskSucceeded
from nbbatch.images import ThumbnailCache
from nbbatch.providers._base import GenerationRequest, ImageData, ProgressCallback
from tests.support import ControlledProvider, png_bytes

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice per thread")


def journaled(workspace: Workspace, task_id: str) -> tuple[str, int]:
    """The task's status and attempts as another reader of the journal sees them."""
    with sqlite3.connect(workspace.db_path) as db:
        row = db.execute("SELECT status, attempts FROM tasks WHERE id=?", (task_id,)).fetchone()
    return str(row[0]), int(row[1])


class JournalCheckingProvider(ControlledProvider):
    """Records what the journal said when each request was sent."""

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.seen_at_send: list[tuple[str, int]] = []

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        assert request.task_id is not None
        self.seen_at_send.append(journaled(self.workspace, request.task_id))
        return await super().generate(request, on_progress)


async def test_each_attempt_is_journaled_before_it_is_announced_and_sent(
    workspace: Workspace,
) -> None:
    provider = JournalCheckingProvider(workspace)
    batch = Batch.create(workspace=workspace, tasks=["a", "b", "c", "d"])
    at_announce: list[tuple[str, int]] = []
    at_success: list[tuple[str, int]] = []

    def check(event: object) -> None:
        if isinstance(event, TaskStarted):
            at_announce.append(journaled(workspace, event.task.id))
        elif isinstance(event, TaskSucceeded):
            at_success.append(journaled(workspace, event.task.id))
            assert workspace.task(event.task.id).images[0].path.exists()

    batch.subscribe(check)
    await batch.run(provider, concurrency=2)
    assert at_announce == [("running", 1)] * 4
    assert provider.seen_at_send == [("running", 1)] * 4
    assert at_success == [("succeeded", 1)] * 4


async def test_journal_commits_and_saves_run_off_the_event_loop_thread(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, set[int]] = {"status": set(), "success": set(), "blob": set()}
    real_status, real_success = Workspace.save_status_row, Workspace.record_success
    real_blob = Workspace.write_blob

    def status(self: Workspace, row: tuple[Any, ...]) -> None:
        threads["status"].add(threading.get_ident())
        real_status(self, row)

    def success(self: Workspace, *args: Any, **kwargs: Any) -> Any:
        threads["success"].add(threading.get_ident())
        return real_success(self, *args, **kwargs)

    def blob(self: Workspace, data: bytes, ext: str) -> Any:
        threads["blob"].add(threading.get_ident())
        return real_blob(self, data, ext)

    monkeypatch.setattr(Workspace, "save_status_row", status)
    monkeypatch.setattr(Workspace, "record_success", success)
    monkeypatch.setattr(Workspace, "write_blob", blob)
    batch = Batch.create(workspace=workspace, tasks=["a", "b", "c"])
    await batch.run(ControlledProvider(), concurrency=3)
    assert batch.status == "succeeded"
    loop_thread = threading.get_ident()
    assert threads["status"] and loop_thread not in threads["status"]
    assert threads["success"] and loop_thread not in threads["success"]
    assert threads["blob"] and loop_thread not in threads["blob"]
    assert len(threads["status"] | threads["success"]) == 1, "one journal thread keeps order"


async def test_a_task_is_succeeded_in_memory_only_after_its_row_commits(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = Batch.create(workspace=workspace, tasks=["a"])
    task = batch.tasks[0]
    during_commit: list[TaskStatus] = []
    real = Workspace.record_success

    def success(self: Workspace, *args: Any, **kwargs: Any) -> Any:
        during_commit.append(task.status)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Workspace, "record_success", success)
    await batch.run(ControlledProvider())
    assert during_commit == [TaskStatus.RUNNING]
    assert task.status is TaskStatus.SUCCEEDED
    assert journaled(workspace, task.id) == ("succeeded", 1)


async def test_a_failed_success_commit_leaves_the_task_failed_not_succeeded(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbbatch.errors import StorageError

    def full_disk(self: Workspace, *args: Any, **kwargs: Any) -> Any:
        raise StorageError("could not write the workspace database: disk full")

    monkeypatch.setattr(Workspace, "record_success", full_disk)
    batch = Batch.create(workspace=workspace, tasks=["a"])
    await batch.run(ControlledProvider())
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED
    assert task.images == []
    assert journaled(workspace, task.id)[0] == "failed"


async def test_a_stop_during_a_journal_commit_is_journaled_after_it(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real = Workspace.save_status_row

    def slow_disk(self: Workspace, row: tuple[Any, ...]) -> None:
        entered.set()
        assert release.wait(10), "the test never released the commit"
        real(self, row)

    monkeypatch.setattr(Workspace, "save_status_row", slow_disk)
    provider = ControlledProvider()
    batch = Batch.create(workspace=workspace, tasks=["a"])
    runner = batch.start(provider)
    assert await asyncio.to_thread(entered.wait, 10)
    runner.stop()  # arrives while "running" is being committed
    release.set()
    await runner.wait()
    task = batch.tasks[0]
    assert task.status is TaskStatus.INTERRUPTED
    assert journaled(workspace, task.id) == ("interrupted", 1), "the stop landed last"
    assert provider.calls == [], "nothing is sent once the run is stopping"


async def test_objects_older_than_a_run_are_set_aside_by_the_collector_until_it_ends(
    workspace: Workspace,
) -> None:
    assert gc.get_freeze_count() == 0
    gate = asyncio.Event()
    one = Batch.create(workspace=workspace, tasks=["a"]).start(ControlledProvider(gate=gate))
    two = Batch.create(workspace=workspace, tasks=["b"]).start(ControlledProvider())
    await two.wait()
    assert gc.get_freeze_count() > 0, "still frozen while the other run goes on"
    gate.set()
    await one.wait()
    assert gc.get_freeze_count() == 0


def test_a_run_whose_loop_is_closed_under_it_does_not_leave_the_collector_frozen(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.new_event_loop()

    async def start() -> Any:
        return Batch.create(workspace=workspace, tasks=["a"]).start(
            ControlledProvider(gate=asyncio.Event())
        )

    run = loop.run_until_complete(start())
    loop.run_until_complete(asyncio.sleep(0.01))  # the run is waiting on its provider
    assert gc.get_freeze_count() > 0
    running = [t for t in asyncio.all_tasks(loop) if not t.done()]
    loop.close()  # closed without cancelling what runs on it
    for task in running:  # what the collector does to a dropped coroutine
        with contextlib.suppress(RuntimeError):
            task.get_coro().close()
    assert gc.get_freeze_count() == 0
    workspace.release_lease(run._lease)  # what the dead process's exit would do
    # The dropped tasks are collected here, not at some later test or at exit, and
    # asyncio says of each that it was destroyed pending, as for any loop closed so.
    names = {t.get_name() for t in running}
    del run, running, task
    with caplog.at_level("ERROR", logger="asyncio"):
        gc.collect()
    reported = {n for n in names if any(n in r.getMessage() for r in caplog.records)}
    assert reported == names


@linux_only
async def test_save_threads_run_at_a_lower_cpu_priority_than_the_loop(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []
    real = Workspace.write_blob

    def blob(self: Workspace, data: bytes, ext: str) -> Any:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(self, data, ext)

    monkeypatch.setattr(Workspace, "write_blob", blob)
    await Batch.create(workspace=workspace, tasks=["a", "b"]).run(ControlledProvider())
    assert seen and all(p == min(19, base + BACKGROUND_NICE) for p in seen)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


@linux_only
async def test_thumbnails_for_the_loop_render_at_a_lower_cpu_priority(tmp_path: Path) -> None:
    from nbbatch.images import _thumbs

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    cache = ThumbnailCache(tmp_path / "thumbs")
    await cache.aget(png_bytes((64, 64)), 32)
    pool = _thumbs._pool()
    priority = await asyncio.get_running_loop().run_in_executor(
        pool, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    )
    assert priority == min(19, base + BACKGROUND_NICE)


@linux_only
def test_a_background_thread_is_lowered_from_its_own_nice_not_set_to_a_fixed_one() -> None:
    # A thread already at nice 5 (as every thread of a niced kernel is) asked to go 3
    # lower ends at 8: never back up to 3, above the loop that started it.
    seen: list[int] = []

    def worker() -> None:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, 5)
        lower_thread_priority(3)
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))
        lower_thread_priority(30)
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [8, 19]
