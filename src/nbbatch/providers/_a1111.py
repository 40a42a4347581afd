"""Stable Diffusion WebUI: AUTOMATIC1111 and Forge (the ``/sdapi/v1`` API).

``POST /sdapi/v1/txt2img`` (or ``img2img`` with the task's reference as ``init_images``)
blocks until the images are done. The ``info`` field of the answer (a JSON *string*)
gives the seeds really used (``all_seeds``) and the server's own infotext per image,
which is kept as the truth about the image (``ImageData.info["infotext"]``) next to what
nbbatch asked for.

The WebUI runs one job at a time behind a global lock, and its progress, its state and
its interrupt are server-wide: ``/sdapi/v1/progress`` describes whatever job runs, for
any client, and ``/sdapi/v1/interrupt`` stops whatever runs, at its next step. A job
whose client has gone away still runs (and one waiting on the lock still starts), and
the next job's start clears the interrupt flag. The provider therefore follows the
server itself, one poller per provider:

* **Whose job runs.** This provider's requests are kept in the order they were sent,
  and the server's state is read just before each is sent. A job that the poller sees
  start after the oldest unanswered request was sent is that request's; anything else
  is someone else's (another request of ours, or another client). A start is the server
  going from idle to busy, ``state.job_timestamp`` changing, or, within the same second,
  ``job_count`` back to -1 or ``job_no`` back down (both only happen when a job begins).
* **Progress** goes only to the task whose job runs; a task whose job has not started
  reports "waiting for the server" (``on_progress(None, None)``), never another job's
  numbers.
* **Cancel and stop take the job back.** A cancelled request keeps its connection until
  the server has let go of its job: the interrupt is sent when its job runs (again if a
  new job of it starts after the flag was cleared), and ``generate`` returns only when
  the answer has come — so the next request of the batch never queues behind a job
  winding down, and a request still waiting on the server's lock is interrupted as soon
  as it starts instead of running for nobody. ``cancel_timeout`` bounds the wait: the
  connection is then dropped, with a warning, and the job stays followed like a request
  that timed out (below). A job that made its whole result anyway (it ended before the
  interrupt went out, or the poller saw its sampling done when it did) is not called
  cancelled: its images are returned and saved. One interrupted during its last step may
  have stopped nothing, but is taken as cut short (a partly denoised image is never kept).
* **Names the server does not know.** A1111 1.10 answers 200 to an unknown sampler or
  checkpoint and silently uses its default sampler or another checkpoint; the provider
  checks them against ``/sdapi/v1/samplers`` (+ ``/schedulers``) and
  ``/sdapi/v1/sd-models`` (fetched once per provider, again when a name is missing) and
  refuses the task before sending, in words. The answer's ``info`` is checked too.
* **Sizes.** The WebUI renders multiples of 8 (70x50 comes back 64x48): the rounded size
  is sent and a note says so. img2img without a size sends the reference's size
  (rounded); without it the server would answer 512x512.
* A ``NansException`` (a model or VAE producing NaNs) repeats with the same settings: it
  is not retried.
* **A request that timed out** (the read) leaves its job on the WebUI, running or still
  waiting on the lock: it stays in the bookkeeping, abandoned, so the poller interrupts
  its job when it runs or starts, and forgets it once that job has ended. One not seen
  to start is followed while the job it waits behind runs, and at least a minute (or
  ``cancel_timeout`` if longer); then it is forgotten with a warning.
* **A WebUI that is down** (connection refused, and ``check()`` fails too) raises
  :class:`~nbbatch.errors.ServerUnavailableError`: the runner pauses the run until the
  WebUI answers again instead of failing every task.

Residual risks: other clients of the same WebUI (and a second provider object pointing
at it) are invisible to the bookkeeping, so a job of theirs that starts between our
look at the state and our request reaching the server can be taken for ours; two jobs
that start within the same second while the poller sees neither begin look like one;
the WebUI's lock is not strictly first-come-first-served. ``current_task`` in the
progress answer would name the job exactly, but 1.10 and Forge always report ``null``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, ClassVar

import httpx

from ..core._errors import (
    ConfigError,
    MalformedResponseError,
    NotSupportedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ServerUnavailableError,
)
from ..core._secrets import Secret, scrub
from ..images._decode import header_size, sniff_format
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._codec import b64decode
from ._http import HttpClient, Timeouts
from ._offload import offload

__all__ = ["A1111Provider"]

log = logging.getLogger("nbbatch")

INFO = provider_info("a1111")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""
_EXCERPT = 300


def webui_message(response: httpx.Response) -> str:
    """The readable part of an A1111 or Forge error body.

    A1111's middleware answers ``{"error": "<Exception class>", "detail", "body",
    "errors"}``; Forge (middleware off) and FastAPI answer ``{"detail": str}``, and
    validation errors ``{"detail": [{"loc": [...], "msg": ...}]}``.
    """
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    text = ""
    if isinstance(body, Mapping):
        detail = body.get("detail")
        if isinstance(detail, list):
            items = []
            for d in detail[:3]:
                if isinstance(d, Mapping):
                    loc = ".".join(str(x) for x in d.get("loc", []) if x != "body")
                    items.append(f"{loc}: {d.get('msg', '')}" if loc else str(d.get("msg", "")))
                else:
                    items.append(str(d))
            text = "; ".join(items)
        elif detail:
            text = str(detail)
        for key in ("errors", "body"):
            extra = body.get(key)
            if isinstance(extra, str) and extra.strip() and extra.strip() not in text:
                text = f"{text} ({extra.strip()})" if text else extra.strip()
        if isinstance(body.get("error"), str) and body["error"] not in ("", "HTTPException"):
            text = f"{body['error']}: {text}" if text else body["error"]
    if not text:
        with contextlib.suppress(Exception):
            text = response.text.strip()
    text = " ".join(text.split())
    if len(text) > _EXCERPT:
        text = text[: _EXCERPT - 3] + "..."
    return scrub(text)


#: errors that repeat with the same request: another attempt only costs time
_DETERMINISTIC = ("NansException", "A tensor with all NaNs", "A tensor with NaNs")


def _classify(response: httpx.Response, err: ProviderError) -> ProviderError:
    detail = webui_message(response)
    message = f"{err.provider}: HTTP {response.status_code}"
    if detail:
        message += f": {detail}"
    if any(marker in detail for marker in _DETERMINISTIC):
        err.retryable = False
        message += (
            ". The model or VAE produced NaNs; this repeats with the same settings, so it is "
            "not retried. Try another checkpoint or VAE, or start the WebUI with "
            "--no-half-vae (or --no-half)"
        )
    if response.status_code == 401:
        message += ". Check the WebUI user name and password (--api-auth)."
    elif response.status_code == 404 and "/sdapi/" in str(response.request.url):
        message += ". Is the WebUI started with --api (or --nowebui)?"
    err.message = message
    err.args = (message,)
    return err


def _parse_info(raw: Any) -> dict[str, Any]:
    """``info`` is a JSON document inside a string; an unreadable one is just skipped."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                return parsed
    return {}


