"""A loopback fake of the Gemini API's image generation (``generateContent``, image out)."""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._gemini_batch import GeminiBatches
from ._render import fit_size, render_png
from ._server import ASGIApp, FakeServer

__all__ = ["FakeGemini"]

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _b64decode(text: str) -> bytes:
    """Protobuf JSON bytes: standard or URL-safe base64, padded or not (all are valid)."""
    if not isinstance(text, str):
        raise TypeError("bytes fields are base64 strings")
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


class FakeGemini(FakeServer):
    """Gemini ``generateContent`` with image output, on 127.0.0.1.

    Prompt words switch behaviours: ``unsafe`` → ``finishReason: IMAGE_SAFETY`` and no
    image; ``blocked`` → ``promptFeedback.blockReason: SAFETY`` and no candidates;
    ``textonly`` → a text answer without an image; ``think`` → ``thought`` parts (an
    interim image and text) before the answer. ``image_only=True`` answers without a
    text part. 429 faults carry ``RetryInfo.retryDelay = retry_delay``. ``bodies`` keeps
    every generateContent request body.

    Batch Mode (file input) is there too, with the clock switches of
    :class:`~nbbatch.testing.FakeOpenAI` (``batch_clock``, ``batch_timing``,
    ``batch_window``); see ``_gemini_batch``.
    """

    name = "gemini"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        image_only: bool = False,
        retry_delay: str = "0.01s",
        image_side: int = 64,
        batch_clock: Callable[[], float] | None = None,
        batch_timing: tuple[float, float, float] = (0.1, 0.6, 0.1),
        batch_window: float = 24 * 3600.0,
    ) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.image_only = image_only
        self.retry_delay = retry_delay
        self.image_side = image_side
        self.bodies: list[dict[str, Any]] = []
        self._rng = random.Random(3)
        #: the Batch Mode's files and jobs (``/upload``, ``batchGenerateContent``, ...)
        self.batch_api = GeminiBatches(
            self._batch_answer, clock=batch_clock, timing=batch_timing, window=batch_window
        )

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": _STATUS.get(status, "UNKNOWN"),
        }
        if status == 429:
            error["message"] = (
                "You exceeded your current quota, please check your plan and billing details."
            )
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": self.retry_delay,
                },
            ]
        return {"error": error}, "application/json"

    def _error(self, status: int, message: str, details: list[Any] | None = None) -> Response:
        body, _ = self.error_response(status, message)
        if details:
            body["error"]["details"] = details
        return JSONResponse(body, status_code=status)

    def _auth_error(self, request: Request) -> Response | None:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return self._error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity).",
            )
        if self.api_key is not None and key != self.api_key:
            return self._error(
                400,
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )
        return None

    def _png_part(self, prompt: str, seed: int, ratio: str, init: bytes | None) -> dict[str, Any]:
        w, h = (int(v) for v in ratio.split(":"))
        data = render_png(prompt, seed, fit_size(w * 100, h * 100, self.image_side), init=init)
        return {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}

    def build_app(self) -> ASGIApp:
        async def generate(request: Request) -> Response:
            denied = self._auth_error(request)
            if denied is not None:
                return denied
            model = request.path_params["model"]
            try:
                body = json.loads(await request.body())
            except ValueError:
                return self._error(400, "Invalid JSON payload received.")
            if not isinstance(body, dict):
                return self._error(400, "Invalid JSON payload received.")
            return self._generate(model, body)

        async def model_info(request: Request) -> Response:
            denied = self._auth_error(request)
            if denied is not None:
                return denied
            model = request.path_params["model"]
            return JSONResponse(
                {
                    "name": f"models/{model}",
                    "displayName": model,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                }
            )

        # google-genai talks to /v1beta by default and to /v1 when asked; the REST
        # docs use both: serve the same API under each version
        routes = list(self.batch_api.routes(self._auth_error))
        for version in ("v1beta", "v1"):
            routes += [
                Route(f"/{version}/models/{{model}}:generateContent", generate, methods=["POST"]),
                Route(f"/{version}/models/{{model}}", model_info, methods=["GET"]),
            ]
        return Starlette(routes=routes)

    def _batch_answer(self, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of ``generateContent`` for one line of a batch."""
        response = self._generate(model, body)
        return response.status_code, json.loads(bytes(response.body))

    def _generate(self, model: str, body: dict[str, Any]) -> Response:
        """One ``generateContent`` answer (the request is parsed already)."""
        self.bodies.append(body)
        config = body.get("generationConfig") or body.get("generation_config") or {}
        modalities = config.get("responseModalities") or config.get("response_modalities")
        if not modalities or "IMAGE" not in modalities:
            return self._error(400, f"Model {model} needs responseModalities to include IMAGE.")
        image_config = config.get("imageConfig") or config.get("image_config") or {}
        ratio = image_config.get("aspectRatio") or image_config.get("aspect_ratio") or "1:1"
        texts: list[str] = []
        inits: list[bytes] = []
        for content in body.get("contents") or []:
            for part in content.get("parts") or []:
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                inline = part.get("inlineData") or part.get("inline_data")
                if inline:
                    try:
                        inits.append(_b64decode(inline["data"]))
                    except (binascii.Error, KeyError, TypeError, ValueError):
                        return self._error(400, "Invalid value at 'contents[0].parts': bad base64")
        prompt = " ".join(texts)
        if not prompt.strip() and not inits:
            return self._error(400, "contents is not specified")
        lowered = prompt.lower()
        seed = config.get("seed")
        seed = int(seed) if isinstance(seed, int) else self._rng.randrange(2**31)
        usage = {"promptTokenCount": len(prompt.split()), "candidatesTokenCount": 1290}
        common = {"usageMetadata": usage, "modelVersion": model, "responseId": f"r{seed}"}
        if "blocked" in lowered:
            return JSONResponse({"promptFeedback": {"blockReason": "SAFETY"}, **common})
        cand: dict[str, Any]
        if "unsafe" in lowered:
            cand = {
                "content": {"role": "model", "parts": []},
                "finishReason": "IMAGE_SAFETY",
            }
            return JSONResponse({"candidates": [cand], **common})
        if "textonly" in lowered:
            parts: list[dict[str, Any]] = [
                {"text": "I can describe that scene, but I will not draw it right now."}
            ]
            cand = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
            return JSONResponse({"candidates": [cand], **common})
        parts = []
        if "think" in lowered:
            parts.append({"text": "Planning the composition...", "thought": True})
            thought = self._png_part("draft " + prompt, seed + 1, ratio, None)
            parts.append({**thought, "thought": True})
        if not self.image_only:
            parts.append({"text": "Here is the image you asked for."})
        parts.append(self._png_part(prompt, seed, ratio, inits[0] if inits else None))
        cand = {
            "content": {"role": "model", "parts": parts},
            "finishReason": "STOP",
            "index": 0,
        }
        return JSONResponse({"candidates": [cand], **common})

    def stop(self) -> None:
        super().stop()
        self.batch_api.close()
