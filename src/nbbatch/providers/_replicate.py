"""Replicate predictions: create (``Prefer: wait``), poll until terminal, download outputs.

Protocol: a prediction is created on
``/v1/models/{owner}/{name}/predictions`` (official models) or ``/v1/predictions`` with a
``version``; ``Prefer: wait=N`` holds the create call up to N seconds, after which the
prediction comes back in whatever state it is and we poll ``urls.get``. ``output`` is a
URL, a list of URLs or ``data:`` URLs; we wait for ``succeeded`` even when ``output`` is
already set (sync-mode answers fill it while still ``processing``).

Cancelling: when the runner cancels the attempt we call ``POST
/v1/predictions/{id}/cancel`` before re-raising, so a cancelled task stops billing. A
cancel that arrives while the create call itself is still waiting cannot be forwarded
(the id is not known yet, so that prediction runs to the end and is billed), which is
why ``wait`` defaults to a few seconds rather than the service's 60.

Once created, the prediction is paid for: a passing failure on a status poll or an
output download is retried here for the same id (a few times, honouring
``Retry-After``) instead of reaching the runner, whose next attempt would create a
second prediction. When the polls give up, the prediction is cancelled before the
error is raised.

Inputs differ per model. The common names (``prompt``, ``negative_prompt``, ``seed``,
``width``/``height``, ``num_outputs``, ``num_inference_steps``, ``guidance_scale``,
``image``, ``prompt_strength``) are filled from the task; ``input_names`` renames or drops
them (``{"num_outputs": None}``) and ``Params.extras`` adds model-specific fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import httpx

from ..core._errors import (
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    ProviderError,
    ServerError,
)
from ..core._secrets import Secret, scrub
from ._access import open_service
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._encoding import data_url, decode_data_url, guess_mime
from ._fetch import DEFAULT_MAX_DOWNLOAD, FETCH_ATTEMPTS, FETCH_RETRY_DELAY, retry_fetch
from ._http import Timeouts
from ._offload import offload

__all__ = ["ReplicateProvider"]

INFO = provider_info("replicate")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_MODEL = re.compile(r"^[\w.-]+/[\w.-]+$")
_PERCENT = re.compile(r"(\d{1,3})%\|")
_SEED_LOG = re.compile(r"\bseed\b\s*[:=]?\s*(\d+)", re.IGNORECASE)
_REFUSAL_WORDS = ("nsfw", "safety", "sensitive", "flagged")


def _route(model: str) -> tuple[str, dict[str, str]]:
    """(path, extra body fields) for ``owner/name``, ``owner/name:version`` or a version id."""
    model = model.strip()
    if _VERSION_ID.match(model):
        return "/v1/predictions", {"version": model}
    if ":" in model:
        ref, _, version = model.partition(":")
        if _MODEL.match(ref) and version:
            return "/v1/predictions", {"version": version}
    elif _MODEL.match(model):
        owner, name = model.split("/")
        return f"/v1/models/{owner}/{name}/predictions", {}
    raise ConfigError(
        f"Replicate model must be 'owner/name', 'owner/name:version' or a 64-hex version "
        f"id; got {model!r}"
    )


class ReplicateProvider(Provider):
    """Replicate (key: ``REPLICATE_API_TOKEN``).

    ``wait`` (seconds, default 5) is the ``Prefer: wait`` hold on the create call. A
    cancel during that hold cannot reach Replicate (no prediction id yet): that
    prediction runs to completion and is billed. Keep ``wait`` short.
    """

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        model: str = "black-forest-labs/flux-schnell",
        base_url: str = DEFAULT_BASE_URL,
        wait: int = 5,
        poll_interval: float = 0.5,
        input_names: Mapping[str, str | None] | None = None,
        timeouts: Timeouts | None = None,
        max_concurrency: int | None = None,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        _route(model)
        if not 0 <= wait <= 60:
            raise ConfigError("wait must be between 0 (no sync wait) and 60 seconds")
        if poll_interval <= 0:
            raise ConfigError("poll_interval must be positive")
        self.model = model
        self.wait = wait
        self.poll_interval = poll_interval
        self.input_names = dict(input_names or {})
        self.max_concurrency = max_concurrency
        self.max_download_bytes = max_download_bytes
        #: tries (and first pause) for a poll or download once the prediction exists
        self.fetch_attempts = FETCH_ATTEMPTS
        self.fetch_retry_delay = FETCH_RETRY_DELAY
        # Output files live on a CDN; they are fetched without the token.
        self._access = open_service(
            INFO,
            api_key=api_key,
            base_url=base_url,
            timeouts=timeouts,
            transport=transport,
            files_max_connections=64,
        )
        self.base_url = self._access.base_url
        self._http = self._access.api
        self._files = self._access.files

    # ------------------------------------------------------------------ request
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
        if p.seed is not None and p.seed >= 0:
            values["seed"] = p.seed
        if p.dimensions:
            values["width"], values["height"] = p.dimensions
        if p.n > 1:
            values["num_outputs"] = p.n
        if p.steps is not None:
            values["num_inference_steps"] = p.steps
        if p.cfg_scale is not None:
            values["guidance_scale"] = p.cfg_scale
        if request.images:
            values["image"] = image_url
            if p.strength is not None:
                values["prompt_strength"] = p.strength
        out: dict[str, Any] = {}
        for key, value in values.items():
            target = self.input_names.get(key, key)
            if target:
                out[target] = value
        out.update(p.extras)
        return out

    def _poll_url(self, prediction: Mapping[str, Any], pid: str) -> str:
        urls = prediction.get("urls")
        url = urls.get("get") if isinstance(urls, Mapping) else None
        # only follow a polling URL on the API's own origin (it receives the token)
        if isinstance(url, str) and self._access.is_own(url):
            return url
        return f"/v1/predictions/{pid}"

    # ------------------------------------------------------------------ generate
    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        path, extra = _route(request.params.model or self.model)
        headers = {"Prefer": f"wait={self.wait}"} if self.wait else {}
        prediction = await self._prediction(
            "POST",
            path,
            request,
            json={**extra, "input": self._input(request, await self._image_url(request))},
            headers=headers,
        )
        pid = str(prediction.get("id") or "")
        if not pid:
            raise MalformedResponseError(
                "replicate: the created prediction has no id",
                provider=self.name,
                task_id=request.task_id,
            )
        try:
            last = -1.0
            while prediction.get("status") not in TERMINAL:
                last = self._report(prediction, on_progress, last)
                await asyncio.sleep(self.poll_interval)
                url = self._poll_url(prediction, pid)
                # The prediction exists (and bills): a passing error on a poll is retried
                # here for the same id; it must not make the runner create another one.
                prediction = await retry_fetch(
                    partial(self._prediction, "GET", url, request),
                    attempts=self.fetch_attempts,
                    delay=self.fetch_retry_delay,
                )
        except (asyncio.CancelledError, Exception):
            # cancelled by the runner, or the polls gave up: stop it before re-raising
            await self._cancel(pid)
            raise
        return await self._outputs(prediction, request, on_progress)

    async def _prediction(
        self, method: str, url: str, request: GenerationRequest, **kwargs: Any
    ) -> Mapping[str, Any]:
        body = await self._http.json(method, url, task_id=request.task_id, **kwargs)
        if not isinstance(body, Mapping) or not isinstance(body.get("status"), str):
            raise MalformedResponseError(
                "replicate: the answer is not a prediction object (no status)",
                provider=self.name,
                task_id=request.task_id,
            )
        return body

    def _report(
        self, prediction: Mapping[str, Any], on_progress: ProgressCallback | None, last: float
    ) -> float:
        if on_progress is None:
            return last
        logs = prediction.get("logs")
        found = _PERCENT.findall(logs) if isinstance(logs, str) else []
        if found:
            fraction = min(100, int(found[-1])) / 100.0
            if fraction != last:
                on_progress(fraction, None)
            return fraction
        return last

    async def _cancel(self, pid: str) -> None:
        """Best effort: tell Replicate to stop (and stop billing) this prediction."""
        with contextlib.suppress(ProviderError, asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self._http.request("POST", f"/v1/predictions/{pid}/cancel")), 10
            )

    async def _outputs(
        self,
        prediction: Mapping[str, Any],
        request: GenerationRequest,
        on_progress: ProgressCallback | None,
    ) -> list[ImageData]:
        status = prediction.get("status")
        pid = prediction.get("id")
        if status == "failed":
            error = scrub(str(prediction.get("error") or "no reason given"))[:300]
            if any(w in error.lower() for w in _REFUSAL_WORDS):
                raise ContentRefusedError(
                    f"replicate: prediction {pid} was refused by the model's safety check: {error}",
                    provider=self.name,
                    task_id=request.task_id,
                )
            # A failed prediction ran (and was billed); the same input usually fails the
            # same way, so the runner does not repeat it.
            raise ServerError(
                f"replicate: prediction {pid} failed: {error}",
                provider=self.name,
                task_id=request.task_id,
                retryable=False,
            )
        if status == "canceled":
            raise ProviderError(
                f"replicate: prediction {pid} was canceled on Replicate (not by this run)",
                provider=self.name,
                task_id=request.task_id,
            )
        output = prediction.get("output")
        urls: list[object] = output if isinstance(output, list) else [output]
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise MalformedResponseError(
                f"replicate: prediction {pid} succeeded but its output is not image URLs "
                f"({type(output).__name__})",
                provider=self.name,
                task_id=request.task_id,
            )
        metrics = prediction.get("metrics")
        info: dict[str, Any] = {"prediction_id": pid}
        if isinstance(metrics, Mapping) and "predict_time" in metrics:
            info["predict_time"] = metrics["predict_time"]
        images = []
        seed = request.params.seed if request.params.seed is not None else None
        logs = prediction.get("logs")
        if seed is None and isinstance(logs, str):
            # most image models log the random seed they picked ("Using seed: 1234")
            m = _SEED_LOG.search(logs)
            seed = int(m.group(1)) if m else None
        for url in urls:
            assert isinstance(url, str)
            if url.startswith("data:"):
                data, mime = decode_data_url(url, self.name, task_id=request.task_id)
            else:
                data, ctype = await retry_fetch(
                    partial(
                        self._files.download,
                        url,
                        max_bytes=self.max_download_bytes,
                        task_id=request.task_id,
                    ),
                    attempts=self.fetch_attempts,
                    delay=self.fetch_retry_delay,
                )
                mime = ctype or ""
            images.append(ImageData(data=data, mime=guess_mime(data, mime), seed=seed, info=info))
        if on_progress is not None:
            on_progress(1.0, None)
        return images

    async def check(self) -> None:
        """``GET /v1/account``: proves the token works without running anything."""
        await self._http.json("GET", "/v1/account")

    async def aclose(self) -> None:
        await self._access.aclose()
