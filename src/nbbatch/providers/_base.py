"""The provider interface: one request in, images out, progress on the side.

A provider is an object with a ``name``, declared :class:`Capabilities` and an async
:meth:`Provider.generate`. The runner owns retries, timeouts and concurrency; a provider
makes *one* attempt and raises a :class:`~nbbatch.ProviderError` subclass whose
``retryable`` flag tells the runner whether another attempt may help. When the runner
cancels an attempt (user cancel, stop) the provider receives ``asyncio.CancelledError``
inside ``generate``; providers whose service has a cancel call make it before re-raising.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..core._errors import NotSupportedError
from ..core._model import Params

__all__ = [
    "Balance",
    "Capabilities",
    "GenerationRequest",
    "ImageData",
    "InputImage",
    "ProgressCallback",
    "Provider",
]

#: ``on_progress(fraction_or_None, preview_bytes_or_None)``; fraction in [0, 1].
ProgressCallback = Callable[[float | None, bytes | None], None]


@dataclass(frozen=True)
class Balance:
    """What is left on the account, as the service itself reports it
    (:meth:`Provider.balance`)."""

    amount: float
    #: ``"credits"`` (the service's own unit) or a currency code such as ``"USD"``
    unit: str

    def __str__(self) -> str:
        if self.unit == "credits":
            return f"{self.amount:,.2f} credits"
        if self.unit == "USD":
            return f"${self.amount:,.2f}"
        return f"{self.amount:,.2f} {self.unit}"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; checked before any request is sent."""

    txt2img: bool = True
    img2img: bool = False
    #: how many reference images one request may carry (0: none)
    max_references: int = 0
    mask: bool = False
    #: images per request the service can return (``Params.n`` above this is refused)
    max_n: int = 1
    seed: bool = False
    negative_prompt: bool = False
    progress: bool = False
    cancel: bool = False


@dataclass(frozen=True)
class InputImage:
    """An input image as bytes, with the name the person gave it."""

    name: str
    data: bytes
    mime: str = "image/png"


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one attempt needs; built by the runner from a :class:`~nbbatch.Task`."""

    prompt: str
    params: Params = field(default_factory=Params)
    images: Sequence[InputImage] = ()
    mask: InputImage | None = None
    task_id: str | None = None
    attempt: int = 1
    #: the runner's attempt timeout in seconds (``None``: none); a provider that times
    #: its attempts itself (:attr:`Provider.own_timeout`) applies it to the part it controls
    timeout: float | None = None


@dataclass(frozen=True)
class ImageData:
    """One image a provider returned, still undecoded.

    ``seed`` is the seed the service actually used, where it says; ``info`` keeps any
    extra facts worth recording (revised prompt, usage, timings) — JSON-serialisable.
    """

    data: bytes
    mime: str | None = None
    seed: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Provider(abc.ABC):
    """Base class for image providers. Subclasses set ``name`` and ``capabilities``."""

    name: ClassVar[str] = "provider"
    capabilities: Capabilities = Capabilities()
    #: a human label for menus and logs (``"Demo (offline)"``)
    label: ClassVar[str] = ""
    #: default per-provider concurrency cap (``None``: only the runner's global limit)
    max_concurrency: int | None = None
    #: True: the provider bounds each attempt itself (ComfyUI counts the attempt timeout
    #: from when its server starts the prompt, not while it waits in a shared queue), so
    #: the runner passes the timeout in :attr:`GenerationRequest.timeout` and sets none
    own_timeout: ClassVar[bool] = False

    @abc.abstractmethod
    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        """Make one attempt at ``request`` and return its images (at least one)."""

    def validate(self, request: GenerationRequest) -> None:
        """Raise :class:`NotSupportedError` when ``request`` needs a missing capability."""
        caps = self.capabilities
        who = self.label or self.name
        if request.images and not (caps.img2img or caps.max_references):
            raise NotSupportedError(
                f"{who} cannot use input images; remove the references or pick a provider "
                "that supports img2img",
                task_id=request.task_id,
            )
        if not request.images and not caps.txt2img:
            raise NotSupportedError(
                f"{who} needs an input image (it does img2img only)", task_id=request.task_id
            )
        limit = max(caps.max_references, 1 if caps.img2img else 0)
        if len(request.images) > limit:
            raise NotSupportedError(
                f"{who} takes at most {limit} input image(s); this task has {len(request.images)}",
                task_id=request.task_id,
            )
        if request.mask is not None and not caps.mask:
            raise NotSupportedError(f"{who} does not support masks", task_id=request.task_id)
        if request.params.n > caps.max_n:
            raise NotSupportedError(
                f"{who} returns at most {caps.max_n} image(s) per request; "
                f"n={request.params.n} asked",
                task_id=request.task_id,
            )
        if request.params.negative_prompt and not caps.negative_prompt:
            raise NotSupportedError(
                f"{who} has no negative prompt; move it into the prompt or clear it",
                task_id=request.task_id,
            )

    def pause_pending(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """The run was paused: take back requests still waiting in the service's own
        queue where that costs nothing (ComfyUI), to send them again on resume.

        Called by the runner, maybe from another thread: only set state here. The
        default does nothing (requests in flight finish).
        """

    def resume_pending(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """The run goes on: requests taken back by :meth:`pause_pending` are sent again."""

    async def check(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Test the connection and credentials; raise a ProviderError when they fail.

        The default does nothing (providers without a cheap probe).
        """

    async def balance(self) -> Balance | None:
        """The account's balance or credits, asked of the service (spends nothing).

        ``None``: the service has no API for it (OpenAI, Gemini, Replicate, ... show
        theirs only on their web dashboards); a service that has one overrides this and
        raises a ProviderError when it cannot be read (a key without billing access).
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release connections. Safe to call twice."""

    def __repr__(self) -> str:
        # Never include configuration here: it may hold a key.
        return f"<{type(self).__name__} {self.name!r}>"
