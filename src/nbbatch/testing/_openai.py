"""A loopback fake of the OpenAI Images API.

Routes (all under ``/v1``): ``POST /images/generations`` (JSON), ``POST /images/edits``
(multipart: ``image`` or repeated ``image[]``, optional ``mask``), ``GET /models``, and
``GET /files/{name}`` serving the images of URL-style responses. Errors use OpenAI's
``{"error": {"message", "type", "param", "code"}}`` body.

Switches: ``latency`` (every request), ``api_key`` (require this bearer key, 401
otherwise), ``response`` (``"b64"`` like GPT image models, or ``"url"`` like DALL·E;
``response_format="url"`` in a request gives URLs and ``"b64_json"`` base64, whatever
``response`` says), ``refuse_words`` (prompts
containing one get the 400 ``moderation_blocked`` refusal), ``max_side`` (rendered
images are scaled down to this, to stay small and fast), ``render="fast"`` (paint one
picture per size and make each answer distinct with a PNG text chunk: for benchmarks,
where painting every image would make the fake the bottleneck) and ``echo_key`` (a
hostile server that echoes the full key in its 401 message, for leak tests). Faults come from
:class:`~nbbatch.testing.Fault` (``server.add_fault(...)``).

The Batch API (``/v1/files``, ``/v1/batches``) is there too (see ``_openai_batch``):
``batch_clock`` (a :class:`~nbbatch.testing.BatchClock` the test advances; by default
the real clock, so a job completes by itself within about a second), ``batch_timing``
(seconds spent validating, in progress and finalizing) and ``batch_window`` (the
completion window, in seconds of that clock). ``server.batch_api.created`` lists every
job created.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._openai_batch import OpenAIBatches
from ._render import fit_size, parse_multipart, render_png, stamp_png
from ._server import ASGIApp, FakeServer

__all__ = ["FakeOpenAI"]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def _error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


class FakeOpenAI(FakeServer):
    """OpenAI Images over real HTTP on 127.0.0.1 (use ``server.url + "/v1"`` as base URL)."""

    name = "openai"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        response: str = "b64",
        refuse_words: Sequence[str] = ("forbidden",),
        max_side: int = 128,
        render: str = "full",
        echo_key: bool = False,
        batch_clock: Callable[[], float] | None = None,
        batch_timing: tuple[float, float, float] = (0.1, 0.6, 0.1),
        batch_window: float = 24 * 3600.0,
    ) -> None:
        super().__init__(latency=latency)
        if response not in ("b64", "url"):
            raise ValueError("response must be 'b64' or 'url'")
        if render not in ("full", "fast"):
            raise ValueError("render must be 'full' or 'fast'")
        self.render = render
        self.api_key = api_key
        self.response = response
        self.refuse_words = tuple(w.lower() for w in refuse_words)
        self.max_side = max_side
        self.echo_key = echo_key
        #: parsed bodies of the generation / edit requests the fake accepted
        self.generations: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self._files: dict[str, bytes] = {}
        self._painted: dict[tuple[int, int], bytes] = {}
        self._ids = itertools.count(1)
        #: the Batch API's files and jobs
        self.batch_api = OpenAIBatches(
            self._batch_answer,
            _error,
            clock=batch_clock,
            timing=batch_timing,
            window=batch_window,
        )

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        type_, code = _ERROR_TYPES.get(status, ("server_error", None))
        return {"error": {"message": message, "type": type_, "param": None, "code": code}}, (
            "application/json"
        )

    def stop(self) -> None:
        super().stop()
        self.batch_api.close()

    def _batch_answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) the synchronous endpoint would give for a batch line."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return 400, {
                "error": {
                    "message": "Missing required parameter: 'prompt'.",
                    "type": "invalid_request_error",
                    "param": "prompt",
                    "code": "missing_required_parameter",
                }
            }
        init = None
        images = body.get("images")
        if images is not None:  # an edit: JSON with files uploaded before
            found = [
                self.batch_api.files.get(str(i.get("file_id"))) if isinstance(i, dict) else None
                for i in images
                if isinstance(images, list)
            ]
            if not found or None in found:
                return 400, {
                    "error": {
                        "message": "Invalid 'images': each needs the id of an uploaded file.",
                        "type": "invalid_request_error",
                        "param": "images",
                        "code": "invalid_value",
                    }
                }
            data = [f.path.read_bytes() for f in found if f is not None]
            self.edits.append({"fields": body, "images": data, "mask": None})
            init = data[0]
        else:
            self.generations.append(body)
        response = self._answer(prompt, body, init)
        return response.status_code, json.loads(bytes(response.body))

    # ------------------------------------------------------------------ helpers
    def _auth_error(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if given == self.api_key:
            return None
        shown = given if self.echo_key else (given[:3] + "*" * 8 + given[-4:] if given else "")
        return _error(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    def _refusal(self, prompt: str, model: str) -> Response | None:
        lowered = prompt.lower()
        if not any(w and w in lowered for w in self.refuse_words):
            return None
        if model.startswith("dall-e"):
            return _error(
                400,
                "Your request was rejected as a result of our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            )
        return _error(
            400,
            "Your request was rejected by the safety system. If you believe this is an "
            "error, contact us at help.openai.com and include the request ID.",
            "image_generation_user_error",
            "moderation_blocked",
        )

    def _size(self, size: str | None) -> tuple[int, int] | Response:
        if size in (None, "", "auto"):
            return fit_size(1024, 1024, self.max_side)
        try:
            w, h = (int(v) for v in str(size).lower().split("x"))
        except ValueError:
            return _error(
                400,
                f"Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', "
                "'1536x1024', and 'auto'.",
                "invalid_request_error",
                "invalid_value",
                "size",
            )
        return fit_size(w, h, self.max_side)

    def _answer(
        self,
        prompt: str,
        fields: dict[str, Any],
        init: bytes | None,
    ) -> Response:
        model = str(fields.get("model") or "dall-e-2")
        refused = self._refusal(prompt, model)
        if refused is not None:
            return refused
        try:
            n = int(fields.get("n", 1))
        except (TypeError, ValueError):
            n = 0
        if not 1 <= n <= 10:
            return _error(
                400,
                f"Invalid 'n': integer between 1 and 10 expected, got {fields.get('n')!r}.",
                "invalid_request_error",
                "invalid_value",
                "n",
            )
        size = self._size(fields.get("size"))
        if isinstance(size, Response):
            return size
        fmt = str(fields.get("output_format") or "png").lower()
        if fmt not in ("png", "jpeg", "webp"):
            fmt = "png"
        asked = fields.get("response_format")
        if asked not in (None, "", "url", "b64_json"):
            return _error(
                400,
                f"Invalid value: '{asked}'. Supported values are: 'url' and 'b64_json'.",
                "invalid_request_error",
                "invalid_value",
                "response_format",
            )
        # a request's own response_format wins over the server's default style
        as_url = asked == "url" or (
            asked != "b64_json" and self.response == "url" and not model.startswith("gpt-image")
        )
        base_seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
        data = []
        for i in range(n):
            if self.render == "fast" and fmt == "png" and init is None:
                if size not in self._painted:
                    self._painted[size] = render_png("nbbatch fake", 0, size)
                raw = stamp_png(self._painted[size], f"{prompt} #{base_seed + i}")
            else:
                raw = render_png(prompt, base_seed + i, size, fmt=fmt, init=init)
            if as_url:
                name = f"img-{next(self._ids)}.{fmt}"
                self._files[name] = raw
                item: dict[str, Any] = {"url": f"{self.url}/v1/files/{name}"}
            else:
                item = {"b64_json": base64.b64encode(raw).decode()}
            if model == "dall-e-3":
                item["revised_prompt"] = f"A detailed picture of {prompt}"
            data.append(item)
        body: dict[str, Any] = {"created": int(time.time()), "data": data}
        if not model.startswith("dall-e"):
            w, h = size
            body.update(
                background=fields.get("background") or "opaque",
                output_format=fmt,
                quality=fields.get("quality") or "medium",
                size=f"{w}x{h}",
                usage={
                    "input_tokens": len(prompt.split()) + (258 if init else 0),
                    "input_tokens_details": {
                        "image_tokens": 258 if init else 0,
                        "text_tokens": len(prompt.split()),
                    },
                    "output_tokens": 272 * n,
                    "total_tokens": len(prompt.split()) + 272 * n + (258 if init else 0),
                },
            )
        return JSONResponse(body)

    # ------------------------------------------------------------------ routes
    def build_app(self) -> ASGIApp:
        async def generations(request: Request) -> Response:
            denied = self._auth_error(request)
            if denied is not None:
                return denied
            try:
                fields = json.loads(await request.body())
            except ValueError:
                return _error(
                    400,
                    "We could not parse the JSON body of your request.",
                    "invalid_request_error",
                    None,
                )
            if not isinstance(fields, dict) or not isinstance(fields.get("prompt"), str):
                return _error(
                    400,
                    "Missing required parameter: 'prompt'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                    "prompt",
                )
            self.generations.append(fields)
            return self._answer(fields["prompt"], fields, None)

        async def edits(request: Request) -> Response:
            denied = self._auth_error(request)
            if denied is not None:
                return denied
            try:
                parts = parse_multipart(
                    request.headers.get("content-type", ""), await request.body()
                )
            except ValueError as exc:
                return _error(400, str(exc), "invalid_request_error", None)
            fields: dict[str, Any] = {p.name: p.text for p in parts if p.filename is None}
            images = [p for p in parts if p.name in ("image", "image[]") and p.filename]
            mask = next((p for p in parts if p.name == "mask"), None)
            self.edits.append(
                {
                    "fields": fields,
                    "image_fields": [p.name for p in images],
                    "image_names": [p.filename for p in images],
                    "images": [p.data for p in images],
                    "mask": mask.data if mask else None,
                }
            )
            if "prompt" not in fields:
                return _error(
                    400,
                    "Missing required parameter: 'prompt'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                    "prompt",
                )
            if not images:
                return _error(
                    400,
                    "Missing required parameter: 'image'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                    "image",
                )
            return self._answer(fields["prompt"], fields, images[0].data)

        async def models(request: Request) -> Response:
            denied = self._auth_error(request)
            if denied is not None:
                return denied
            ids = ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-3"]
            return JSONResponse(
                {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "owned_by": "system"} for m in ids],
                }
            )

        async def files(request: Request) -> Response:
            name = request.path_params["name"]
            if name not in self._files:
                denied = self._auth_error(request)
                if denied is not None:
                    return denied
                info = self.batch_api.file_info(name)
                if info is not None:
                    return info
            raw = self._files.get(name)
            if raw is None:
                return Response(b"not found", status_code=404, media_type="text/plain")
            ext = name.rsplit(".", 1)[-1]
            return Response(raw, media_type=f"image/{ext}")

        return Starlette(
            routes=[
                Route("/v1/images/generations", generations, methods=["POST"]),
                Route("/v1/images/edits", edits, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"]),
                Route("/v1/files/{name}", files, methods=["GET"]),
                *self.batch_api.routes(self._auth_error),
            ]
        )
