"""What a run's helpers may see of the run: the :class:`RunControl` protocol.

:class:`~nbbatch.engine._outage.ServerWait` (waiting for an unreachable server) and
:class:`~nbbatch.engine._pace.Pace` (budget, deadline, priority) each hold the
:class:`~nbbatch.engine.Runner` they serve and steer it: pause and resume it, put a task
back in its queue, read its progress. Typing them against this protocol instead of the
``Runner`` class keeps the import graph one-way (the runner imports them, never the
reverse), and writes down in one place how much of the runner they reach into.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ..core._events import BatchProgress, Event, RunState
    from ..core._model import Task, TaskStatus
    from ..providers._base import Provider
    from ._store import Workspace

__all__ = ["RunControl"]

_T = TypeVar("_T")


class RunControl(Protocol):
    """The runner as its outage and pace helpers use it (``Runner`` satisfies it)."""

    workspace: Workspace
    batch_id: str | None
    provider: Provider
    state: RunState
    concurrency: int
    _providers: dict[str, Provider]
    _tasks: list[Task]
    _stopping: bool
    _paused: bool
    _slots: dict[str, str]

    @property
    def active(self) -> int: ...

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]: ...
    def pause(self, *, reason: str | None = None) -> None: ...
    def resume(self) -> None: ...
    def stop(self, *, reason: str | None = None) -> None: ...
    async def wait(self) -> None: ...
    def progress(self) -> BatchProgress: ...
    def _provider_for(self, task: Task) -> Provider: ...
    def _queue_for(self, task: Task) -> collections.deque[Task]: ...
    def _poke(self) -> None: ...
    def _emit(self, event: Event) -> None: ...
    def _has_pending(self) -> bool: ...
    def _count(self, old: TaskStatus, new: TaskStatus) -> None: ...
    async def _journal(self, write: Callable[..., _T], *args: Any, **kwargs: Any) -> _T: ...
