"""A loopback fake of Hugging Face Inference text-to-image (the hf-inference route)."""

from __future__ import annotations

import json
import random
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._render import fit_size, render_png
from ._server import ASGIApp, FakeServer

__all__ = ["FakeHuggingFace"]


class FakeHuggingFace(FakeServer):
    """``POST /{model_id}`` → raw image bytes, on 127.0.0.1.

    Errors are ``{"error": "..."}``; a 503 fault uses the legacy "model loading" body
    with ``estimated_time`` (seconds, ``estimated_time=`` here). ``models`` restricts the
    model ids that exist (others get 404). ``image_format`` is ``"JPEG"`` or ``"PNG"``.
    ``bodies`` keeps every request body.
    """

    name = "huggingface"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        image_format: str = "JPEG",
        estimated_time: float = 0.01,
        models: tuple[str, ...] | None = None,
        image_side: int = 64,
    ) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.image_format = image_format.upper()
        self.estimated_time = estimated_time
        self.models = models
        self.image_side = image_side
        self.bodies: list[dict[str, Any]] = []
        self._rng = random.Random(5)

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        if status == 503:
            return {
                "error": "Model is currently loading",
                "estimated_time": self.estimated_time,
            }, "application/json"
        return {"error": message}, "application/json"

    def build_app(self) -> ASGIApp:
        async def infer(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.startswith("Bearer ") else ""
            if self.api_key is not None and token != self.api_key:
                return JSONResponse(
                    {"error": "Invalid credentials in Authorization header"}, status_code=401
                )
            model = request.path_params["model"]
            if self.models is not None and model not in self.models:
                return JSONResponse({"error": f"Model {model} does not exist"}, status_code=404)
            try:
                body = json.loads(await request.body())
            except ValueError:
                return JSONResponse({"error": "Body is not valid JSON"}, status_code=400)
            self.bodies.append(body)
            prompt = body.get("inputs") if isinstance(body, dict) else None
            if not isinstance(prompt, str) or not prompt.strip():
                return JSONResponse(
                    {"error": "Input validation error: `inputs` must be a non-empty string"},
                    status_code=422,
                )
            params = body.get("parameters") or {}
            if not isinstance(params, dict):
                return JSONResponse({"error": "`parameters` must be an object"}, status_code=422)
            seed = params.get("seed")
            seed = int(seed) if isinstance(seed, int) else self._rng.randrange(2**31)
            size = fit_size(
                int(params.get("width") or 512), int(params.get("height") or 512), self.image_side
            )
            data = render_png(prompt, seed, size, fmt=self.image_format)
            return Response(data, media_type=f"image/{self.image_format.lower()}")

        return Starlette(routes=[Route("/{model:path}", infer, methods=["POST"])])
