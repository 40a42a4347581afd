"""A loopback fake of the Stable Diffusion WebUI API (A1111 / Forge, protocols §3).

Routes under ``/sdapi/v1``: ``txt2img`` and ``img2img`` (blocking, one job at a time
behind a lock as in the real server), ``progress`` (polled concurrently), ``interrupt``,
``skip``, ``sd-models``, ``samplers``, ``schedulers`` and ``options``. Answers carry bare
base64 PNGs with the server's own ``parameters`` infotext, and the ``info`` JSON
*string* with ``all_seeds``, ``infotexts`` and ``job_timestamp``.

It behaves like AUTOMATIC1111 1.10 where a client depends on it:

* one server-wide state: ``/progress`` describes whatever job runs, for every client;
  ``job_timestamp`` (to the second) and ``job_no`` stay after the job ends, ``job`` is
  ``scripts_txt2img`` / ``scripts_img2img`` while it runs, ``current_task`` is always
  ``null`` (1.10 and Forge import it once, at start-up);
* while a job loads its checkpoint ``job_count`` is -1: progress 0.01 and a large
  ``eta_relative``;
* ``sampling_step`` is the index of the last step done (0-based, as the sampler's
  callback sets it) and goes back to 0 when the latent has been decoded, as ``job_no``
  goes up (``State.nextjob()``);
* ``interrupt`` sets a flag that the job notices when its next step begins: the step
  under way ends, an interrupt during the last step stops nothing, and the job answers
  200 with what it has; the next job's start clears the flag, so an interrupt sent
  between jobs is lost;
* a job whose client has gone away still runs (and one waiting on the lock still starts);
* an unknown sampler falls back to the first one and an unknown checkpoint to the first
  listed (both 200), as 1.10 does; ``unknown_sampler="error"`` gives older versions' 400
  "Sampler not found" and ``unknown_checkpoint="error"`` Forge's 500;
* sizes are rendered rounded down to multiples of 8 (the latent is 1/8 of the image)
  while ``info`` and the infotext keep the size asked for; ``init_images: []`` is a 500.

Switches: ``latency`` (every request), ``step_delay`` (seconds per simulated sampling
step), ``max_simulated_steps`` (cap on simulated steps so ``steps=30`` stays fast),
``load_delay`` (seconds to "load" a checkpoint that is not the loaded one),
``auth=("user", "pass")`` (HTTP Basic like ``--api-auth``), ``style="a1111"``
(``{"error", "detail", "body", "errors"}`` error bodies) or ``"forge"`` (FastAPI
``{"detail": ...}``), ``extra_images`` (ControlNet-style maps appended after the batch)
and ``max_side`` (rendered images are scaled down to this).

Tests drive jobs step by step without timing: :meth:`FakeA1111.hold` stops every job at
its next checkpoint (the model load, then inside each step, then the decode) and
:meth:`FakeA1111.release` lets it go on, by a number of checkpoints or freely.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import random
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, PngImagePlugin
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
#: 1.10 lists plain sampler names (the first is the default); "DPM++ 2M Karras" style
#: names still work, split into sampler and schedule type
_SAMPLERS = ("DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "Euler a", "Euler", "LMS", "Heun", "DDIM")
_SCHEDULERS = (
    ("automatic", "Automatic"),
    ("uniform", "Uniform"),
    ("karras", "Karras"),
    ("exponential", "Exponential"),
    ("sgm_uniform", "SGM Uniform"),
)
VERSION = "v1.10.1"


@dataclass
class JobRun:
    """One job the fake ran (for tests): what it was, how far it got, how it ended."""

    prompt: str
    steps: int
    steps_done: int = 0
    interrupted: bool = False
    finished: bool = False


class FakeA1111(FakeServer):
    """A1111 / Forge WebUI over real HTTP on 127.0.0.1 (base URL: ``server.url``)."""

    name = "a1111"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        step_delay: float = 0.0,
        max_simulated_steps: int = 10,
        load_delay: float = 0.0,
        auth: tuple[str, str] | None = None,
        style: str = "a1111",
        extra_images: int = 0,
        max_side: int = 96,
        samplers: Sequence[str] = _SAMPLERS,
        unknown_sampler: str = "fallback",
        unknown_checkpoint: str = "fallback",
    ) -> None:
        super().__init__(latency=latency)
        if style not in ("a1111", "forge"):
            raise ValueError("style must be 'a1111' or 'forge'")
        if unknown_sampler not in ("fallback", "error"):
            raise ValueError("unknown_sampler must be 'fallback' or 'error'")
        if unknown_checkpoint not in ("fallback", "error"):
            raise ValueError("unknown_checkpoint must be 'fallback' or 'error'")
        self.step_delay = step_delay
        self.max_simulated_steps = max_simulated_steps
        self.load_delay = load_delay
        self.auth = auth
        self.style = style
        self.extra_images = extra_images
        self.max_side = max_side
        self.samplers = tuple(samplers)
        self.unknown_sampler = unknown_sampler
        self.unknown_checkpoint = unknown_checkpoint
        self.checkpoint = _CHECKPOINTS[0][0]
        #: parsed bodies of accepted txt2img / img2img requests, in order
        self.jobs: list[dict[str, Any]] = []
        #: every job that started running, in order (``JobRun``)
        self.runs: list[JobRun] = []
        self.interrupts = 0
        #: prompts of the jobs an interrupt cut short (they still answer 200, as the
        #: real WebUI does), and the number of jobs that have finished either way
        self.interrupted: list[str] = []
        self.finished = 0
        #: jobs accepted and not finished yet (running or waiting on the lock)
        self.active = 0
        self._state: dict[str, Any] = {
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
        self._time_start = time.time()
        self._job_lock: asyncio.Lock | None = None
        self._rng = random.Random()
        self._gate = threading.Lock()
        #: checkpoints jobs may still pass (``None``: run freely)
        self._permits: int | None = None

    # ------------------------------------------------------------------ test control
    @property
    def state(self) -> dict[str, Any]:
        """A copy of the server-wide state ``/progress`` reports."""
        return dict(self._state)

    @property
    def steps_done(self) -> int:
        """Steps the latest job has finished (0 before any job ran)."""
        return self.runs[-1].steps_done if self.runs else 0

    def hold(self) -> None:
        """Stop every job at its next checkpoint: the model load, each step (under way,
        its index not yet in ``sampling_step``), the decode after the last step."""
        with self._gate:
            self._permits = 0

    def release(self, checkpoints: int | None = None) -> None:
        """Let jobs pass ``checkpoints`` more checkpoints, or run freely (``None``)."""
        with self._gate:
            if checkpoints is None:
                self._permits = None
            else:
                self._permits = (self._permits or 0) + checkpoints

    async def _checkpoint(self) -> None:
        while True:
            with self._gate:
                if self._permits is None:
                    return
                if self._permits > 0:
                    self._permits -= 1
                    return
            await asyncio.sleep(0.002)

    def go_down(self) -> None:
        """Stop listening, as a WebUI being restarted does: the running job and the ones
        waiting on its lock are lost (their clients' connections drop)."""
        self.stop()
        self._job_lock = None
        self.active = 0
        self._state.update(job="", job_count=0, interrupted=False, skipped=False)

    def come_back(self) -> FakeA1111:
        """Listen again on the same port (the restarted WebUI, idle)."""
        self.start()
        return self

    def reset(self) -> None:
        """Forget recorded jobs, faults and requests (for a server shared by tests)."""
        self.clear_faults()
        self.requests.clear()
        self.jobs.clear()
        self.runs.clear()
        self.interrupted.clear()
        self.interrupts = self.finished = 0
        self.release()

    # ------------------------------------------------------------------ errors
    def error_body(self, status: int, detail: Any, exc: str = "HTTPException") -> dict[str, Any]:
        if self.style == "forge":
            return {"detail": detail}
        return {"error": exc, "detail": detail, "body": "", "errors": ""}

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        return self.error_body(status, message), "application/json"

    def _error(
        self, status: int, detail: Any, exc: str = "HTTPException", errors: str = ""
    ) -> JSONResponse:
        body = self.error_body(status, detail, exc)
        if errors and self.style == "a1111":
            body["errors"] = errors
        return JSONResponse(body, status_code=status)

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

    # ------------------------------------------------------------------ samplers, models
    def _sampler_and_scheduler(self, name: str, scheduler: str | None) -> tuple[str, str] | None:
        """(sampler, schedule type) as 1.10 resolves them; ``None``: unknown sampler."""
        label = next((lab for n, lab in _SCHEDULERS if scheduler in (n, lab)), "Automatic")
        for sched, lab in _SCHEDULERS:
            for option in (lab, sched):
                if name.endswith(" " + option) and name[: -len(option) - 1] in self.samplers:
                    return name[: -len(option) - 1], lab
        if name in self.samplers:
            return name, label
        return None

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
        asked = body.get("sampler_name") or body.get("sampler_index") or self.samplers[0]
        resolved = self._sampler_and_scheduler(str(asked), body.get("scheduler"))
        if resolved is None:
            if self.unknown_sampler == "error":
                return self._error(400, "Sampler not found")
            resolved = (self.samplers[0], "Automatic")  # 1.10: the default, silently
        wanted = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        unknown = wanted is not None and self._find_checkpoint(str(wanted)) is None
        if unknown and self.unknown_checkpoint == "error":
            return self._error(500, "", "RuntimeError", errors=f"model {str(wanted)!r} not found")
        init: bytes | None = None
        if img2img:
            images = body.get("init_images")
            if images is None:
                return self._error(404, "Init image not found")
            if not images:
                # 1.10 passes the empty list on and fails deep in processing
                return self._error(500, "", "IndexError", errors="list index out of range")
            raw = str(images[0])
            if raw.startswith("data:"):
                raw = raw.split(",", 1)[1]
            try:
                init = base64.b64decode(raw, validate=True)
                with Image.open(io.BytesIO(init)) as im:
                    im.verify()
            except (binascii.Error, ValueError, OSError):
                return self._error(500, "Invalid encoded image")
        self.jobs.append(body)
        if self._job_lock is None:
            self._job_lock = asyncio.Lock()
        # The job runs to its end whether or not its client is still there: a dropped
        # connection never cancels an A1111 job (nor one still waiting on the lock).
        self.active += 1
        job = asyncio.ensure_future(self._queued(body, resolved, init))
        return await asyncio.shield(job)

    async def _queued(
        self, body: dict[str, Any], sampler: tuple[str, str], init: bytes | None
    ) -> Response:
        assert self._job_lock is not None
        try:
            async with self._job_lock:
                return await self._run_job(body, sampler, init)
        finally:
            self.active -= 1

    def _find_checkpoint(self, name: str) -> tuple[str, str, str] | None:
        for title, model_name, short in _CHECKPOINTS:
            plain = title.rsplit(" [", 1)[0]
            stem = plain.rsplit(".", 1)[0]
            if name in (title, model_name, short, plain, stem, f"{stem} [{short}]"):
                return title, model_name, short
        return None

    def _begin(self, job: str) -> None:
        # as State.begin(): flags cleared, job_count -1 until processing sets it
        self._time_start = time.time()
        self._state.update(
            skipped=False,
            interrupted=False,
            stopping_generation=False,
            job=job,
            job_count=-1,
            job_no=0,
            sampling_step=0,
            job_timestamp=time.strftime("%Y%m%d%H%M%S"),
        )

    def _end(self) -> None:
        # as State.end(): job_timestamp, job_no, the step counters and the interrupt flag
        # stay
        self._state.update(job="", job_count=0)

    async def _run_job(
        self, body: dict[str, Any], sampler_schedule: tuple[str, str], init: bytes | None
    ) -> Response:
        sampler, schedule = sampler_schedule
        steps = int(body.get("steps") or 20)
        batch = max(1, int(body.get("batch_size") or 1))
        width, height = int(body.get("width") or 512), int(body.get("height") or 512)
        seed = int(body.get("seed", -1))
        if seed == -1:
            seed = self._rng.randrange(2**32)
        wanted = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        found = self._find_checkpoint(str(wanted)) if wanted is not None else None
        if found is None and wanted is not None:
            found = _CHECKPOINTS[0]  # 1.10: "Checkpoint ... not found; loading fallback"
        loaded = self._find_checkpoint(self.checkpoint) or _CHECKPOINTS[0]
        model = found or loaded
        simulated = max(1, min(steps, self.max_simulated_steps))
        prompt = str(body.get("prompt", ""))
        run = JobRun(prompt, simulated)
        self.runs.append(run)
        self._begin("scripts_txt2img" if init is None else "scripts_img2img")
        try:
            if model != loaded and self.load_delay:
                await asyncio.sleep(self.load_delay)
            await self._checkpoint()  # the model is loaded
            # launch_sampling(): the counters start again
            self._state.update(job_count=1, sampling_steps=simulated, sampling_step=0)
            # an interrupt that came before sampling: the batch loop breaks at once and
            # the answer is a 200 without images
            sampled = not self._state["interrupted"]
            if not sampled:
                run.interrupted = True
                self.interrupted.append(prompt)
            for step in range(simulated if sampled else 0):
                # The denoiser checks the flag when each of its calls begins: a step under
                # way always ends, and an interrupt during the last step stops nothing.
                if self._state["interrupted"]:
                    run.interrupted = True
                    self.interrupted.append(prompt)
                    break
                await self._checkpoint()  # held here: this step is under way
                if self.step_delay:
                    await asyncio.sleep(self.step_delay)
                # callback_state(): the index of the step just done (0-based)
                self._state["sampling_step"] = step
                run.steps_done = step + 1
            if sampled:
                await self._checkpoint()  # held here: the latent is being decoded
                # State.nextjob() after the decode: job_no up, the step counter back to 0
                self._state["job_no"] += 1
                self._state["sampling_step"] = 0
            # the latent is 1/8 of the image: sizes come back rounded down to 8
            out_w, out_h = max(8, width // 8 * 8), max(8, height // 8 * 8)
            size = fit_size(out_w, out_h, self.max_side)
            strength = float(body.get("denoising_strength", 0.75))
            seeds = [seed + i for i in range(batch)]
            negative = str(body.get("negative_prompt", ""))
            cfg = float(body.get("cfg_scale", 7.0))
            infotexts = [
                self._infotext(
                    prompt,
                    negative,
                    steps,
                    sampler,
                    schedule,
                    cfg,
                    s,
                    width,
                    height,
                    model,
                    strength if init is not None else None,
                )
                for s in seeds
            ]
            images = [
                self._with_parameters(
                    render_png(prompt, s, size, init=init, strength=strength), text
                )
                for s, text in zip(seeds, infotexts, strict=True)
                if sampled
            ]
            if sampled:
                images += [render_png("control map", i, size) for i in range(self.extra_images)]
        finally:
            self._end()
            run.finished = True
            self.finished += 1
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
            "cfg_scale": cfg,
            "steps": steps,
            "batch_size": batch,
            "restore_faces": False,
            "face_restoration_model": None,
            "sd_model_name": model[1],
            "sd_model_hash": model[2],
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": body.get("denoising_strength") if init else None,
            "extra_generation_params": {"Schedule type": schedule},
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": [],
            "job_timestamp": self._state["job_timestamp"],
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
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

    @staticmethod
    def _infotext(
        prompt: str,
        negative: str,
        steps: int,
        sampler: str,
        schedule: str,
        cfg: float,
        seed: int,
        width: int,
        height: int,
        model: tuple[str, str, str],
        strength: float | None,
    ) -> str:
        lines = [prompt]
        if negative:
            lines.append(f"Negative prompt: {negative}")
        fields = [
            f"Steps: {steps}",
            f"Sampler: {sampler}",
            f"Schedule type: {schedule}",
            f"CFG scale: {cfg}",
            f"Seed: {seed}",
            f"Size: {width}x{height}",
            f"Model hash: {model[2]}",
            f"Model: {model[1]}",
        ]
        if strength is not None:
            fields.append(f"Denoising strength: {strength}")
        fields.append(f"Version: {VERSION}")
        lines.append(", ".join(fields))
        return "\n".join(lines)

    @staticmethod
    def _with_parameters(png: bytes, text: str) -> bytes:
        """The PNG with the server's ``parameters`` text chunk, as A1111 sends it."""
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)
        out = io.BytesIO()
        with Image.open(io.BytesIO(png)) as im:
            im.save(out, format="PNG", pnginfo=info)
        return out.getvalue()

    def _progress(self) -> dict[str, Any]:
        st = dict(self._state)
        if not st["job_count"]:
            return {
                "progress": 0,
                "eta_relative": 0,
                "state": st,
                "current_image": None,
                "textinfo": None,
                "current_task": None,
            }
        fraction = 0.01
        if st["job_count"] > 0:
            fraction += st["job_no"] / st["job_count"]
            if st["sampling_steps"]:
                fraction += st["sampling_step"] / st["sampling_steps"] / st["job_count"]
        # as 1.10: time so far / progress - time so far (large while the model loads)
        elapsed = max(time.time() - self._time_start, 1e-3)
        return {
            "progress": min(fraction, 1.0),
            "eta_relative": elapsed / fraction - elapsed,
            "state": st,
            "current_image": None,
            "textinfo": None,
            "current_task": None,
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
                and body["state"]["job_count"] > 0
            ):
                preview = render_png("preview", body["state"]["sampling_step"], (32, 32))
                body["current_image"] = base64.b64encode(preview).decode()
            return JSONResponse(body)

        async def interrupt(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            # State.interrupt(): a flag, whatever runs (or nothing); the next begin()
            # clears it
            self.interrupts += 1
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

        async def schedulers(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            return JSONResponse(
                [
                    {
                        "name": n,
                        "label": lab,
                        "aliases": None,
                        "default_rho": -1,
                        "need_inner_model": False,
                    }
                    for n, lab in _SCHEDULERS
                ]
            )

        async def options(request: Request) -> Response:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            if request.method == "POST":
                body = json.loads(await request.body() or b"{}")
                wanted = body.get("sd_model_checkpoint")
                if wanted is not None:
                    if self._find_checkpoint(str(wanted)) is None:
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
                Route("/sdapi/v1/schedulers", schedulers, methods=["GET"]),
                Route("/sdapi/v1/options", options, methods=["GET", "POST"]),
            ]
        )
