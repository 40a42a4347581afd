"""OpenAI Images (and any OpenAI-compatible ``/v1/images/generations`` endpoint).

Text-only tasks go to ``POST /images/generations`` as JSON; tasks with reference images
go to ``POST /images/edits`` as multipart (one file as ``image``, several as repeated
``image[]``, an optional ``mask``). GPT image models answer with ``b64_json``; DALL·E
style servers may answer with a ``url``, which is downloaded with a byte cap. The
service has no seed, negative prompt, steps or sampler: such tasks are refused before
any request (an OpenAI-compatible server that does take them gets them via ``extras``,
which are sent verbatim).

Errors: a moderation refusal (400 ``moderation_blocked`` /
``content_policy_violation``) is a :class:`~nbbatch.ContentRefusedError` and never
retried; a 429 ``insufficient_quota`` is an empty account, not a rate limit, so it is
not retried either.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ..core._errors import (
    ContentRefusedError,
    MalformedResponseError,
    NotSupportedError,
    ProviderError,
    RateLimitedError,
)
from ..core._secrets import Secret
from ._access import open_service
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._codec import FAST_BASE64, b64decode
from ._http import Timeouts
from ._offload import offload

__all__ = ["OpenAIProvider"]

INFO = provider_info("openai")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""
DEFAULT_MODEL = "gpt-image-1"
_REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
#: Params fields this API has no equivalent for (refused rather than silently dropped)
_UNSUPPORTED = ("seed", "steps", "cfg_scale", "sampler", "strength")


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    """(code, type) of an OpenAI error body, lower-cased; empty strings when absent."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return "", ""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return "", ""
    return str(err.get("code") or "").lower(), str(err.get("type") or "").lower()


def _classify(response: httpx.Response, err: ProviderError) -> ProviderError:
    code, kind = _error_fields(response)
    if response.status_code == 400 and (code in _REFUSAL_CODES or kind in _REFUSAL_CODES):
        return ContentRefusedError(
            f"{err.message}. The safety system refused this prompt or image; rephrase it "
            "(retrying the same request will not help).",
            provider=err.provider,
            status_code=400,
            task_id=err.task_id,
        )
    if response.status_code == 429 and "insufficient_quota" in (code, kind):
        return RateLimitedError(
            f"{err.provider}: HTTP 429 insufficient_quota: the account has no credit or "
            "has reached its spending limit. Add credit or raise the limit in the OpenAI "
            "dashboard, then retry the failed tasks.",
            provider=err.provider,
            status_code=429,
            task_id=err.task_id,
            retryable=False,
        )
    return err


def _strict_b64(text: str) -> bytes:
    return b64decode(text)


def _b64_size(text: str) -> int:
    """How much work :func:`offload` is told a decode is: none for the SIMD decoder,
    whose ~0.1 ms per 1024x1024 image costs less than a thread hop."""
    return 0 if FAST_BASE64 else len(text)


