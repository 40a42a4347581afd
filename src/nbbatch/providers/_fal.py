"""fal.ai queue API: submit, poll the status, fetch the result, download the images.

Protocol: ``POST /{model_id}`` answers with a
``request_id`` and the ``status_url`` / ``response_url`` / ``cancel_url`` to use (they
live under the model's *app root*, without any sub-path, so we prefer the URLs given).
The status goes ``IN_QUEUE`` (with ``queue_position``) → ``IN_PROGRESS`` (with
``logs``) → ``COMPLETED``; the result holds ``images[].url``. Cancelling the attempt
sends ``PUT …/requests/{id}/cancel`` before re-raising.

Once submitted, the request is paid for: a passing failure on a status poll, the result
fetch or an image download is retried here for the same ``request_id`` (a few times,
honouring ``Retry-After``) rather than handed to the runner, whose next attempt would
submit a second request. When the polls give up, the request is cancelled first.

Inputs differ per model; the common fields (``prompt``, ``negative_prompt``,
``image_size``, ``num_images``, ``seed``, ``num_inference_steps``, ``guidance_scale``,
``image_url`` + ``strength`` for image-to-image models) are filled from the task,
``input_names`` renames or drops them and ``Params.extras`` adds the model's own fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, ClassVar, TypeVar

import httpx

from ..core._errors import (
    AuthenticationError,
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    ProviderError,
    ServerError,
)
from ..core._secrets import Secret, scrub
from ._access import open_service
from ._base import (
    Balance,
    Capabilities,
    GenerationRequest,
    ImageData,
    ProgressCallback,
    Provider,
)
from ._catalog import provider_info
from ._encoding import data_url, decode_data_url, guess_mime
from ._fetch import DEFAULT_MAX_DOWNLOAD, FETCH_ATTEMPTS, FETCH_RETRY_DELAY, retry_fetch
from ._http import Timeouts
from ._offload import offload

__all__ = ["FalProvider"]

INFO = provider_info("fal")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""
#: fal's Platform API, where the account's billing is read (not the queue's host)
PLATFORM_URL = "https://api.fal.ai/v1"
_MODEL = re.compile(r"^[\w.-]+/[\w.-]+(/[\w.-]+)*$")
_STEP = re.compile(r"(\d+)\s*/\s*(\d+)")
_PERCENT = re.compile(r"(\d{1,3})\s*%")
T = TypeVar("T")


def _app_root(model: str) -> str:
    """``owner/app`` of ``owner/app/sub/path`` (where status/result/cancel live)."""
    return "/".join(model.split("/")[:2])


def _fraction(logs: object) -> float | None:
    """Progress from the newest log line that has ``k/n`` or ``NN%`` in it."""
    if not isinstance(logs, list):
        return None
    for entry in reversed(logs):
        message = entry.get("message") if isinstance(entry, Mapping) else None
        if not isinstance(message, str):
            continue
        m = _PERCENT.search(message)
        if m:
            return min(100, int(m.group(1))) / 100.0
        m = _STEP.search(message)
        if m and int(m.group(2)) > 0:
            return min(1.0, int(m.group(1)) / int(m.group(2)))
    return None


class FalProvider(Provider):
    """fal.ai queue API (key: ``FAL_KEY``)."""

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        model: str = "fal-ai/flux/schnell",
        base_url: str = DEFAULT_BASE_URL,
        poll_interval: float = 0.5,
        input_names: Mapping[str, str | None] | None = None,
        timeouts: Timeouts | None = None,
        max_concurrency: int | None = None,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._check_model(model)
        if poll_interval <= 0:
            raise ConfigError("poll_interval must be positive")
        self.model = model.strip("/")
        self.poll_interval = poll_interval
        self.input_names = dict(input_names or {})
        self.max_concurrency = max_concurrency
        self.max_download_bytes = max_download_bytes
        #: tries (and first pause) for a poll, result fetch or download once submitted
        self.fetch_attempts = FETCH_ATTEMPTS
        self.fetch_retry_delay = FETCH_RETRY_DELAY
        # result images live on fal's CDN and are fetched without the key
        self._access = open_service(
            INFO,
            api_key=api_key,
            base_url=base_url,
            key_headers=lambda key: {"Authorization": f"Key {key.reveal()}"},
            timeouts=timeouts,
            transport=transport,
            files_max_connections=64,
        )
        self.base_url = self._access.base_url
        self._http = self._access.api
        self._files = self._access.files
        # the key goes to fal's own Platform API only; a server of one's own (a proxy,
        # the loopback fake) answers the same path itself
        own = self.base_url.rstrip("/") != DEFAULT_BASE_URL.rstrip("/")
        platform = f"{self.base_url.rstrip('/')}/v1" if own else PLATFORM_URL
        self._billing_url = f"{platform}/account/billing"

    @staticmethod
    def _check_model(model: str) -> None:
        if not _MODEL.match(model.strip("/")):
            raise ConfigError(f"fal model should look like 'fal-ai/flux/schnell', got {model!r}")

    @staticmethod
    async def _image_url(request: GenerationRequest) -> str | None:
        """The input image as a data URL (a big one is encoded off the event loop)."""
        if not request.images:
            return None
        image = request.images[0]
        return await offload(data_url, image.data, image.mime, size=len(image.data))

    def _input(self, request: GenerationRequest, image_url: str | None) -> dict[str, Any]:
        p = request.params
        values: dict[str, Any] = {"prompt": request.prompt}
        if p.negative_prompt:
            values["negative_prompt"] = p.negative_prompt
        if p.dimensions:
            values["image_size"] = {"width": p.dimensions[0], "height": p.dimensions[1]}
        if p.n > 1:
            values["num_images"] = p.n
        if p.seed is not None and p.seed >= 0:
            values["seed"] = p.seed
        if p.steps is not None:
            values["num_inference_steps"] = p.steps
        if p.cfg_scale is not None:
            values["guidance_scale"] = p.cfg_scale
        if request.images:
            values["image_url"] = image_url
            if p.strength is not None:
                values["strength"] = p.strength
        out = {}
        for key, value in values.items():
            target = self.input_names.get(key, key)
            if target:
                out[target] = value
        out.update(p.extras)
        return out

    def _url(self, given: object, fallback: str) -> str:
        # the key goes only to the configured origin
        if isinstance(given, str) and self._access.is_own(given):
            return given
        return fallback

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        model = (request.params.model or self.model).strip("/")
        self._check_model(model)
        tid = request.task_id
        submitted = await self._http.json(
            "POST",
            f"/{model}",
            json=self._input(request, await self._image_url(request)),
            task_id=tid,
        )
        if not isinstance(submitted, Mapping) or not isinstance(submitted.get("request_id"), str):
            raise MalformedResponseError(
                "fal: the submit answer has no request_id", provider=self.name, task_id=tid
            )
        rid = submitted["request_id"]
        root = f"/{_app_root(model)}/requests/{rid}"
        status_url = self._url(submitted.get("status_url"), f"{root}/status")
        result_url = self._url(submitted.get("response_url"), root)
        cancel_url = self._url(submitted.get("cancel_url"), f"{root}/cancel")
        try:
            status = await self._wait(status_url, request, on_progress)
        except (asyncio.CancelledError, Exception):
            # cancelled by the runner, or the polls gave up: stop the request (and its
            # billing) before re-raising, since the runner's next attempt submits anew
            await self._cancel(cancel_url)
            raise
        error = status.get("error")
        if error:
            # the run failed on fal's side (and was billed); the same input usually
            # fails the same way, so it is not retried
            raise ServerError(
                f"fal: request {rid} failed: {scrub(str(error))[:300]}",
                provider=self.name,
                task_id=tid,
                retryable=False,
            )
        # COMPLETED: the result is kept by fal, so fetching it again is safe
        result = await self._fetch(lambda: self._http.json("GET", result_url, task_id=tid))
        return await self._images(result, rid, request, on_progress)

    async def _fetch(self, call: Callable[[], Awaitable[T]]) -> T:
        """An idempotent GET for an existing request, retried for the same request id."""
        return await retry_fetch(call, attempts=self.fetch_attempts, delay=self.fetch_retry_delay)

    async def _cancel(self, cancel_url: str) -> None:
        """Best effort, bounded; shielded so the runner's cancellation cannot cut it."""
        with contextlib.suppress(ProviderError, asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._http.request("PUT", cancel_url)), 10)

    async def _wait(
        self, url: str, request: GenerationRequest, on_progress: ProgressCallback | None
    ) -> Mapping[str, Any]:
        last: tuple[str, float | None] | None = None
        while True:
            status = await self._fetch(
                lambda: self._http.json("GET", url, params={"logs": 1}, task_id=request.task_id)
            )
            state = status.get("status") if isinstance(status, Mapping) else None
            if state not in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"):
                raise MalformedResponseError(
                    f"fal: unexpected request status {state!r}",
                    provider=self.name,
                    task_id=request.task_id,
                )
            assert isinstance(status, Mapping)
            if state == "COMPLETED":
                return status
            fraction = _fraction(status.get("logs")) if state == "IN_PROGRESS" else None
            if on_progress is not None and (state, fraction) != last:
                on_progress(fraction, None)
            last = (state, fraction)
            await asyncio.sleep(self.poll_interval)

    async def _images(
        self,
        result: object,
        rid: str,
        request: GenerationRequest,
        on_progress: ProgressCallback | None,
    ) -> list[ImageData]:
        tid = request.task_id
        images = result.get("images") if isinstance(result, Mapping) else None
        if not isinstance(images, list) or not images:
            raise MalformedResponseError(
                f"fal: the result of request {rid} has no images", provider=self.name, task_id=tid
            )
        assert isinstance(result, Mapping)
        flags = result.get("has_nsfw_concepts")
        flagged = [bool(f) for f in flags] if isinstance(flags, list) else []
        seed = result.get("seed") if isinstance(result.get("seed"), int) else request.params.seed
        out: list[ImageData] = []
        for i, image in enumerate(images):
            if i < len(flagged) and flagged[i]:
                continue  # fal blanks flagged images; keeping them would store a black square
            url = image.get("url") if isinstance(image, Mapping) else None
            if not isinstance(url, str) or not url:
                raise MalformedResponseError(
                    f"fal: image {i} of request {rid} has no url", provider=self.name, task_id=tid
                )
            if url.startswith("data:"):
                data, mime = decode_data_url(url, self.name, task_id=tid)
            else:
                data, ctype = await self._fetch(
                    partial(
                        self._files.download, url, max_bytes=self.max_download_bytes, task_id=tid
                    )
                )
                mime = ctype or str(image.get("content_type") or "")
            info: dict[str, Any] = {"request_id": rid}
            if isinstance(result.get("timings"), Mapping):
                info["timings"] = dict(result["timings"])
            out.append(
                ImageData(
                    data=data,
                    mime=guess_mime(data, mime),
                    seed=seed,
                    info=info,
                )
            )
        if not out:
            raise ContentRefusedError(
                f"fal: every image of request {rid} was flagged by the safety checker; "
                "change the prompt",
                provider=self.name,
                task_id=tid,
            )
        if on_progress is not None:
            on_progress(1.0, None)
        return out

    async def balance(self) -> Balance:
        """The account's credit balance, from fal's Platform API
        (``GET /v1/account/billing?expand=credits``: ``{"credits": {"current_balance":
        12.3, "currency": "USD"}}``). The key needs billing read access."""
        try:
            body = await self._http.json("GET", self._billing_url, params={"expand": "credits"})
        except ProviderError as exc:
            if exc.status_code != 403:
                raise
            raise AuthenticationError(
                "fal: this key may not read the account's billing; a key with the "
                "billing:usage:read permission (BILLING, READONLY or FULL on "
                "fal.ai/dashboard/keys) can",
                provider=self.name,
                status_code=403,
            ) from None
        credits = body.get("credits") if isinstance(body, dict) else None
        amount = credits.get("current_balance") if isinstance(credits, dict) else None
        if isinstance(amount, str):
            try:
                amount = float(amount)
            except ValueError:
                amount = None
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise MalformedResponseError(
                "fal: the billing answer holds no credit balance", provider=self.name
            )
        currency = credits.get("currency") if isinstance(credits, dict) else None
        unit = currency.upper() if isinstance(currency, str) and currency.isalpha() else "USD"
        return Balance(float(amount), unit)

    async def aclose(self) -> None:
        await self._access.aclose()
