"""A loopback fake of Stability AI's v2beta Stable Image API."""

from __future__ import annotations

import base64
import random
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._render import FormPart, fit_size, parse_multipart, render_png
from ._server import ASGIApp, FakeServer

__all__ = ["FakeStability"]

_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "content_moderation",
    404: "not_found",
    413: "payload_too_large",
    422: "invalid_language",
    429: "rate_limit_exceeded",
    500: "internal_error",
}
_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")


class FakeStability(FakeServer):
    """Stability v2beta on 127.0.0.1.

    ``refuse_words``: prompts containing one get 403 ``content_moderation``;
    ``filter_words``: 200 with ``finish-reason: CONTENT_FILTERED`` (a blurred image);
    ``api_key``: when set, other keys get 401. ``image_side`` is the longer side of the
    rendered images (small by default so tests stay fast). ``forms`` keeps every
    generation request's fields (``name -> text`` or ``FormPart`` for files).
    """

    name = "stability"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        refuse_words: tuple[str, ...] = ("forbidden",),
        filter_words: tuple[str, ...] = ("blurme",),
        image_side: int = 64,
    ) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.refuse_words = refuse_words
        self.filter_words = filter_words
        self.image_side = image_side
        self.forms: list[dict[str, Any]] = []
        #: what GET /v1/user/balance says is left
        self.credits: float = 42.5
        self._rng = random.Random(1)

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        body = {"id": uuid.uuid4().hex, "name": _NAMES.get(status, "error"), "errors": [message]}
        return body, "application/json"

    def _error(self, status: int, message: str) -> Response:
        body, _ = self.error_response(status, message)
        return JSONResponse(body, status_code=status)

    def _authorised(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return False
        return self.api_key is None or auth[7:].strip() == self.api_key

    def build_app(self) -> ASGIApp:
        async def generate(request: Request) -> Response:
            if not self._authorised(request):
                return self._error(401, "authorization: invalid or missing header value")
            endpoint = request.path_params["endpoint"]
            try:
                parts = parse_multipart(
                    request.headers.get("content-type", ""), await request.body()
                )
            except ValueError as exc:
                return self._error(400, f"request body must be multipart/form-data ({exc})")
            form: dict[str, Any] = {}
            for p in parts:
                form[p.name] = p if p.filename is not None else p.text
            self.forms.append({"endpoint": endpoint, **form})
            prompt = form.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                return self._error(400, "prompt: is required")
            image = form.get("image")
            mode = form.get("mode", "text-to-image")
            if endpoint == "core" and image is not None:
                return self._error(400, "image: core does not accept an input image")
            if image is not None and "strength" not in form:
                return self._error(400, "strength: is required when image is provided")
            if endpoint == "sd3" and mode == "image-to-image" and image is None:
                return self._error(400, "image: is required for image-to-image")
            ratio = form.get("aspect_ratio", "1:1")
            if ratio not in _RATIOS:
                return self._error(400, f"aspect_ratio: must be one of {', '.join(_RATIOS)}")
            fmt = form.get("output_format", "png")
            if fmt not in ("png", "jpeg", "webp"):
                return self._error(400, "output_format: must be png, jpeg or webp")
            lowered = prompt.lower()
            if any(w in lowered for w in self.refuse_words):
                return self._error(
                    403, "Your request was flagged by our content moderation system."
                )
            seed = int(form.get("seed") or 0) or self._rng.randrange(1, 4294967294)
            w, h = (int(v) for v in ratio.split(":"))
            size = fit_size(w * 1000, h * 1000, self.image_side)
            init = image.data if isinstance(image, FormPart) else None
            if init is not None:
                size = fit_size(64, 64, self.image_side)
            data = render_png(
                prompt,
                seed,
                size,
                init=init,
                strength=float(form.get("strength", 0.6)),
                fmt={"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt],
            )
            finish = "SUCCESS"
            if any(w in lowered for w in self.filter_words):
                finish = "CONTENT_FILTERED"
            headers = {"finish-reason": finish, "seed": str(seed), "x-request-id": uuid.uuid4().hex}
            if "application/json" in request.headers.get("accept", ""):
                return JSONResponse(
                    {
                        "image": base64.b64encode(data).decode(),
                        "finish_reason": finish,
                        "seed": seed,
                    },
                    headers=headers,
                    media_type=f"application/json; type=image/{fmt}",
                )
            return Response(data, media_type=f"image/{fmt}", headers=headers)

        async def balance(request: Request) -> Response:
            if not self._authorised(request):
                return self._error(401, "authorization: invalid or missing header value")
            return JSONResponse({"credits": self.credits})

        return Starlette(
            routes=[
                Route("/v2beta/stable-image/generate/{endpoint:str}", generate, methods=["POST"]),
                Route("/v1/user/balance", balance, methods=["GET"]),
            ]
        )
