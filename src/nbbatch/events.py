"""Events a batch announces (subscribe with ``batch.subscribe(fn)``).

Batch changes (``TaskAdded``, ``TaskChanged``, ``TaskRemoved``, ``TasksReordered``) and run
events (``TaskQueued`` … ``TaskInterrupted``, ``RunStateChanged``, ``BatchProgress``,
``RemoteJobChanged``); each
carries ``batch_id`` and is announced after the change is journaled.
"""

from .core._events import (
    BatchChange,
    BatchProgress,
    Event,
    RemoteJobChanged,
    RunState,
    RunStateChanged,
    TaskAdded,
    TaskCancelled,
    TaskChanged,
    TaskEvent,
    TaskFailed,
    TaskInterrupted,
    TaskProgress,
    TaskQueued,
    TaskRemoved,
    TaskRetrying,
    TasksReordered,
    TaskStarted,
    TaskSucceeded,
)

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
