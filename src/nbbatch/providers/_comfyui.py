"""ComfyUI: run an API-format workflow per task.

The person gives a workflow exported with "Save (API format)" — a dict or a path to the
JSON file — or uses the built-in minimal txt2img graph, plus a small mapping saying which
node inputs receive the task's prompt, negative prompt, seed, size, steps, cfg and input
image. For graphs built from the standard nodes the mapping is found automatically
(:func:`detect_mapping`): the ``CLIPTextEncode`` nodes linked to the sampler's
``positive``/``negative``, the ``KSampler`` seed/steps/cfg, the ``EmptyLatentImage``
size and batch, a ``LoadImage`` image.

One attempt: upload the inputs (``POST /upload/image``), open the WebSocket
``/ws?clientId=…``, queue the graph (``POST /prompt`` with the same ``client_id``),
follow ``progress``/``executing`` events until ``executing`` with ``node: null``, read
``GET /history/{id}`` and download each output with ``GET /view``. When the WebSocket
cannot connect (a proxy that does not pass it, say) the provider polls ``/history``
instead. Cancelling deletes the prompt from the queue and interrupts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx

from ..core._errors import (
    ConfigError,
    MalformedResponseError,
    NotSupportedError,
    ProviderError,
    ServerError,
)
from ..core._secrets import scrub
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._http import HttpClient, Timeouts
from ._support import FETCH_ATTEMPTS, FETCH_RETRY_DELAY, offload, retry_fetch

__all__ = [
    "BUILTIN_TXT2IMG",
    "ComfyUIProvider",
    "WorkflowMapping",
    "detect_mapping",
    "load_workflow",
    "node_errors_message",
]

log = logging.getLogger("nbbatch")
T = TypeVar("T")

INFO = provider_info("comfyui")
DEFAULT_BASE_URL: str = INFO.default_base_url or ""

#: The minimal txt2img graph from ComfyUI's own examples (input names are the real ones).
BUILTIN_TXT2IMG: dict[str, Any] = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
    "4": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
    },
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "seed": 0,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        },
    },
    "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "nbbatch"}},
}


def _builtin_img2img() -> dict[str, Any]:
    """The built-in graph with ``LoadImage -> VAEEncode`` instead of an empty latent."""
    graph = copy.deepcopy(BUILTIN_TXT2IMG)
    graph["4"] = {"class_type": "LoadImage", "inputs": {"image": "input.png"}}
    graph["8"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}}
    graph["5"]["inputs"]["latent_image"] = ["8", 0]
    graph["5"]["inputs"]["denoise"] = 0.6
    return graph


Slot = tuple[str, str]


def _slot(value: object, field: str) -> Slot | None:
    if value is None:
        return None
    if isinstance(value, str) and "." in value:
        node, _, name = value.rpartition(".")
        return node, name
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return str(value[0]), str(value[1])
    raise ConfigError(
        f"mapping {field!r} must be 'node_id.input_name' (e.g. '6.text') or "
        f"[node_id, input_name], got {value!r}"
    )


@dataclass(frozen=True)
class WorkflowMapping:
    """Which node input receives each task field: ``(node_id, input_name)`` or ``None``.

    ``output`` optionally names the one node whose images are the result (default: every
    node that saved images). Build from a dict with :meth:`from_dict`, e.g.
    ``{"prompt": "6.text", "seed": "3.seed", "image": "10.image"}``.
    """

    prompt: Slot | None = None
    negative: Slot | None = None
    seed: Slot | None = None
    width: Slot | None = None
    height: Slot | None = None
    batch_size: Slot | None = None
    steps: Slot | None = None
    cfg: Slot | None = None
    sampler: Slot | None = None
    denoise: Slot | None = None
    model: Slot | None = None
    image: Slot | None = None
    output: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowMapping:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown mapping key(s) {sorted(unknown)}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "output":
                values[key] = None if value is None else str(value)
            else:
                values[key] = _slot(value, key)
        return cls(**values)

    def merged(self, override: WorkflowMapping) -> WorkflowMapping:
        """This mapping with every field ``override`` sets replaced."""
        changes = {f.name: getattr(override, f.name) for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check(self, graph: Mapping[str, Any]) -> None:
        """Raise ConfigError when a slot names a node or input the graph does not have."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "output":
                if value not in graph:
                    raise ConfigError(f"mapping output: the workflow has no node {value!r}")
                continue
            node_id, input_name = value
            node = graph.get(node_id)
            if not isinstance(node, Mapping):
                raise ConfigError(
                    f"mapping {f.name}: the workflow has no node {node_id!r} "
                    f"(nodes: {', '.join(sorted(graph)[:20])})"
                )
            inputs = node.get("inputs", {})
            if input_name not in inputs:
                raise ConfigError(
                    f"mapping {f.name}: node {node_id} ({node.get('class_type')}) has no "
                    f"input {input_name!r} (inputs: {', '.join(sorted(inputs))})"
                )


