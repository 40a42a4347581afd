"""Stable Diffusion WebUI: AUTOMATIC1111 and Forge (the ``/sdapi/v1`` API).

``POST /sdapi/v1/txt2img`` (or ``img2img`` with the task's reference as ``init_images``)
blocks until the images are done. While it runs, a second connection polls
``GET /sdapi/v1/progress``; progress is only a hint, so a failing poll never fails the
task. Cancelling the attempt calls ``POST /sdapi/v1/interrupt``. The ``info`` field of
the answer (a JSON *string*) gives the seeds really used (``all_seeds``).

The WebUI runs one generation at a time behind a global lock and its progress and
interrupt are global too, so the provider defaults to one request in flight
(``max_concurrency=1``): a second request would only wait on the server.

With ``max_concurrency`` above 1, cancelling only sends the interrupt when the request is
the oldest of this provider's requests still in flight (the only one that can be
running); a younger one, still waiting on the WebUI's lock, just has its connection
dropped. Residual risks: the WebUI still runs a dropped request later (its result is
thrown away); its lock is not strictly first-come-first-served, so the oldest request
may in rare cases still be waiting while a younger one runs, and that younger one would
be interrupted (and come back with partial images); and other clients of the same WebUI
are invisible to this bookkeeping, so their job may be the one interrupted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ..core._errors import ConfigError, MalformedResponseError, ProviderError
from ..core._secrets import Secret, scrub
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._codec import b64decode
from ._http import HttpClient, Timeouts
from ._support import offload

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


def _classify(response: httpx.Response, err: ProviderError) -> ProviderError:
    detail = webui_message(response)
    message = f"{err.provider}: HTTP {response.status_code}"
    if detail:
        message += f": {detail}"
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


class A1111Provider(Provider):
    """A Stable Diffusion WebUI (AUTOMATIC1111 or Forge) started with ``--api``.

    ``username``/``password`` are for ``--api-auth``. ``poll_interval`` is the progress
    polling period in seconds (``None`` turns polling off); ``previews=True`` also asks
    for the live preview image. ``Params.model`` (default: ``model``) switches the
    checkpoint for that request only (``override_settings``); ``Params.extras`` are sent
    verbatim (e.g. ``scheduler``, ``enable_hr``, ``alwayson_scripts``).
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
        #: this provider's POSTs in the order they were sent; the WebUI runs one at a
        #: time, so only the first can be the running one (see ``generate``)
        self._in_flight: list[object] = []
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

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ request body
    def payload(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """(route, JSON body) for ``request``."""
        p = request.params
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
        if dims:
            body["width"], body["height"] = dims
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

    # ------------------------------------------------------------------ generate
    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        # multi-MB init images are base64-encoded in a worker thread, not on the loop
        sent = sum(len(im.data) for im in request.images)
        sent += len(request.mask.data) if request.mask is not None else 0
        route, body = await offload(self.payload, request, size=sent)
        poller: asyncio.Task[None] | None = None
        if on_progress is not None and self.poll_interval:
            poller = asyncio.get_running_loop().create_task(self._poll(on_progress))
        token = object()
        self._in_flight.append(token)
        try:
            answer = await self._http.json("POST", route, json=body, task_id=request.task_id)
        except asyncio.CancelledError:
            # /sdapi/v1/interrupt stops whatever the WebUI is running. Only the oldest of
            # this provider's requests can be the one running; a younger one is still
            # waiting on the WebUI's lock, and interrupting would cut another task's
            # generation short (it would come back 200 with partial images).
            if self._in_flight[0] is token:
                await self._interrupt()
            else:
                log.info(
                    "%s: cancelled a request still waiting for the WebUI; not interrupting "
                    "the running one (the WebUI may still run this request later)",
                    self.name,
                )
            raise
        finally:
            self._in_flight.remove(token)
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
        returned = answer.get("images") if isinstance(answer, Mapping) else None
        size = (
            sum(len(i) for i in returned if isinstance(i, str)) if isinstance(returned, list) else 0
        )
        images = await offload(self._read, answer, request, size=size)
        if on_progress is not None:
            on_progress(1.0, None)
        return images

    async def _interrupt(self) -> None:
        """Tell the WebUI to stop the running job; best effort, bounded."""
        try:
            await asyncio.wait_for(self._http.request("POST", "/sdapi/v1/interrupt"), 5.0)
        except (ProviderError, asyncio.TimeoutError) as exc:
            log.warning("%s: could not interrupt the running job: %s", self.name, exc)

    async def _poll(self, on_progress: ProgressCallback) -> None:
        # Progress is a hint: every failure here is swallowed, the POST decides the task.
        assert self.poll_interval is not None
        skip = "false" if self.previews else "true"
        best = 0.0
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                state = await self._http.json(
                    "GET", "/sdapi/v1/progress", params={"skip_current_image": skip}
                )
            except ProviderError as exc:
                log.debug("%s: progress poll failed: %s", self.name, exc)
                continue
            if not isinstance(state, Mapping):
                continue
            job = state.get("state")
            if isinstance(job, Mapping) and not job.get("job_count"):
                continue  # idle, or not started yet
            fraction = state.get("progress")
            if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
                continue
            preview = None
            if self.previews and isinstance(state.get("current_image"), str):
                with contextlib.suppress(binascii.Error, ValueError):
                    preview = base64.b64decode(state["current_image"], validate=True)
            # The server's value can dip between batch items; only ever move forward.
            if fraction >= best or preview is not None:
                best = max(best, float(fraction))
                on_progress(min(best, 0.99), preview)

    def _read(self, answer: Any, request: GenerationRequest) -> list[ImageData]:
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
                extra["infotext"] = texts[i]
            out.append(ImageData(data=data, seed=seed, info=extra))
        return out
