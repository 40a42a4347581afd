"""The list of tasks a planner hands back, with what it skipped and why.

Every planner (templates, prompt files, image folders) returns a :class:`TaskList`: a
plain ``list`` of :class:`~nbbatch.Task` (so ``Batch.create(tasks)`` takes it as is) that
also carries the inputs it refused, each with its place and reason, and a one-line
summary of what running it would mean (tasks, images and, when the caller gives a price
per image, a rough cost).

nbbatch ships no price table: the reference material it was built from has no verified
per-image prices, and prices change; pass ``price_per_image`` from your provider's page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..core._model import Task

__all__ = ["Skipped", "TaskList", "summarize"]


@dataclass(frozen=True)
class Skipped:
    """One input that did not become a task: ``where`` (e.g. ``"line 4"``) and ``reason``."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def summarize(tasks: Iterable[Task], *, price_per_image: float | None = None) -> str:
    """``"12 tasks -> 24 images"`` (+ ``", about $0.96 at $0.040/image"`` with a price)."""
    items = list(tasks)
    images = sum(t.params.n for t in items)
    noun = "task" if len(items) == 1 else "tasks"
    inoun = "image" if images == 1 else "images"
    text = f"{len(items)} {noun} -> {images} {inoun}"
    if price_per_image is not None:
        if price_per_image < 0:
            raise ValueError("price_per_image must be >= 0")
        text += f", about ${images * price_per_image:,.2f} at ${price_per_image:.3f}/image"
    return text


class TaskList(list[Task]):
    """A list of tasks plus ``skipped`` (what was refused, with reasons) and ``warnings``."""

    def __init__(
        self,
        tasks: Iterable[Task] = (),
        *,
        skipped: Iterable[Skipped] = (),
        warnings: Iterable[str] = (),
        source: str | None = None,
    ) -> None:
        super().__init__(tasks)
        self.skipped: list[Skipped] = list(skipped)
        self.warnings: list[str] = list(warnings)
        self.source = source

    @property
    def image_count(self) -> int:
        """Images the tasks would produce (sum of ``params.n``)."""
        return sum(t.params.n for t in self)

    def summary(self, *, price_per_image: float | None = None) -> str:
        """What running these tasks means, plus how many inputs were skipped."""
        text = summarize(self, price_per_image=price_per_image)
        if self.skipped:
            text += f"; {len(self.skipped)} skipped"
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s)"
        return text

    def __repr__(self) -> str:
        where = f" from {self.source!r}" if self.source else ""
        return f"<TaskList{where}: {self.summary()}>"
