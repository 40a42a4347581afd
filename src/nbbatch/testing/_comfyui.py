"""A loopback fake of the ComfyUI server: HTTP + WebSocket.

Routes (also under ``/api``): ``POST /prompt`` (validates the graph and answers the real
400 ``node_errors`` shape), ``GET /prompt``, ``GET /history/{id}`` (``{}`` until done),
``GET /view``, ``POST /upload/image`` (multipart), ``GET|POST /queue`` (``delete``),
``POST /interrupt`` (optionally ``{"prompt_id"}``), ``GET /system_stats`` and the
WebSocket ``/ws?clientId=…`` on the same port. Prompts run one at a time; the socket of
the prompt's ``client_id`` gets the events in the real order: ``status`` →
``execution_start`` → ``execution_cached`` → ``executing`` (per node) … ``progress`` …
``executed`` → ``execution_success`` → ``executing`` with ``node: null``.

Switches: ``latency`` (every HTTP request), ``step_delay`` and ``progress_steps``
(sampler ticks), ``fail_class`` + ``fail_message`` (that node class raises → an
``execution_error``), ``websocket=False`` (refuse the socket, so clients must poll),
``previews`` (binary preview frames), ``max_side`` (rendered images are scaled down) and
``interrupt_ignores_prompt_id`` (behave like older servers: ``/interrupt`` stops whatever
is running, whichever ``prompt_id`` it names).

What a real server also does, modelled here: ``POST /queue {"clear": true}`` (or
``delete``) takes prompts off the queue and broadcasts a ``status``; ``status_interval``
makes the server chatty (a ``status`` broadcast every so many seconds, as a busy shared
server sends); ``progress_state`` sends per-node progress events; ``cache`` (on by
default) answers a graph identical to the previous one at once from the cache
(``execution_cached`` lists every node, ``executed`` replays the same file names);
``seed_max`` gives each class's seed maximum, advertised in ``/object_info`` and checked
(a seed above it is a 400); :meth:`go_down` / :meth:`come_back` stop and restart the
server on the same port, losing its queue, running prompt and history as a restart does;
:meth:`hold` / :meth:`release` keep the sampler from finishing; ``drop_events`` names
event kinds never delivered (a missed event).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._render import fit_size, parse_multipart, render_png
from ._server import ASGIApp, FakeServer

__all__ = ["FakeComfyUI"]

#: node class -> required inputs (a small subset of the real node schemas)
NODE_INPUTS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CLIPTextEncode": ("text", "clip"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "KSampler": (
        "model",
        "positive",
        "negative",
        "latent_image",
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
    ),
    "VAEDecode": ("samples", "vae"),
    "VAEEncode": ("pixels", "vae"),
    "LoadImage": ("image",),
    "SaveImage": ("images", "filename_prefix"),
    "PreviewImage": ("images",),
    "CreateVideo": ("images", "fps"),
    "SaveVideo": ("video", "filename_prefix"),
}
OUTPUT_NODES = ("SaveImage", "PreviewImage", "SaveVideo")
#: seed inputs per class and their maxima (the real KSampler's is 2**64-1)
SEED_INPUTS = {"KSampler": "seed"}
SEED_MAX = {"KSampler": 0xFFFFFFFFFFFFFFFF}
_RANGES = {
    ("KSampler", "steps"): (1, 10000),
    ("KSampler", "cfg"): (0.0, 100.0),
    ("EmptyLatentImage", "width"): (16, 16384),
    ("EmptyLatentImage", "height"): (16, 16384),
    ("EmptyLatentImage", "batch_size"): (1, 4096),
    ("KSampler", "denoise"): (0.0, 1.0),
}
CHECKPOINTS = ("model.safetensors", "sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")


@dataclass
class _Job:
    prompt_id: str
    number: int
    graph: dict[str, Any]
    client_id: str | None
    outputs: list[str] = field(default_factory=list)


def stamp() -> int:
    """ComfyUI's event timestamps: milliseconds since the epoch."""
    return int(time.time() * 1000)


