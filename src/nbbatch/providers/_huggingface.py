"""Hugging Face Inference text-to-image (the ``hf-inference`` route: raw image bytes).

Protocol: ``POST {base}/{model_id}`` with
``{"inputs": prompt, "parameters": {...}}`` answers 200 with the image bytes. Errors are
``{"error": "..."}``; a model still loading answers 503 with ``estimated_time`` (seconds),
which we report as a rate-limit-like wait so the runner retries after exactly that long
(or gives up at once when it is longer than the retry policy's cap).

The token (``HF_TOKEN``) is required for the public router; a self-hosted endpoint
(Inference Endpoints, TGI-style servers) given with ``base_url=`` may run without one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ..core._errors import ConfigError, MalformedResponseError, ProviderError, RateLimitedError
from ..core._secrets import Secret
from ._access import open_service
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._encoding import guess_mime
from ._http import Timeouts

__all__ = ["HuggingFaceProvider"]

INFO = provider_info("huggingface")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""


def _classify(response: httpx.Response, err: ProviderError) -> ProviderError:
    if response.status_code != 503:
        return err
    try:
        body = response.json()
    except ValueError:
        return err
    if not isinstance(body, Mapping):
        return err
    estimate = body.get("estimated_time")
    if isinstance(estimate, (int, float)) and math.isfinite(estimate) and estimate >= 0:
        return RateLimitedError(
            f"{err.provider}: the model is loading (about {estimate:.0f} s); it will be "
            "retried when it should be ready",
            retry_after=float(estimate),
            provider=err.provider,
            status_code=503,
            task_id=err.task_id,
        )
    return err


class HuggingFaceProvider(Provider):
    """Hugging Face Inference text-to-image (token: ``HF_TOKEN``)."""

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        model: str = "black-forest-labs/FLUX.1-schnell",
        base_url: str | None = None,
        timeouts: Timeouts | None = None,
        max_concurrency: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not model.strip() or model.startswith("/") or ".." in model:
            raise ConfigError(f"model should be a Hub id like 'owner/name', got {model!r}")
        self.model = model.strip()
        self.max_concurrency = max_concurrency
        # the token is needed for the public router; a self-hosted endpoint may need none
        self._access = open_service(
            INFO,
            api_key=api_key,
            base_url=base_url,
            headers={"Accept": "image/png, image/jpeg, image/webp, */*;q=0.1"},
            timeouts=timeouts,
            transport=transport,
            classify=_classify,
        )
        self._http = self._access.api

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        parameters: dict[str, Any] = {}
        if p.negative_prompt:
            parameters["negative_prompt"] = p.negative_prompt
        if p.dimensions:
            parameters["width"], parameters["height"] = p.dimensions
        if p.steps is not None:
            parameters["num_inference_steps"] = p.steps
        if p.cfg_scale is not None:
            parameters["guidance_scale"] = p.cfg_scale
        if p.sampler:
            parameters["scheduler"] = p.sampler
        if p.seed is not None and p.seed >= 0:
            parameters["seed"] = p.seed
        parameters.update(p.extras)
        body: dict[str, Any] = {"inputs": request.prompt}
        if parameters:
            body["parameters"] = parameters
        return body

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        model = request.params.model or self.model
        response = await self._http.request(
            "POST", f"/{model}", json=self._body(request), task_id=request.task_id
        )
        ctype = response.headers.get("content-type", "")
        data = response.content
        if ctype.startswith("application/json") or not data:
            raise MalformedResponseError(
                f"huggingface: expected image bytes, got {ctype or 'an empty body'!r} "
                f"({len(data):,} bytes); is {model!r} a text-to-image model on this route?",
                provider=self.name,
                task_id=request.task_id,
            )
        if on_progress is not None:
            on_progress(1.0, None)
        return [
            ImageData(
                data=data,
                mime=guess_mime(data, ctype),
                seed=request.params.seed,
                info={"model": model},
            )
        ]

    async def aclose(self) -> None:
        await self._access.aclose()