def _form_value(value: Any) -> str:
    """Multipart text parts are strings: JSON for structures, lower-case booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class OpenAIProvider(Provider):
    """OpenAI Images API, or an OpenAI-compatible server at ``base_url``.

    ``api_key`` (a string or :class:`~nbbatch.Secret`) defaults to ``$OPENAI_API_KEY``;
    it is required for api.openai.com and optional for other base URLs (local servers
    often need none). ``model`` is the default when a task's ``Params.model`` is unset.
    ``quality``, ``background``, ``output_format``, ``moderation``, ``input_fidelity``,
    ``response_format`` and other service fields go in ``Params.extras``.
    """

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        organization: str | None = None,
        project: str | None = None,
        timeouts: Timeouts | None = None,
        max_download_bytes: int = 50 * 1024 * 1024,
        max_concurrency: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.max_download_bytes = max_download_bytes
        self.max_concurrency = max_concurrency
        headers = {"Accept": "application/json"}
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
        # the key is needed for api.openai.com, optional for compatible servers
        self._access = open_service(
            INFO,
            api_key=api_key,
            base_url=base_url,
            headers=headers,
            timeouts=timeouts,
            transport=transport,
            classify=_classify,
        )
        self.base_url = self._access.base_url
        self._http = self._access.api

    # ------------------------------------------------------------------ checks
    def validate(self, request: GenerationRequest) -> None:
        super().validate(request)
        params = request.params
        unsupported = [
            f
            for f in _UNSUPPORTED
            if getattr(params, f) is not None and not (f == "seed" and params.seed == -1)
        ]
        if unsupported:
            raise NotSupportedError(
                f"{self.label} has no {', '.join(unsupported)}; clear "
                f"{'it' if len(unsupported) == 1 else 'them'} (an OpenAI-compatible server "
                "that accepts such fields gets them through Params.extras)",
                task_id=request.task_id,
            )

    async def check(self) -> None:
        """Cheap credentials probe: ``GET /models`` (no image is generated or billed)."""
        await self._http.request("GET", "/models")

    async def aclose(self) -> None:
        await self._access.aclose()

    # ------------------------------------------------------------------ generate
    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        fields = self.request_fields(request)
        if request.images:
            body = await self._edit(request, fields)
        else:
            body = await self._http.json(
                "POST", "/images/generations", json=fields, task_id=request.task_id
            )
        images = await self._read_images(body, request)
        if on_progress is not None:
            on_progress(1.0, None)
        return images

    def request_fields(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON fields of one request (also a batch API line's body)."""
        params = request.params
        fields: dict[str, Any] = {
            "model": params.model or self.model,
            "prompt": request.prompt,
            "n": params.n,
        }
        if params.size:
            fields["size"] = params.size
        fields.update(params.extras)
        return fields

    async def _edit(self, request: GenerationRequest, fields: dict[str, Any]) -> Any:
        # One file goes as ``image``; several as repeated ``image[]`` (the SDK's format).
        field = "image" if len(request.images) == 1 else "image[]"
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            (field, (im.name or f"image{i}.png", im.data, im.mime))
            for i, im in enumerate(request.images)
        ]
        if request.mask is not None:
            files.append(
                ("mask", (request.mask.name or "mask.png", request.mask.data, "image/png"))
            )
        data = {k: _form_value(v) for k, v in fields.items() if v is not None}
        return await self._http.json(
            "POST", "/images/edits", data=data, files=files, task_id=request.task_id
        )

    def _malformed(self, what: str, request: GenerationRequest) -> MalformedResponseError:
        return MalformedResponseError(
            f"{self.name}: {what}", provider=self.name, task_id=request.task_id
        )

    async def _read_images(self, body: Any, request: GenerationRequest) -> list[ImageData]:
        if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
            raise self._malformed("the response has no 'data' list of images", request)
        items = body["data"]
        if not items:
            raise self._malformed(
                "the response holds no image (some servers drop moderated images silently)",
                request,
            )
        fmt = str(body.get("output_format") or "").lower()
        common = {
            k: body[k] for k in ("size", "quality", "background", "output_format") if k in body
        }
        out: list[ImageData] = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise self._malformed(f"data[{index}] is not an object", request)
            mime = _MIME.get(fmt)
            if isinstance(item.get("b64_json"), str):
                text = item["b64_json"]
                try:
                    # a 4 MB image is ~5.5 MB of base64: decode that off the event loop
                    data = await offload(_strict_b64, text, size=_b64_size(text))
                except (binascii.Error, ValueError):
                    raise self._malformed(
                        f"data[{index}].b64_json is not valid base64", request
                    ) from None
            elif isinstance(item.get("url"), str):
                data, mime = await self._fetch(item["url"], request)
            else:
                raise self._malformed(f"data[{index}] has neither b64_json nor url", request)
            info: dict[str, Any] = dict(common)
            if item.get("revised_prompt"):
                info["revised_prompt"] = item["revised_prompt"]
            # usage covers the whole request: record it once so sums over images stay right
            if index == 0 and isinstance(body.get("usage"), Mapping):
                info["usage"] = dict(body["usage"])
            out.append(ImageData(data=data, mime=mime, info=info))
        return out

    async def _fetch(self, url: str, request: GenerationRequest) -> tuple[bytes, str | None]:
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            if not head.endswith(";base64"):
                raise self._malformed("a data: URL image is not base64-encoded", request)
            try:
                data = await offload(_strict_b64, payload, size=_b64_size(payload))
                return data, head[5:].split(";")[0] or None
            except (binascii.Error, ValueError):
                raise self._malformed("a data: URL image is not valid base64", request) from None
        if not url.startswith(("http://", "https://")):
            raise self._malformed("an image URL is neither http(s) nor data:", request)
        # Image URLs usually point at a CDN: the key goes only to the API's own origin.
        return await self._access.client_for(url).download(
            url, max_bytes=self.max_download_bytes, task_id=request.task_id
        )
