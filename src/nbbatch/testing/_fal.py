"""A loopback fake of the fal.ai queue API (submit, status, result, cancel, files)."""

from __future__ import annotations

import base64
import json
import random
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

__all__ = ["FakeFal"]


@dataclass
class _Job:
    id: str
    model: str
    input: dict[str, Any]
    created: float
    seed: int
    cancelled: bool = False
    outputs: list[bytes] = field(default_factory=list)
    #: status requests answered so far (the clock when the fake counts polls)
    polls: int = 0


class FakeFal(FakeServer):
    """fal's queue on 127.0.0.1: submit → status → result, plus cancel.

    A request is ``IN_QUEUE`` for ``queue_seconds`` (``queue_position`` counting down),
    ``IN_PROGRESS`` for ``run_seconds`` (logs ``step k/n``), then ``COMPLETED``. With
    ``queue_polls`` / ``run_polls`` set, the clock is the number of status polls
    instead (so many polls queued, so many running): tests then do not race time.
    Prompt words: ``nsfw`` → every image flagged in ``has_nsfw_concepts``; ``failme`` →
    the status carries an ``error`` and the result answers 500. ``output_mode="data"``
    returns ``data:`` URIs instead of file URLs. ``cancels`` lists cancelled ids.
    """

    name = "fal"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        queue_seconds: float = 0.0,
        run_seconds: float = 0.03,
        queue_polls: int | None = None,
        run_polls: int | None = None,
        output_mode: str = "url",
        image_side: int = 64,
    ) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.queue_polls = queue_polls
        self.run_polls = run_polls
        self.output_mode = output_mode
        self.image_side = image_side
        self.jobs: dict[str, _Job] = {}
        self.cancels: list[str] = []
        #: what the Platform API's billing answer says is left (USD)
        self.balance: float = 18.75
        #: False: the key has no billing read access (the Platform API answers 403)
        self.billing_access = True
        self._jlock = threading.Lock()
        self._rng = random.Random(11)

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        return {"detail": message}, "application/json"

    def _denied(self, request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        key = auth[4:].strip() if auth.startswith("Key ") else ""
        if not key or (self.api_key is not None and key != self.api_key):
            return JSONResponse({"detail": "Unauthorized"}, status_code=401)
        return None

    def _state(self, job: _Job) -> str:
        return self._progress(job)[0]

    def _progress(self, job: _Job) -> tuple[str, float, float]:
        """(state, share of the run done, share of the queue still ahead)."""
        if job.cancelled:
            return "COMPLETED", 1.0, 0.0
        if self.queue_polls is not None or self.run_polls is not None:
            queued, running, now = self.queue_polls or 0, self.run_polls or 0, job.polls
            if now < queued:
                return "IN_QUEUE", 0.0, (queued - now) / queued
            if now < queued + running:
                return "IN_PROGRESS", (now - queued + 1) / (running + 1), 0.0
            return "COMPLETED", 1.0, 0.0
        elapsed = time.monotonic() - job.created
        if elapsed < self.queue_seconds:
            return "IN_QUEUE", 0.0, (self.queue_seconds - elapsed) / self.queue_seconds
        if elapsed < self.queue_seconds + self.run_seconds:
            return "IN_PROGRESS", (elapsed - self.queue_seconds) / self.run_seconds, 0.0
        return "COMPLETED", 1.0, 0.0

    def _urls(self, job: _Job) -> dict[str, str]:
        root = f"{self.url}/{'/'.join(job.model.split('/')[:2])}/requests/{job.id}"
        return {
            "status_url": f"{root}/status",
            "response_url": root,
            "cancel_url": f"{root}/cancel",
        }

    def _status(self, job: _Job, with_logs: bool) -> dict[str, Any]:
        state, done, ahead = self._progress(job)
        body: dict[str, Any] = {"status": state, "request_id": job.id, **self._urls(job)}
        if state == "IN_QUEUE":
            body["queue_position"] = max(0, int(ahead * 5))
        # the real service always has the field (null unless logs were asked for):
        # fal_client reads data["logs"] for every IN_PROGRESS / COMPLETED status
        body["logs"] = None
        if with_logs:
            logs = []
            if state != "IN_QUEUE":
                steps = 8
                logs = [
                    {"message": f"step {k}/{steps}", "level": "INFO", "timestamp": "2026"}
                    for k in range(1, int(done * steps) + 1)
                ]
            body["logs"] = logs
        if state == "COMPLETED":
            if job.cancelled:
                body["error"] = "Request was cancelled"
            elif "failme" in str(job.input.get("prompt", "")).lower():
                body["error"] = "Internal error while running the model: CUDA out of memory"
        return body

    def _render(self, job: _Job) -> list[bytes]:
        if not job.outputs:
            size = job.input.get("image_size")
            w, h = (
                (size.get("width", 64), size.get("height", 64))
                if isinstance(size, dict)
                else (64, 64)
            )
            init = None
            if isinstance(job.input.get("image_url"), str):
                init = decode_data_url(job.input["image_url"], "fal")[0]
            job.outputs = [
                render_png(
                    str(job.input.get("prompt", "")),
                    job.seed + i,
                    fit_size(int(w), int(h), self.image_side),
                    init=init,
                    strength=float(job.input.get("strength") or 0.6),
                )
                for i in range(int(job.input.get("num_images") or 1))
            ]
        return job.outputs

    def build_app(self) -> ASGIApp:
        async def submit(request: Request) -> Response:
            denied = self._denied(request)
            if denied:
                return denied
            try:
                payload = json.loads(await request.body())
            except ValueError:
                return JSONResponse({"detail": "Invalid JSON body"}, status_code=400)
            if not isinstance(payload, dict) or not str(payload.get("prompt", "")).strip():
                return JSONResponse(
                    {
                        "detail": [
                            {"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}
                        ]
                    },
                    status_code=422,
                )
            seed = payload.get("seed")
            job = _Job(
                id=str(uuid.uuid4()),
                model=request.path_params["model"],
                input=payload,
                created=time.monotonic(),
                seed=int(seed) if isinstance(seed, int) else self._rng.randrange(2**31),
            )
            with self._jlock:
                self.jobs[job.id] = job
            body: dict[str, Any] = {"request_id": job.id, **self._urls(job)}
            body.update(status="IN_QUEUE", queue_position=0)
            return JSONResponse(body)

        def find(request: Request) -> _Job | Response:
            denied = self._denied(request)
            if denied:
                return denied
            job = self.jobs.get(request.path_params["rid"])
            if job is None:
                return JSONResponse({"detail": "Request not found"}, status_code=404)
            return job

        async def status(request: Request) -> Response:
            job = find(request)
            if isinstance(job, Response):
                return job
            # fal_client sends logs=true/false, the HTTP docs show logs=1
            wanted = request.query_params.get("logs", "").strip().lower() in ("1", "true")
            body = self._status(job, wanted)
            job.polls += 1
            return JSONResponse(body)

        async def result(request: Request) -> Response:
            job = find(request)
            if isinstance(job, Response):
                return job
            state = self._status(job, False)
            if state["status"] != "COMPLETED":
                return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
            if "error" in state:
                return JSONResponse({"detail": state["error"]}, status_code=500)
            outputs = self._render(job)
            nsfw = "nsfw" in str(job.input.get("prompt", "")).lower()
            images = []
            for i, data in enumerate(outputs):
                if self.output_mode == "data":
                    url = "data:image/png;base64," + base64.b64encode(data).decode()
                else:
                    url = f"{self.url}/files/{job.id}/{i}.png"
                images.append({"url": url, "content_type": "image/png", "width": 64, "height": 64})
            return JSONResponse(
                {
                    "images": images,
                    "seed": job.seed,
                    "has_nsfw_concepts": [nsfw] * len(images),
                    "prompt": job.input.get("prompt"),
                    "timings": {"inference": self.run_seconds},
                }
            )

        async def cancel(request: Request) -> Response:
            job = find(request)
            if isinstance(job, Response):
                return job
            self.cancels.append(job.id)
            if self._state(job) == "COMPLETED":
                return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
            job.cancelled = True
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

        async def files(request: Request) -> Response:
            job = self.jobs.get(request.path_params["rid"])
            index = int(request.path_params["index"])
            if job is None or index >= len(job.outputs):
                return Response(b"not found", status_code=404, media_type="text/plain")
            return Response(job.outputs[index], media_type="image/png")

        async def billing(request: Request) -> Response:
            # fal's Platform API: GET /v1/account/billing?expand=credits
            denied = self._denied(request)
            if denied:
                return denied
            if not self.billing_access:
                return JSONResponse(
                    {"detail": "API key does not have the required scope: billing:usage:read"},
                    status_code=403,
                )
            body: dict[str, Any] = {"username": "nbbatch-test"}
            if "credits" in request.query_params.getlist("expand"):
                body["credits"] = {"current_balance": self.balance, "currency": "USD"}
            return JSONResponse(body)

        return Starlette(
            routes=[
                Route("/v1/account/billing", billing, methods=["GET"]),
                Route("/files/{rid}/{index:int}.png", files, methods=["GET"]),
                Route("/{owner}/{app}/requests/{rid}/status", status, methods=["GET"]),
                Route("/{owner}/{app}/requests/{rid}/cancel", cancel, methods=["PUT"]),
                Route("/{owner}/{app}/requests/{rid}", result, methods=["GET"]),
                Route("/{model:path}", submit, methods=["POST"]),
            ]
        )
