"""Events emitted while a batch runs (subscribe with ``batch.subscribe(fn)``)."""

from ._events import (
    BatchProgress,
    Event,
    RunState,
    RunStateChanged,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskInterrupted,
    TaskProgress,
    TaskQueued,
    TaskRetrying,
    TaskStarted,
    TaskSucceeded,
)

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
