"""A loopback fake of the Stable Diffusion WebUI API (A1111 / Forge, protocols §3).

Routes under ``/sdapi/v1``: ``txt2img`` and ``img2img`` (blocking, one job at a time
behind a lock as in the real server), ``progress`` (polled concurrently), ``interrupt``,
``skip``, ``sd-models``, ``samplers`` and ``options``. Answers carry bare base64 PNGs and
the ``info`` JSON *string* with ``all_seeds``.

Switches: ``latency`` (every request), ``step_delay`` (seconds per simulated sampling
step; progress moves step by step), ``max_simulated_steps`` (cap on simulated steps so
``steps=30`` stays fast), ``auth=("user", "pass")`` (HTTP Basic like ``--api-auth``),
``style="a1111"`` (``{"error", "detail", "body", "errors"}`` error bodies) or ``"forge"``
(FastAPI ``{"detail": ...}``), ``extra_images`` (ControlNet-style maps appended after the
batch) and ``max_side`` (rendered images are scaled down to this).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import secrets
import time
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._render import fit_size, render_png
from ._server import ASGIApp, FakeServer

__all__ = ["FakeA1111"]

_CHECKPOINTS = (
    ("v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly", "6ce0161689"),
    ("sd_xl_base_1.0.safetensors [31e35c80fc]", "sd_xl_base_1.0", "31e35c80fc"),
)
_SAMPLERS = ("Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DDIM")


class FakeA1111(FakeServer):
    """A1111 / Forge WebUI over real HTTP on 127.0.0.1 (base URL: ``server.url``)."""

    name = "a1111"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        step_delay: float = 0.0,
        max_simulated_steps: int = 10,
        auth: tuple[str, str] | None = None,
        style: str = "a1111",
        extra_images: int = 0,
        max_side: int = 96,
        samplers: Sequence[str] = _SAMPLERS,
    ) -> None:
        super().__init__(latency=latency)
        if style not in ("a1111", "forge"):
            raise ValueError("style must be 'a1111' or 'forge'")
        self.step_delay = step_delay
        self.max_simulated_steps = max_simulated_steps
        self.auth = auth
        self.style = style
        self.extra_images = extra_images
        self.max_side = max_side
        self.samplers = tuple(samplers)
        self.checkpoint = _CHECKPOINTS[0][0]
        #: parsed bodies of accepted txt2img / img2img requests, in order
        self.jobs: list[dict[str, Any]] = []
        self.interrupts = 0
        #: prompts of the jobs an interrupt cut short (they still answer 200, as the
        #: real WebUI does), and the number of jobs that have finished either way
        self.interrupted: list[str] = []
        self.finished = 0
        self._state: dict[str, Any] = self._idle_state()
        self._job_lock: asyncio.Lock | None = None
        self._rng = random.Random()

    @staticmethod
    def _idle_state() -> dict[str, Any]:
        return {
            "skipped": False,
            "interrupted": False,
            "stopping_generation": False,
            "job": "",
            "job_count": 0,
            "job_timestamp": "0",
            "job_no": 0,
            "sampling_step": 0,
            "sampling_steps": 0,
        }

    # ------------------------------------------------------------------ errors
    def error_body(self, status: int, detail: Any, exc: str = "HTTPException") -> dict[str, Any]:
        if self.style == "forge":
            return {"detail": detail}
        return {"error": exc, "detail": detail, "body": "", "errors": ""}

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        return self.error_body(status, message), "application/json"

    def _error(self, status: int, detail: Any, exc: str = "HTTPException") -> JSONResponse:
        return JSONResponse(self.error_body(status, detail, exc), status_code=status)

    def _check_auth(self, request: Request) -> Response | None:
        if self.auth is None:
            return None
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            detail = "Not authenticated"
        else:
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, ValueError):
                user, password = "", ""
            if secrets.compare_digest(f"{user}:{password}", ":".join(self.auth)):
                return None
            detail = "Incorrect username or password"
        # FastAPI's HTTPBasic dependency answers before any middleware: plain detail body
        return JSONResponse(
            {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Basic"}
        )

    # ------------------------------------------------------------------ generation
    async def _generate(self, request: Request, img2img: bool) -> Response:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body"],
                            "msg": "value is not a valid dict",
                            "type": "type_error.dict",
                        }
                    ]
                },
                status_code=422,
            )
        for key, kind in (("steps", int), ("batch_size", int), ("width", int), ("height", int)):
            if key in body and (not isinstance(body[key], kind) or isinstance(body[key], bool)):
                return JSONResponse(
                    {
                        "detail": [
                            {
                                "loc": ["body", key],
                                "msg": "value is not a valid integer",
                                "type": "type_error.integer",
                            }
                        ]
                    },
                    status_code=422,
                )
        sampler = body.get("sampler_name") or body.get("sampler_index") or "Euler"
        if sampler not in self.samplers:
            return self._error(400, "Sampler not found")
        init: bytes | None = None
        if img2img:
            images = body.get("init_images")
            if not images:
                return self._error(404, "Init image not found")
            raw = str(images[0])
            if raw.startswith("data:"):
                raw = raw.split(",", 1)[1]
            try:
                init = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                return self._error(500, "Invalid encoded image", "Exception")
        self.jobs.append(body)
        if self._job_lock is None:
            self._job_lock = asyncio.Lock()
        async with self._job_lock:
            return await self._run_job(body, sampler, init)

    async def _run_job(self, body: dict[str, Any], sampler: str, init: bytes | None) -> Response:
        steps = int(body.get("steps") or 20)
        batch = max(1, int(body.get("batch_size") or 1))
        width, height = int(body.get("width") or 512), int(body.get("height") or 512)
        seed = int(body.get("seed", -1))
        if seed == -1:
            seed = self._rng.randrange(2**32)
        checkpoint = (body.get("override_settings") or {}).get("sd_model_checkpoint") or (
            self.checkpoint
        )
        model = next((c for c in _CHECKPOINTS if checkpoint in c), None)
        model_name, model_hash = (model[1], model[2]) if model else (str(checkpoint), None)
        simulated = max(1, min(steps, self.max_simulated_steps))
        self._state = self._idle_state() | {
            "job": "txt2img" if init is None else "img2img",
            "job_count": 1,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
            "sampling_steps": simulated,
        }
        try:
            for step in range(simulated):
                if self._state["interrupted"]:
                    self.interrupted.append(str(body.get("prompt", "")))
                    break
                if self.step_delay:
                    await asyncio.sleep(self.step_delay)
                self._state["sampling_step"] = step + 1
            size = fit_size(width, height, self.max_side)
            prompt = str(body.get("prompt", ""))
            strength = float(body.get("denoising_strength", 0.75))
            seeds = [seed + i for i in range(batch)]
            images = [render_png(prompt, s, size, init=init, strength=strength) for s in seeds]
            images += [render_png("control map", i, size) for i in range(self.extra_images)]
        finally:
            self._state = self._idle_state()
            self.finished += 1
        negative = str(body.get("negative_prompt", ""))
        infotexts = [
            f"{prompt}\nNegative prompt: {negative}\nSteps: {steps}, Sampler: {sampler}, "
            f"CFG scale: {body.get('cfg_scale', 7.0)}, Seed: {s}, Size: {width}x{height}, "
            f"Model hash: {model_hash}, Model: {model_name}"
            for s in seeds
        ]
        info = {
            "prompt": prompt,
            "all_prompts": [prompt] * batch,
            "negative_prompt": negative,
            "all_negative_prompts": [negative] * batch,
            "seed": seed,
            "all_seeds": seeds,
            "subseed": seed + 1000,
            "all_subseeds": [seed + 1000 + i for i in range(batch)],
            "subseed_strength": 0,
            "width": width,
            "height": height,
            "sampler_name": sampler,
            "cfg_scale": body.get("cfg_scale", 7.0),
            "steps": steps,
            "batch_size": batch,
            "restore_faces": False,
            "sd_model_name": model_name,
            "sd_model_hash": model_hash,
            "denoising_strength": body.get("denoising_strength") if init else None,
            "extra_generation_params": {},
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": [],
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": "fake-1.10.1",
        }
        params = dict(body)
        if init is not None and not body.get("include_init_images"):
            params["init_images"] = None
            params["mask"] = None
        return JSONResponse(
            {
                "images": [base64.b64encode(im).decode() for im in images],
                "parameters": params,
                "info": json.dumps(info),
            }
        )

    def _progress(self) -> dict[str, Any]:
        st = dict(self._state)
        if not st["job_count"]:
            return {
                "progress": 0,
                "eta_relative": 0,
                "state": st,
                "current_image": None,
                "textinfo": None,
            }
        fraction = 0.01 + st["job_no"] / st["job_count"]
        if st["sampling_steps"]:
            fraction += st["sampling_step"] / st["sampling_steps"] / st["job_count"]
        left = (st["sampling_steps"] - st["sampling_step"]) * self.step_delay
        return {
            "progress": min(fraction, 1.0),
            "eta_relative": left,
            "state": st,
            "current_image": None,
            "textinfo": None,
        }

    # ------------------------------------------------------------------ routes
    def build_app(self) -> ASGIApp:
        async def txt2img(request: Request) -> Response:
            return await self._generate(request, img2img=False)

        async def img2img(request: Request) -> Response:
            return await self._generate(request, img2img=True)

        async def progress(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            body = self._progress()
            if (
                request.query_params.get("skip_current_image") == "false"
                and body["state"]["job_count"]
            ):
                preview = render_png("preview", body["state"]["sampling_step"], (32, 32))
                body["current_image"] = base64.b64encode(preview).decode()
            return JSONResponse(body)

        async def interrupt(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            self.interrupts += 1
            if self._state["job_count"]:
                self._state["interrupted"] = True
            return JSONResponse({})

        async def skip(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            self._state["skipped"] = True
            return JSONResponse(None)

        async def sd_models(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            return JSONResponse(
                [
                    {
                        "title": t,
                        "model_name": n,
                        "hash": h,
                        "sha256": None,
                        "filename": f"/models/Stable-diffusion/{n}.safetensors",
                        "config": None,
                    }
                    for t, n, h in _CHECKPOINTS
                ]
            )

        async def samplers(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            return JSONResponse([{"name": s, "aliases": [], "options": {}} for s in self.samplers])

        async def options(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            if request.method == "POST":
                body = json.loads(await request.body() or b"{}")
                wanted = body.get("sd_model_checkpoint")
                if wanted is not None:
                    if not any(wanted in c for c in _CHECKPOINTS):
                        return self._error(500, f"model {wanted!r} not found", "RuntimeError")
                    self.checkpoint = wanted
                return JSONResponse(None)
            return JSONResponse({"sd_model_checkpoint": self.checkpoint, "samples_format": "png"})

        return Starlette(
            routes=[
                Route("/sdapi/v1/txt2img", txt2img, methods=["POST"]),
                Route("/sdapi/v1/img2img", img2img, methods=["POST"]),
                Route("/sdapi/v1/progress", progress, methods=["GET"]),
                Route("/sdapi/v1/interrupt", interrupt, methods=["POST"]),
                Route("/sdapi/v1/skip", skip, methods=["POST"]),
                Route("/sdapi/v1/sd-models", sd_models, methods=["GET"]),
                Route("/sdapi/v1/samplers", samplers, methods=["GET"]),
                Route("/sdapi/v1/options", options, methods=["GET", "POST"]),
            ]
        )
