"""Stability AI REST v2beta "Stable Image" (core / ultra / sd3), multipart in, image out.

Protocol: every request is ``multipart/form-data``;
``Accept: image/*`` returns the raw image with ``seed`` / ``finish-reason`` headers,
``Accept: application/json`` returns ``{"image": b64, "seed", "finish_reason"}``. Sizes
are aspect ratios, so the task's ``size`` maps to the nearest accepted ratio. A 403 with
``name: "content_moderation"`` is a refusal (never retried); a 200 whose finish reason is
``CONTENT_FILTERED`` carries a blurred replacement image, which we refuse as well rather
than save it as if it were the picture asked for.

Which endpoint: ``model="core"`` (text-to-image only), ``"ultra"`` (optional init image
with ``strength``) or an sd3 model name such as ``"sd3.5-large"`` (text-to-image or
image-to-image with ``strength``). ``Params.model`` overrides it per task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ..core._errors import (
    ConfigError,
    ContentRefusedError,
    MalformedResponseError,
    NotSupportedError,
    ProviderError,
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
from ._encoding import b64_image, guess_mime
from ._http import Timeouts, server_message
from ._sizes import nearest_aspect_ratio

__all__ = ["StabilityProvider"]

INFO = provider_info("stability")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""
ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
#: the service accepts seeds 0..4294967294 where 0 means "random"
_MAX_SEED = 4294967294
_DEFAULT_STRENGTH = 0.6


def _endpoint(model: str) -> tuple[str, str | None]:
    """(path, sd3 model field) for a model name."""
    key = model.strip().lower()
    if key in ("core", "ultra"):
        return f"/v2beta/stable-image/generate/{key}", None
    if key == "sd3":
        return "/v2beta/stable-image/generate/sd3", None
    if key.startswith("sd3"):
        return "/v2beta/stable-image/generate/sd3", model.strip()
    raise ConfigError(
        f"unknown Stability model {model!r}: use 'core', 'ultra' or an sd3 model such as "
        "'sd3.5-large'"
    )


def _detail(response: httpx.Response) -> str | None:
    """``"name: error; error"`` from Stability's ``{"id", "name", "errors": [...]}``."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, Mapping) or not isinstance(body.get("errors"), list):
        return None
    text = "; ".join(str(e) for e in body["errors"][:3])
    name = body.get("name")
    text = f"{name}: {text}" if isinstance(name, str) and name else text
    return scrub(" ".join(text.split())[:300])


def _classify(response: httpx.Response, err: ProviderError) -> ProviderError:
    detail = _detail(response)
    if detail is None:
        return err
    if response.status_code == 403 and detail.startswith("content_moderation"):
        return ContentRefusedError(
            f"stability: the request was refused by content moderation ({detail}); "
            "change the prompt or input image",
            provider="stability",
            status_code=403,
            task_id=err.task_id,
        )
    # the generic message quotes only "name"; the "errors" list says what was wrong
    generic = server_message(response)
    err.message = err.message.replace(generic, detail, 1) if generic else err.message
    err.args = (err.message,)
    return err


