"""Gemini image models (``generateContent`` with the IMAGE response modality).

Protocol: the prompt and any reference images go in one
user turn as ``text`` and ``inlineData`` parts; the answer's image parts are base64
``inlineData``. Parts flagged ``thought`` are the model's interim sketches and are
skipped. A safety block arrives as a 200 (``promptFeedback.blockReason`` or a safety
``finishReason``) and becomes a :class:`ContentRefusedError`. A 429
``RESOURCE_EXHAUSTED`` names its wait in ``RetryInfo.retryDelay`` (``"30s"``), there is
no reliable ``Retry-After`` header. A bad key is a 400 ``INVALID_ARGUMENT`` with reason
``API_KEY_INVALID``, reported as an authentication error.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx

from ..core._errors import (
    AuthenticationError,
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    NotSupportedError,
    ProviderError,
    RateLimitedError,
)
from ..core._retry import parse_duration
from ..core._secrets import Secret, scrub
from ._access import open_service
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._encoding import b64_image, guess_mime
from ._http import Timeouts
from ._offload import offload
from ._sizes import nearest_aspect_ratio

__all__ = ["GeminiProvider"]

INFO = provider_info("gemini")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
#: finish / block reasons that mean "refused on safety or policy grounds"
REFUSALS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
    }
)
#: Flash image models take up to 3 input images well; Pro image models up to 14.
_MAX_REFS_FLASH = 3
_MAX_REFS_PRO = 14


def _inline_size(answer: object) -> int:
    """Characters of base64 image data in an answer (decides where to decode it)."""
    total = 0
    candidates = answer.get("candidates") if isinstance(answer, Mapping) else None
    for cand in candidates if isinstance(candidates, list) else []:
        content = cand.get("content") if isinstance(cand, Mapping) else None
        parts = content.get("parts") if isinstance(content, Mapping) else None
        for part in parts if isinstance(parts, list) else []:
            inline = (
                (part.get("inlineData") or part.get("inline_data"))
                if isinstance(part, Mapping)
                else None
            )
            data = inline.get("data") if isinstance(inline, Mapping) else None
            total += len(data) if isinstance(data, str) else 0
    return total


def _error_body(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, Mapping) else None
    return err if isinstance(err, Mapping) else {}


def _details(err: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    details = err.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, Mapping) and str(d.get("@type", "")).endswith(kind)]


def _classify(response: httpx.Response, err: ProviderError) -> ProviderError:
    body = _error_body(response)
    if response.status_code == 429:
        retry_after = err.retry_after if isinstance(err, RateLimitedError) else None
        for info in _details(body, "google.rpc.RetryInfo"):
            delay = parse_duration(info.get("retryDelay"))
            if delay is not None:
                retry_after = delay
        quota = [
            str(v.get("quotaId"))
            for q in _details(body, "google.rpc.QuotaFailure")
            for v in (q.get("violations") or [])
            if isinstance(v, Mapping) and v.get("quotaId")
        ]
        extra = f" (quota {', '.join(quota[:2])})" if quota else ""
        return RateLimitedError(
            f"{err.message}{extra}",
            retry_after=retry_after,
            provider=err.provider,
            status_code=429,
            task_id=err.task_id,
        )
    reasons = {str(d.get("reason")) for d in _details(body, "google.rpc.ErrorInfo")}
    if response.status_code == 400 and "API_KEY_INVALID" in reasons:
        return AuthenticationError(
            f"gemini: the API key is not valid ({scrub(str(body.get('message', '')))}). "
            "Check GEMINI_API_KEY / GOOGLE_API_KEY.",
            provider=err.provider,
            status_code=400,
            task_id=err.task_id,
        )
    return err


class GeminiProvider(Provider):
    """Gemini image generation (key: ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``)."""

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    #: ``max_references`` is the Pro models' limit; :meth:`validate` applies Flash's
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        model: str = "gemini-2.5-flash-image",
        base_url: str = DEFAULT_BASE_URL,
        response_modalities: Sequence[str] = ("TEXT", "IMAGE"),
        timeouts: Timeouts | None = None,
        max_concurrency: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if "IMAGE" not in [m.upper() for m in response_modalities]:
            raise ConfigError("response_modalities must include 'IMAGE'")
        if not model.strip() or "/" in model:
            raise ConfigError(
                f"Gemini model should be a name like 'gemini-2.5-flash-image', got {model!r}"
            )
        self.model = model.strip()
        self.response_modalities = [m.upper() for m in response_modalities]
        self.max_concurrency = max_concurrency
        self._access = open_service(
            INFO,
            api_key=api_key,
            base_url=base_url,
            # the key goes in a header, never the ?key= query (URLs end up in logs)
            key_headers=lambda key: {"x-goog-api-key": key.reveal()},
            timeouts=timeouts,
            transport=transport,
            classify=_classify,
        )
        self._http = self._access.api

    def validate(self, request: GenerationRequest) -> None:
        super().validate(request)
        model = request.params.model or self.model
        limit = _MAX_REFS_PRO if "pro" in model else _MAX_REFS_FLASH
        if len(request.images) > limit:
            raise NotSupportedError(
                f"{model} takes at most {limit} reference images; this task has "
                f"{len(request.images)}",
                task_id=request.task_id,
            )

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        for image in request.images:
            parts.append(
                {
                    "inlineData": {
                        "mimeType": image.mime,
                        "data": base64.b64encode(image.data).decode("ascii"),
                    }
                }
            )
        config: dict[str, Any] = {"responseModalities": list(self.response_modalities)}
        image_config: dict[str, Any] = {}
        ratio = nearest_aspect_ratio(params.size, ASPECT_RATIOS)
        if ratio:
            image_config["aspectRatio"] = ratio
        extras = dict(params.extras)
        if "image_size" in extras:  # "1K" / "2K" / "4K"
            image_config["imageSize"] = str(extras.pop("image_size"))
        if image_config:
            config["imageConfig"] = image_config
        if params.seed is not None and params.seed >= 0:
            config["seed"] = params.seed % 2**31  # an int32 on the wire
        body: dict[str, Any] = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": config,
        }
        body.update(extras)  # e.g. safetySettings, systemInstruction
        return body

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        model = request.params.model or self.model
        answer = await self._http.json(
            "POST",
            f"/v1beta/models/{model}:generateContent",
            # multi-MB references are base64-encoded in a worker thread, not on the loop
            json=await offload(
                self._body, request, size=sum(len(im.data) for im in request.images)
            ),
            task_id=request.task_id,
        )
        images = await offload(self._images, answer, request, size=_inline_size(answer))
        if on_progress is not None:
            on_progress(1.0, None)
        return images

    def _images(self, answer: object, request: GenerationRequest) -> list[ImageData]:
        tid = request.task_id
        if not isinstance(answer, Mapping):
            raise MalformedResponseError(
                "gemini: the answer is not a JSON object", provider=self.name, task_id=tid
            )
        feedback = answer.get("promptFeedback")
        block = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
        candidates = answer.get("candidates")
        if block and not candidates:
            raise ContentRefusedError(
                f"gemini: the prompt was blocked ({block}); change the prompt or images",
                provider=self.name,
                task_id=tid,
            )
        if not isinstance(candidates, list) or not candidates:
            raise MalformedResponseError(
                "gemini: the answer has no candidates", provider=self.name, task_id=tid
            )
        out: list[ImageData] = []
        texts: list[str] = []
        finish = None
        info: dict[str, Any] = {}
        for key in ("modelVersion", "responseId"):
            if isinstance(answer.get(key), str):
                info[key] = answer[key]
        usage = answer.get("usageMetadata")
        if isinstance(usage, Mapping):
            info["usage"] = dict(usage)
        for cand in candidates:
            if not isinstance(cand, Mapping):
                continue
            finish = cand.get("finishReason") or finish
            content = cand.get("content")
            parts = content.get("parts") if isinstance(content, Mapping) else None
            for part in parts if isinstance(parts, list) else []:
                if not isinstance(part, Mapping) or part.get("thought"):
                    continue  # interim "thinking" images are not the answer
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                inline = part.get("inlineData") or part.get("inline_data")
                if not isinstance(inline, Mapping):
                    continue
                mime = inline.get("mimeType") or inline.get("mime_type")
                if isinstance(mime, str) and not mime.startswith("image/"):
                    continue
                data = b64_image(inline.get("data"), self.name, task_id=tid)
                facts = dict(info)
                if out:
                    # usage covers the whole answer: on its first image only, so sums
                    # over images (Workspace.stats) count it once, as OpenAI's does
                    facts.pop("usage", None)
                out.append(
                    ImageData(
                        data=data,
                        mime=guess_mime(data, mime if isinstance(mime, str) else None),
                        seed=request.params.seed,
                        info=facts,
                    )
                )
        if out:
            if texts:
                for im in out:
                    im.info["text"] = scrub(" ".join(texts))[:2000]
            return out
        said = scrub(" ".join(" ".join(texts).split()))[:300]
        if (finish and finish in REFUSALS) or block:
            raise ContentRefusedError(
                f"gemini: no image, the model stopped with {finish or block} (a safety or "
                f"policy block){': ' + said if said else ''}; change the prompt or images",
                provider=self.name,
                task_id=tid,
            )
        raise MalformedResponseError(
            f"gemini: the answer holds no image (finish reason {finish or 'none'})"
            + (f"; the model said: {said!r}" if said else ""),
            provider=self.name,
            task_id=tid,
        )

    async def check(self) -> None:
        """``GET /v1beta/models/{model}``: proves the key and the model name."""
        await self._http.json("GET", f"/v1beta/models/{self.model}")

    async def aclose(self) -> None:
        await self._access.aclose()
