"""The workspace's history: one row per batch and per-provider statistics, read in SQL.

``Workspace.history()`` and ``Workspace.stats()`` are thin faces over this module. It
takes the workspace's query function rather than importing the store, so the store can
import it (the store is the one that owns the connection).

Definitions used throughout (the History panel, ``stats()`` and the tests agree on them):

* a task's **duration** is ``finished_at - started_at`` of its last attempt, counted for
  succeeded tasks only (a failure after a timeout says nothing about how fast images come);
* the **success rate** is ``succeeded / (succeeded + failed)``; tasks never run, cancelled
  or interrupted are not outcomes yet (``None`` when there is no outcome at all);
* a task's **provider** is the one it was pinned to, else the one that made its first
  image (recorded with the image), else the batch's;
* **spend** is what the cost ledger (``_ledger.py``) makes of each task: the usage the
  provider billed priced by the token table where there is both, else ``images × price
  per image``, with the price looked up as ``"<provider>/<model>"`` then
  ``"<provider>"`` in the price table (``Settings.prices``); images without a known
  price are counted in ``unpriced_images`` and add nothing; ``billed_images`` counts
  the images priced from usage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "BatchSummary",
    "HistoryRow",
    "ProviderStats",
    "batch_status",
    "history_rows",
    "local_time",
    "provider_stats",
]

_Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

#: usage fields providers report per request, in the order they are tried
_TOKEN_PATHS = ("$.info.usage.total_tokens", "$.info.usage.totalTokenCount")


def batch_status(counts: Mapping[str, int]) -> str:
    """One word for a batch from its per-status task counts."""
    live = {k: v for k, v in counts.items() if v}
    if not live:
        return "empty"
    if live.get("running") or live.get("queued"):
        return "running"
    if live.get("interrupted"):
        return "interrupted"
    if set(live) == {"succeeded"}:
        return "succeeded"
    if set(live) == {"idle"}:
        return "new"
    if live.get("idle"):
        return "incomplete"
    if live.get("failed"):
        return "failed"
    return "cancelled"


def local_time(epoch_seconds: float) -> datetime:
    """An aware datetime in the local time zone for a journal time stamp."""
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).astimezone()


def _rate(succeeded: int, failed: int) -> float | None:
    outcomes = succeeded + failed
    return succeeded / outcomes if outcomes else None


@dataclass(frozen=True)
class BatchSummary:
    """A batch with its per-status task counts (``Workspace.batches()``)."""

    id: str
    name: str
    #: when the batch was made, in the local time zone (``to_dict`` gives epoch seconds)
    created_at: datetime
    provider: str | None
    counts: dict[str, int]

    def __post_init__(self) -> None:
        # the journal stores epoch seconds; people read dates
        if not isinstance(self.created_at, datetime):
            object.__setattr__(self, "created_at", local_time(self.created_at))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def status(self) -> str:
        return batch_status(self.counts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the CLI's ``--json``, the History panel): ``created_at`` in epoch
        seconds."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at.timestamp(),
            "provider": self.provider,
            "status": self.status,
            "total": self.total,
            "counts": dict(self.counts),
        }


@dataclass(frozen=True)
class HistoryRow(BatchSummary):
    """One past batch as the History panel lists it: a summary and what it made."""

    images: int
    #: mean duration of its succeeded tasks in seconds (None: none succeeded with times)
    mean_duration: float | None

    @property
    def success_rate(self) -> float | None:
        return _rate(self.counts.get("succeeded", 0), self.counts.get("failed", 0))

    @property
    def resumable(self) -> int:
        """Tasks a resume would send: interrupted, queued (of a dead run) and idle."""
        return sum(self.counts.get(s, 0) for s in ("interrupted", "queued", "idle"))

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "images": self.images,
            "success_rate": self.success_rate,
            "mean_duration": self.mean_duration,
        }


def history_rows(query: _Query) -> list[HistoryRow]:
    """Every batch, newest first: two grouped queries, whatever the number of batches."""
    per_status = query(
        "SELECT b.id, b.name, b.created_at, b.provider, t.status, count(t.id), "
        "sum(CASE WHEN t.status = 'succeeded' AND t.started_at IS NOT NULL "
        "AND t.finished_at IS NOT NULL THEN t.finished_at - t.started_at END), "
        "count(CASE WHEN t.status = 'succeeded' AND t.started_at IS NOT NULL "
        "AND t.finished_at IS NOT NULL THEN 1 END) "
        "FROM batches b LEFT JOIN tasks t ON t.batch_id = b.id "
        "GROUP BY b.id, t.status ORDER BY b.created_at DESC, b.id",
        (),
    )
    images: dict[str, tuple[int, str | None]] = {
        bid: (n, prov)
        for bid, n, prov in query(
            "SELECT t.batch_id, count(*), max(json_extract(i.params, '$.provider')) "
            "FROM images i JOIN tasks t ON t.id = i.task_id GROUP BY t.batch_id",
            (),
        )
    }
    heads: dict[str, tuple[str, float, str | None]] = {}
    counts: dict[str, dict[str, int]] = {}
    timed: dict[str, tuple[float, int]] = {}
    for bid, name, created, provider, status, n, seconds, n_timed in per_status:
        if bid not in heads:
            heads[bid] = (name, created, provider)
            counts[bid] = {}
            timed[bid] = (0.0, 0)
        if status is not None:
            counts[bid][status] = n
        if n_timed:
            total, k = timed[bid]
            timed[bid] = (total + seconds, k + n_timed)
    out = []
    for bid, (name, created, provider) in heads.items():
        n_images, image_provider = images.get(bid, (0, None))
        total, k = timed[bid]
        out.append(
            HistoryRow(
                bid,
                name,
                local_time(created),
                provider or image_provider,
                counts[bid],
                n_images,
                total / k if k else None,
            )
        )
    return out


def thumbnail_sources(query: _Query, batch_id: str, limit: int) -> list[tuple[str, str]]:
    """``(sha256, ext)`` of the first ``limit`` images of a batch, in task order."""
    return [
        (sha, ext)
        for sha, ext in query(
            "SELECT i.sha256, i.ext FROM tasks t JOIN images i ON i.task_id = t.id "
            "WHERE t.batch_id = ? ORDER BY t.ord, i.idx LIMIT ?",
            (batch_id, limit),
        )
    ]


@dataclass
class ProviderStats:
    """What one provider did across the workspace (one row of ``Workspace.stats()``)."""

    provider: str
    batches: int = 0
    tasks: int = 0
    succeeded: int = 0
    failed: int = 0
    images: int = 0
    tokens: int | None = None
    spend: float | None = None
    unpriced_images: int = 0
    #: images whose cost came from billed usage (the rest: the per-image price table)
    billed_images: int = 0
    durations: list[float] = field(default_factory=list, repr=False)

    @property
    def success_rate(self) -> float | None:
        return _rate(self.succeeded, self.failed)

    @property
    def mean_duration(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None

    @property
    def p90_duration(self) -> float | None:
        return percentile(self.durations, 90)

    @property
    def images_per_batch(self) -> float | None:
        return self.images / self.batches if self.batches else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "batches": self.batches,
            "tasks": self.tasks,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "success_rate": self.success_rate,
            "mean_duration": self.mean_duration,
            "p90_duration": self.p90_duration,
            "images": self.images,
            "images_per_batch": self.images_per_batch,
            "tokens": self.tokens,
            "spend": self.spend,
            "unpriced_images": self.unpriced_images,
            "billed_images": self.billed_images,
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct``-th percentile by linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def price_of(prices: Mapping[str, float], provider: str, model: str | None) -> float | None:
    """The price of one image: ``"<provider>/<model>"`` first, then ``"<provider>"``."""
    if model:
        found = prices.get(f"{provider}/{model}")
        if found is not None:
            return found
    return prices.get(provider)


#: what a task's images cost: (images' params, provider, model) -> (amount, basis); the
#: store passes the cost ledger's (``_ledger.task_cost``), so this module reads no settings
TaskCost = Callable[[list[dict[str, Any]], str, str | None], tuple[float | None, str | None]]


def _price_table_cost(prices: Mapping[str, float]) -> TaskCost:
    def cost(
        images: list[dict[str, Any]], provider: str, model: str | None
    ) -> tuple[float | None, str | None]:
        price = price_of(prices, provider, model)
        return (None, None) if price is None else (price * len(images), "price table")

    return cost


def provider_stats(
    query: _Query,
    prices: Mapping[str, float],
    cost: TaskCost | None = None,
) -> list[ProviderStats]:
    """Per-provider numbers over every task of the workspace, most tasks first."""
    tokens = ", ".join(f"json_extract(i.params, '{p}')" for p in _TOKEN_PATHS)
    rows = query(
        "SELECT COALESCE(t.provider, (SELECT json_extract(i.params, '$.provider') FROM images i "
        "WHERE i.task_id = t.id ORDER BY i.idx LIMIT 1), b.provider, ''), "
        "json_extract(t.params, '$.model'), t.batch_id, t.status, t.started_at, t.finished_at, "
        "(SELECT count(*) FROM images i WHERE i.task_id = t.id), "
        f"(SELECT sum(COALESCE({tokens})) FROM images i WHERE i.task_id = t.id), t.id "
        "FROM tasks t JOIN batches b ON b.id = t.batch_id",
        (),
    )
    task_cost = _price_table_cost(prices) if cost is None else cost
    image_params: dict[str, list[dict[str, Any]]] = {}
    for task_id, raw in query("SELECT task_id, params FROM images ORDER BY task_id, idx", ()):
        try:
            params = json.loads(raw)
        except ValueError:
            params = {}
        image_params.setdefault(task_id, []).append(params if isinstance(params, dict) else {})
    found: dict[str, ProviderStats] = {}
    batches: dict[str, set[str]] = {}
    for provider, model, batch_id, status, started, finished, n_images, n_tokens, tid in rows:
        name = provider or "unknown"
        stats = found.get(name)
        if stats is None:
            stats = found[name] = ProviderStats(name)
            batches[name] = set()
        batches[name].add(batch_id)
        stats.tasks += 1
        stats.images += n_images
        if status == "succeeded":
            stats.succeeded += 1
            if started is not None and finished is not None:
                stats.durations.append(finished - started)
        elif status == "failed":
            stats.failed += 1
        if n_tokens is not None:
            stats.tokens = (stats.tokens or 0) + int(n_tokens)
        if n_images:
            amount, basis = task_cost(
                image_params.get(tid, []), name, model if isinstance(model, str) else None
            )
            if amount is None:
                stats.unpriced_images += n_images
            else:
                stats.spend = (stats.spend or 0.0) + amount
                if basis == "usage":
                    stats.billed_images += n_images
    for name, stats in found.items():
        stats.batches = len(batches[name])
    return sorted(found.values(), key=lambda s: (-s.tasks, s.provider))