class StabilityProvider(Provider):
    """Stability AI v2beta Stable Image (key: ``STABILITY_API_KEY``)."""

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    #: the union over the endpoints; :meth:`validate` applies the per-endpoint limits
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "core",
        output_format: str = "png",
        accept: str = "image",
        timeouts: Timeouts | None = None,
        max_concurrency: int | None = None,
        client_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        _endpoint(model)  # fail early on a bad name
        if output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"output_format must be one of {OUTPUT_FORMATS}")
        if accept not in ("image", "json"):
            raise ConfigError("accept must be 'image' (raw bytes) or 'json' (base64)")
        self.model = model
        self.output_format = output_format
        self.accept = accept
        self.max_concurrency = max_concurrency
        headers = {"Accept": "image/*" if accept == "image" else "application/json"}
        if client_id:
            headers["stability-client-id"] = client_id[:256]
        self._access = open_service(
            INFO,
            api_key=api_key,
            base_url=base_url,
            headers=headers,
            timeouts=timeouts,
            transport=transport,
            classify=_classify,
        )
        self._http = self._access.api

    def validate(self, request: GenerationRequest) -> None:
        super().validate(request)
        path, _ = _endpoint(request.params.model or self.model)
        if request.images and path.endswith("/core"):
            raise NotSupportedError(
                "Stability 'core' is text-to-image only; use model 'ultra' or an sd3 model "
                "for image-to-image",
                task_id=request.task_id,
            )

    def _fields(self, request: GenerationRequest) -> list[tuple[str, Any]]:
        params = request.params
        path, sd3_model = _endpoint(params.model or self.model)
        fields: dict[str, str] = {"prompt": request.prompt, "output_format": self.output_format}
        if sd3_model:
            fields["model"] = sd3_model
        if params.negative_prompt:
            fields["negative_prompt"] = params.negative_prompt
        if params.seed is not None and params.seed >= 0:
            # 0 means "random" to the service; larger seeds wrap into its range
            fields["seed"] = str(params.seed % (_MAX_SEED + 1))
        if params.cfg_scale is not None and path.endswith("/sd3"):
            fields["cfg_scale"] = str(params.cfg_scale)
        files: list[tuple[str, Any]] = []
        if request.images:
            image = request.images[0]
            strength = params.strength if params.strength is not None else _DEFAULT_STRENGTH
            fields["strength"] = str(strength)
            if path.endswith("/sd3"):
                fields["mode"] = "image-to-image"
            files.append(("image", (image.name or "input.png", image.data, image.mime)))
        else:
            ratio = nearest_aspect_ratio(params.size, ASPECT_RATIOS)
            if ratio:
                fields["aspect_ratio"] = ratio
        for key, value in params.extras.items():  # e.g. style_preset
            fields[str(key)] = value if isinstance(value, str) else str(value)
        # (None, value) parts make httpx send multipart even without a file
        return [(k, (None, v.encode())) for k, v in fields.items()] + files

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        path, _ = _endpoint(request.params.model or self.model)
        response = await self._http.request(
            "POST", path, files=self._fields(request), task_id=request.task_id
        )
        ctype = response.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, Mapping):
                raise MalformedResponseError(
                    "stability: the JSON answer is not an object",
                    provider=self.name,
                    task_id=request.task_id,
                )
            finish = str(body.get("finish_reason") or "SUCCESS")
            data = b64_image(body.get("image"), self.name, task_id=request.task_id)
            seed_raw: object = body.get("seed")
            declared = None
            for part in ctype.split(";")[1:]:
                k, _, v = part.strip().partition("=")
                if k == "type":
                    declared = v
        else:
            finish = response.headers.get("finish-reason", "SUCCESS")
            data = response.content
            seed_raw = response.headers.get("seed")
            declared = ctype or None
        if finish.upper() == "CONTENT_FILTERED":
            raise ContentRefusedError(
                "stability: the image was blurred by the content filter (finish reason "
                "CONTENT_FILTERED); change the prompt",
                provider=self.name,
                task_id=request.task_id,
            )
        if not data:
            raise MalformedResponseError(
                "stability: the answer holds no image", provider=self.name, task_id=request.task_id
            )
        seed: int | None = None
        try:
            seed = int(str(seed_raw)) if seed_raw is not None else None
        except ValueError:
            seed = None
        info: dict[str, Any] = {"finish_reason": finish}
        request_id = response.headers.get("x-request-id")
        if request_id:
            info["request_id"] = request_id
        if on_progress is not None:
            on_progress(1.0, None)
        return [ImageData(data=data, mime=guess_mime(data, declared), seed=seed, info=info)]

    async def check(self) -> None:
        """Ask for the account balance: proves the key works without spending credits."""
        await self.balance()

    async def balance(self) -> Balance:
        """The account's credits: ``GET /v1/user/balance`` answers ``{"credits": 12.3}``."""
        body = await self._http.json("GET", "/v1/user/balance")
        credits = body.get("credits") if isinstance(body, dict) else None
        if isinstance(credits, bool) or not isinstance(credits, (int, float)):
            raise MalformedResponseError(
                "stability: the balance answer holds no number of credits",
                provider=self.name,
            )
        return Balance(float(credits), "credits")

    async def aclose(self) -> None:
        await self._access.aclose()
