"""Editing a batch: every change checked, journaled, announced — also while it runs."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from nbbatch import Batch, Params, Task, TaskStatus, Workspace
from nbbatch.errors import (
    ConfigError,
    ImageRejectedError,
    InvalidPromptError,
    NotFoundError,
    ServerError,
    TaskStateError,
)
from nbbatch.events import (
    Event,
    RunStateChanged,
    TaskAdded,
    TaskChanged,
    TaskQueued,
    TasksReordered,
    TaskSucceeded,
)
from nbbatch.images import ImageLimits, read_generation_info
from nbbatch.providers import DemoProvider
from tests.support import ControlledProvider, needs_fifo, png_bytes, with_timeout


def fresh(batch: Batch) -> Batch:
    """The batch as a new reader of the journal sees it."""
    return Batch.load(batch.id, batch.workspace)


def prompts(batch: Batch) -> list[str]:
    return [t.prompt for t in batch.tasks]


# --------------------------------------------------------------------------- edit
def test_edit_changes_prompt_params_and_references_and_journals_them(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["a fox", "a boat"], workspace=workspace)
    ref = workspace.add_reference(png_bytes(), "fox.png")
    seen: list[Event] = []
    batch.subscribe(seen.append)

    task = batch.edit(
        batch[0],
        prompt="  a red fox  ",
        negative_prompt="blurry",
        params={"size": "64x64", "seed": 7},
        references=[ref],
    )

    assert task is batch[0]
    assert task.prompt == "a red fox"
    assert task.params == Params(size="64x64", seed=7, negative_prompt="blurry")
    again = fresh(batch)[0]
    assert (again.prompt, again.params, again.references) == ("a red fox", task.params, [ref])
    assert seen == [TaskChanged(task, ("prompt", "params", "references"), batch_id=batch.id)]


def test_edit_that_changes_nothing_announces_nothing(workspace: Workspace) -> None:
    batch = Batch.create(["a fox"], workspace=workspace)
    seen: list[Event] = []
    batch.subscribe(seen.append)
    batch.edit(batch[0].id, prompt="a fox")
    assert seen == []


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"prompt": "   "}, InvalidPromptError, "empty"),
        ({"prompt": "x" * 40_000}, InvalidPromptError, "limit"),
        ({"params": {"n": 99}}, ConfigError, "between 1 and 16"),
        ({"params": {"colour": "red"}}, ConfigError, "unknown parameter"),
    ],
)
def test_invalid_edits_are_refused_and_change_nothing(
    workspace: Workspace, changes: dict[str, object], error: type[Exception], words: str
) -> None:
    batch = Batch.create(["a fox"], workspace=workspace)
    with pytest.raises(error, match=words):
        batch.edit(batch[0], **changes)  # type: ignore[arg-type]
    assert batch[0].prompt == "a fox" and batch[0].params == Params()
    assert fresh(batch)[0].prompt == "a fox"


def test_a_reference_the_workspace_does_not_hold_is_refused(
    workspace: Workspace, tmp_path: Path
) -> None:
    with Workspace(tmp_path / "other") as other:
        foreign = other.add_reference(png_bytes(colour=(1, 2, 3)), "elsewhere.png")
    batch = Batch.create(["a fox"], workspace=workspace)
    with pytest.raises(NotFoundError, match="add_reference"):
        batch.edit(batch[0], references=[foreign])
    assert batch[0].references == []


async def test_running_and_done_tasks_cannot_be_edited_and_say_what_to_do(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["first", "second"], workspace=workspace)
    gate = asyncio.Event()
    runner = batch.start(ControlledProvider(gate=gate), concurrency=1)
    while batch[0].status is not TaskStatus.RUNNING:
        await asyncio.sleep(0)
    with pytest.raises(TaskStateError, match="cancel it first"):
        batch.edit(batch[0], prompt="changed")
    gate.set()
    await runner.wait()
    with pytest.raises(TaskStateError, match=r"batch\.duplicate\(task\)"):
        batch.edit(batch[0], prompt="changed")
    assert fresh(batch)[0].prompt == "first"


async def test_a_queued_task_edited_during_a_run_keeps_its_place_and_is_sent_as_edited(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["one", "two", "three"], workspace=workspace)
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    runner = batch.start(provider, concurrency=1)
    while not provider.calls:
        await asyncio.sleep(0)
    assert batch[2].status is TaskStatus.QUEUED
    batch.edit(batch[2], prompt="three, edited")
    gate.set()
    await runner.wait()
    assert provider.calls == ["one", "two", "three, edited"]


# --------------------------------------------------------------------------- add / duplicate
async def test_tasks_added_during_a_run_are_run_by_it(workspace: Workspace) -> None:
    batch = Batch.create(["one", "two"], workspace=workspace)
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    runner = batch.start(provider, concurrency=1)
    while not provider.calls:
        await asyncio.sleep(0)
    added = batch.add(["three", "four"])
    assert [t.status for t in added] == [TaskStatus.QUEUED] * 2
    gate.set()
    await runner.wait()
    assert provider.calls == ["one", "two", "three", "four"]
    assert runner.progress().total == 4 and runner.progress().succeeded == 4
    assert [t.status for t in fresh(batch).tasks] == [TaskStatus.SUCCEEDED] * 4


def test_tasks_added_without_a_run_wait_and_are_journaled_in_order(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["one"], workspace=workspace)
    batch.add(["two", "three"], params=Params(size="64x64"))
    assert prompts(fresh(batch)) == ["one", "two", "three"]
    assert fresh(batch)[2].params.size == "64x64"
    assert [t.status for t in batch] == [TaskStatus.IDLE] * 3


def test_only_new_tasks_can_be_added(workspace: Workspace) -> None:
    batch = Batch.create(["one"], workspace=workspace)
    done = Task("old")
    done.transition(TaskStatus.QUEUED)
    with pytest.raises(TaskStateError, match="duplicate"):
        batch.add([done])
    with pytest.raises(ConfigError, match="already belongs"):
        Batch.create(["x"], workspace=workspace).add([batch[0]])


def test_duplicate_places_a_waiting_copy_right_after_the_original(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["one", "two", "three"], workspace=workspace)
    ref = workspace.add_reference(png_bytes(), "r.png")
    batch.edit(batch[1], references=[ref], params={"seed": 3})
    seen: list[Event] = []
    batch.subscribe(seen.append)

    copy = batch.duplicate(batch[1])

    assert prompts(batch) == ["one", "two", "two", "three"]
    assert batch[2] is copy and copy.id != batch[1].id
    assert (copy.params, copy.references, copy.status) == (
        batch[1].params,
        [ref],
        TaskStatus.IDLE,
    )
    assert prompts(fresh(batch)) == ["one", "two", "two", "three"]
    assert [t.order for t in batch] == [0, 1, 2, 3]
    assert seen == [TaskAdded(copy, 2, batch_id=batch.id)]


# --------------------------------------------------------------------------- remove / move
async def test_remove_deletes_tasks_refuses_running_ones_and_keeps_the_rest(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["one", "two", "three"], workspace=workspace)
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    runner = batch.start(provider, concurrency=1)
    while not provider.calls:
        await asyncio.sleep(0)
    with pytest.raises(TaskStateError, match="cancel it first"):
        batch.remove(batch[0], batch[1])
    assert len(batch) == 3  # nothing went: the refusal is for the whole call

    batch.remove(batch[1])  # queued: it leaves the run and is never sent
    gate.set()
    await runner.wait()
    assert provider.calls == ["one", "three"]
    assert prompts(batch) == prompts(fresh(batch)) == ["one", "three"]
    assert runner.progress().total == 2


async def test_a_removed_result_stays_on_disk_while_another_task_uses_it(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["one", "two"], workspace=workspace)
    await batch.run(ControlledProvider())
    image = batch[0].images[0]
    child = batch.derive(image, "one, in winter")
    batch.remove(batch[0])
    assert image.path.exists()
    workspace.close()
    with Workspace(workspace.path) as again:  # reconciling keeps files a row still uses
        assert image.path.exists()
        reopened = Batch.load(batch.id, again)
        assert reopened[child.id].references[0].sha256 == image.sha256
        assert image.sha256 in again.known_digests()


def test_move_reorders_and_journals_the_order(workspace: Workspace) -> None:
    batch = Batch.create(["a", "b", "c", "d"], workspace=workspace)
    seen: list[Event] = []
    batch.subscribe(seen.append)
    batch.move(batch[3], 0)
    assert prompts(batch) == ["d", "a", "b", "c"]
    batch.move(batch[1].id, -1)
    assert prompts(batch) == ["d", "b", "c", "a"] == prompts(fresh(batch))
    assert [t.order for t in fresh(batch)] == [0, 1, 2, 3]
    assert [type(e) for e in seen] == [TasksReordered, TasksReordered]
    assert isinstance(seen[-1], TasksReordered)
    assert seen[-1].order == tuple(t.id for t in batch)


def test_move_outside_the_batch_is_refused(workspace: Workspace) -> None:
    batch = Batch.create(["a", "b"], workspace=workspace)
    with pytest.raises(ConfigError, match="outside the batch"):
        batch.move(batch[0], 2)
    with pytest.raises(NotFoundError):
        batch.move("no-such-task", 0)
    assert prompts(fresh(batch)) == ["a", "b"]


async def test_moving_a_queued_task_changes_what_the_run_sends_next(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["one", "two", "three", "four"], workspace=workspace)
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    runner = batch.start(provider, concurrency=1)
    while not provider.calls:
        await asyncio.sleep(0)
    batch.move(batch[3], 1)
    gate.set()
    await runner.wait()
    assert provider.calls == ["one", "four", "two", "three"]


# --------------------------------------------------------------------------- retry / run next
class HoldsOnePrompt(ControlledProvider):
    """Requests for ``held`` wait for ``release``; the others answer at once."""

    def __init__(self, held: str) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()

    async def generate(self, request, on_progress=None):  # type: ignore[no-untyped-def]
        if request.prompt == self.held:
            await self.release.wait()
        return await super().generate(request, on_progress)


async def test_retry_during_a_run_sends_the_failed_task_again_in_that_run(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["bad", "slow"], workspace=workspace)
    provider = HoldsOnePrompt("slow")  # keeps the run alive while "bad" fails
    provider.script["bad"] = [ServerError("boom", provider="controlled", retryable=False)]
    runner = batch.start(provider, concurrency=2, retry=0)
    while batch[0].status is not TaskStatus.FAILED:
        await asyncio.sleep(0)
    batch.retry(batch[0])
    assert batch[0].status is TaskStatus.QUEUED
    while batch[0].status is not TaskStatus.SUCCEEDED:
        await asyncio.sleep(0)
    provider.release.set()
    await runner.wait()
    assert provider.calls.count("bad") == 2
    assert runner.progress().succeeded == 2 and runner.progress().failed == 0


def test_retry_without_a_run_makes_the_task_wait_for_the_next_start(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["one"], workspace=workspace)
    task = batch[0]
    task.transition(TaskStatus.QUEUED)
    task.transition(TaskStatus.RUNNING)
    task.transition(TaskStatus.FAILED)
    task.error = "boom"
    workspace.save_status(task)
    seen: list[Event] = []
    batch.subscribe(seen.append)
    batch.retry(task)
    assert task.status is TaskStatus.IDLE and task.error is None
    assert fresh(batch)[0].status is TaskStatus.IDLE
    assert seen == [TaskChanged(task, ("status", "error"), batch_id=batch.id)]
    with pytest.raises(TaskStateError, match="only failed, cancelled or interrupted"):
        batch.retry(task)


async def test_run_next_sends_a_queued_task_first(workspace: Workspace) -> None:
    batch = Batch.create(["one", "two", "three"], workspace=workspace)
    with pytest.raises(ConfigError, match="start the batch first"):
        batch.run_next(batch[2])
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    runner = batch.start(provider, concurrency=1)
    while not provider.calls:
        await asyncio.sleep(0)
    batch.run_next(batch[2])
    gate.set()
    await runner.wait()
    assert provider.calls == ["one", "three", "two"]


async def test_the_run_goes_on_until_nothing_runnable_is_left(workspace: Workspace) -> None:
    batch = Batch.create(["one"], workspace=workspace)
    provider = ControlledProvider()
    added: list[Task] = []

    def add_once(event: Event) -> None:
        if isinstance(event, TaskSucceeded) and not added:
            added.extend(batch.add(["two"]))

    batch.subscribe(add_once)
    await batch.run(provider)
    assert provider.calls == ["one", "two"]
    assert added[0].status is TaskStatus.SUCCEEDED


# ------------------------------------------------------------ derive / remix / lineage
async def test_derive_makes_a_child_task_from_an_image_and_lineage_goes_both_ways(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["a fox"], workspace=workspace, params=Params(size="64x64", seed=1))
    await batch.run(DemoProvider())
    parent = batch[0]
    image = parent.images[0]

    child = image.edit("a fox in snow", strength=0.5)
    grandchild = batch.derive(image, "a fox at night")
    assert child.parent is parent and child.parent_id == parent.id
    assert child.references[0].sha256 == image.sha256
    assert child.params.strength == 0.5 and child.params.seed is None
    assert child.params.size == "64x64"
    assert parent.children == [child, grandchild]
    assert batch.lineage(child) == [parent, child]
    assert batch.lineage(parent) == [parent, child, grandchild]

    again = fresh(batch)
    assert again[child.id].parent is again[parent.id]
    assert [r.sha256 for r in again[child.id].references] == [image.sha256]
    await again.run(DemoProvider())
    assert again[child.id].status is TaskStatus.SUCCEEDED


async def test_remix_copies_the_prompt_and_params_of_an_image(workspace: Workspace) -> None:
    batch = Batch.create(
        ["a koi pond"], workspace=workspace, params=Params(size="64x64", seed=5, steps=12)
    )
    await batch.run(DemoProvider())
    image = batch[0].images[0]
    remixed = batch.remix(image.path)
    assert remixed.prompt == "a koi pond"
    assert (remixed.params.seed, remixed.params.steps) == (5, 12)
    assert remixed.status is TaskStatus.IDLE and batch[-1] is remixed
    assert read_generation_info(image.path).prompt == "a koi pond"


def test_an_image_without_a_batch_says_how_to_edit_it(workspace: Workspace) -> None:
    from nbbatch import GeneratedImage

    loose = GeneratedImage("t", 0, Path("x.png"), "0" * 64, 8, 8, "PNG")
    with pytest.raises(ConfigError, match=r"Batch\.load"):
        loose.edit("again")


# --------------------------------------------------------------------------- events
async def test_every_change_is_announced_once_in_order_on_the_loop_thread(
    workspace: Workspace,
) -> None:
    batch = Batch.create(["a", "b", "c"], workspace=workspace)
    seen: list[tuple[str, str | None, int]] = []

    def record(event: Event) -> None:
        name = type(event).__name__
        seen.append((name, getattr(event, "batch_id", None), threading.get_ident()))

    batch.subscribe(record)
    loop_thread = threading.get_ident()

    batch.edit(batch[0], prompt="a, edited")
    batch.move(batch[2], 0)
    extra = batch.add(["d"])[0]
    batch.remove(extra)
    outside = [name for name, _, _ in seen]
    assert outside == ["TaskChanged", "TasksReordered", "TaskAdded", "TaskRemoved"]

    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    runner = batch.start(provider, concurrency=1)
    while not provider.calls:
        await asyncio.sleep(0)
    batch.edit(batch[2], prompt="last, edited")
    batch.remove(batch[1])
    gate.set()
    await runner.wait()

    names = [name for name, _, _ in seen]
    during = names[len(outside) :]
    assert during[:3] == ["TaskQueued"] * 3
    assert "TaskChanged" in during and "TaskRemoved" in during
    assert during.index("TaskChanged") < during.index("TaskRemoved")
    assert during.count("TaskSucceeded") == 2
    assert {batch_id for _, batch_id, _ in seen} == {batch.id}
    assert {thread for _, _, thread in seen} == {loop_thread}


async def test_events_of_run_sync_in_a_worker_thread_reach_the_loop_thread_in_order(
    workspace: Workspace,
) -> None:
    batch = Batch.create([f"p{i}" for i in range(4)], workspace=workspace)
    seen: list[tuple[Event, int]] = []
    batch.subscribe(lambda e: seen.append((e, threading.get_ident())))
    loop_thread = threading.get_ident()

    await asyncio.to_thread(batch.run_sync, DemoProvider(), concurrency=2)
    # handed over with call_soon_threadsafe: they arrive once the loop runs again
    for _ in range(5):
        await asyncio.sleep(0)

    assert seen, "no event arrived"
    assert {thread for _, thread in seen} == {loop_thread}
    kinds = [type(e) for e, _ in seen]
    assert kinds.count(TaskQueued) == 4 and kinds.count(TaskSucceeded) == 4
    states = [e.state.value for e, _ in seen if isinstance(e, RunStateChanged)]
    assert states == ["running", "finished"]
    succeeded = [e.task.id for e, _ in seen if isinstance(e, TaskSucceeded)]
    assert len(set(succeeded)) == 4  # each once


def test_a_subscriber_that_raises_stops_nothing(workspace: Workspace) -> None:
    batch = Batch.create(["a"], workspace=workspace)
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    batch.subscribe(broken)
    batch.subscribe(seen.append)
    batch.edit(batch[0], prompt="b")
    assert len(seen) == 1 and fresh(batch)[0].prompt == "b"


def test_unsubscribe_stops_the_events(workspace: Workspace) -> None:
    batch = Batch.create(["a"], workspace=workspace)
    seen: list[Event] = []
    stop = batch.subscribe(seen.append)
    stop()
    batch.edit(batch[0], prompt="b")
    assert seen == []


async def test_async_twins_keep_blocking_work_off_the_loop(workspace: Workspace) -> None:
    from nbbatch.images import ThumbnailCache

    ref = await workspace.aadd_reference(png_bytes((32, 32)), "r.png")
    assert workspace.has_input(ref.sha256)
    data = await ThumbnailCache(workspace).aget_bytes(ref, 16)
    assert data[:4] == b"RIFF"


# -- hostile input to add_reference (found by trying to break nbbatch) ------------
# Defect 4: a FIFO or a link to /dev/zero given as a reference was waited on or read whole.


@needs_fifo
def test_a_fifo_given_to_add_reference_is_refused_at_once_not_waited_on(
    tmp_path: Path, workspace: Workspace
) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageRejectedError, match="named pipe") as caught:
        with_timeout(lambda: workspace.add_reference(fifo))
    assert caught.value.reason == "not_a_file"
    assert workspace.known_digests() == set()


def test_a_link_to_dev_zero_given_to_add_reference_is_refused_unread(
    tmp_path: Path, workspace: Workspace
) -> None:
    link = tmp_path / "photo.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageRejectedError, match="character device") as caught:
        with_timeout(lambda: workspace.add_reference(link))
    assert caught.value.reason == "not_a_file"


@needs_fifo
def test_the_async_add_reference_refuses_a_fifo_too(tmp_path: Path, workspace: Workspace) -> None:
    import asyncio

    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageRejectedError, match="named pipe"):
        with_timeout(lambda: asyncio.run(workspace.aadd_reference(fifo)))


def test_a_reference_file_over_the_byte_cap_is_refused_with_its_size(
    tmp_path: Path, workspace: Workspace
) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes() + b"\0" * 5000)
    limits = ImageLimits(max_bytes=1000)
    with pytest.raises(ImageRejectedError, match="limit") as caught:
        workspace.add_reference(big, limits=limits)
    assert caught.value.reason == "too_many_bytes"
    assert caught.value.limit == 1000
    ref = workspace.add_reference(
        _write(tmp_path / "ok.png", png_bytes())
    )  # a regular file still works
    assert ref.width == 8


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
