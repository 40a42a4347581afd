"""Compare providers and models: the same tasks on several configurations, as one batch.

``nbbatch.compare(tasks, configurations)`` journals one batch whose tasks are the
*cells* of a table: one row per task given, one column per configuration (a provider
with its model, options and parameters). Each cell is an ordinary task pinned to its
column (``task.provider`` is the column's name), so it has its own status, images,
time, error and attempts, and everything a batch does (run, pause, resume, retry one
task, star, export, the History) works on a comparison too.

The layout — which configurations, which cell is which row and column — is journaled
in the workspace's ``comparisons`` table (created here on first use) in the same
workspace as the batch; keys never are (a configuration's key comes from the
environment or the secrets file, or is held in memory for this session).

A run builds each configuration's provider once and hands the runner a thin
:class:`_Column` around it, named after the column: the runner keeps one queue and one
concurrency cap per provider name, so each configuration keeps its own concurrency
(two configurations of one provider too), while one run — with the options a batch run
takes (``**run_options``) — drives them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PIL import Image

from ..core._aio import run_blocking
from ..core._errors import ConfigError, NotFoundError, UnknownProviderError
from ..core._model import GeneratedImage, Params, Task, TaskStatus, new_id
from ..core._secrets import Secret
from ..images._contact import xy_grid
from ..images._decode import ImageInfo
from ..images._export import export_zip
from ..providers._base import (
    Capabilities,
    GenerationRequest,
    ImageData,
    ProgressCallback,
    Provider,
)
from ..providers._catalog import provider_info
from ..providers._registry import _REGISTRY, available_providers
from ._batch import Batch, _run_defaults, _workspace
from ._blobs import StoredImage
from ._history import percentile, price_of
from ._runner import Runner
from ._settings import ProviderConfig, load_settings
from ._store import Workspace

if TYPE_CHECKING:
    import pandas

__all__ = ["Cell", "Comparison", "Scorer", "Winner", "compare"]

log = logging.getLogger("nbbatch")

#: a scorer: ``(image, prompt) -> float`` (higher is better)
Scorer = Callable[[Image.Image, str], float]

ConfigurationSpec = str | ProviderConfig | tuple[str, Mapping[str, Any]]

_PARAM_FIELDS = {
    "size",
    "n",
    "seed",
    "steps",
    "cfg_scale",
    "negative_prompt",
    "sampler",
    "strength",
    "extras",
}
_CONFIG_FIELDS = {"base_url", "model", "concurrency", "timeouts", "api_key", "endpoints"}
_TABLE = (
    "CREATE TABLE IF NOT EXISTS comparisons ("
    "batch_id TEXT PRIMARY KEY REFERENCES batches(id) ON DELETE CASCADE, "
    "created_at REAL NOT NULL, spec TEXT NOT NULL)"
)
_SPEC_VERSION = 1
_closing: set[asyncio.Future[None]] = set()


# --------------------------------------------------------------------------- columns
class _Column(Provider):
    """One configuration's provider under the column's name, with its own cap."""

    def __init__(self, inner: Provider, concurrency: int) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.max_concurrency = concurrency

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        return await self.inner.generate(request, on_progress)

    def validate(self, request: GenerationRequest) -> None:
        self.inner.validate(request)

    def pause_pending(self) -> None:
        self.inner.pause_pending()

    def resume_pending(self) -> None:
        self.inner.resume_pending()

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _column(inner: Provider, name: str, concurrency: int) -> Provider:
    # ``name`` is a class attribute of providers: one small subclass per column.
    cls = type(
        "Column",
        (_Column,),
        {"name": name, "label": name, "own_timeout": inner.own_timeout},
    )
    return cast(Provider, cls(inner, concurrency))


def _capabilities(provider: str) -> Capabilities | None:
    try:
        return provider_info(provider).capabilities
    except ConfigError:
        factory = _REGISTRY.get(provider)
        caps = getattr(factory, "capabilities", None)
        return caps if isinstance(caps, Capabilities) else None


# --------------------------------------------------------------------------- configurations
def _saved(name: str) -> ProviderConfig | None:
    try:
        settings = load_settings()
    except ConfigError:
        return None
    return settings.providers.get(name)


def _configuration(spec: object) -> tuple[ProviderConfig, bool]:
    """A configuration as given (``"openai"``, ``("a1111", {...})`` or a ProviderConfig),
    and whether the person named its column."""
    if isinstance(spec, ProviderConfig):
        return dataclasses.replace(spec), True
    if isinstance(spec, str):
        saved = _saved(spec)
        return (saved if saved is not None else ProviderConfig(provider=spec)), False
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], Mapping)
    ):
        name, values = spec
        base = _saved(name)
        data: dict[str, Any] = base.to_dict() if base is not None else {"provider": name}
        api_key = base.api_key if base is not None else None
        params = dict(data.get("params") or {})
        options = dict(data.get("options") or {})
        label: str | None = None
        for key, value in values.items():
            if key in ("name", "label"):
                label = str(value)
            elif key == "api_key":
                api_key = value
            elif key in _CONFIG_FIELDS:
                data[key] = value
            elif key in _PARAM_FIELDS:
                params[key] = value
            else:
                options[key] = value
        data["params"], data["options"] = params, options
        data["name"] = label or ""
        if base is not None and label is None:
            data["name"] = ""  # the column is named after what differs, below
        config = ProviderConfig.from_dict(data)
        if api_key is not None:
            config.api_key = api_key if isinstance(api_key, Secret) else Secret(str(api_key))
        return config, label is not None
    raise ConfigError(
        f"a configuration is a provider name, (name, {{options}}) or a ProviderConfig; got {spec!r}"
    )


def _describe(config: ProviderConfig) -> str:
    parts = [config.provider]
    if config.model:
        parts.append(config.model)
    for key, value in {**config.params, **config.options}.items():
        parts.append(f"{key}={value}")
    return " · ".join(str(p) for p in parts)


def _configurations(specs: Iterable[ConfigurationSpec]) -> list[ProviderConfig]:
    given = [_configuration(s) for s in specs]
    if not given:
        raise ConfigError("a comparison needs at least one configuration, e.g. ['demo']")
    configs = [c for c, _ in given]
    known = available_providers()
    for c in configs:
        if c.provider not in known:
            raise UnknownProviderError(
                f"configuration {c.name!r}: unknown provider {c.provider!r}; "
                f"available: {', '.join(known)}"
            )
    names = [c.name for c in configs]
    for c, labelled in given:
        if names.count(c.name) > 1 and not labelled:
            c.name = _describe(c)
    seen: dict[str, int] = {}
    for c in configs:
        count = seen[c.name] = seen.get(c.name, 0) + 1
        if count > 1:
            c.name = f"{c.name} #{count}"
    return configs


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Cell:
    """One task on one configuration: a row and a column of the comparison."""

    row: int
    configuration: str
    task: Task

    @property
    def images(self) -> list[GeneratedImage]:
        return self.task.images

    @property
    def status(self) -> TaskStatus:
        return self.task.status


@dataclass(frozen=True)
class Winner:
    """A starred image of a row, with where it came from."""

    row: int
    prompt: str
    configuration: str
    task: Task
    image: GeneratedImage


def _row_tasks(tasks: Iterable[Task | str], params: Params | None) -> list[Task]:
    out = []
    for t in tasks:
        if isinstance(t, str):
            out.append(Task(prompt=t, params=params or Params()))
        elif isinstance(t, Task):
            out.append(t)
        else:
            raise ConfigError(f"a task is a prompt or an nbbatch.Task, got {type(t).__name__}")
    if not out:
        raise ConfigError("a comparison needs at least one task (no prompts were given)")
    return out


def _ensure_table(ws: Workspace) -> None:
    with ws._tx() as c:
        c.execute(_TABLE)


class Comparison:
    """The same tasks on several configurations; rows are tasks, columns configurations.

    Made by :func:`compare`, reopened by :meth:`load`. ``await cmp.run()`` runs every
    cell that is not done (``cmp.start()`` in the background, ``cmp.run_sync()`` in a
    script), ``cmp.retry(row, configuration)`` makes one failed cell runnable again.
    Results: :meth:`to_dataframe`, :meth:`pivot`, :meth:`summary`; picking:
    :meth:`pick`, :meth:`winners`, :meth:`keep_winners`; export: :meth:`sheet`,
    :meth:`export_zip`; scores: :meth:`score`.
    """

    def __init__(
        self,
        batch: Batch,
        configurations: list[ProviderConfig],
        rows: list[list[str]],
        *,
        scores: dict[str, dict[str, list[float]]] | None = None,
        created_at: float = 0.0,
        run_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.batch = batch
        self.configurations = configurations
        self._rows = rows  # row -> task id per configuration
        self.scores: dict[str, dict[str, list[float]]] = scores or {}
        self.created_at = created_at
        self.runner: Runner | None = None
        #: the options every run of this comparison gets (those given to ``compare``)
        self.run_options: dict[str, Any] = dict(run_options or {})

    # ----------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        tasks: Iterable[Task | str],
        configurations: Iterable[ConfigurationSpec],
        *,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        name: str | None = None,
        params: Params | None = None,
        rng: random.Random | None = None,
        run_options: Mapping[str, Any] | None = None,
    ) -> Comparison:
        """Journal a comparison: see :func:`compare`."""
        ws = _workspace(workspace)
        configs = _configurations(configurations)
        rows_in = _row_tasks(tasks, params)
        pick = rng or random.Random()
        cells: list[Task] = []
        rows: list[list[str]] = []
        for row in rows_in:
            base = row.params
            seed = base.seed if base.seed is not None else pick.randrange(2**31)
            ids = []
            for config in configs:
                data = base.to_dict()
                caps = _capabilities(config.provider)
                if caps is None or caps.seed:
                    data["seed"] = seed  # the same seed on every column that takes one
                else:
                    data.pop("seed", None)
                data.update(config.params)
                cell = Task(
                    prompt=row.prompt,
                    params=Params.from_dict(data),
                    references=list(row.references),
                    provider=config.name,
                    id=new_id(),
                )
                cells.append(cell)
                ids.append(cell.id)
            rows.append(ids)
        label = name or "compare: " + " vs ".join(c.name for c in configs)
        batch = Batch.create(cells, workspace=ws, name=label)
        now = time.time()
        me = cls(batch, configs, rows, created_at=now, run_options=run_options)
        _ensure_table(ws)
        with ws._tx() as c:
            c.execute(
                "INSERT INTO comparisons(batch_id, created_at, spec) VALUES (?,?,?)",
                (batch.id, now, json.dumps(me._spec())),
            )
        return me

    @classmethod
    def load(
        cls, comparison_id: str, workspace: Workspace | str | os.PathLike[str] | None = None
    ) -> Comparison:
        """Reopen a comparison (its batch id; a unique prefix is enough).

        Keys are not journaled: they come from the environment or the secrets file again.
        """
        ws = _workspace(workspace)
        batch = Batch.load(comparison_id, ws)
        _ensure_table(ws)
        found = ws._query("SELECT created_at, spec FROM comparisons WHERE batch_id=?", (batch.id,))
        if not found:
            raise NotFoundError(
                f"batch {batch.id} is not a comparison; open it with nbbatch.Batch.load"
            )
        created_at, text = found[0]
        spec = json.loads(text)
        if spec.get("version", 0) > _SPEC_VERSION:
            raise ConfigError(
                f"comparison {batch.id} was written by a newer nbbatch; upgrade to open it"
            )
        configs = [ProviderConfig.from_dict(c) for c in spec["configurations"]]
        return cls(
            batch,
            configs,
            [list(r) for r in spec["rows"]],
            scores={k: dict(v) for k, v in (spec.get("scores") or {}).items()},
            created_at=float(created_at),
            run_options=spec.get("run_options") or {},
        )

    @staticmethod
    def in_workspace(workspace: Workspace | str | os.PathLike[str] | None = None) -> list[str]:
        """The ids of the comparisons in ``workspace``, newest first."""
        ws = _workspace(workspace)
        _ensure_table(ws)
        rows = ws._query("SELECT batch_id FROM comparisons ORDER BY created_at DESC")
        return [r[0] for r in rows]

    def _spec(self) -> dict[str, Any]:
        return {
            "version": _SPEC_VERSION,
            "configurations": [c.to_dict() for c in self.configurations],  # never a key
            "rows": self._rows,
            "run_options": _journaled_options(self.run_options),
            **({"scores": self.scores} if self.scores else {}),
        }

    def _save_spec(self) -> None:
        with self.batch.workspace._tx() as c:
            c.execute(
                "UPDATE comparisons SET spec=? WHERE batch_id=?",
                (json.dumps(self._spec()), self.batch.id),
            )

    # ----------------------------------------------------------- views
    @property
    def id(self) -> str:
        return self.batch.id

    @property
    def name(self) -> str:
        return self.batch.name

    @property
    def workspace(self) -> Workspace:
        return self.batch.workspace

    @property
    def columns(self) -> list[str]:
        """The configurations' names, in order (the columns)."""
        return [c.name for c in self.configurations]

    def __len__(self) -> int:
        return len(self._rows)

    def _tasks_by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.batch.tasks}

    def _column_index(self, configuration: int | str) -> int:
        if isinstance(configuration, int):
            if not 0 <= configuration < len(self.configurations):
                raise ConfigError(
                    f"configuration {configuration} is out of range "
                    f"0-{len(self.configurations) - 1}"
                )
            return configuration
        names = self.columns
        if configuration not in names:
            raise ConfigError(f"no configuration {configuration!r}; the columns are {names}")
        return names.index(configuration)

    def cell(self, row: int, configuration: int | str) -> Cell:
        """The cell of task ``row`` on ``configuration`` (its name or position)."""
        col = self._column_index(configuration)
        if not 0 <= row < len(self._rows):
            raise ConfigError(f"row {row} is out of range 0-{len(self._rows) - 1}")
        task = self.batch[self._rows[row][col]]
        return Cell(row, self.configurations[col].name, task)

    def cells(self, rows: range | None = None) -> list[Cell]:
        """Every cell (of ``rows``), row by row, in configuration order (removed tasks are
        skipped)."""
        by_id = self._tasks_by_id()
        out = []
        for r in rows if rows is not None else range(len(self._rows)):
            ids = self._rows[r]
            for c, task_id in enumerate(ids):
                task = by_id.get(task_id)
                if task is not None:
                    out.append(Cell(r, self.configurations[c].name, task))
        return out

    def locate(self, task: Task | str) -> tuple[int, str]:
        """``(row, configuration)`` of a cell's task."""
        wanted = task if isinstance(task, str) else task.id
        for r, ids in enumerate(self._rows):
            if wanted in ids:
                return r, self.configurations[ids.index(wanted)].name
        raise NotFoundError(f"task {wanted} is not a cell of comparison {self.id}", task_id=wanted)

    @property
    def counts(self) -> dict[str, int]:
        return self.batch.counts

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return (
            f"<Comparison {self.id}: {len(self._rows)} tasks x {len(self.configurations)} "
            f"configurations ({', '.join(self.columns)}); {counts}>"
        )

    def _repr_html_(self) -> str:
        """The name and, per configuration, the summary (every text escaped)."""
        import html

        def shown(value: Any, kind: str) -> str:
            if value is None:
                return "–"
            if kind == "rate":
                return f"{value:.0%}"
            if kind == "s":
                return f"{value:.1f} s"
            if kind == "$":
                return f"{value:.3f}"
            return html.escape(str(value))

        head = "".join(
            f"<th>{h}</th>"
            for h in ("configuration", "done", "failed", "success", "median", "p90", "cost")
        )
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{shown(r[k], kind)}</td>"
                for k, kind in (
                    ("configuration", ""),
                    ("succeeded", ""),
                    ("failed", ""),
                    ("success_rate", "rate"),
                    ("median_seconds", "s"),
                    ("p90_seconds", "s"),
                    ("cost", "$"),
                )
            )
            + "</tr>"
            for r in self.summary_rows()
        )
        return (
            f"<div><strong>{html.escape(self.name)}</strong> — {len(self._rows)} tasks × "
            f"{len(self.configurations)} configurations</div>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    # ----------------------------------------------------------- running
    def _providers(
        self, concurrency: int | None, keys: Mapping[str, str | Secret] | None
    ) -> list[Provider]:
        default = concurrency if concurrency is not None else _run_defaults().concurrency
        columns: list[Provider] = []
        try:
            for config in self.configurations:
                key = (keys or {}).get(config.name)
                try:
                    inner = config.build(api_key=key)
                except ConfigError as exc:
                    raise ConfigError(f"configuration {config.name!r}: {exc.message}") from None
                columns.append(_column(inner, config.name, config.concurrency or default))
        except BaseException:
            _close_later(columns)
            raise
        return columns

    def start(
        self,
        *,
        concurrency: int | None = None,
        retry_failed: bool = False,
        keys: Mapping[str, str | Secret] | None = None,
        **run_options: Any,
    ) -> Runner:
        """Run the cells that are not done in the background; return the run's handle.

        Each configuration runs ``concurrency`` at a time (its own ``concurrency``
        wins; default: the saved run default); the run as a whole sends at most the sum.
        ``retry_failed`` runs failed and cancelled cells again; ``keys`` maps a
        configuration's name to its key for this run (else: its own, the environment,
        the secrets file). Other options go to :meth:`nbbatch.Batch.start` (retries,
        timeouts, and what later versions add there).
        """
        run_options = {**self.run_options, **run_options}
        if concurrency is None:
            concurrency = run_options.pop("concurrency", None)
        else:
            run_options.pop("concurrency", None)
        columns = self._providers(concurrency, keys)
        total = sum(cast(int, c.max_concurrency) for c in columns)
        run_options.setdefault("concurrency_cap", max(total, 1))
        try:
            runner = self.batch.start(
                columns[0],
                concurrency=total,
                retry_failed=retry_failed,
                providers={c.name: c for c in columns[1:]},
                **run_options,
            )
        except BaseException:
            _close_later(columns)
            raise
        self.runner = runner
        closing = asyncio.ensure_future(_close_after(runner, columns))
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)
        return runner

    async def run_async(self, **options: Any) -> Comparison:
        """Run until no runnable cell is left (same options as :meth:`start`)."""
        runner = self.start(**options)
        try:
            await runner.wait()
        except asyncio.CancelledError:
            runner.stop()
            await asyncio.shield(runner.wait())
            raise
        return self

    async def run(self, **options: Any) -> Comparison:
        """``await cmp.run()`` in a notebook: the same as :meth:`run_async`."""
        return await self.run_async(**options)

    def run_sync(self, **options: Any) -> Comparison:
        """Blocking run for scripts (in a notebook prefer ``await cmp.run()``)."""
        return run_blocking(
            lambda: self.run_async(**options),
            note_if_loop=(
                "run_sync() called while an event loop is running: running the comparison "
                "in a worker thread and blocking this cell. Use `await cmp.run()` to keep "
                "the notebook responsive."
            ),
        )

    def retry(self, row: int | Task, configuration: int | str | None = None) -> Task:
        """Make one failed, cancelled or interrupted cell runnable again (alone).

        ``cmp.retry(3, "openai")`` or ``cmp.retry(task)``; it joins a live run, or waits
        for the next ``run``/``start``.
        """
        if isinstance(row, Task):
            return self.batch.retry(row)
        if configuration is None:
            raise ConfigError("say which configuration: cmp.retry(row, configuration)")
        return self.batch.retry(self.cell(row, configuration).task)

    # ----------------------------------------------------------- results as data
    def _prices(self, prices: Mapping[str, float] | None) -> Mapping[str, float]:
        if prices is not None:
            return prices
        try:
            return load_settings().prices
        except ConfigError:
            return {}

    def _records(
        self,
        prices: Mapping[str, float] | None = None,
        cells: Iterable[Cell] | None = None,
    ) -> list[dict[str, Any]]:
        table = self._prices(prices)
        by_config = {c.name: c for c in self.configurations}
        out = []
        for cell in self.cells() if cells is None else cells:
            config = by_config[cell.configuration]
            task = cell.task
            model = task.params.model or config.model
            price = price_of(table, config.provider, model)
            n = len(task.images)
            params = task.params.to_dict()
            out.append(
                {
                    "row": cell.row,
                    "prompt": task.prompt,
                    "configuration": cell.configuration,
                    "provider": config.provider,
                    "model": model,
                    "params": params,
                    "seed": task.images[0].seed if task.images else task.params.seed,
                    "status": task.status.value,
                    "seconds": task.duration if task.status is TaskStatus.SUCCEEDED else None,
                    "cost": price * n if price is not None else None,
                    "n_images": n,
                    "image_paths": [str(im.path) for im in task.images],
                    "starred": task.starred,
                    "attempts": task.attempts,
                    "error": task.error,
                    "score": self._score(task.id),
                    "task_id": task.id,
                }
            )
        return out

    def to_dataframe(self, *, prices: Mapping[str, float] | None = None) -> pandas.DataFrame:
        """One row per task x configuration: provider, model, params, status, seconds,
        cost, image paths, score (the last :meth:`score` run; best image of the cell).

        ``cost`` is images x the price per image from ``Settings.prices`` (or
        ``prices``), ``"<provider>/<model>"`` before ``"<provider>"``; ``None`` when no
        price is known. ``seconds`` is the time of the successful attempt.
        """
        pd = _pandas()
        return pd.DataFrame(self._records(prices))

    def pivot(
        self, value: str = "status", *, prices: Mapping[str, float] | None = None
    ) -> pandas.DataFrame:
        """The usual table: rows are tasks (row, prompt), columns configurations.

        ``value`` is a column of :meth:`to_dataframe` (``"seconds"``, ``"cost"``,
        ``"score"``, ``"status"``, ``"n_images"``, ...).
        """
        pd = _pandas()
        records = self._records(prices)
        if records and value not in records[0]:
            raise ConfigError(f"no column {value!r}; choose from {sorted(records[0])}")
        frame = pd.DataFrame(records)
        table = frame.pivot(index=["row", "prompt"], columns="configuration", values=value)
        table = table.reindex(columns=[c for c in self.columns if c in table.columns])
        table.columns.name = "configuration"
        return table

    def _score(self, task_id: str) -> float | None:
        """The cell's score: its best image's, by the last scorer run that scored it."""
        for found in reversed(list(self.scores.values())):
            values = found.get(task_id)
            if values:
                return max(values)
        return None

    def summary_rows(self, *, prices: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        """:meth:`summary` as plain dicts (no pandas needed)."""
        # One lean pass (the studio sends these totals while cells finish): no records.
        table = self._prices(prices)
        succeeded, failed = TaskStatus.SUCCEEDED, TaskStatus.FAILED
        by_id = self._tasks_by_id()
        out = []
        for column, config in enumerate(self.configurations):
            found = (by_id.get(ids[column]) for ids in self._rows)
            mine = [t for t in found if t is not None]
            done = [t for t in mine if t.status is succeeded]
            n_failed = sum(1 for t in mine if t.status is failed)
            seconds = [d for d in (t.duration for t in done) if d is not None]
            images = sum(len(t.images) for t in mine)
            prices_of: dict[str | None, float | None] = {}
            cost: float | None = None
            for t in mine:
                model = t.params.model or config.model
                if model not in prices_of:
                    prices_of[model] = price_of(table, config.provider, model)
                price = prices_of[model]
                if price is not None:
                    cost = (cost or 0.0) + price * len(t.images)
            scored = (
                [v for v in (self._score(t.id) for t in mine) if v is not None]
                if self.scores
                else []
            )
            finished = len(done) + n_failed
            out.append(
                {
                    "configuration": config.name,
                    "provider": config.provider,
                    "model": config.model,
                    "cells": len(mine),
                    "succeeded": len(done),
                    "failed": n_failed,
                    "success_rate": len(done) / finished if finished else None,
                    "median_seconds": percentile(seconds, 50),
                    "p90_seconds": percentile(seconds, 90),
                    "images": images,
                    "cost": cost,
                    "cost_per_image": cost / images if cost is not None and images else None,
                    "mean_score": sum(scored) / len(scored) if scored else None,
                }
            )
        return out

    def summary(self, *, prices: Mapping[str, float] | None = None) -> pandas.DataFrame:
        """Per configuration what leaderboards show: success rate (of finished cells),
        median and p90 seconds of the successful ones, images, cost, cost per image,
        mean score."""
        pd = _pandas()
        return pd.DataFrame(self.summary_rows(prices=prices)).set_index("configuration")

    # ----------------------------------------------------------- picking
    def pick(self, row: int, configuration: int | str, image: int = 0) -> GeneratedImage:
        """Star image ``image`` of one cell as the row's winner (other stars of the row
        are taken off); journaled like every star (``batch.star``)."""
        chosen = self.cell(row, configuration).task
        if not 0 <= image < len(chosen.images):
            raise ConfigError(
                f"row {row} on {configuration!r} has {len(chosen.images)} image(s); "
                f"there is no image {image}"
            )
        by_id = self._tasks_by_id()
        for task_id in self._rows[row]:
            task = by_id.get(task_id)
            for im in task.images if task is not None else ():
                if im.starred and not (task is chosen and im.index == image):
                    self.batch.star(im, False)
        return self.batch.star(chosen.images[image])

    def winners(self) -> list[Winner]:
        """Every starred image, row by row (stars made by :meth:`pick`, the gallery or
        ``batch.star``)."""
        out = []
        for cell in self.cells():
            for im in cell.task.images:
                if im.starred:
                    out.append(
                        Winner(cell.row, cell.task.prompt, cell.configuration, cell.task, im)
                    )
        return out

    def keep_winners(self, *, name: str | None = None) -> Batch:
        """A new, normal batch holding the starred results (same files, prompts, params,
        times), to continue from: edit, remix, post-process, export."""
        winners = self.winners()
        if not winners:
            raise ConfigError(
                "no image is starred: pick the winners first (cmp.pick(row, configuration))"
            )
        by_config = {c.name: c for c in self.configurations}
        grouped: dict[str, list[Winner]] = {}
        for w in winners:
            grouped.setdefault(w.task.id, []).append(w)
        made: list[tuple[Task, list[Winner]]] = []
        for chosen in grouped.values():
            source = chosen[0].task
            config = by_config[chosen[0].configuration]
            params = source.params
            if config.model and params.model is None:
                params = params.replace(model=config.model)
            task = Task(
                prompt=source.prompt,
                params=params,
                references=list(source.references),
                provider=config.provider,
                status=TaskStatus.SUCCEEDED,
                attempts=source.attempts,
                started_at=source.started_at,
                finished_at=source.finished_at,
            )
            made.append((task, chosen))
        batch = Batch.create(
            [t for t, _ in made],
            workspace=self.workspace,
            name=name or f"winners of {self.name}",
        )
        for task, chosen in made:
            stored = [
                StoredImage(
                    w.image.sha256,
                    ImageInfo(w.image.format, w.image.width, w.image.height),
                    w.image.seed,
                    {
                        **dict(w.image.params),
                        "comparison": self.id,
                        "configuration": w.configuration,
                    },
                )
                for w in chosen
            ]
            self.workspace.record_success(task, stored)
        return Batch.load(batch.id, self.workspace)

    # ----------------------------------------------------------- scores
    def score(self, scorer: Scorer, *, name: str | None = None) -> dict[str, list[float]]:
        """Score every image with ``scorer(image, prompt) -> float``; journaled by name.

        The table (:meth:`to_dataframe`, ``score``) shows the best image's score of each
        cell, from the last scorer run. Returns ``{task_id: [score per image]}``.
        """
        label = name or getattr(scorer, "__name__", None) or type(scorer).__name__
        found: dict[str, list[float]] = {}
        for cell in self.cells():
            values = []
            for im in cell.task.images:
                with im.pil as picture:
                    values.append(float(scorer(picture, cell.task.prompt)))
            if values:
                found[cell.task.id] = values
        self.scores.pop(label, None)  # the last one run is the one shown
        self.scores[label] = found
        self._save_spec()
        return found

    # ----------------------------------------------------------- export
    def _chosen_image(self, task: Task) -> GeneratedImage | None:
        starred = [im for im in task.images if im.starred]
        shown = starred or task.images
        return shown[0] if shown else None

    def sheet(self, *, cell: int = 256, **options: Any) -> Image.Image:
        """The comparison sheet: rows are tasks, columns configurations, labelled (built
        on :func:`nbbatch.images.xy_grid`; a cell shows its starred image, else its
        first; a cell without an image is crossed)."""
        shown = []
        for c in self.cells():
            im = self._chosen_image(c.task)
            if im is None:
                continue
            # One image per cell, the row number on the prompt so equal prompts stay apart.
            shown.append(
                Task(
                    prompt=f"{c.row + 1}. {c.task.prompt}",
                    params=Params(),
                    provider=c.configuration,
                    images=[im],
                )
            )
        if not shown:
            raise ConfigError("no cell has an image yet: run the comparison first")
        return xy_grid(shown, x="provider", y="prompt", cell=cell, **options)

    def manifest(self, *, prices: Mapping[str, float] | None = None) -> dict[str, Any]:
        """What :meth:`export_zip` writes under ``"comparison"`` in ``manifest.json``."""
        return {
            "id": self.id,
            "name": self.name,
            "configurations": [c.to_dict() for c in self.configurations],
            "cells": [
                {k: v for k, v in r.items() if k != "image_paths"} for r in self._records(prices)
            ],
        }

    def export_zip(
        self,
        path: str | os.PathLike[str],
        *,
        sheet: bool = True,
        prices: Mapping[str, float] | None = None,
    ) -> Path:
        """ZIP of every cell's images with ``manifest.json`` (each cell's row,
        configuration, provider, model, params, status, seconds, cost, score) and, with
        ``sheet``, the comparison sheet as ``comparison-sheet.png``."""
        import zipfile

        target = export_zip(
            self.batch.tasks,
            path,
            batch={"id": self.id, "name": self.name},
            comparison=self.manifest(prices=prices),
        )
        if sheet and any(t.images for t in self.batch.tasks):
            import io

            buf = io.BytesIO()
            with self.sheet() as image:
                image.save(buf, format="PNG")
            with zipfile.ZipFile(target, "a") as zf:
                zf.writestr("comparison-sheet.png", buf.getvalue())
        return target


def _journaled_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The run options that can be written down (plain JSON values; never a key)."""
    out = {}
    for key, value in options.items():
        if any(word in key.lower() for word in ("key", "token", "secret", "password")):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # a callable, a policy object: kept for this session only
        out[key] = value
    return out


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("this needs pandas: pip install 'nbbatch[pandas]'") from None
    return pd


async def _close_after(runner: Runner, columns: Sequence[Provider]) -> None:
    # the run reports its own end; closing goes on regardless
    with contextlib.suppress(BaseException):
        await runner.wait()
    for column in columns:
        try:
            await column.aclose()
        except Exception:
            log.warning("closing provider %s failed", column.name, exc_info=True)


def _close_later(columns: Sequence[Provider]) -> None:
    for column in columns:
        try:
            closing = asyncio.ensure_future(column.aclose())
        except RuntimeError:  # no loop: nothing was opened on one
            continue
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)


def compare(
    tasks: Iterable[Task | str],
    configurations: Iterable[ConfigurationSpec],
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    name: str | None = None,
    params: Params | None = None,
    **run_options: Any,
) -> Comparison:
    """The same tasks on several configurations, journaled as one batch (not run yet).

    ``configurations`` are provider names (a saved configuration of that name if there
    is one: ``nbbatch.save_settings``), ``(name, {...})`` pairs or ``ProviderConfig``
    objects. In a pair, ``label`` names the column; ``model``, ``base_url``,
    ``concurrency``, ``timeouts`` and ``api_key`` configure the provider; the
    :class:`~nbbatch.Params` fields (``sampler``, ``steps``, ``size``, ...) are the
    column's parameters; anything else is a provider option (``latency``,
    ``workflow``, ...). Two columns of one provider are named after what differs.

    Every row gets one seed (its own, or a random one) sent to every configuration
    that takes a seed. ``run_options`` (``concurrency`` per configuration, ``retry``,
    ``attempt_timeout``, and whatever :meth:`nbbatch.Batch.start` takes) are used by
    every run of the comparison; those that are plain values are journaled with it.
    Run with ``await cmp.run()``.
    """
    return Comparison.create(
        tasks,
        configurations,
        workspace=workspace,
        name=name,
        params=params,
        run_options=run_options,
    )
