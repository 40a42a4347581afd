"""The batch summary's figures, kept up to date from the batch's events.

The toolbar, the filter chips and the gallery show how many tasks are in each status,
how many images there are, how many tasks are starred and whether any task has
references. Counting them walks every task (0.2–0.6 s for 100,000 tasks on a busy
machine), and a summary goes with every ``hello`` and every patch (up to 5 a second
while a run goes on), so the hub keeps a :class:`Tally` instead: one pass when the hub is
made, then each event moves only the figures of the task it names.

What each task last counted as is remembered by its id, so an event only needs the task
as it is now. Changes that come without one event per task (a stopped run sends its
queued tasks back to idle at once; ``Batch.refresh`` re-reads every task from the
journal) mark the tally stale and the next summary counts again.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from operator import attrgetter

from nbbatch.core._model import Task, TaskStatus

__all__ = ["Tally"]

_ID = attrgetter("id")
_STATUS = attrgetter("status")
_IMAGES = attrgetter("images")
_REFERENCES = attrgetter("references")
_SUCCEEDED = TaskStatus.SUCCEEDED


class Tally:
    """Status counts, images, starred tasks, tasks with references and the gallery's
    "done" count (succeeded tasks with images) of one batch."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.recount(tasks)

    def recount(self, tasks: Sequence[Task]) -> None:
        """Count everything again: one pass, in C loops (map / filter / zip), since a
        Python loop over 100,000 tasks costs several times more."""
        ids = list(map(_ID, tasks))
        statuses = list(map(_STATUS, tasks))
        self._status: dict[str, TaskStatus] = dict(zip(ids, statuses, strict=True))
        self.counts: collections.Counter[TaskStatus] = collections.Counter(statuses)
        # sparse: only tasks with images / references / a star are remembered
        with_images = list(filter(_IMAGES, tasks))
        self._images: dict[str, int] = {t.id: len(t.images) for t in with_images}
        self._starred: set[str] = {t.id for t in with_images if t.starred}
        self._refs: set[str] = set(map(_ID, filter(_REFERENCES, tasks)))
        self.images = sum(self._images.values())
        self.shown = sum(1 for t in with_images if t.status is _SUCCEEDED)
        self.total = len(ids)
        self.stale = False

    # ----------------------------------------------------------- events
    def update(self, tasks: Iterable[Task]) -> None:
        """These tasks may have changed (status, images, stars, references) or joined."""
        for task in tasks:
            self._update(task)

    def _update(self, task: Task) -> None:
        tid = task.id
        old = self._status.get(tid)
        new = task.status
        if old is None:
            self.total += 1
        elif old is not new:
            self.counts[old] -= 1
        if old is not new:
            self.counts[new] += 1
            self._status[tid] = new
        n_old = self._images.get(tid, 0)
        n_new = len(task.images)
        if n_old or n_new:
            self.images += n_new - n_old
            self.shown -= int(bool(n_old) and old is _SUCCEEDED)
            self.shown += int(bool(n_new) and new is _SUCCEEDED)
            if n_new:
                self._images[tid] = n_new
            else:
                self._images.pop(tid, None)
        if n_new and task.starred:
            self._starred.add(tid)
        else:
            self._starred.discard(tid)
        if task.references:
            self._refs.add(tid)
        else:
            self._refs.discard(tid)

    def remove(self, task_id: str) -> None:
        old = self._status.pop(task_id, None)
        if old is None:
            return
        self.total -= 1
        self.counts[old] -= 1
        n_old = self._images.pop(task_id, 0)
        self.images -= n_old
        self.shown -= int(bool(n_old) and old is _SUCCEEDED)
        self._starred.discard(task_id)
        self._refs.discard(task_id)

    # ----------------------------------------------------------- figures
    @property
    def starred(self) -> int:
        return len(self._starred)

    @property
    def refs(self) -> bool:
        return bool(self._refs)

    def by_value(self) -> dict[str, int]:
        """``{"idle": n, "queued": n, ...}`` for every status (zeros included)."""
        return {s.value: self.counts[s] for s in TaskStatus}