@dataclass(eq=False)
class _Job:
    """One request of ours on the WebUI, from sending until its answer."""

    on_progress: ProgressCallback | None
    #: the poller's job count (epoch) when it was sent: a job that started later can be it
    sent_epoch: int
    #: its images are whole once the sampler's last step is done (no second pass, such
    #: as hires fix or a script, that an interrupt could still cut short)
    one_pass: bool = True
    #: cancelled: interrupt its job when it runs, then let it go
    abandoned: bool = False
    #: the epoch of the last interrupt sent for it (-1: none was)
    interrupted_epoch: int = -1
    #: when that interrupt was sent, the poller had seen its sampling done (decoding)
    interrupted_when_sampled: bool = False
    #: the epoch in which the poller last saw this request's job running
    seen_epoch: int = -1
    best: float = 0.0
    #: what was last reported (``None``: waiting; -1: nothing yet)
    shown: float | None = -1.0
    #: its client gave up waiting (a read timeout) with no answer: the job may still be
    #: queued on the WebUI's lock, so it stays followed until the poller has seen it run
    #: (and interrupted it) and end, or until this ``loop.time()``
    ghost_until: float | None = None


#: seconds a request given up on is followed at least, to interrupt its job if it starts
_FOLLOW_AT_LEAST = 60.0

_GRID = 8  # the latent is 1/8 of the image: the WebUI renders multiples of 8


