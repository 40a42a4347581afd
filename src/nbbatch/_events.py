"""Typed events the runner emits; widgets, progress bars and user code subscribe.

Events are announced *after* the change they describe is journaled, so a subscriber that
reads the workspace sees what the event says. Subscribers run on the runner's thread and
must be quick; an exception in one is logged and does not stop the run.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._model import GeneratedImage, Task

__all__ = [
    "BatchProgress",
    "Event",
    "RunState",
    "RunStateChanged",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskInterrupted",
    "TaskProgress",
    "TaskQueued",
    "TaskRetrying",
    "TaskStarted",
    "TaskSucceeded",
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


@dataclass(frozen=True, slots=True)
class TaskStarted:
    task: Task
    attempt: int


@dataclass(frozen=True, slots=True)
class TaskProgress:
    task: Task
    progress: float | None
    preview: bytes | None = None


@dataclass(frozen=True, slots=True)
class TaskRetrying:
    task: Task
    attempt: int
    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class TaskSucceeded:
    task: Task
    images: Sequence[GeneratedImage] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class TaskFailed:
    task: Task
    error: str
    kind: str


@dataclass(frozen=True, slots=True)
class TaskCancelled:
    task: Task


@dataclass(frozen=True, slots=True)
class TaskInterrupted:
    task: Task


@dataclass(frozen=True, slots=True)
class RunStateChanged:
    state: RunState


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

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


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
Event = TaskEvent | RunStateChanged | BatchProgress
