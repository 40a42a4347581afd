"""A loopback fake of Replicate's predictions API."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..providers._encoding import decode_data_url
from ._render import fit_size, render_png
from ._server import ASGIApp, FakeServer

__all__ = ["FakeReplicate"]

_TITLES = {
    400: "Bad Request",
    401: "Unauthenticated",
    402: "Payment Required",
    404: "Not found",
    422: "Invalid input",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


@dataclass
class _Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    created: float
    seed: int
    canceled_at: float | None = None
    outputs: list[bytes] = field(default_factory=list)


class FakeReplicate(FakeServer):
    """Replicate on 127.0.0.1.

    Each prediction is ``starting`` for ``start_seconds``, ``processing`` (with tqdm
    lines in ``logs``) until ``run_seconds``, then ``succeeded`` — or ``failed`` when the
    prompt contains a ``fail_words`` entry ("nsfw" fails like the safety checker).
    ``output_mode``: ``"list"`` (list of file URLs), ``"url"`` (one URL string) or
    ``"data"`` (``data:`` URLs). ``Prefer: wait=N`` holds the create call up to N s.
    ``cancels`` lists the ids whose cancel endpoint was called.
    """

    name = "replicate"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        start_seconds: float = 0.0,
        run_seconds: float = 0.05,
        output_mode: str = "list",
        image_side: int = 64,
        fail_words: dict[str, str] | None = None,
    ) -> None:
        super().__init__(latency=latency)
        if output_mode not in ("list", "url", "data"):
            raise ValueError("output_mode must be 'list', 'url' or 'data'")
        self.api_key = api_key
        self.start_seconds = start_seconds
        self.run_seconds = run_seconds
        self.output_mode = output_mode
        self.image_side = image_side
        self.fail_words = (
            fail_words
            if fail_words is not None
            else {
                "nsfw": "NSFW content detected. Try running it again, or try a different prompt.",
                "failme": "CUDA out of memory. Tried to allocate 2.00 GiB",
            }
        )
        self.predictions: dict[str, _Prediction] = {}
        self.cancels: list[str] = []
        self._plock = threading.Lock()
        self._rng = random.Random(7)

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        if status == 429:
            return {
                "detail": "Request was throttled. Your rate limit resets in ~30s.",
                "status": 429,
            }, "application/problem+json"
        return {
            "title": _TITLES.get(status, "Error"),
            "detail": message,
            "status": status,
        }, "application/problem+json"

    def _problem(self, status: int, detail: str) -> Response:
        body, ctype = self.error_response(status, detail)
        return Response(json.dumps(body), status_code=status, media_type=ctype)

    def _authorised(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        return bool(token) and (self.api_key is None or token == self.api_key)

    # ------------------------------------------------------------ state
    def _status(self, p: _Prediction, now: float) -> str:
        if p.canceled_at is not None:
            return "canceled"
        elapsed = now - p.created
        if elapsed < self.start_seconds:
            return "starting"
        if elapsed < self.start_seconds + self.run_seconds:
            return "processing"
        prompt = str(p.input.get("prompt", "")).lower()
        if any(w in prompt for w in self.fail_words):
            return "failed"
        return "succeeded"

    def _render(self, p: _Prediction) -> list[bytes]:
        if not p.outputs:
            width = int(p.input.get("width") or 64)
            height = int(p.input.get("height") or 64)
            init = None
            image = p.input.get("image")
            if isinstance(image, str) and image.startswith("data:"):
                init = decode_data_url(image, "replicate")[0]
            count = int(p.input.get("num_outputs") or 1)
            p.outputs = [
                render_png(
                    str(p.input.get("prompt", "")),
                    p.seed + i,
                    fit_size(width, height, self.image_side),
                    init=init,
                    strength=float(p.input.get("prompt_strength") or 0.6),
                )
                for i in range(count)
            ]
        return p.outputs

    def _json(self, p: _Prediction) -> dict[str, Any]:
        now = time.monotonic()
        status = self._status(p, now)
        steps = 10
        done = min(1.0, max(0.0, (now - p.created - self.start_seconds) / self.run_seconds))
        logs = f"Using seed: {p.seed}\n"
        if status != "starting":
            for k in range(1, int(done * steps) + 1):
                logs += f"{k * 100 // steps:3d}%|{'█' * k}{' ' * (steps - k)}| {k}/{steps}\n"
        body: dict[str, Any] = {
            "id": p.id,
            "model": p.model,
            "version": p.version,
            "input": p.input,
            "logs": logs,
            "output": None,
            "error": None,
            "status": status,
            "created_at": "2026-01-01T00:00:00.000Z",
            "urls": {
                "get": f"{self.url}/v1/predictions/{p.id}",
                "cancel": f"{self.url}/v1/predictions/{p.id}/cancel",
                "web": f"https://replicate.com/p/{p.id}",
            },
        }
        if status == "failed":
            prompt = str(p.input.get("prompt", "")).lower()
            body["error"] = next(msg for w, msg in self.fail_words.items() if w in prompt)
        elif status == "succeeded":
            outputs = self._render(p)
            if self.output_mode == "data":
                urls = [f"data:image/png;base64,{base64.b64encode(o).decode()}" for o in outputs]
            else:
                urls = [f"{self.url}/files/{p.id}/{i}.png" for i in range(len(outputs))]
            body["output"] = urls[0] if self.output_mode == "url" else urls
            body["metrics"] = {"predict_time": self.run_seconds}
        return body

    # ------------------------------------------------------------ app
    def build_app(self) -> ASGIApp:
        async def create(request: Request) -> Response:
            if not self._authorised(request):
                return self._problem(401, "You did not pass a valid authentication token")
            try:
                payload = json.loads(await request.body())
            except ValueError:
                return self._problem(400, "The request body is not valid JSON")
            if not isinstance(payload, dict) or not isinstance(payload.get("input"), dict):
                return self._problem(422, "input: is required and must be an object")
            owner, name = request.path_params.get("owner"), request.path_params.get("name")
            if owner is None:
                version = payload.get("version")
                if not isinstance(version, str) or not version:
                    return self._problem(422, "version: is required")
                model = "community/model"
            else:
                version = uuid.uuid4().hex * 2
                model = f"{owner}/{name}"
            inp = payload["input"]
            if not str(inp.get("prompt", "")).strip():
                return self._problem(422, "input.prompt: is required")
            seed = inp.get("seed")
            p = _Prediction(
                id=uuid.uuid4().hex[:26],
                model=model,
                version=version,
                input=inp,
                created=time.monotonic(),
                seed=int(seed) if isinstance(seed, int) else self._rng.randrange(1, 2**31),
            )
            with self._plock:
                self.predictions[p.id] = p
            headers = {}
            prefer = request.headers.get("prefer", "")
            m = re.match(r"^\s*wait(?:=(\d+))?\s*$", prefer)
            if m:
                headers["Preference-Applied"] = "wait"
                limit = time.monotonic() + min(60, int(m.group(1) or 60))
                while time.monotonic() < limit and self._status(p, time.monotonic()) not in (
                    "succeeded",
                    "failed",
                    "canceled",
                ):
                    await asyncio.sleep(0.005)
            return JSONResponse(self._json(p), status_code=201, headers=headers)

        def lookup(request: Request) -> _Prediction | Response:
            if not self._authorised(request):
                return self._problem(401, "You did not pass a valid authentication token")
            p = self.predictions.get(request.path_params["pid"])
            if p is None:
                return self._problem(404, "The requested resource could not be found.")
            return p

        async def get(request: Request) -> Response:
            p = lookup(request)
            return p if isinstance(p, Response) else JSONResponse(self._json(p))

        async def cancel(request: Request) -> Response:
            p = lookup(request)
            if isinstance(p, Response):
                return p
            self.cancels.append(p.id)
            if self._status(p, time.monotonic()) in ("starting", "processing"):
                p.canceled_at = time.monotonic()
            return JSONResponse(self._json(p))

        async def files(request: Request) -> Response:
            # file URLs are signed CDN links: no token needed (or expected)
            p = self.predictions.get(request.path_params["pid"])
            index = int(request.path_params["index"])
            if p is None or index >= len(p.outputs):
                return Response(b"not found", status_code=404, media_type="text/plain")
            return Response(p.outputs[index], media_type="image/png")

        async def account(request: Request) -> Response:
            if not self._authorised(request):
                return self._problem(401, "You did not pass a valid authentication token")
            return JSONResponse({"type": "user", "username": "fake", "name": "Fake User"})

        return Starlette(
            routes=[
                Route("/v1/models/{owner}/{name}/predictions", create, methods=["POST"]),
                Route("/v1/predictions", create, methods=["POST"]),
                Route("/v1/predictions/{pid}", get, methods=["GET"]),
                Route("/v1/predictions/{pid}/cancel", cancel, methods=["POST"]),
                Route("/files/{pid}/{index:int}.png", files, methods=["GET"]),
                Route("/v1/account", account, methods=["GET"]),
            ]
        )
