"""What lower layers need of higher-layer objects, written as protocols.

The image layer works on tasks and images; it also accepts a batch or a workspace where
that is convenient (``contact_sheet(batch)``, ``ThumbnailCache(workspace)``), but it must
not import the engine. These protocols name exactly what it uses of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._model import Task

__all__ = ["BatchLike", "TaskSource", "WorkspaceLike"]


@runtime_checkable
class WorkspaceLike(Protocol):
    """A workspace folder: ``path`` holds ``images/`` (and caches such as ``thumbs/``)."""

    @property
    def path(self) -> Path: ...

    @property
    def images_dir(self) -> Path: ...

    def known_digests(self) -> set[str]:
        """The sha256 of every image a row still uses (results and inputs)."""
        ...


@runtime_checkable
class TaskSource(Protocol):
    """Anything holding tasks in order, such as a batch."""

    @property
    def tasks(self) -> Sequence[Task]: ...


class BatchLike(TaskSource, Protocol):
    """A batch as a follower of its events sees it."""

    @property
    def workspace(self) -> WorkspaceLike: ...

    def subscribe(self, fn: Callable[[Any], None]) -> Callable[[], None]: ...