def _err(type_: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


class FakeComfyUI(FakeServer):
    """ComfyUI over real HTTP and WebSocket on 127.0.0.1 (base URL: ``server.url``)."""

    name = "comfyui"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        step_delay: float = 0.0,
        progress_steps: int = 4,
        fail_class: str | None = None,
        fail_message: str = "CUDA out of memory. Tried to allocate 2.00 GiB",
        websocket: bool = True,
        previews: bool = False,
        max_side: int = 96,
        interrupt_ignores_prompt_id: bool = False,
        status_interval: float | None = None,
        progress_state: bool = False,
        cache: bool = True,
    ) -> None:
        super().__init__(latency=latency)
        self.status_interval = status_interval
        self.progress_state = progress_state
        self.cache = cache
        #: seed input maximum per node class (``/object_info``; a bigger seed is a 400)
        self.seed_max: dict[str, int] = dict(SEED_MAX)
        #: event kinds never sent to a socket (still recorded in ``events``)
        self.drop_events: set[str] = set()
        #: prompts taken off the queue by a clear or delete, and prompts answered
        #: entirely from the cache
        self.removed: list[str] = []
        self.cached_prompts: list[str] = []
        self._held = False
        #: while set and not yet released, POST /prompt waits before queueing (a test
        #: can then act while a submission is in flight, without timing)
        self.prompt_gate: threading.Event | None = None
        self._last_graph: str | None = None
        self._last_outputs: dict[str, Any] = {}
        self._chatter: asyncio.Task[None] | None = None
        self._states: dict[str, dict[str, Any]] = {}
        self.step_delay = step_delay
        self.progress_steps = progress_steps
        self.fail_class = fail_class
        self.fail_message = fail_message
        self.websocket = websocket
        self.previews = previews
        self.max_side = max_side
        self.interrupt_ignores_prompt_id = interrupt_ignores_prompt_id
        #: every event sent over a socket, as (client_id, type, data)
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.history: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.deleted: list[str] = []
        self.interrupts: list[str | None] = []
        self.prompts: list[dict[str, Any]] = []
        self._sockets: dict[str, list[WebSocket]] = {}
        self._pending: list[_Job] = []
        self._running: _Job | None = None
        self._interrupted = False
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._numbers = itertools.count()
        self._file_no = itertools.count(1)

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        # aiohttp error pages are plain text; validation errors use the /prompt shape
        return f"{status}: {message}", "text/plain"

    # ------------------------------------------------------------------ validation
    def validate(self, graph: Any) -> tuple[dict[str, Any] | None, list[str]]:
        """(400 body or None, ids of the output nodes) — the checks ComfyUI makes."""
        if not isinstance(graph, dict):
            return {
                "error": _err("invalid_prompt", "Invalid prompt: not an object"),
                "node_errors": {},
            }, []
        for node_id, node in graph.items():
            cls = node.get("class_type") if isinstance(node, dict) else None
            if cls not in NODE_INPUTS:
                return {
                    "error": _err(
                        "missing_node_type",
                        f"Node '{cls}' not found. The custom node may not be installed.",
                        f"Node ID '#{node_id}'",
                        node_id=node_id,
                        class_type=cls,
                        node_title=cls,
                    ),
                    "node_errors": {},
                }, []
        outputs = [k for k, v in graph.items() if v["class_type"] in OUTPUT_NODES]
        if not outputs:
            return {
                "error": _err("prompt_no_outputs", "Prompt has no outputs"),
                "node_errors": {},
            }, []
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            cls = node["class_type"]
            inputs = node.get("inputs", {})
            errors = []
            for name in NODE_INPUTS[cls]:
                value = inputs.get(name)
                if name not in inputs:
                    errors.append(
                        _err(
                            "required_input_missing",
                            "Required input is missing",
                            name,
                            input_name=name,
                        )
                    )
                elif isinstance(value, list):
                    if len(value) != 2 or str(value[0]) not in graph:
                        errors.append(
                            _err(
                                "bad_linked_input",
                                "Bad linked input, must be a length-2 list of [string, int]",
                                name,
                                input_name=name,
                                input_config=None,
                                received_value=value,
                            )
                        )
                elif (cls, name) in _RANGES:
                    low, high = _RANGES[(cls, name)]
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        errors.append(
                            _err(
                                "invalid_input_type",
                                "Failed to convert an input value to a number",
                                f"{name}, {value}",
                                input_name=name,
                                received_value=value,
                            )
                        )
                    elif value < low:
                        errors.append(
                            _err(
                                "value_smaller_than_min",
                                f"Value {value} smaller than min of {low}",
                                f"{name}",
                                input_name=name,
                                received_value=value,
                            )
                        )
                    elif value > high:
                        errors.append(
                            _err(
                                "value_bigger_than_max",
                                f"Value {value} bigger than max of {high}",
                                f"{name}",
                                input_name=name,
                                received_value=value,
                            )
                        )
                elif SEED_INPUTS.get(cls) == name and (
                    not isinstance(value, int) or not 0 <= value <= self.seed_max.get(cls, 0)
                ):
                    high = self.seed_max.get(cls, 0)
                    errors.append(
                        _err(
                            "value_bigger_than_max"
                            if isinstance(value, int) and value > high
                            else "invalid_input_type",
                            f"Value {value} bigger than max of {high}",
                            f"{name}",
                            input_name=name,
                            received_value=value,
                        )
                    )
                elif cls == "CheckpointLoaderSimple" and value not in CHECKPOINTS:
                    errors.append(
                        _err(
                            "value_not_in_list",
                            "Value not in list",
                            f"ckpt_name: '{value}' not in {list(CHECKPOINTS)}",
                            input_name=name,
                            received_value=value,
                        )
                    )
                elif cls == "LoadImage" and value not in self.uploads:
                    errors.append(
                        _err(
                            "custom_validation_failed",
                            "Custom validation failed for node",
                            f"image - Invalid image file: {value}",
                            input_name=name,
                        )
                    )
            if errors:
                node_errors[node_id] = {
                    "errors": errors,
                    "dependent_outputs": outputs,
                    "class_type": cls,
                }
        if node_errors:
            return {
                "error": _err(
                    "prompt_outputs_failed_validation", "Prompt outputs failed validation"
                ),
                "node_errors": node_errors,
            }, []
        return None, outputs

    # ------------------------------------------------------------------ events
    async def _event(self, client_id: str | None, kind: str, data: dict[str, Any]) -> None:
        targets = (
            self._sockets.get(client_id or "", [])
            if kind != "status"
            else [ws for group in self._sockets.values() for ws in group]
        )
        self.events.append((client_id or "*", kind, data))
        if kind in self.drop_events:
            return
        for ws in list(targets):
            try:
                await ws.send_text(json.dumps({"type": kind, "data": data}))
            except Exception:
                with contextlib.suppress(ValueError, KeyError):
                    self._sockets[client_id or ""].remove(ws)

    async def _send_bytes(self, client_id: str | None, payload: bytes) -> None:
        for ws in list(self._sockets.get(client_id or "", [])):
            with contextlib.suppress(Exception):
                await ws.send_bytes(payload)

    def _queue_status(self) -> dict[str, Any]:
        remaining = len(self._pending) + (1 if self._running else 0)
        return {"status": {"exec_info": {"queue_remaining": remaining}}}

    # ------------------------------------------------------------------ execution
    @staticmethod
    def _order(graph: dict[str, Any]) -> list[str]:
        done: list[str] = []

        def visit(node_id: str, path: tuple[str, ...]) -> None:
            if node_id in done or node_id in path:
                return
            for value in graph[node_id].get("inputs", {}).values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in graph:
                    visit(str(value[0]), (*path, node_id))
            done.append(node_id)

        for node_id in sorted(graph, key=lambda k: (len(k), k)):
            visit(node_id, ())
        return done

    def _scene(
        self, graph: dict[str, Any], node_id: str
    ) -> tuple[str, int, tuple[int, int], int, bytes | None, float]:
        """(prompt, seed, size, batch, init image, strength) feeding output ``node_id``."""
        prompt, seed, size, batch, init, strength = "", 0, (512, 512), 1, None, 1.0
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in seen or current not in graph:
                continue
            seen.add(current)
            node = graph[current]
            inputs = node.get("inputs", {})
            cls = node.get("class_type")
            if cls == "KSampler":
                seed = int(inputs.get("seed", 0))
                strength = float(inputs.get("denoise", 1.0))
                positive = inputs.get("positive")
                if isinstance(positive, list) and str(positive[0]) in graph:
                    prompt = str(graph[str(positive[0])]["inputs"].get("text", ""))
            elif cls == "EmptyLatentImage":
                size = (int(inputs.get("width", 512)), int(inputs.get("height", 512)))
                batch = int(inputs.get("batch_size", 1))
            elif cls == "LoadImage":
                init = self.uploads.get(str(inputs.get("image")))
            for value in inputs.values():
                if isinstance(value, list) and len(value) == 2:
                    stack.append(str(value[0]))
        if init is not None:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(init)) as im:
                size = im.size
        return prompt, seed, fit_size(*size, self.max_side), batch, init, strength

    async def _node_state(
        self, cid: str | None, pid: str, node_id: str, state: str, value: float, top: float
    ) -> None:
        if not self.progress_state:
            return
        entry = {
            "value": value,
            "max": top,
            "state": state,
            "node_id": node_id,
            "prompt_id": pid,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        # ComfyUI sends the state of every node of the prompt seen so far
        self._states.setdefault(pid, {})[node_id] = entry
        await self._event(cid, "progress_state", {"prompt_id": pid, "nodes": self._states[pid]})

    async def _execute(self, job: _Job) -> None:
        pid, cid, graph = job.prompt_id, job.client_id, job.graph
        messages: list[list[Any]] = []
        outputs: dict[str, Any] = {}
        await self._event(cid, "status", self._queue_status())
        await self._event(cid, "execution_start", {"prompt_id": pid, "timestamp": stamp()})
        messages.append(["execution_start", {"prompt_id": pid, "timestamp": stamp()}])
        # The cache: a graph identical to the previous one is answered from it, every
        # node cached and the outputs (the same files) replayed.
        key = json.dumps(graph, sort_keys=True)
        cached = self.cache and key == self._last_graph and self.fail_class is None
        order = self._order(graph)
        await self._event(
            cid,
            "execution_cached",
            {"nodes": order if cached else [], "prompt_id": pid, "timestamp": stamp()},
        )
        status = "success"
        executed: list[str] = []
        if cached:
            self.cached_prompts.append(pid)
            outputs = json.loads(json.dumps(self._last_outputs))
            for node_id, output in outputs.items():
                await self._event(
                    cid,
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": output, "prompt_id": pid},
                )
            order = []
        for node_id in order:
            cls = graph[node_id]["class_type"]
            await self._event(
                cid, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid}
            )
            await self._node_state(cid, pid, node_id, "running", 0, 1)
            if cls == self.fail_class:
                data = {
                    "prompt_id": pid,
                    "node_id": node_id,
                    "node_type": cls,
                    "executed": executed,
                    "exception_message": self.fail_message,
                    "exception_type": "torch.OutOfMemoryError",
                    "traceback": ["Traceback (most recent call last):\n", "  ...\n"],
                    "current_inputs": {},
                    "current_outputs": [],
                    "timestamp": stamp(),
                }
                await self._event(cid, "execution_error", data)
                messages.append(["execution_error", data])
                status = "error"
                break
            if cls == "KSampler":
                for tick in range(1, self.progress_steps + 1):
                    if self._interrupted:
                        break
                    if self.step_delay:
                        await asyncio.sleep(self.step_delay)
                    await self._event(
                        cid,
                        "progress",
                        {
                            "value": tick,
                            "max": self.progress_steps,
                            "prompt_id": pid,
                            "node": node_id,
                        },
                    )
                    await self._node_state(cid, pid, node_id, "running", tick, self.progress_steps)
                    if self.previews:
                        preview = render_png("preview", tick, (32, 32), fmt="JPEG")
                        await self._send_bytes(cid, b"\0\0\0\1\0\0\0\1" + preview)
                while self._held and not self._interrupted:
                    await asyncio.sleep(0.005)
            if self._interrupted:
                data = {
                    "prompt_id": pid,
                    "node_id": node_id,
                    "node_type": cls,
                    "executed": executed,
                    "timestamp": stamp(),
                }
                await self._event(cid, "execution_interrupted", data)
                messages.append(["execution_interrupted", data])
                status = "error"
                break
            if cls == "SaveVideo":
                # ComfyUI's SaveVideo: the file is listed under "images", "animated": [true]
                prefix = str(graph[node_id]["inputs"].get("filename_prefix", "ComfyUI"))
                filename = f"{prefix}_{next(self._file_no):05}_.mp4"
                self.files[(filename, "", "output")] = b"\0\0\0\x18ftypmp42" + bytes(64)
                video = {
                    "images": [{"filename": filename, "subfolder": "", "type": "output"}],
                    "animated": [True],
                }
                outputs[node_id] = video
                await self._event(
                    cid,
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": video, "prompt_id": pid},
                )
            elif cls in OUTPUT_NODES:
                prompt, seed, size, batch, init, strength = self._scene(graph, node_id)
                kind = "output" if cls == "SaveImage" else "temp"
                prefix = str(graph[node_id]["inputs"].get("filename_prefix", "ComfyUI"))
                images = []
                for i in range(batch):
                    filename = f"{prefix}_{next(self._file_no):05}_.png"
                    self.files[(filename, "", kind)] = render_png(
                        prompt, seed + i, size, init=init, strength=strength
                    )
                    images.append({"filename": filename, "subfolder": "", "type": kind})
                outputs[node_id] = {"images": images}
                await self._event(
                    cid,
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": {"images": images},
                        "prompt_id": pid,
                    },
                )
            await self._node_state(cid, pid, node_id, "finished", 1, 1)
            executed.append(node_id)
        if status == "success":
            self._last_graph, self._last_outputs = key, outputs
            await self._event(cid, "execution_success", {"prompt_id": pid, "timestamp": stamp()})
            messages.append(["execution_success", {"prompt_id": pid, "timestamp": stamp()}])
        # History is stored before the final "executing: null", as in ComfyUI's worker.
        self.history[pid] = {
            "prompt": [job.number, pid, graph, {"client_id": cid}, job.outputs],
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {
                n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in outputs
            },
        }
        await self._event(cid, "executing", {"node": None, "prompt_id": pid})

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            job = self._pending.pop(0)
            self._running, self._interrupted = job, False
            try:
                await self._execute(job)
            finally:
                self._running = None
            await self._event(None, "status", self._queue_status())

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no prompt is queued or running (a shared fake between tests).

        A prompt whose POST was delayed by a fault can be queued after its test ended;
        without this it would still be running when the next test starts.
        """
        deadline = time.monotonic() + timeout
        while self._pending or self._running is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__} still busy after {timeout} s")
            time.sleep(0.01)

    def hold(self) -> None:
        """Keep every sampler from finishing (after its steps) until :meth:`release`."""
        self._held = True

    def release(self) -> None:
        self._held = False

    def clear_queue(self) -> None:
        """What ComfyUI's "Clear queue" does: ``POST /queue {"clear": true}``."""
        import httpx

        httpx.post(f"{self.url}/queue", json={"clear": True}, timeout=10).raise_for_status()

    def go_down(self) -> None:
        """Stop listening, as a restarting server does; its queue and history are lost."""
        self.stop()
        self._pending.clear()
        self._running = None
        self.history.clear()
        self._sockets.clear()
        self._last_graph = None
        self._wake, self._worker, self._chatter = None, None, None

    def come_back(self) -> FakeComfyUI:
        """Listen again on the same port (the restarted server, empty)."""
        return self.start()

    def start(self) -> FakeComfyUI:
        self._closing = False
        super().start()
        if self.status_interval and self._loop is not None:
            loop = self._loop

            def chatter() -> None:
                self._chatter = loop.create_task(self._chat())

            loop.call_soon_threadsafe(chatter)
        return self

    async def _chat(self) -> None:
        """A busy shared server: a ``status`` broadcast every ``status_interval`` s."""
        while self.status_interval:
            await asyncio.sleep(self.status_interval)
            await self._event(None, "status", self._queue_status())

    def stop(self) -> None:
        # No new worker after this point: a request still in flight during the graceful
        # shutdown would otherwise start one that the closing loop then destroys.
        self._closing = True
        loop = self._loop
        for task in (self._worker, self._chatter):
            if loop is not None and task is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(task.cancel)
        super().stop()

    # ------------------------------------------------------------------ routes
    def build_app(self) -> ASGIApp:
        async def post_prompt(request: Request) -> Response:
            try:
                body = json.loads(await request.body())
            except ValueError:
                return JSONResponse(
                    {"error": _err("invalid_prompt", "Invalid JSON"), "node_errors": {}},
                    status_code=400,
                )
            if not isinstance(body, dict) or "prompt" not in body:
                return JSONResponse(
                    {"error": _err("no_prompt", "No prompt provided"), "node_errors": {}},
                    status_code=400,
                )
            gate = self.prompt_gate
            while gate is not None and not gate.is_set():
                await asyncio.sleep(0.005)
            error, outputs = self.validate(body["prompt"])
            self.prompts.append(body)
            if error is not None:
                return JSONResponse(error, status_code=400)
            job = _Job(
                str(body.get("prompt_id") or uuid.uuid4()),
                next(self._numbers),
                body["prompt"],
                body.get("client_id"),
                outputs,
            )
            if self._closing:
                return Response(b"503: shutting down", status_code=503, media_type="text/plain")
            if self._wake is None:
                self._wake = asyncio.Event()
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._work())
            self._pending.append(job)
            self._wake.set()
            return JSONResponse(
                {"prompt_id": job.prompt_id, "number": job.number, "node_errors": {}}
            )

        async def get_prompt(request: Request) -> Response:
            return JSONResponse(self._queue_status()["status"])

        async def history(request: Request) -> Response:
            pid = request.path_params["prompt_id"]
            return JSONResponse({pid: self.history[pid]} if pid in self.history else {})

        async def view(request: Request) -> Response:
            q = request.query_params
            name, sub, kind = q.get("filename", ""), q.get("subfolder", ""), q.get("type", "output")
            if not name or ".." in name or ".." in sub:
                return Response(b"400: Bad Request", status_code=400, media_type="text/plain")
            raw = self.uploads.get(name) if kind == "input" else self.files.get((name, sub, kind))
            if raw is None:
                return Response(b"404: Not Found", status_code=404, media_type="text/plain")
            return Response(
                raw, media_type="image/png", headers={"Content-Disposition": f'filename="{name}"'}
            )

        async def upload(request: Request) -> Response:
            try:
                parts = parse_multipart(
                    request.headers.get("content-type", ""), await request.body()
                )
            except ValueError:
                return Response(b"400: Bad Request", status_code=400, media_type="text/plain")
            image = next((p for p in parts if p.name == "image" and p.filename), None)
            if image is None or not image.filename:
                return Response(b"400: Bad Request", status_code=400, media_type="text/plain")
            form = {p.name: p.text for p in parts if p.filename is None}
            name = image.filename
            overwrite = form.get("overwrite", "").lower() in ("true", "1")
            if name in self.uploads and not overwrite and self.uploads[name] != image.data:
                stem, _, ext = name.rpartition(".")
                n = 1
                while f"{stem} ({n}).{ext}" in self.uploads:
                    n += 1
                name = f"{stem} ({n}).{ext}"
            self.uploads[name] = image.data
            return JSONResponse(
                {
                    "name": name,
                    "subfolder": form.get("subfolder", ""),
                    "type": form.get("type", "input"),
                }
            )

        async def queue(request: Request) -> Response:
            if request.method == "GET":

                def row(j: _Job) -> list[Any]:
                    return [j.number, j.prompt_id, j.graph, {"client_id": j.client_id}, j.outputs]

                return JSONResponse(
                    {
                        "queue_running": [row(self._running)] if self._running else [],
                        "queue_pending": [row(j) for j in self._pending],
                    }
                )
            body = json.loads(await request.body() or b"{}")
            before = [j.prompt_id for j in self._pending]
            if body.get("clear"):
                self._pending.clear()
            for pid in body.get("delete", []):
                self.deleted.append(pid)
                self._pending = [j for j in self._pending if j.prompt_id != pid]
            left = {j.prompt_id for j in self._pending}
            self.removed += [pid for pid in before if pid not in left]
            # ComfyUI's PromptQueue calls queue_updated(): a status broadcast
            await self._event(None, "status", self._queue_status())
            return Response(b"", status_code=200)

        async def interrupt(request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw) if raw.strip() else {}
            wanted = body.get("prompt_id") if isinstance(body, dict) else None
            self.interrupts.append(wanted)
            if self.interrupt_ignores_prompt_id:
                wanted = None
            if self._running is not None and wanted in (None, self._running.prompt_id):
                self._interrupted = True
            return Response(b"", status_code=200)

        async def system_stats(request: Request) -> Response:
            return JSONResponse(
                {
                    "system": {
                        "os": "posix",
                        "comfyui_version": "0.3.fake",
                        "python_version": "3",
                        "embedded_python": False,
                    },
                    "devices": [
                        {
                            "name": "fake:0",
                            "type": "cpu",
                            "index": 0,
                            "vram_total": 0,
                            "vram_free": 0,
                        }
                    ],
                }
            )

        def schema(cls: str) -> dict[str, Any]:
            required: dict[str, Any] = {}
            for name in NODE_INPUTS[cls]:
                if SEED_INPUTS.get(cls) == name:
                    spec = {"default": 0, "min": 0, "max": self.seed_max.get(cls, 0)}
                    required[name] = ["INT", spec]
                elif (cls, name) in _RANGES:
                    low, high = _RANGES[(cls, name)]
                    kind = "FLOAT" if isinstance(low, float) else "INT"
                    required[name] = [kind, {"min": low, "max": high}]
                else:
                    required[name] = ["*", {}]
            return {
                "input": {"required": required},
                "name": cls,
                "output_node": cls in OUTPUT_NODES,
            }

        async def object_info(request: Request) -> Response:
            wanted = request.path_params.get("cls")
            if wanted is None:
                return JSONResponse({cls: schema(cls) for cls in NODE_INPUTS})
            return JSONResponse({wanted: schema(wanted)} if wanted in NODE_INPUTS else {})

        async def ws_endpoint(ws: WebSocket) -> None:
            if not self.websocket:
                await ws.close(code=1008)  # before accept: the handshake is refused (403)
                return
            client_id = ws.query_params.get("clientId") or uuid.uuid4().hex
            await ws.accept()
            self._sockets.setdefault(client_id, []).append(ws)
            try:
                first = self._queue_status()
                first["sid"] = client_id
                await ws.send_text(json.dumps({"type": "status", "data": first}))
                while True:
                    await ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                pass
            finally:
                with contextlib.suppress(ValueError, KeyError):
                    self._sockets[client_id].remove(ws)

        routes = [
            Route("/prompt", post_prompt, methods=["POST"]),
            Route("/prompt", get_prompt, methods=["GET"]),
            Route("/history/{prompt_id}", history, methods=["GET"]),
            Route("/view", view, methods=["GET"]),
            Route("/upload/image", upload, methods=["POST"]),
            Route("/queue", queue, methods=["GET", "POST"]),
            Route("/interrupt", interrupt, methods=["POST"]),
            Route("/system_stats", system_stats, methods=["GET"]),
            Route("/object_info", object_info, methods=["GET"]),
            Route("/object_info/{cls}", object_info, methods=["GET"]),
            WebSocketRoute("/ws", ws_endpoint),
        ]
        return Starlette(routes=[*routes, Mount("/api", routes=list(routes))])
