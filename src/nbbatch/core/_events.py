"""Typed events a batch announces; widgets, progress bars and user code subscribe.

Two families, both from ``batch.subscribe(fn)`` whether or not a run exists:

* changes to the batch itself — :class:`TaskAdded`, :class:`TaskChanged` (with the names
  of the fields that changed), :class:`TaskRemoved`, :class:`TasksReordered`;
* what a run does — :class:`TaskQueued` … :class:`TaskInterrupted`,
  :class:`RunStateChanged`, :class:`BatchProgress`, and :class:`RemoteJobChanged` (a job at
  a provider's batch API moved on).

Every event carries ``batch_id``. Events are announced *after* the change they describe is
journaled, so a subscriber that reads the workspace sees what the event says. They are
delivered on the thread of the event loop that was running where ``subscribe`` was called
(a run in a worker thread, as under ``run_sync``, hands them over); subscribers must be
quick, and an exception in one is logged and stops nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._model import GeneratedImage, Task

__all__ = [
    "BatchChange",
    "BatchProgress",
    "Event",
    "RemoteJobChanged",
    "RunState",
    "RunStateChanged",
    "TaskAdded",
    "TaskCancelled",
    "TaskChanged",
    "TaskEvent",
    "TaskFailed",
    "TaskInterrupted",
    "TaskProgress",
    "TaskQueued",
    "TaskRemoved",
    "TaskRetrying",
    "TaskStarted",
    "TaskSucceeded",
    "TasksReordered",
]


class RunState(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TaskQueued:
    task: Task
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStarted:
    task: Task
    attempt: int
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskProgress:
    task: Task
    progress: float | None
    preview: bytes | None = None
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRetrying:
    task: Task
    attempt: int
    delay: float
    error: str
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskSucceeded:
    task: Task
    images: Sequence[GeneratedImage] = field(default_factory=tuple)
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskFailed:
    task: Task
    error: str
    kind: str
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskCancelled:
    task: Task
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskInterrupted:
    task: Task
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunStateChanged:
    state: RunState
    batch_id: str | None = None
    #: why, in words, when the run changed state by itself (a full disk paused it)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Counts for the tasks of this run, plus an ETA in seconds (None until measurable)."""

    total: int
    done: int
    succeeded: int
    failed: int
    cancelled: int
    running: int
    queued: int
    eta: float | None
    batch_id: str | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True, slots=True)
class RemoteJobChanged:
    """A job of a batch API run (``run(..., batch_api=True)``) moved on at the provider.

    ``state`` is in OpenAI's words whatever the provider (``validating``, ``in_progress``,
    ``finalizing``, ``completed``, ``expired``, ``cancelling``, ``cancelled``, ``failed``);
    ``completed`` / ``failed`` / ``total`` are the provider's request counts. ``tasks`` are
    the job's tasks still waiting for their result: each now carries ``label`` ("submitted
    to the batch API: in progress at OpenAI") as its ``error``, what a grid row shows. One
    event for the whole job (up to 50,000 tasks), not one per task.
    """

    job_id: str
    state: str
    label: str
    tasks: tuple[Task, ...]
    completed: int = 0
    failed: int = 0
    total: int = 0
    remote_id: str | None = None
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskAdded:
    """A task joined the batch at position ``index`` (0-based, in the batch's order)."""

    task: Task
    index: int
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskChanged:
    """A task was edited outside a run's own progress: ``fields`` names what changed
    (``prompt``, ``params``, ``references``, ``status``…)."""

    task: Task
    fields: tuple[str, ...]
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRemoved:
    """A task left the batch (its row is gone from the journal)."""

    task_id: str
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class TasksReordered:
    """The batch's order changed; ``order`` holds every task id, first to last."""

    order: tuple[str, ...]
    batch_id: str | None = None


BatchChange = TaskAdded | TaskChanged | TaskRemoved | TasksReordered

TaskEvent = (
    TaskQueued
    | TaskStarted
    | TaskProgress
    | TaskRetrying
    | TaskSucceeded
    | TaskFailed
    | TaskCancelled
    | TaskInterrupted
)
Event = TaskEvent | BatchChange | RunStateChanged | BatchProgress | RemoteJobChanged
