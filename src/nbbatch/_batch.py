"""A batch: an ordered list of tasks journaled in a workspace, and how to run it."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._aio import run_blocking
from ._errors import ConfigError
from ._events import Event
from ._model import GeneratedImage, Params, Task, TaskStatus
from ._retry import RetryPolicy
from ._runner import DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONCURRENCY, Runner
from ._store import Workspace, batch_status
from .providers._base import Provider
from .providers._registry import get_provider

if TYPE_CHECKING:
    import pandas

__all__ = ["Batch"]

log = logging.getLogger("nbbatch")

_closing: set[asyncio.Future[None]] = set()  # keeps close() calls alive until they end
_RUNNABLE = frozenset({TaskStatus.IDLE, TaskStatus.QUEUED, TaskStatus.INTERRUPTED})
_RETRYABLE = _RUNNABLE | {TaskStatus.FAILED, TaskStatus.CANCELLED}


class Batch:
    """Tasks that run together; results stay in the workspace after the kernel dies.

    Make one with :meth:`create` (or ``Workspace.create_batch``), reopen one with
    :meth:`load`. ``await batch.run("demo")`` runs it in a notebook, ``batch.start()``
    runs it in the background and returns a handle, ``batch.run_sync()`` is for scripts.
    """

    def __init__(
        self,
        workspace: Workspace,
        id: str,
        name: str,
        tasks: list[Task],
        *,
        provider: str | None = None,
        created_at: float = 0.0,
    ) -> None:
        self.workspace = workspace
        self.id = id
        self.name = name
        self.tasks = tasks
        self.provider = provider
        self.created_at = created_at
        self.runner: Runner | None = None
        self._subscribers: list[Callable[[Event], None]] = []

    # ----------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        tasks: Iterable[Task | str],
        *,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        params: Params | None = None,
        name: str | None = None,
    ) -> Batch:
        """Journal a new batch in ``workspace`` (default: ``./nbbatch-workspace``)."""
        return _workspace(workspace).create_batch(tasks, params=params, name=name)

    @classmethod
    def load(
        cls, batch_id: str, workspace: Workspace | str | os.PathLike[str] | None = None
    ) -> Batch:
        """Reopen a batch (a unique id prefix is enough)."""
        return _workspace(workspace).batch(batch_id)

    def add(self, tasks: Iterable[Task | str], *, params: Params | None = None) -> list[Task]:
        """Append tasks (prompts use ``params``); they run with the next start."""
        start = max((t.order for t in self.tasks), default=-1) + 1
        made = [
            t if isinstance(t, Task) else Task(prompt=t, params=params or Params()) for t in tasks
        ]
        for i, t in enumerate(made):
            t.order = start + i
        self.workspace.add_tasks(self.id, made)
        self.tasks.extend(made)
        return made

    # ----------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, key: int | str) -> Task:
        if isinstance(key, int):
            return self.tasks[key]
        for t in self.tasks:
            if t.id == key:
                return t
        raise KeyError(key)

    @property
    def images(self) -> list[GeneratedImage]:
        """Every generated image, in task order."""
        return [im for t in self.tasks for im in t.images]

    @property
    def succeeded(self) -> list[Task]:
        return [t for t in self.tasks if t.status is TaskStatus.SUCCEEDED]

    @property
    def failed(self) -> list[Task]:
        return [t for t in self.tasks if t.status is TaskStatus.FAILED]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks:
            out[t.status.value] = out.get(t.status.value, 0) + 1
        return out

    @property
    def status(self) -> str:
        return batch_status(self.counts)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"<Batch {self.id} {self.name!r}: {len(self.tasks)} tasks ({counts})>"

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per task: prompt, status, params, seed and path of the first image."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError("to_dataframe needs pandas: pip install 'nbbatch[pandas]'") from None
        rows = []
        for t in self.tasks:
            first = t.images[0] if t.images else None
            row: dict[str, Any] = {
                "task_id": t.id,
                "order": t.order,
                "prompt": t.prompt,
                "status": t.status.value,
                "attempts": t.attempts,
                "error": t.error,
                "n_images": len(t.images),
                "seed": first.seed if first else t.params.seed,
                "image_path": str(first.path) if first else None,
                "duration_s": t.duration,
                "parent_id": t.parent_id,
            }
            for key, value in t.params.to_dict().items():
                if key != "seed":
                    row[f"param_{key}"] = value
            rows.append(row)
        return pd.DataFrame(rows).set_index("task_id")

    def export_zip(
        self, path: str | os.PathLike[str], *, tasks: Iterable[Task] | None = None
    ) -> Path:
        """ZIP of the images (of ``tasks``, default all) with ``manifest.json``."""
        from ._export import export_zip

        return export_zip(
            self.tasks if tasks is None else tasks,
            path,
            batch={"id": self.id, "name": self.name},
        )

    def refresh(self) -> Batch:
        """Re-read the tasks from the workspace (e.g. after another process ran them)."""
        fresh = self.workspace.batch(self.id)
        self.tasks = fresh.tasks
        return self

    # ----------------------------------------------------------- running
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Receive the events of every run of this batch; returns an unsubscribe function."""
        self._subscribers.append(fn)
        runner = self.runner
        undo_runner = runner.subscribe(fn) if runner and not runner.done else None

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)
            if undo_runner is not None:
                undo_runner()

        return unsubscribe

    def runnable(self, *, retry_failed: bool = False) -> list[Task]:
        """Tasks a start would queue: idle, queued and interrupted (+ failed/cancelled)."""
        wanted = _RETRYABLE if retry_failed else _RUNNABLE
        return [t for t in self.tasks if t.status in wanted]

    def start(
        self,
        provider: str | Provider = "demo",
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_concurrency: int | None = None,
        retry: RetryPolicy | int | None = None,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        retry_failed: bool = False,
        tasks: Sequence[Task | str] | None = None,
        provider_options: dict[str, Any] | None = None,
        providers: Mapping[str, str | Provider] | None = None,
    ) -> Runner:
        """Start running in the background on the current event loop; return the handle.

        The handle has ``pause()``, ``resume()``, ``cancel(task_id)``, ``cancel_pending()``,
        ``stop()``, ``run_next(task_id)``, ``set_concurrency(n)``, ``progress()`` and
        ``await wait()``. Needs a running loop: in a notebook cell there is one.
        ``providers`` serves tasks whose ``task.provider`` names another provider.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "batch.start() needs a running event loop (a notebook cell has one); "
                "in a script use batch.run_sync(...)"
            ) from None
        if self.runner is not None and not self.runner.done:
            raise RuntimeError(f"batch {self.id} is already running; pause or stop it first")
        if tasks is None:
            chosen = self.runnable(retry_failed=retry_failed)
        else:
            chosen = [self[t] if isinstance(t, str) else t for t in tasks]
        owned: list[Provider] = []
        prov = get_provider(provider, **(provider_options or {}))
        if not isinstance(provider, Provider):
            owned.append(prov)
        extra: dict[str, Provider] = {}
        for name, value in (providers or {}).items():
            extra[name] = get_provider(value)
            if not isinstance(value, Provider):
                owned.append(extra[name])
        policy = RetryPolicy(max_retries=retry) if isinstance(retry, int) else retry
        runner = Runner(
            self.workspace,
            chosen,
            prov,
            concurrency=concurrency,
            max_concurrency=max_concurrency,
            retry=policy,
            attempt_timeout=attempt_timeout,
            subscribers=self._subscribers,
            batch_id=self.id,
            providers=extra,
            owned=owned,  # what we built, we close when the run ends
        )
        try:
            runner.start()
        except BaseException:
            for p in owned:  # nothing ran: do not leave their connections open
                closing = asyncio.ensure_future(p.aclose())
                _closing.add(closing)
                closing.add_done_callback(_closing.discard)
            raise
        self.runner = runner
        return runner

    async def run(self, provider: str | Provider = "demo", **options: Any) -> Batch:
        """Run until every chosen task has finished (same options as :meth:`start`)."""
        runner = self.start(provider, **options)
        try:
            await runner.wait()
        except asyncio.CancelledError:
            # The awaiting cell was interrupted: stop cleanly (in-flight -> interrupted).
            runner.stop()
            await asyncio.shield(runner.wait())
            raise
        return self

    def run_sync(self, provider: str | Provider = "demo", **options: Any) -> Batch:
        """Blocking run for scripts. In a notebook prefer ``await batch.run(...)``.

        When an event loop is already running in this thread (a notebook), the run goes
        to a worker thread with its own loop and this call blocks the cell until it ends.
        """
        return run_blocking(
            lambda: self.run(provider, **options),
            note_if_loop=(
                "run_sync() called while an event loop is running: running the batch in a "
                "worker thread and blocking this cell. Use `await batch.run(...)` or "
                "`batch.start(...)` to keep the notebook responsive."
            ),
        )


def _workspace(ws: Workspace | str | os.PathLike[str] | None) -> Workspace:
    if isinstance(ws, Workspace):
        return ws
    return Workspace(ws)