def _round_size(width: int, height: int) -> tuple[int, int]:
    return max(_GRID, width // _GRID * _GRID), max(_GRID, height // _GRID * _GRID)


@dataclass(frozen=True)
class _Names:
    """What the WebUI calls its samplers and checkpoints (``/samplers``, ``/sd-models``)."""

    samplers: tuple[str, ...]
    #: lower-cased alias -> sampler name (an alias is *not* accepted by txt2img in 1.10)
    sampler_aliases: dict[str, str]
    #: schedule types that may end a sampler name ("DPM++ 2M Karras")
    schedules: frozenset[str]
    #: every way a checkpoint can be named -> its ``model_name``
    checkpoints: dict[str, str]
    fetched: float

    def sampler(self, name: str) -> str | None:
        """The sampler ``name`` selects, as 1.10 reads it; ``None``: unknown."""
        if name in self.samplers:
            return name
        for schedule in self.schedules:
            if name.endswith(" " + schedule) and name[: -len(schedule) - 1] in self.samplers:
                return name[: -len(schedule) - 1]
        return None


def _text(item: Mapping[str, Any], key: str, default: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) and value else default


def _names(samplers: Any, schedulers: Any, models: Any, now: float) -> _Names:
    names: list[str] = []
    aliases: dict[str, str] = {}
    for item in samplers if isinstance(samplers, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            names.append(item["name"])
            for alias in item.get("aliases") or []:
                if isinstance(alias, str):
                    aliases[alias.lower()] = item["name"]
    schedules: set[str] = set()
    for item in schedulers if isinstance(schedulers, list) else []:
        if isinstance(item, Mapping):
            for key in ("name", "label"):
                if isinstance(item.get(key), str):
                    schedules.add(item[key])
            schedules.update(a for a in item.get("aliases") or [] if isinstance(a, str))
    checkpoints: dict[str, str] = {}
    for item in models if isinstance(models, list) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("title"), str):
            continue

        title: str = item["title"]
        model_name = _text(item, "model_name", title)
        short = _text(item, "hash", "")
        plain = title[: -len(f" [{short}]")] if short and title.endswith(f" [{short}]") else title
        stem = PurePath(_text(item, "filename", plain).replace("\\", "/")).stem
        ids = [title, model_name, plain, stem]
        if short:
            ids += [short, f"{stem} [{short}]", f"{plain} [{short}]"]
        if isinstance(item.get("sha256"), str):
            ids.append(item["sha256"])
        for name in ids:
            checkpoints.setdefault(name, model_name)
    return _Names(tuple(names), aliases, frozenset(schedules), checkpoints, now)


#: request fields that add a pass after sampling (or more batches) that an interrupt can
#: still cut short, so a job's sampling being done does not make its images whole
_MORE_PASSES = ("enable_hr", "alwayson_scripts", "script_name")


def _one_pass(body: Mapping[str, Any]) -> bool:
    return body.get("n_iter", 1) in (None, 1) and not any(body.get(k) for k in _MORE_PASSES)


def _sampled(state: Mapping[str, Any], count: int, number: int) -> bool:
    """Is the running job past its sampling (decoding, saving) in this ``/progress`` state?

    ``sampling_step`` is the index of the last step done (the sampler's callback), and the
    sampler checks for an interrupt when a step begins, so at ``sampling_steps - 1`` no
    step is left to notice one; ``job_no`` reaching ``job_count`` means the latent has
    been decoded. A one-step job is not trusted (its step may not have begun).
    """
    step, steps = state.get("sampling_step"), state.get("sampling_steps")
    if count <= 0:
        return False  # idle, or its checkpoint still loads
    if number >= count:
        return True
    return isinstance(step, int) and isinstance(steps, int) and steps > 1 and step >= steps - 1


def _ran_to_its_end(job: _Job, post: asyncio.Future[Any]) -> bool:
    """Did a cancelled request's job make its whole result anyway?

    Yes when the WebUI answered with images and no interrupt of ours could cut them
    short: none was sent while it ran (it ended first), or the poller saw its sampling
    done when the interrupt went out. An interrupt sent during the last step may still
    have stopped nothing; such a job is taken as interrupted (the safe side: a partly
    denoised image is never kept as a result).
    """
    if not post.done() or post.cancelled() or post.exception() is not None:
        return False
    answer = post.result()
    images = answer.get("images") if isinstance(answer, Mapping) else None
    if not isinstance(images, list) or not images:
        return False  # interrupted before sampling: the WebUI answers without images
    if job.interrupted_epoch < 0:
        return True
    return job.one_pass and job.interrupted_when_sampled


async def _outlast(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` whatever cancels the caller meanwhile (stop cancels twice)."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])


class A1111Provider(Provider):
    """A Stable Diffusion WebUI (AUTOMATIC1111 or Forge) started with ``--api``.

    ``username``/``password`` are for ``--api-auth``. ``poll_interval`` is the progress
    polling period in seconds (``None`` turns progress off; a cancelled job is still
    followed, every half second); ``previews=True`` also asks for the live preview
    image. ``cancel_timeout`` bounds how long a cancel waits for the server to let go of
    the job. ``Params.model`` (default: ``model``) switches the checkpoint for that
    request only (``override_settings``); ``Params.extras`` are sent verbatim (e.g.
    ``scheduler``, ``enable_hr``, ``alwayson_scripts``).
    """

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        poll_interval: float | None = 1.0,
        previews: bool = False,
        timeouts: Timeouts | None = None,
        max_concurrency: int | None = 1,
        cancel_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        auth: tuple[str, str] | None = None
        if username is not None or password is not None:
            if not username or not password:
                raise ConfigError(
                    "HTTP Basic auth needs both username and password (as in --api-auth)"
                )
            secret = password if isinstance(password, Secret) else Secret(password)
            auth = (username, secret.reveal())
        self.model = model
        self.poll_interval = poll_interval
        self.previews = previews
        self.max_concurrency = max_concurrency
        self.cancel_timeout = cancel_timeout
        #: this provider's requests on the server, in the order they were sent
        self._jobs: list[_Job] = []
        # what the poller last saw of the server-wide state
        self._epoch = 0
        self._busy = False
        self._stamp: str | None = None
        self._count = 0
        self._number = 0
        #: answers received so far: a poll that raced one is stale and dropped
        self._answers = 0
        self._watcher: asyncio.Task[None] | None = None
        self._names: _Names | None = None
        #: notes already logged as warnings
        self._said: set[str] = set()
        self._names_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._http = HttpClient(
            self.name,
            self.base_url,
            auth=auth,
            timeouts=timeouts,
            transport=transport,
            classify=_classify,
            max_connections=8,
        )
        # a user:password in the URL became Basic auth; the attribute keeps none of it
        self.base_url = self._http.base_url

    async def check(self) -> None:
        """Probe the API (and the Basic auth): ``GET /sdapi/v1/sd-models``."""
        await self._http.json("GET", "/sdapi/v1/sd-models")

    async def _reachable(self) -> bool:
        """Does the WebUI answer at all (even with an error)?"""
        try:
            await self.check()
        except (ProviderConnectionError, ProviderTimeoutError):
            return False
        except ProviderError:
            pass
        return True

    async def aclose(self) -> None:
        watcher = self._watcher
        if (
            watcher is not None
            and not watcher.done()
            and watcher.get_loop() is asyncio.get_running_loop()
        ):
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self._http.aclose()

    # ------------------------------------------------------------------ request body
    def payload(
        self, request: GenerationRequest, notes: list[str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(route, JSON body) for ``request``; what differs from the request goes in ``notes``."""
        p = request.params
        notes = [] if notes is None else notes
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": p.negative_prompt or "",
            "seed": p.seed if p.seed is not None else -1,
            "batch_size": p.n,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
        }
        if p.steps is not None:
            body["steps"] = p.steps
        if p.cfg_scale is not None:
            body["cfg_scale"] = p.cfg_scale
        if p.sampler:
            body["sampler_name"] = p.sampler
        dims = p.dimensions
        if dims is None and request.images:
            # without a size the WebUI answers 512x512 whatever the reference (squashed)
            fmt = sniff_format(request.images[0].data)
            dims = header_size(request.images[0].data, fmt) if fmt else None
            if dims is not None:
                notes.append(f"size {dims[0]}x{dims[1]} taken from the reference")
        if dims:
            sent = _round_size(*dims)
            if sent != dims:
                notes.append(
                    f"the WebUI renders multiples of 8: {dims[0]}x{dims[1]} was sent as "
                    f"{sent[0]}x{sent[1]}"
                )
            body["width"], body["height"] = sent
        if p.model or self.model:
            body["override_settings"] = {"sd_model_checkpoint": p.model or self.model}
            body["override_settings_restore_afterwards"] = True
        route = "/sdapi/v1/txt2img"
        if request.images:
            route = "/sdapi/v1/img2img"
            body["init_images"] = [base64.b64encode(im.data).decode() for im in request.images]
            if p.strength is not None:
                body["denoising_strength"] = p.strength
            if request.mask is not None:
                body["mask"] = base64.b64encode(request.mask.data).decode()
        for key, value in p.extras.items():
            if key == "override_settings" and isinstance(value, Mapping):
                body.setdefault("override_settings", {}).update(value)
            else:
                body[key] = value
        return route, body

    # ------------------------------------------------------------------ names
    async def _server_names(self, *, fresh: bool = False) -> _Names | None:
        """Samplers and checkpoints of the WebUI, fetched once (again when ``fresh``, at most
        every 30 s: a name missing from a list fetched a while ago may have been added)."""
        loop = asyncio.get_running_loop()
        if self._names_lock is None or self._names_lock[0] is not loop:
            self._names_lock = (loop, asyncio.Lock())  # a lock serves one event loop
        async with self._names_lock[1]:
            now = time.monotonic()
            if self._names is not None and not (fresh and now - self._names.fetched > 30.0):
                return self._names
            try:
                samplers = await self._http.json("GET", "/sdapi/v1/samplers")
                models = await self._http.json("GET", "/sdapi/v1/sd-models")
            except ProviderError as exc:
                log.debug("%s: could not list samplers / checkpoints: %s", self.name, exc)
                return self._names
            try:
                schedulers = await self._http.json("GET", "/sdapi/v1/schedulers")
            except ProviderError:
                schedulers = []  # before 1.9 the schedule type is part of the sampler name
            self._names = _names(samplers, schedulers, models, now)
            return self._names

    async def _check_names(self, request: GenerationRequest) -> None:
        """Refuse a sampler or checkpoint the WebUI does not have (1.10 would not say)."""
        p = request.params
        model = p.model or self.model
        if not p.sampler and not model:
            return
        names = await self._server_names()
        if names is None:
            return  # the lists are unavailable: the answer's info is still checked
        sampler_ok = not p.sampler or not names.samplers or names.sampler(p.sampler)
        model_ok = not model or not names.checkpoints or model in names.checkpoints
        if not (sampler_ok and model_ok):
            names = await self._server_names(fresh=True) or names  # added since?
        who = self.label or self.name
        if p.sampler and names.samplers and names.sampler(p.sampler) is None:
            hint = names.sampler_aliases.get(p.sampler.lower())
            also = f" ('{p.sampler}' is an alias: the API wants '{hint}')" if hint else ""
            raise NotSupportedError(
                f"{who}: the WebUI has no sampler '{p.sampler}'{also}; it would quietly use "
                f"'{names.samplers[0]}' instead. Its samplers: {', '.join(names.samplers)}",
                task_id=request.task_id,
            )
        if model and names.checkpoints and model not in names.checkpoints:
            listed = sorted({v for v in names.checkpoints.values()})
            raise NotSupportedError(
                f"{who}: the WebUI has no checkpoint '{model}'; it would quietly use another "
                f"one. Its checkpoints: {', '.join(listed[:20])}",
                task_id=request.task_id,
            )

    # ------------------------------------------------------------------ generate
    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        await self._check_names(request)
        # multi-MB init images are base64-encoded in a worker thread, not on the loop
        sent = sum(len(im.data) for im in request.images)
        sent += len(request.mask.data) if request.mask is not None else 0
        notes: list[str] = []
        route, body = await offload(self.payload, request, notes, size=sent)
        for note in notes:
            # a change to what was asked is said once per provider (a batch repeats it),
            # then only in the image's info; the reference's size is the expected case
            changed = " was sent as " in note and note not in self._said
            level = logging.WARNING if changed else logging.INFO
            self._said.add(note)
            log.log(level, "%s: %s", self.name, note)
        # A fresh look first, so that a job already running (another client's) is not
        # taken for this request's when the poller sees it.
        await self._poll()
        job = _Job(on_progress, self._epoch, one_pass=_one_pass(body))
        self._jobs.append(job)
        post = asyncio.ensure_future(
            self._http.json("POST", route, json=body, task_id=request.task_id)
        )
        self._watch()
        try:
            answer = await asyncio.shield(post)
        except asyncio.CancelledError:
            # A dropped connection does not stop the WebUI: take the job back first.
            await _outlast(asyncio.ensure_future(self._take_back(job, post)))
            if not _ran_to_its_end(job, post):
                raise
            # No interrupt reached it in time: the WebUI made the whole result. It is
            # returned (the run saves it), not thrown away under the name "cancelled".
            answer = post.result()
            log.info(
                "%s: the WebUI had finished a cancelled job before the interrupt could stop "
                "it; its images are kept",
                self.name,
            )
        except ProviderTimeoutError:
            # The WebUI goes on with a job whose client stopped waiting (also one still
            # waiting on its lock); a retry would queue behind it. It stays followed:
            # interrupted now if it runs, else when it starts.
            job.abandoned = True
            job.ghost_until = asyncio.get_running_loop().time() + self._follow_for
            await self._poll()
            raise
        except ProviderConnectionError as exc:
            if not await self._reachable():
                # The WebUI is down (restarting): the run waits for it instead of
                # failing every task; a job it was running went with it.
                raise ServerUnavailableError(
                    f"{self.name}: the WebUI at {self.base_url} does not answer ({exc}); "
                    "start it again (with --api): a run waits for it and goes on by itself",
                    provider=self.name,
                    task_id=request.task_id,
                ) from None
            raise
        finally:
            self._settle(job, post)
        returned = answer.get("images") if isinstance(answer, Mapping) else None
        size = (
            sum(len(i) for i in returned if isinstance(i, str)) if isinstance(returned, list) else 0
        )
        # The answer is in: a cancel arriving while it is read (a stop cancels twice) must
        # not throw away a result the WebUI has made.
        reading = asyncio.ensure_future(offload(self._read, answer, request, notes, size=size))
        await _outlast(reading)
        images = reading.result()
        if on_progress is not None:
            on_progress(1.0, None)
        return images

    @property
    def _follow_for(self) -> float:
        """How long a given-up request's job is followed (past the job it waits behind):
        the task no longer waits for it, so a short ``cancel_timeout`` need not cut it."""
        return max(self.cancel_timeout, _FOLLOW_AT_LEAST)

    async def _take_back(self, job: _Job, post: asyncio.Future[Any]) -> None:
        """Interrupt ``job`` when it runs and wait until the WebUI has answered it."""
        job.abandoned = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cancel_timeout
        # a fresh look: interrupts at once when the job runs
        if not await self._poll() and self._jobs and self._jobs[0] is job:
            # /progress cannot be read: as the oldest request of ours, this one is the
            # likeliest to run; interrupt it blindly rather than let it run on
            job.interrupted_epoch = self._epoch
            await self._interrupt()
        self._watch()  # then the poller follows it (and interrupts a job started later)
        while not post.done():
            left = deadline - loop.time()
            if left <= 0:
                log.warning(
                    "%s: the WebUI did not let go of a cancelled request within %g s; "
                    "its job stays followed, to be interrupted if it starts",
                    self.name,
                    self.cancel_timeout,
                )
                # Dropping the connection leaves the job on the WebUI (maybe still
                # waiting on its lock): followed like a request that timed out.
                job.ghost_until = loop.time() + self._follow_for
                post.cancel()
                break
            await asyncio.wait([post], timeout=left)

    def _settle(self, job: _Job, post: asyncio.Future[Any]) -> None:
        """``job`` has its answer (or was given up): it no longer holds the server."""
        if not post.done():
            post.cancel()
        elif not post.cancelled() and post.exception() is None:
            info = _parse_info(
                post.result().get("info") if isinstance(post.result(), Mapping) else None
            )
            if info.get("job_timestamp") == self._stamp:
                self._busy = False  # the job the poller saw is over
        if job.seen_epoch == self._epoch and job.ghost_until is None:
            self._busy = False
        if job.ghost_until is None:
            with contextlib.suppress(ValueError):
                self._jobs.remove(job)
        else:
            self._watch()  # followed without an answer until its job has run
        self._answers += 1

    # ------------------------------------------------------------------ the poller
    def _wanted(self) -> bool:
        return any(
            j.abandoned or (j.on_progress is not None and self.poll_interval) for j in self._jobs
        )

    def _watch(self) -> None:
        """Start the poller if a request needs it and it is not running."""
        loop = asyncio.get_running_loop()
        w = self._watcher
        if (w is None or w.done() or w.get_loop() is not loop) and self._wanted():
            self._watcher = loop.create_task(self._follow())

    async def _follow(self) -> None:
        # One poller for every request of this provider: /progress is server-wide.
        while True:
            await asyncio.sleep(self.poll_interval or 0.5)
            if not self._wanted():
                return
            await self._poll()
            if not self._wanted():
                return

    async def _poll(self) -> bool:
        """Read ``/sdapi/v1/progress`` once; report progress, interrupt abandoned jobs.

        False when the state could not be read (or was stale).
        """
        skip = "false" if self.previews else "true"
        answers = self._answers
        try:
            answer = await self._http.json(
                "GET", "/sdapi/v1/progress", params={"skip_current_image": skip}
            )
        except ProviderError as exc:
            log.debug("%s: progress poll failed: %s", self.name, exc)
            return False
        if answers != self._answers or not isinstance(answer, Mapping):
            return False  # a request of ours was answered meanwhile: this may be old
        state = answer.get("state")
        if not isinstance(state, Mapping):
            return False
        count = state.get("job_count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else 0
        number = state.get("job_no")
        number = number if isinstance(number, int) and not isinstance(number, bool) else 0
        busy = count != 0
        stamp = state.get("job_timestamp")
        stamp = str(stamp) if stamp is not None else None
        # A job started since the last look: the server was idle, or the stamp (to the
        # second) changed, or, within the same second, begin() was seen again: job_count
        # back to -1 (the model loads) or job_no back down.
        restarted = (count < 0 < self._count) or number < self._number
        if busy and (not self._busy or stamp != self._stamp or restarted):
            self._epoch += 1
        self._busy, self._stamp, self._count, self._number = busy, stamp, count, number
        self._drop_ghosts(busy)
        first = self._jobs[0] if self._jobs else None
        running = first if busy and first is not None and self._epoch > first.sent_epoch else None
        if running is not None:
            running.seen_epoch = self._epoch
            if running.abandoned and running.interrupted_epoch != self._epoch:
                running.interrupted_epoch = self._epoch
                running.interrupted_when_sampled = _sampled(state, count, number)
                await self._interrupt()
        for job in list(self._jobs):
            if job.on_progress is None or job.abandoned or not self.poll_interval:
                continue
            if job is running and count > 0:
                self._report(job, answer)
            elif job.shown is not None:
                job.shown = None  # not started (or loading its checkpoint): waiting
                self._call(job.on_progress, None, None)
        return True

    def _drop_ghosts(self, busy: bool) -> None:
        """Forget given-up requests at the head whose job has run (seen, then the server
        idle or another job started), or that waited past their ``ghost_until``.

        One not seen yet while the job that ran when it was sent still runs is still
        waiting on the WebUI's lock behind it: it is followed past the deadline, however
        long that job takes, so that it is interrupted when it starts.
        """
        now = asyncio.get_running_loop().time()
        while self._jobs and (until := self._jobs[0].ghost_until) is not None:
            ghost = self._jobs[0]
            over = ghost.seen_epoch >= 0 and (not busy or self._epoch > ghost.seen_epoch)
            queued = ghost.seen_epoch < 0 and busy
            if not over and (now < until or queued):
                return
            if not over:
                log.warning(
                    "%s: a request given up on (timed out or cancelled) was not seen to "
                    "end within %g s more; if the WebUI still runs it, it runs for nobody",
                    self.name,
                    self._follow_for,
                )
            self._jobs.pop(0)

    def _report(self, job: _Job, answer: Mapping[str, Any]) -> None:
        assert job.on_progress is not None
        fraction = answer.get("progress")
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
            return
        preview = None
        if self.previews and isinstance(answer.get("current_image"), str):
            with contextlib.suppress(binascii.Error, ValueError):
                preview = base64.b64decode(answer["current_image"], validate=True)
        # The server's value can dip between batch items; only ever move forward.
        if fraction >= job.best or preview is not None or job.shown is None:
            job.best = max(job.best, float(fraction))
            job.shown = min(job.best, 0.99)
            self._call(job.on_progress, job.shown, preview)

    def _call(
        self, callback: ProgressCallback, fraction: float | None, preview: bytes | None
    ) -> None:
        try:
            callback(fraction, preview)
        except Exception:  # progress is a hint: a failing listener never fails the poller
            log.exception("%s: a progress listener failed", self.name)

    async def _interrupt(self) -> None:
        """Tell the WebUI to stop the running job; best effort, bounded."""
        try:
            await asyncio.wait_for(self._http.request("POST", "/sdapi/v1/interrupt"), 5.0)
        except (ProviderError, asyncio.TimeoutError) as exc:
            log.warning("%s: could not interrupt the running job: %s", self.name, exc)

    # ------------------------------------------------------------------ the answer
    def _read(
        self, answer: Any, request: GenerationRequest, notes: Sequence[str] = ()
    ) -> list[ImageData]:
        def bad(what: str) -> MalformedResponseError:
            return MalformedResponseError(
                f"{self.name}: {what}", provider=self.name, task_id=request.task_id
            )

        if not isinstance(answer, Mapping) or not isinstance(answer.get("images"), list):
            raise bad("the response has no 'images' list")
        info = _parse_info(answer.get("info"))
        raw_images = answer["images"]
        first = info.get("index_of_first_image", 0)
        first = first if isinstance(first, int) and 0 <= first < len(raw_images) else 0
        seeds = info.get("all_seeds")
        seeds = seeds if isinstance(seeds, list) else []
        texts = info.get("infotexts")
        texts = texts if isinstance(texts, list) else []
        # Extra images after the batch (ControlNet maps, ...) are not results of the task.
        count = len(seeds) if seeds else request.params.n
        wanted = raw_images[first : first + count]
        if not wanted:
            raise bad("the response holds no image (interrupted, or send_images was off)")
        shared: dict[str, Any] = {
            k: info[k]
            for k in ("sd_model_name", "sd_model_hash", "sampler_name", "steps", "cfg_scale")
            if k in info
        }
        notes = [*notes, *self._differences(request, info)]
        out: list[ImageData] = []
        for i, item in enumerate(wanted):
            if not isinstance(item, str):
                raise bad(f"images[{first + i}] is not a base64 string")
            payload = item.split(",", 1)[1] if item.startswith("data:") else item
            try:
                data = b64decode(payload)
            except (binascii.Error, ValueError):
                raise bad(f"images[{first + i}] is not valid base64") from None
            seed = seeds[i] if i < len(seeds) and isinstance(seeds[i], int) else None
            extra = dict(shared)
            if i < len(texts) and isinstance(texts[i], str):
                extra["infotext"] = texts[i]  # the server's own account: the truth
            fmt = sniff_format(data)
            dims = header_size(data, fmt) if fmt else None
            if dims is not None:
                extra["size"] = f"{dims[0]}x{dims[1]}"  # what came back
            if notes:
                extra["notes"] = list(notes)
            out.append(ImageData(data=data, seed=seed, info=extra))
        return out

    def _differences(self, request: GenerationRequest, info: Mapping[str, Any]) -> list[str]:
        """Where the WebUI's ``info`` says it did something else than was asked."""
        found: list[str] = []
        p = request.params
        used = info.get("sampler_name")
        if p.sampler and isinstance(used, str):
            expected = self._names.sampler(p.sampler) if self._names else None
            if used not in (p.sampler, expected):
                found.append(f"sampler '{p.sampler}' was asked; the WebUI used '{used}'")
        model = p.model or self.model
        used = info.get("sd_model_name")
        if model and isinstance(used, str):
            expected = self._names.checkpoints.get(model) if self._names else None
            if used != expected and used not in model:
                found.append(f"checkpoint '{model}' was asked; the WebUI used '{used}'")
        for note in found:
            log.warning("%s: %s", self.name, note)
        return found
