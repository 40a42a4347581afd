"""Plain data: tasks, their parameters, input references and generated images.

No I/O happens here except :attr:`GeneratedImage.pil` / :attr:`Reference.pil`, which open
their file lazily when asked. Status changes go through :meth:`Task.transition`, which
refuses moves the lifecycle does not allow::

    idle ─► queued ─► running ─► succeeded
      │        │         ├─────► failed ──────┐
      │        │         ├─────► cancelled ───┤ (retry / resume) ─► queued
      │        │         └─────► interrupted ─┘
      └────────┴─► cancelled

``interrupted`` means the process died (or was stopped) while the request was in
flight: the provider may or may not have produced (and billed) an image, so nbbatch
never re-sends it until the person resumes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ConfigError, ImageMissingError, InvalidPromptError, InvalidTransitionError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "MAX_PROMPT_CHARS",
    "GeneratedImage",
    "Params",
    "Reference",
    "Task",
    "TaskOwner",
    "TaskStatus",
    "check_prompt",
    "clean_text",
    "new_id",
]

#: Longest prompt accepted. Services cap far lower (OpenAI: 32,000 characters for GPT
#: image models); this only stops pasted novels from reaching the store and the UI.
MAX_PROMPT_CHARS = 32_000


def new_id() -> str:
    """A short random id (12 hex digits): readable in a CLI, unique enough per workspace."""
    return uuid.uuid4().hex[:12]


# Control characters (C0 but tab and newline, DEL, C1) and the bidirectional embeddings,
# overrides and isolates. None of them means anything to an image model; in a terminal
# they can rewrite what is shown (ESC sequences, CR, "Trojan Source" reordering), and PNG
# text chunks may not hold NUL at all.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """``text`` with line ends made ``\\n`` and control and bidi-override characters removed.

    Applied to every prompt and negative prompt at the model boundary, whatever wrote
    them (a person, a file, an LLM, the API), so nothing downstream ever sees them.
    """
    if text.isascii() and text.isprintable():
        return text  # the common case, and none of those characters is ASCII-printable
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def check_prompt(prompt: object, *, task_id: str | None = None) -> str:
    """Return the prompt cleaned (:func:`clean_text`) and stripped of outer white space,
    or raise :class:`InvalidPromptError`."""
    if not isinstance(prompt, str):
        raise InvalidPromptError(
            f"a prompt must be text, got {type(prompt).__name__}", task_id=task_id
        )
    text = clean_text(prompt).strip()
    if not text:
        raise InvalidPromptError("the prompt is empty: write what to generate", task_id=task_id)
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidPromptError(
            f"the prompt has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}. "
            "Shorten it or split it into several tasks.",
            task_id=task_id,
        )
    return text


class TaskStatus(str, enum.Enum):
    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_terminal(self) -> bool:
        """True when no runner will touch the task again without a person asking."""
        return self in _TERMINAL

    @property
    def is_resumable(self) -> bool:
        """True when ``resume`` would (re)queue the task."""
        return self in _RESUMABLE

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED}
)
_RESUMABLE = frozenset(
    {
        TaskStatus.IDLE,
        TaskStatus.QUEUED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.INTERRUPTED,
    }
)

_S = TaskStatus
ALLOWED_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    _S.IDLE: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED, _S.IDLE}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.INTERRUPTED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset({_S.QUEUED, _S.IDLE}),
    _S.CANCELLED: frozenset({_S.QUEUED, _S.IDLE}),
    _S.INTERRUPTED: frozenset({_S.QUEUED, _S.IDLE, _S.CANCELLED}),
}

_SIZE_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class Params:
    """Generation parameters. ``None`` means "the provider's default".

    ``size`` is ``"WIDTHxHEIGHT"`` (or ``"auto"`` where a service accepts it); ``n`` is
    images per task; ``strength`` is the img2img denoising strength in [0, 1];
    ``extras`` carries provider-specific fields verbatim (JSON-serialisable).
    """

    size: str | None = None
    n: int = 1
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    negative_prompt: str | None = None
    sampler: str | None = None
    strength: float | None = None
    model: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("negative_prompt", "sampler", "model"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str):
                    raise ConfigError(f"{name} must be text, got {type(value).__name__}")
                cleaned = clean_text(value)
                if cleaned != value:  # frozen: the one place it may still be set
                    object.__setattr__(self, name, cleaned)
        if self.size is not None and self.size != "auto" and not _SIZE_RE.match(self.size):
            raise ConfigError(f"size must look like '1024x768' or 'auto', got {self.size!r}")
        if not isinstance(self.n, int) or not 1 <= self.n <= 16:
            raise ConfigError(f"n (images per task) must be between 1 and 16, got {self.n!r}")
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise ConfigError(f"steps must be between 1 and 1000, got {self.steps!r}")
        if self.strength is not None and not 0.0 <= self.strength <= 1.0:
            raise ConfigError(f"strength must be between 0 and 1, got {self.strength!r}")
        if self.seed is not None and not -1 <= self.seed < 2**63:
            raise ConfigError(f"seed must be a non-negative 64-bit integer, got {self.seed!r}")

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """``(width, height)`` parsed from :attr:`size`, or ``None``."""
        if self.size is None or self.size == "auto":
            return None
        w, h = self.size.split("x")
        return int(w), int(h)

    def replace(self, **changes: Any) -> Params:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that are set, JSON-ready."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extras":
                if value:
                    out["extras"] = dict(value)
            elif f.name == "n":
                if value != 1:
                    out["n"] = value
            elif value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Params:
        if not data:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}. "
                "Put provider-specific fields under 'extras'."
            )
        kwargs = dict(data)
        if "extras" in kwargs:
            kwargs["extras"] = dict(kwargs["extras"] or {})
        return cls(**kwargs)


class TaskOwner(Protocol):
    """What a task or image asks of the batch it belongs to (the batch façade does this).

    The model cannot import the engine; a loaded batch attaches itself to its tasks and
    images so that ``task.parent``, ``task.children`` and ``image.edit(...)`` work.
    """

    def parent_of(self, task: Task) -> Task | None: ...

    def children_of(self, task: Task) -> list[Task]: ...

    def derive(self, image: GeneratedImage, prompt: str, **params: Any) -> Task: ...

    def task_html(self, task: Task) -> str: ...


def _unattached(what: str) -> ConfigError:
    return ConfigError(
        f"this {what} is not attached to a loaded batch; load it with "
        "nbbatch.Batch.load(batch_id) and use the batch's tasks and images"
    )


def _missing(path: Path) -> ImageMissingError:
    return ImageMissingError(
        f"the image file {path.name} is missing from the workspace's images folder "
        f"({str(path.parent.parent)!r}): it was deleted or moved. Retry its task to "
        "generate it again (reopening the workspace marks the task failed).",
        path=str(path),
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _missing(path) from None


def _open_pil(path: Path) -> Image.Image:
    from PIL import Image

    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise _missing(path) from None
    img.load()
    return img


@dataclass(frozen=True)
class Reference:
    """An input image stored in the workspace (content-addressed by sha256)."""

    name: str
    path: Path
    sha256: str
    width: int
    height: int
    format: str

    @property
    def pil(self) -> Image.Image:
        return _open_pil(self.path)

    def read_bytes(self) -> bytes:
        return _read(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "format": self.format,
        }


@dataclass
class GeneratedImage:
    """One image a task produced, saved in the workspace.

    ``pil`` opens the file lazily; in a notebook the object shows itself as the image.
    """

    task_id: str
    index: int
    path: Path
    sha256: str
    width: int
    height: int
    format: str
    seed: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    #: marked as a keeper by the person (``batch.star(image)``); journaled
    starred: bool = False
    _owner: TaskOwner | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def pil(self) -> Image.Image:
        return _open_pil(self.path)

    def read_bytes(self) -> bytes:
        return _read(self.path)

    def edit(self, prompt: str, **params: Any) -> Task:
        """A new child task that reworks this image with ``prompt`` (img2img / edit).

        Same as ``batch.derive(image, prompt, **params)``: the image becomes the new
        task's reference, its ``parent_id`` is this image's task, and it joins the batch
        (and a live run of it).
        """
        if self._owner is None:
            raise _unattached("image")
        return self._owner.derive(self, prompt, **params)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The image once: PNG and JPEG as themselves, other formats as an ``<img>``.

        One bundle instead of ``_repr_png_`` plus an HTML copy, so a saved notebook
        stores each displayed image once.
        """
        fmt = self.format.upper()
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        if fmt in ("PNG", "JPEG"):
            bundle[f"image/{fmt.lower()}"] = self.read_bytes()
            return bundle
        import base64
        import html

        # Formats without a rich mime type of their own (WebP, GIF) show as an <img>.
        data = base64.b64encode(self.read_bytes()).decode()
        title = html.escape(f"task {self.task_id} #{self.index} seed={self.seed}")
        bundle["text/html"] = (
            f'<img src="data:image/{html.escape(fmt.lower())};base64,{data}" '
            f'title="{title}" style="max-width:100%" width="{self.width}" '
            f'height="{self.height}"/>'
        )
        return bundle

    def __repr__(self) -> str:
        return (
            f"GeneratedImage(task_id={self.task_id!r}, index={self.index}, "
            f"{self.width}x{self.height} {self.format}, seed={self.seed}, path='{self.path}')"
        )