_SAMPLERS = {
    "KSampler": ("seed", "steps", "cfg", "sampler_name", "denoise"),
    "KSamplerAdvanced": ("noise_seed", "steps", "cfg", "sampler_name", None),
}


def _nodes_of(graph: Mapping[str, Any], *classes: str) -> list[str]:
    return sorted(
        (k for k, v in graph.items() if isinstance(v, Mapping) and v.get("class_type") in classes),
        key=lambda k: (len(k), k),
    )


def _linked(graph: Mapping[str, Any], node_id: str, input_name: str) -> str | None:
    link = graph.get(node_id, {}).get("inputs", {}).get(input_name)
    if isinstance(link, list) and link and str(link[0]) in graph:
        return str(link[0])
    return None


def detect_mapping(graph: Mapping[str, Any]) -> WorkflowMapping:
    """Find the usual slots in a graph of standard nodes; ambiguous ones stay ``None``."""
    found: dict[str, Slot | None] = {}
    samplers = _nodes_of(graph, *_SAMPLERS)
    sampler = samplers[0] if len(samplers) == 1 else None
    if sampler is not None:
        seed, steps, cfg, sampler_name, denoise = _SAMPLERS[graph[sampler]["class_type"]]
        found.update(
            seed=(sampler, seed),
            steps=(sampler, steps),
            cfg=(sampler, cfg),
            sampler=(sampler, sampler_name),
            denoise=(sampler, denoise) if denoise else None,
        )
        for field, side in (("prompt", "positive"), ("negative", "negative")):
            source = _linked(graph, sampler, side)
            taken = found.get("prompt")
            if (
                source is not None
                and graph[source].get("class_type") == "CLIPTextEncode"
                and (taken is None or taken[0] != source)  # one node feeding both sides
            ):
                found[field] = (source, "text")
        latent = _linked(graph, sampler, "latent_image")
        if latent is not None and graph[latent].get("class_type") == "EmptyLatentImage":
            found.update(
                width=(latent, "width"),
                height=(latent, "height"),
                batch_size=(latent, "batch_size"),
            )
    if "width" not in found:
        latents = _nodes_of(graph, "EmptyLatentImage")
        if len(latents) == 1:
            found.update(
                width=(latents[0], "width"),
                height=(latents[0], "height"),
                batch_size=(latents[0], "batch_size"),
            )
    loaders = _nodes_of(graph, "LoadImage")
    if len(loaders) == 1:
        found["image"] = (loaders[0], "image")
    checkpoints = _nodes_of(graph, "CheckpointLoaderSimple")
    if len(checkpoints) == 1:
        found["model"] = (checkpoints[0], "ckpt_name")
    # Only keep slots whose input really exists (a custom node may differ).
    keep: dict[str, Any] = {
        name: slot
        for name, slot in found.items()
        if slot is not None and slot[1] in graph.get(slot[0], {}).get("inputs", {})
    }
    return WorkflowMapping(**keep)


def load_workflow(workflow: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A workflow dict from a dict or a JSON file; rejects the UI (non-API) format."""
    if isinstance(workflow, Mapping):
        graph: Any = copy.deepcopy(dict(workflow))
        where = "the workflow"
    else:
        path = Path(workflow)
        where = path.name
        try:
            graph = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"workflow file not found: {path}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the workflow {path}: {exc}") from None
    if isinstance(graph, Mapping) and "prompt" in graph and isinstance(graph["prompt"], Mapping):
        graph = dict(graph["prompt"])  # a saved /prompt body
    if not isinstance(graph, dict) or not graph:
        raise ConfigError(f"{where} is not an API-format workflow (a JSON object of nodes)")
    if "nodes" in graph and "links" in graph:
        raise ConfigError(
            f"{where} is in ComfyUI's UI format; export it with 'Save (API Format)' "
            "(enable dev mode options in the settings to see that menu entry)"
        )
    for node_id, node in graph.items():
        if not isinstance(node, Mapping) or "class_type" not in node:
            raise ConfigError(
                f"{where}: node {node_id!r} has no class_type; is this an API-format export?"
            )
    return graph


def node_errors_message(body: Any) -> str:
    """A readable summary of a 400 from ``POST /prompt`` (error + per-node errors)."""
    if not isinstance(body, Mapping):
        return ""
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, Mapping):
        parts.append(str(error.get("message") or error.get("type") or "invalid prompt"))
    elif isinstance(error, str):
        parts.append(error)
    node_errors = body.get("node_errors")
    if isinstance(node_errors, Mapping):
        for node_id, entry in list(node_errors.items())[:5]:
            if not isinstance(entry, Mapping):
                continue
            cls = entry.get("class_type") or "?"
            for err in (entry.get("errors") or [])[:3]:
                if not isinstance(err, Mapping):
                    continue
                info = err.get("extra_info") if isinstance(err.get("extra_info"), Mapping) else {}
                name = info.get("input_name") if isinstance(info, Mapping) else None
                text = str(err.get("message") or err.get("type") or "error")
                details = str(err.get("details") or "")
                where = f"node {node_id} ({cls})" + (f" input {name!r}" if name else "")
                parts.append(f"{where}: {text}" + (f" - {details}" if details else ""))
    return scrub("; ".join(parts))


def _classify(response: httpx.Response, err: ProviderError) -> ProviderError:
    # A 400 from /prompt stays a BadRequestError (never retried), with a readable message.
    if response.status_code != 400:
        return err
    try:
        summary = node_errors_message(response.json())
    except (ValueError, UnicodeDecodeError):
        return err
    if summary:
        err.message = f"{err.provider}: the workflow was rejected: {summary}"
        err.args = (err.message,)
    return err


class ComfyUIProvider(Provider):
    """A ComfyUI server running a workflow per task.

    ``workflow`` is an API-format dict or JSON file path (``None``: the built-in
    txt2img graph, which switches to its img2img variant for tasks with a reference
    image). ``mapping`` (a :class:`WorkflowMapping` or dict) adds to / overrides the
    detected slots. ``model`` is the default for the mapped model input (the
    checkpoint file name of a ``CheckpointLoaderSimple``) when a task's ``Params.model``
    is unset. ``websocket=False`` always polls ``/history`` every
    ``poll_interval`` seconds.
    """

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        workflow: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        mapping: WorkflowMapping | Mapping[str, Any] | None = None,
        model: str | None = None,
        websocket: bool = True,
        poll_interval: float = 0.5,
        idle_check: float = 5.0,
        timeouts: Timeouts | None = None,
        max_download_bytes: int = 100 * 1024 * 1024,
        max_concurrency: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.builtin = workflow is None
        self.workflow = load_workflow(BUILTIN_TXT2IMG if workflow is None else workflow)
        extra = (
            mapping
            if isinstance(mapping, WorkflowMapping) or mapping is None
            else WorkflowMapping.from_dict(mapping)
        )
        self.mapping = detect_mapping(self.workflow)
        if extra is not None:
            self.mapping = self.mapping.merged(extra)
        self.mapping.check(self.workflow)
        self.model = model
        if model is not None and self.mapping.model is None:
            raise ConfigError(
                "model= needs a model input in the workflow; map it, e.g. "
                "mapping={'model': '4.ckpt_name'}"
            )
        self._img2img = _builtin_img2img() if self.builtin else None
        self._img2img_mapping = detect_mapping(self._img2img) if self._img2img else None
        self.websocket = websocket
        self.poll_interval = poll_interval
        self.idle_check = idle_check
        self.max_download_bytes = max_download_bytes
        self.max_concurrency = max_concurrency
        #: tries (and first pause) for a /history poll or /view download once queued
        self.fetch_attempts = FETCH_ATTEMPTS
        self.fetch_retry_delay = FETCH_RETRY_DELAY
        self.timeouts = timeouts or Timeouts()
        self._rng = random.Random()
        self._http = HttpClient(
            self.name, self.base_url, timeouts=timeouts, transport=transport, classify=_classify
        )
        # The WebSocket client sends a URL's user:password as Basic auth itself, so its
        # URL keeps them; the public attribute (shown, logged) does not.
        self._ws_base = self.base_url
        self.base_url = self._http.base_url

    # ------------------------------------------------------------------ checks
    def _graph_for(self, request: GenerationRequest) -> tuple[dict[str, Any], WorkflowMapping]:
        if request.images and self._img2img is not None and self._img2img_mapping is not None:
            return self._img2img, self._img2img_mapping
        return self.workflow, self.mapping

    def validate(self, request: GenerationRequest) -> None:
        super().validate(request)
        _, mapping = self._graph_for(request)
        p = request.params
        needs = {
            "an input image": bool(request.images) and mapping.image is None,
            "a negative prompt": bool(p.negative_prompt) and mapping.negative is None,
            "n > 1": p.n > 1 and mapping.batch_size is None,
            "a size": p.dimensions is not None
            and (mapping.width is None or mapping.height is None),
            "steps": p.steps is not None and mapping.steps is None,
            "cfg_scale": p.cfg_scale is not None and mapping.cfg is None,
            "a sampler": bool(p.sampler) and mapping.sampler is None,
            "strength": p.strength is not None and mapping.denoise is None,
            "a model": bool(p.model) and mapping.model is None,
            "a seed": p.seed is not None and p.seed >= 0 and mapping.seed is None,
        }
        missing = [what for what, bad in needs.items() if bad]
        if missing:
            raise NotSupportedError(
                f"this ComfyUI workflow has no input mapped for {', '.join(missing)}; add "
                "the node input to mapping= (e.g. mapping={'negative': '7.text'}) or clear "
                "the parameter",
                task_id=request.task_id,
            )
        if mapping.prompt is None:
            raise NotSupportedError(
                "this ComfyUI workflow has no prompt input mapped; pass "
                "mapping={'prompt': '<node id>.text'}",
                task_id=request.task_id,
            )

    async def check(self) -> None:
        """Probe the server: ``GET /system_stats``."""
        await self._http.json("GET", "/system_stats")

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ graph
    def build_graph(
        self, request: GenerationRequest, uploaded: list[str] | None = None
    ) -> tuple[dict[str, Any], int]:
        """The graph for ``request`` with its fields filled in, and the seed used."""
        base, mapping = self._graph_for(request)
        graph = copy.deepcopy(base)
        p = request.params

        def put(slot: Slot | None, value: Any) -> None:
            if slot is not None and value is not None:
                graph[slot[0]]["inputs"][slot[1]] = value

        # A workflow's own fixed seed would give every task the same picture: a task
        # without a seed gets a fresh random one, recorded with its images.
        seed = p.seed if p.seed is not None and p.seed >= 0 else self._rng.randrange(2**48)
        put(mapping.prompt, request.prompt)
        put(mapping.negative, p.negative_prompt or ("" if self.builtin else None))
        put(mapping.seed, seed)
        dims = p.dimensions
        if dims:
            put(mapping.width, dims[0])
            put(mapping.height, dims[1])
        if mapping.batch_size is not None:
            put(mapping.batch_size, p.n)
        put(mapping.steps, p.steps)
        put(mapping.cfg, p.cfg_scale)
        put(mapping.sampler, p.sampler)
        put(mapping.denoise, p.strength)
        put(mapping.model, p.model or self.model)
        if uploaded:
            put(mapping.image, uploaded[0])
        for key, value in p.extras.items():
            # extras: {"<node>.<input>": value} sets any other input of the graph
            node_id, _, input_name = str(key).rpartition(".")
            if node_id in graph and isinstance(graph[node_id], Mapping):
                graph[node_id]["inputs"][input_name] = value
            else:
                raise ConfigError(
                    f"ComfyUI extras keys are 'node_id.input_name'; {key!r} names no node "
                    "of the workflow",
                    task_id=request.task_id,
                )
        return graph, seed

    # ------------------------------------------------------------------ generate
    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        uploaded = [await self._upload(im.data, im.mime, request) for im in request.images]
        graph, seed = self.build_graph(request, uploaded)
        client_id = uuid.uuid4().hex
        ws = await self._connect_ws(client_id) if self.websocket else None
        # Choosing the id ourselves (newer servers accept it; older ones ignore it and
        # answer their own) lets a cancel during POST /prompt still dequeue the run.
        prompt_id = str(uuid.uuid4())
        try:
            try:
                answer = await self._http.json(
                    "POST",
                    "/prompt",
                    json={"prompt": graph, "client_id": client_id, "prompt_id": prompt_id},
                    task_id=request.task_id,
                )
                if not isinstance(answer, Mapping) or not isinstance(answer.get("prompt_id"), str):
                    raise MalformedResponseError(
                        f"{self.name}: POST /prompt answered without a prompt_id",
                        provider=self.name,
                        task_id=request.task_id,
                    )
                prompt_id = answer["prompt_id"]
                if ws is not None:
                    await self._follow_ws(ws, prompt_id, request, on_progress)
                entry = await self._wait_history(prompt_id, request)
            except asyncio.CancelledError:
                await self._cancel(prompt_id)
                raise
            except ProviderError as exc:
                # /history kept failing (retryable): the runner's next attempt queues the
                # graph again, so this run must not go on using the GPU meanwhile.
                if exc.retryable:
                    await self._cancel(prompt_id)
                raise
            # finished: the outputs stay on the server, so /view retries are harmless
            images = await self._collect(entry, prompt_id, seed, request)
        finally:
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2.0)
        if on_progress is not None:
            on_progress(1.0, None)
        return images

    async def _upload(self, data: bytes, mime: str, request: GenerationRequest) -> str:
        ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(mime, "png")
        # Content-addressed name: re-uploads of one reference reuse the same input file.
        digest = await offload(lambda: hashlib.sha256(data).hexdigest(), size=len(data))
        filename = f"nbbatch-{digest[:20]}.{ext}"
        answer = await self._http.json(
            "POST",
            "/upload/image",
            files={"image": (filename, data, mime)},
            data={"type": "input", "overwrite": "true"},
            task_id=request.task_id,
        )
        if not isinstance(answer, Mapping) or not isinstance(answer.get("name"), str):
            raise MalformedResponseError(
                f"{self.name}: /upload/image answered without a file name",
                provider=self.name,
                task_id=request.task_id,
            )
        sub = answer.get("subfolder") or ""
        return f"{sub}/{answer['name']}" if sub else str(answer["name"])

    def _ws_url(self, client_id: str) -> str:
        url = httpx.URL(self._ws_base)
        scheme = "wss" if url.scheme == "https" else "ws"
        return str(
            url.copy_with(
                scheme=scheme,
                path=url.path.rstrip("/") + "/ws",
                query=f"clientId={client_id}".encode(),
            )
        )

    async def _connect_ws(self, client_id: str) -> Any:
        from websockets.asyncio.client import connect

        try:
            return await connect(
                self._ws_url(client_id),
                open_timeout=self.timeouts.connect,
                max_size=64 * 1024 * 1024,  # preview frames can be large
                ping_interval=None,
                compression=None,
            )
        except Exception as exc:  # any failure: fall back to polling /history
            log.info("%s: WebSocket unavailable (%s); polling /history instead", self.name, exc)
            return None

    async def _follow_ws(
        self,
        ws: Any,
        prompt_id: str,
        request: GenerationRequest,
        on_progress: ProgressCallback | None,
    ) -> None:
        """Read events until this prompt finishes; return early if the socket drops."""
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), self.idle_check)
            except asyncio.TimeoutError:
                # Quiet for a while (queued behind other work, or an event was missed):
                # the history says whether it is done.
                if await self._history(prompt_id, request):
                    return
                continue
            except Exception as exc:  # connection dropped: the history poll takes over
                log.info("%s: WebSocket closed (%s); polling /history", self.name, exc)
                return
            if isinstance(raw, bytes):
                # binary frames: 4-byte event type; 1 = preview (4-byte format + image)
                if on_progress is not None and len(raw) > 8 and raw[:4] == b"\0\0\0\1":
                    on_progress(None, raw[8:])
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, Mapping):
                continue
            kind, data = message.get("type"), message.get("data")
            if not isinstance(data, Mapping) or data.get("prompt_id") != prompt_id:
                continue
            if kind == "progress" and on_progress is not None:
                value, top = data.get("value"), data.get("max")
                if isinstance(value, (int, float)) and isinstance(top, (int, float)) and top > 0:
                    on_progress(min(0.99, value / top), None)
            elif kind == "execution_error":
                raise self._execution_error(data, request)
            elif kind == "execution_interrupted":
                raise ServerError(
                    f"{self.name}: the run was interrupted on the server (node "
                    f"{data.get('node_id')}); someone pressed Cancel in ComfyUI?",
                    provider=self.name,
                    task_id=request.task_id,
                    retryable=False,
                )
            elif kind == "executing" and data.get("node") is None:
                # Sent after the history entry is stored (execution_success comes before).
                return

    def _execution_error(self, data: Mapping[str, Any], request: GenerationRequest) -> ServerError:
        node = data.get("node_id")
        node_type = data.get("node_type") or "?"
        exc_type = data.get("exception_type") or "error"
        text = str(data.get("exception_message") or "").strip() or "no message"
        # A node raising is nearly always the workflow or its inputs: not retried.
        return ServerError(
            scrub(f"{self.name}: node {node} ({node_type}) failed: {exc_type}: {text}"[:600]),
            provider=self.name,
            task_id=request.task_id,
            retryable=False,
        )

    async def _history(
        self, prompt_id: str, request: GenerationRequest
    ) -> Mapping[str, Any] | None:
        # The prompt is queued: a passing failure is retried here, not by the runner
        # (whose next attempt would queue the graph a second time).
        body = await self._fetch(
            partial(self._http.json, "GET", f"/history/{prompt_id}", task_id=request.task_id)
        )
        if not isinstance(body, Mapping):
            raise MalformedResponseError(
                f"{self.name}: /history answered {type(body).__name__}, not an object",
                provider=self.name,
                task_id=request.task_id,
            )
        entry = body.get(prompt_id)
        if not isinstance(entry, Mapping):
            return None
        status = entry.get("status")
        if (
            isinstance(status, Mapping)
            and not status.get("completed", True)
            and (status.get("status_str") != "error")
        ):
            return None
        return entry

    async def _wait_history(self, prompt_id: str, request: GenerationRequest) -> Mapping[str, Any]:
        while True:
            entry = await self._history(prompt_id, request)
            if entry is not None:
                return entry
            await asyncio.sleep(self.poll_interval)

    async def _collect(
        self, entry: Mapping[str, Any], prompt_id: str, seed: int, request: GenerationRequest
    ) -> list[ImageData]:
        status = entry.get("status")
        if isinstance(status, Mapping) and status.get("status_str") == "error":
            for message in status.get("messages") or []:
                if (
                    isinstance(message, list)
                    and len(message) == 2
                    and message[0] == "execution_error"
                    and isinstance(message[1], Mapping)
                ):
                    raise self._execution_error(message[1], request)
            raise ServerError(
                f"{self.name}: the run ended with an error (no details in /history)",
                provider=self.name,
                task_id=request.task_id,
                retryable=False,
            )
        outputs = entry.get("outputs")
        if not isinstance(outputs, Mapping):
            raise MalformedResponseError(
                f"{self.name}: /history has no outputs for prompt {prompt_id}",
                provider=self.name,
                task_id=request.task_id,
            )
        refs: list[tuple[str, Mapping[str, Any]]] = []
        wanted = self._graph_for(request)[1].output
        for node_id, out in outputs.items():
            if wanted is not None and node_id != wanted:
                continue
            if isinstance(out, Mapping) and isinstance(out.get("images"), list):
                refs += [(node_id, im) for im in out["images"] if isinstance(im, Mapping)]
        # Saved images are the results; previews only count when nothing was saved.
        saved = [r for r in refs if r[1].get("type", "output") == "output"]
        refs = saved or refs
        if not refs:
            raise MalformedResponseError(
                f"{self.name}: the workflow finished without any image output; does it end "
                "in a SaveImage node?",
                provider=self.name,
                task_id=request.task_id,
            )
        images = []
        for index, (node_id, ref) in enumerate(refs):
            data, mime = await self._fetch(
                partial(
                    self._http.download,
                    "/view",
                    params={
                        "filename": str(ref.get("filename", "")),
                        "subfolder": str(ref.get("subfolder", "")),
                        "type": str(ref.get("type", "output")),
                    },
                    max_bytes=self.max_download_bytes,
                    task_id=request.task_id,
                )
            )
            info = {
                "prompt_id": prompt_id,
                "node": node_id,
                "filename": ref.get("filename"),
                "batch_index": index,
            }
            images.append(ImageData(data=data, mime=mime, seed=seed, info=info))
        return images

    async def _fetch(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retry_fetch(call, attempts=self.fetch_attempts, delay=self.fetch_retry_delay)

    async def _cancel(self, prompt_id: str) -> None:
        """Take the prompt off the queue, and stop it if it is running; best effort.

        ``POST /interrupt`` stops whatever is running on servers that ignore its
        ``prompt_id`` (older ComfyUI), which may be someone else's prompt. So it is only
        sent when ``GET /queue`` lists this prompt as the running one; a pending prompt is
        just deleted. Residual risk: the prompt may finish, and another one start, between
        that check and the interrupt (milliseconds); on such an old server that other
        prompt would be interrupted.
        """

        async def run() -> None:
            # delete first: a prompt still pending can then no longer start
            await self._http.request("POST", "/queue", json={"delete": [prompt_id]})
            if await self._is_running(prompt_id):
                await self._http.request("POST", "/interrupt", json={"prompt_id": prompt_id})

        try:
            await asyncio.wait_for(asyncio.shield(run()), 5.0)
        except (ProviderError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
            log.warning("%s: could not cancel prompt %s: %s", self.name, prompt_id, exc)

    async def _is_running(self, prompt_id: str) -> bool:
        """Whether ``GET /queue`` lists ``prompt_id`` under ``queue_running``."""
        body = await self._http.json("GET", "/queue")
        running = body.get("queue_running") if isinstance(body, Mapping) else None
        if not isinstance(running, list):
            return False  # cannot tell: do not risk stopping another prompt
        # rows are [number, prompt_id, graph, extra, outputs]
        return any(
            isinstance(row, list) and len(row) > 1 and row[1] == prompt_id for row in running
        )