@dataclass(eq=False)
class Task:
    """One unit of work: a prompt (+ references and params) that yields one or more images."""

    prompt: str
    params: Params = field(default_factory=Params)
    references: list[Reference] = field(default_factory=list)
    provider: str | None = None
    id: str = field(default_factory=new_id)
    batch_id: str | None = None
    parent_id: str | None = None
    original_prompt: str | None = None
    status: TaskStatus = TaskStatus.IDLE
    attempts: int = 0
    progress: float | None = None
    error: str | None = None
    error_kind: str | None = None
    images: list[GeneratedImage] = field(default_factory=list)
    order: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    _owner: TaskOwner | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt, task_id=self.id)
        if self.original_prompt is None:
            self.original_prompt = self.prompt
        elif isinstance(self.original_prompt, str):
            self.original_prompt = clean_text(self.original_prompt)
        if isinstance(self.params, Mapping):
            self.params = Params.from_dict(self.params)
        if type(self.status) is not TaskStatus:  # a text from a file or a row
            self.status = TaskStatus(self.status)

    def transition(self, new: TaskStatus, *, now: float | None = None) -> None:
        """Move to ``new`` or raise :class:`InvalidTransitionError`; stamps the times."""
        new = TaskStatus(new)
        if new not in ALLOWED_TRANSITIONS[self.status]:
            raise InvalidTransitionError(
                f"task {self.id} cannot go from {self.status.value} to {new.value}",
                task_id=self.id,
            )
        stamp = time.time() if now is None else now
        self.status = new
        if new is TaskStatus.RUNNING:
            self.started_at = stamp
            self.progress = None
        elif new.is_terminal:
            self.finished_at = stamp
        elif new in (TaskStatus.QUEUED, TaskStatus.IDLE):
            self.finished_at = None
            self.progress = None
            self.error = None
            self.error_kind = None

    @property
    def parent(self) -> Task | None:
        """The task this one was derived from (``parent_id``), when it is in the batch."""
        if self.parent_id is None:
            return None
        if self._owner is None:
            raise _unattached("task")
        return self._owner.parent_of(self)

    @property
    def children(self) -> list[Task]:
        """Tasks derived from this one (their ``parent_id`` is this task), in batch order."""
        if self._owner is None:
            return []
        return self._owner.children_of(self)

    @property
    def starred(self) -> bool:
        """True when any of its images is starred (``batch.star(image)``)."""
        return any(im.starred for im in self.images)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready summary (used by manifests, DataFrames and the CLI)."""
        return {
            "id": self.id,
            "batch_id": self.batch_id,
            "parent_id": self.parent_id,
            "order": self.order,
            "prompt": self.prompt,
            "original_prompt": self.original_prompt,
            "params": self.params.to_dict(),
            "references": [r.to_dict() for r in self.references],
            "provider": self.provider,
            "status": self.status.value,
            "attempts": self.attempts,
            "error": self.error,
            "error_kind": self.error_kind,
            "images": [
                {
                    "index": im.index,
                    "sha256": im.sha256,
                    "seed": im.seed,
                    "format": im.format,
                    "starred": im.starred,
                }
                for im in self.images
            ],
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def _repr_html_(self) -> str:
        """Status, prompt, error and the first thumbnails, as a notebook shows a task."""
        if self._owner is not None:
            return self._owner.task_html(self)  # the batch knows where thumbnails live
        import html

        return (
            f"<div><b>{html.escape(self.status.value)}</b> {html.escape(self.prompt[:300])}"
            f" <small>(task {html.escape(self.id)}, not in a batch yet)</small></div>"
        )

    def __repr__(self) -> str:
        prompt = self.prompt if len(self.prompt) <= 40 else self.prompt[:37] + "..."
        return (
            f"Task(id={self.id!r}, status={self.status.value}, prompt={json.dumps(prompt)}, "
            f"images={len(self.images)})"
        )
