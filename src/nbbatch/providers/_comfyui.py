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
instead. Cancelling deletes the prompt from the queue and interrupts it. A prompt that
leaves the queue without running (cleared, a restart) fails the attempt (retryable);
a server that stops answering is waited for (bounded) instead of failing the attempt.
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
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx

from ..core._errors import (
    BadRequestError,
    ConfigError,
    MalformedResponseError,
    NotSupportedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ServerError,
    ServerUnavailableError,
)
from ..core._retry import Retry, RetryPolicy, retrying
from ..core._secrets import scrub
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._fetch import FETCH_ATTEMPTS, FETCH_RETRY_DELAY, retry_fetch
from ._http import HttpClient, Timeouts
from ._offload import offload

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
#: how often one step (upload, queueing, waiting) goes through "server down, back up"
#: before its error is final: a server that answers probes yet fails the real calls
_OUTAGES = 3
#: drawn seeds stay below this (exact in JSON and JavaScript numbers), and below the
#: mapped input's own maximum; when /object_info cannot tell, below 2**31-1, the
#: smallest maximum common among seed inputs (API nodes, many custom nodes)
_SEED_DRAW_MAX = 2**48 - 1
_VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
_SEED_FALLBACK_MAX = 2**31 - 1
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


def _slot(value: object, field: str) -> Slot:
    """``"node.input"`` or ``[node, input]`` as a slot. Node ids never hold a dot (they
    are numbers, or ``"68:47"`` inside a subgraph); input names may (``values.a``)."""
    if isinstance(value, str) and "." in value.strip(".") and not value.startswith("."):
        node, _, name = value.partition(".")
        return node, name
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (str, int)) for v in value)
        and "." not in str(value[0])
    ):
        return str(value[0]), str(value[1])
    raise ConfigError(
        f"mapping {field!r} must be 'node_id.input_name' (e.g. '6.text'), "
        f"[node_id, input_name], a list of those (inputs set together, e.g. "
        f"['5.width', '17.width']) or None (not mapped), got {value!r}"
    )


def _targets(value: object, field: str) -> tuple[Slot, ...]:
    """One slot, or several set together (``["5.width", "17.width"]``)."""
    if isinstance(value, (tuple, list)) and value:
        try:
            return (_slot(value, field),)  # [node, input]
        except ConfigError:
            pass
        return tuple(_slot(v, field) for v in value)
    return (_slot(value, field),)


def _slot_text(slot: Slot) -> str:
    return f"{slot[0]}.{slot[1]}"


@dataclass(frozen=True)
class WorkflowMapping:
    """Which node input receives each task field: ``(node_id, input_name)`` or ``None``.

    ``output`` optionally names the one node whose images are the result (default: every
    node that saved images). Build from a dict with :meth:`from_dict`, e.g.
    ``{"prompt": "6.text", "seed": "3.seed", "image": "10.image"}``; a list sets several
    inputs together (``{"width": ["5.width", "17.width"]}``: the latent and a scheduler
    that needs the same width), and ``None`` leaves a slot not mapped even where it is
    detected (``{"negative": None}``).

    ``also`` holds the further inputs of a slot that get the same value (the field holds
    the first); :meth:`targets` gives them all. ``unmapped`` names the slots cleared on
    purpose: :meth:`merged` clears them in the detected mapping.

    ``replaces`` names the slots (found by :func:`detect_mapping`, never given by hand)
    whose inputs are linked to a node that only computes that number for them (a
    ``ResolutionSelector``, a ``GetImageSize`` of the reference, a math node): a task
    that sets the value replaces the links; one that does not keeps the workflow's own.
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
    replaces: frozenset[str] = frozenset()
    also: Mapping[str, tuple[Slot, ...]] = field(default_factory=dict, hash=False)
    unmapped: frozenset[str] = frozenset()

    #: the fields that are not slots
    _OWN: ClassVar[frozenset[str]] = frozenset({"output", "replaces", "also", "unmapped"})

    @classmethod
    def slot_names(cls) -> tuple[str, ...]:
        """The slots (``prompt``, ``seed``, ``width`` ...), in their order."""
        return tuple(f.name for f in fields(cls) if f.name not in cls._OWN)

    def targets(self, name: str) -> tuple[Slot, ...]:
        """Every input the slot ``name`` sets: its own, then ``also``'s."""
        first = getattr(self, name)
        return () if first is None else (first, *self.also.get(name, ()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowMapping:
        known = set(cls.slot_names()) | {"output"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown mapping key(s) {sorted(unknown)}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        also: dict[str, tuple[Slot, ...]] = {}
        unmapped: set[str] = set()
        for key, value in data.items():
            if key == "output":
                values[key] = None if value in (None, "") else str(value)
            elif value is None or value == "" or value == []:
                unmapped.add(key)
            else:
                first, *more = _targets(value, key)
                values[key] = first
                if more:
                    also[key] = tuple(dict.fromkeys(more))
        return cls(**values, also=also, unmapped=frozenset(unmapped))

    def to_dict(self) -> dict[str, Any]:
        """The mapping as :meth:`from_dict` reads it (what a saved configuration keeps):
        ``"node.input"``, a list of those for several inputs, ``None`` for a slot left
        unmapped on purpose."""
        out: dict[str, Any] = {}
        for name in self.slot_names():
            targets = self.targets(name)
            if targets:
                texts = [_slot_text(t) for t in targets]
                out[name] = texts[0] if len(texts) == 1 else texts
            elif name in self.unmapped:
                out[name] = None
        if self.output is not None:
            out["output"] = self.output
        return out

    def merged(self, override: WorkflowMapping) -> WorkflowMapping:
        """This mapping with every slot ``override`` sets (or unmaps) replaced."""
        changes: dict[str, Any] = {
            name: getattr(override, name)
            for name in (*self.slot_names(), "output")
            if getattr(override, name) is not None
        }
        for name in override.unmapped:
            changes[name] = None
        also = {k: v for k, v in self.also.items() if k not in changes}
        also.update({k: v for k, v in override.also.items() if k in changes})
        # a slot given anew holds a value: it replaces no link any more
        replaces = (self.replaces - set(changes)) | override.replaces
        return replace(
            self,
            **changes,
            replaces=frozenset(replaces),
            also=also,
            unmapped=(self.unmapped - set(changes)) | override.unmapped,
        )

    def check(self, graph: Mapping[str, Any]) -> None:
        """Raise ConfigError when a slot names a node or input the graph does not have."""
        if self.output is not None and self.output not in graph:
            raise ConfigError(f"mapping output: the workflow has no node {self.output!r}")
        for name in self.slot_names():
            for node_id, input_name in self.targets(name):
                self._check_input(graph, name, node_id, input_name)

    def _check_input(
        self, graph: Mapping[str, Any], name: str, node_id: str, input_name: str
    ) -> None:
        node = graph.get(node_id)
        if not isinstance(node, Mapping):
            raise ConfigError(
                f"mapping {name}: the workflow has no node {node_id!r} "
                f"(nodes: {', '.join(sorted(graph)[:20])})"
            )
        inputs = node.get("inputs", {})
        if input_name not in inputs:
            raise ConfigError(
                f"mapping {name}: node {node_id} ({node.get('class_type')}) has no "
                f"input {input_name!r} (inputs: {', '.join(sorted(inputs))})"
            )
        link = inputs[input_name]
        if isinstance(link, list) and name not in self.replaces:
            source = str(link[0]) if link else "?"
            raise ConfigError(
                f"mapping {name}: input {input_name!r} of node {node_id} "
                f"({node.get('class_type')}) is linked to the output of node {source} "
                f"({_class(graph, source) or '?'}), so a value put there would cut the "
                "link; map an input that holds a value, e.g. the text of the node that "
                "makes it"
            )


#: sampler class -> (seed, steps, cfg, sampler name, denoise) inputs on the node itself
_SAMPLERS: dict[str, tuple[str | None, ...]] = {
    "KSampler": ("seed", "steps", "cfg", "sampler_name", "denoise"),
    "KSamplerAdvanced": ("noise_seed", "steps", "cfg", "sampler_name", None),
    "SamplerCustom": ("noise_seed", None, "cfg", None, None),
    "SamplerCustomAdvanced": (None, None, None, None, None),
}
#: inputs holding an encoder's prompt text, most specific first
_TEXT_INPUTS = ("text", "prompt", "user_prompt", "t5xxl", "text_g", "clip_l", "llama", "value")
#: conditioning inputs a pass-through node (FluxGuidance, ReferenceLatent...) is fed by
_CONDITIONING_INPUTS = ("conditioning", "conditioning_to", "cond", "conditioning_1")
#: words a node title may be (case-insensitive) to mark the slot it holds
_TITLES = {
    "prompt": "prompt",
    "positive": "prompt",
    "positive prompt": "prompt",
    "negative": "negative",
    "negative prompt": "negative",
    "seed": "seed",
    "width": "width",
    "height": "height",
    "steps": "steps",
    "cfg": "cfg",
    "image": "image",
    "batch_size": "batch_size",
    "batch size": "batch_size",
}
_TITLE_INPUTS = {
    "prompt": _TEXT_INPUTS,
    "negative": _TEXT_INPUTS,
    "seed": ("seed", "noise_seed", "value"),
    "width": ("width", "value"),
    "height": ("height", "value"),
    "steps": ("steps", "value"),
    "cfg": ("cfg", "value"),
    "image": ("image",),
    "batch_size": ("batch_size", "value"),
}


def _nodes_of(graph: Mapping[str, Any], *classes: str) -> list[str]:
    return sorted(
        (k for k, v in graph.items() if isinstance(v, Mapping) and v.get("class_type") in classes),
        key=lambda k: (len(k), k),
    )


def _inputs(graph: Mapping[str, Any], node_id: str) -> Mapping[str, Any]:
    node = graph.get(node_id)
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    return inputs if isinstance(inputs, Mapping) else {}


def _class(graph: Mapping[str, Any], node_id: str) -> str:
    node = graph.get(node_id)
    return str(node.get("class_type", "")) if isinstance(node, Mapping) else ""


def _linked(graph: Mapping[str, Any], node_id: str, input_name: str) -> str | None:
    link = _inputs(graph, node_id).get(input_name)
    if isinstance(link, list) and link and str(link[0]) in graph:
        return str(link[0])
    return None


def _literal(graph: Mapping[str, Any], node_id: str, names: tuple[str, ...]) -> Slot | None:
    """The first of ``names`` that ``node_id`` holds as a value, or that a primitive node
    linked there holds (a ``PrimitiveInt`` feeding ``width``, say)."""
    inputs = _inputs(graph, node_id)
    for name in names:
        if name not in inputs:
            continue
        if not isinstance(inputs[name], list):
            return node_id, name
        source = _primitive(graph, _linked(graph, node_id, name))
        if source is not None:
            return source
    return None


def _primitive(graph: Mapping[str, Any], node_id: str | None, depth: int = 0) -> Slot | None:
    """The primitive node's ``value`` feeding an input: directly, or through a switch
    (``ComfySwitchNode``: the branch holding the person's own text, e.g. the raw prompt
    next to an LLM-enhanced one, is tried first as ``on_false``)."""
    if node_id is None or depth > 5:
        return None
    inputs = _inputs(graph, node_id)
    if "value" in inputs and not isinstance(inputs["value"], list):
        return node_id, "value"
    if "on_true" in inputs or "on_false" in inputs:
        for branch in ("on_false", "on_true"):
            found = _primitive(graph, _linked(graph, node_id, branch), depth + 1)
            if found is not None:
                return found
        return None
    links = [name for name, value in inputs.items() if isinstance(value, list)]
    if len(links) == 1:  # a pass-through (PreviewAny shows the text and hands it on)
        return _primitive(graph, _linked(graph, node_id, links[0]), depth + 1)
    return None


#: the inputs a computed size may feed, besides the latent's, and still be replaced: a
#: scheduler, ``ModelSamplingFlux``, a second latent, a bounding-box canvas need the size
#: of the picture, which the task's then is
_SIZE_INPUTS = ("width", "height")


def _size_input(graph: Mapping[str, Any], latent: str, name: str) -> tuple[tuple[Slot, ...], bool]:
    """The inputs setting ``latent``'s ``width`` or ``height``, and whether they replace
    links.

    A value on the node (or on a primitive feeding it) is the one input. A link from a
    node whose outputs feed nothing but sizes (a ``ResolutionSelector``, a
    ``GetImageSize`` of the reference, a math node, a primitive fed by one of those) is
    replaced by the task's value in every input it feeds of that name: the latent's
    first, then the others that must agree with it (``Flux2Scheduler``,
    ``ModelSamplingFlux``, a second latent...). Anything else fed by it (a prompt
    builder, an upscale factor) would lose its link for a value of another meaning, so
    then no input is found.
    """
    slot = _literal(graph, latent, (name,))
    if slot is not None:
        return (slot,), False
    if _linked(graph, latent, name) is None:
        return (), False
    # the outputs feeding the latent's size (a square: one output feeds both)
    links = {
        (str(link[0]), link[1])
        for link in (_inputs(graph, latent).get(n) for n in _SIZE_INPUTS)
        if isinstance(link, list) and len(link) == 2
    }
    fed = [
        (node_id, used)
        for node_id in graph
        for used, value in _inputs(graph, node_id).items()
        if isinstance(value, list) and len(value) == 2 and (str(value[0]), value[1]) in links
    ]
    if not all(used in _SIZE_INPUTS for _, used in fed):
        return (), False
    others = sorted(
        {(node, used) for node, used in fed if used == name and node != latent},
        key=lambda t: (len(t[0]), t[0]),
    )
    return ((latent, name), *others), True


def _latent_size(graph: Mapping[str, Any], latent: str) -> dict[str, Any]:
    width, cut_w = _size_input(graph, latent, "width")
    height, cut_h = _size_input(graph, latent, "height")
    if not width or not height:
        return {}
    cut = {name for name, flag in (("width", cut_w), ("height", cut_h)) if flag}
    more = {name: t[1:] for name, t in (("width", width), ("height", height)) if len(t) > 1}
    return {
        "width": width[0],
        "height": height[0],
        "batch_size": _literal(graph, latent, ("batch_size",)),
        "replaces": frozenset(cut),
        "also": more,
    }


def _encoder_text(graph: Mapping[str, Any], start: str | None, side: str) -> Slot | None:
    """Follow conditioning back from a sampler (or guider) input to the prompt's text."""
    node_id: str | None = start
    seen: set[str] = set()
    while node_id is not None and node_id not in seen and len(seen) < 30:
        seen.add(node_id)
        inputs = _inputs(graph, node_id)
        # an encoder: holds its text (or takes it from a text primitive)
        if "clip" in inputs or _class(graph, node_id).startswith(("CLIPTextEncode", "TextEncode")):
            slot = _literal(graph, node_id, _TEXT_INPUTS)
            if slot is not None and isinstance(_inputs(graph, slot[0])[slot[1]], str):
                return slot
        # a pass-through: the same side (ControlNetApplyAdvanced), else its conditioning
        following = _linked(graph, node_id, side)
        if following is None:
            for name in _CONDITIONING_INPUTS:
                following = _linked(graph, node_id, name)
                if following is not None:
                    break
        node_id = following
    return None


def _latent_source(graph: Mapping[str, Any], start: str | None) -> str | None:
    """The node making a sampler's starting latent (through single-input nodes)."""
    node_id: str | None = start
    seen: set[str] = set()
    while node_id is not None and node_id not in seen and len(seen) < 30:
        seen.add(node_id)
        inputs = _inputs(graph, node_id)
        if _class(graph, node_id) in _SAMPLERS:
            return node_id
        if "width" in inputs and "height" in inputs and _class(graph, node_id).startswith("Empty"):
            return node_id
        node_id = _linked(graph, node_id, "samples") or _linked(graph, node_id, "latent")
    return node_id


def _base_sampler(graph: Mapping[str, Any]) -> str | None:
    """The sampler that starts the picture: not fed by another sampler (base, not refiner
    or hires pass); among several, the one whose latent comes from an empty latent."""
    samplers = _nodes_of(graph, *_SAMPLERS)
    starting = [
        s
        for s in samplers
        if _class(graph, _latent_source(graph, _linked(graph, s, "latent_image")) or "")
        not in _SAMPLERS
    ]
    if len(starting) > 1:
        empty = [
            s
            for s in starting
            if _class(
                graph, _latent_source(graph, _linked(graph, s, "latent_image")) or ""
            ).startswith("Empty")
        ]
        starting = empty if len(empty) == 1 else starting
    return starting[0] if len(starting) == 1 else None


def detect_mapping(graph: Mapping[str, Any]) -> WorkflowMapping:
    """Find the usual slots in a graph of standard nodes; ambiguous ones stay ``None``.

    The prompt and negative are traced back from the sampler through single-input nodes
    (``FluxGuidance``, ``ControlNetApplyAdvanced``, ``ReferenceLatent``...) to a text
    encoder of any kind; ``SamplerCustomAdvanced`` is read through its guider, noise
    (``RandomNoise.noise_seed``) and scheduler; with two samplers (base + refiner, a hires
    pass) the one that starts the picture counts; the size comes from any
    ``Empty*LatentImage``. A node titled ``prompt``, ``negative``, ``seed``, ``width``...
    (``_meta.title``) marks that slot, over what was detected. Only inputs holding a value
    (not a link) are mapped.
    """
    found: dict[str, Any] = {}  # the slots, and the latent's "replaces" / "also"
    sampler = _base_sampler(graph)
    if sampler is not None:
        seed, steps, cfg, sampler_name, denoise = _SAMPLERS[_class(graph, sampler)]
        positive, negative = (
            _linked(graph, sampler, "positive"),
            _linked(graph, sampler, "negative"),
        )
        steps_node, cfg_node = sampler, sampler
        if _class(graph, sampler) == "SamplerCustomAdvanced":
            noise = _linked(graph, sampler, "noise")
            if noise is not None and "noise_seed" in _inputs(graph, noise):
                found["seed"] = _literal(graph, noise, ("noise_seed",))
            guider = _linked(graph, sampler, "guider")
            if guider is not None:
                cfg_node = guider
                positive = (
                    _linked(graph, guider, "positive")
                    or _linked(graph, guider, "cond1")
                    or _linked(graph, guider, "conditioning")
                )
                negative = _linked(graph, guider, "negative")
            sigmas = _linked(graph, sampler, "sigmas")
            if sigmas is not None:
                steps_node = sigmas
                found["steps"] = _literal(graph, sigmas, ("steps",))
                found["denoise"] = _literal(graph, sigmas, ("denoise",))
            chooser = _linked(graph, sampler, "sampler")
            if chooser is not None:
                found["sampler"] = _literal(graph, chooser, ("sampler_name",))
            found["cfg"] = _literal(graph, cfg_node, ("cfg",))
        else:
            for field, name, node in (
                ("seed", seed, sampler),
                ("steps", steps, steps_node),
                ("cfg", cfg, cfg_node),
                ("sampler", sampler_name, sampler),
                ("denoise", denoise, sampler),
            ):
                if name is not None:
                    found[field] = _literal(graph, node, (name,))
        found["prompt"] = _encoder_text(graph, positive, "positive")
        negative_slot = _encoder_text(graph, negative, "negative")
        if negative_slot is not None and negative_slot != found["prompt"]:
            found["negative"] = negative_slot  # not one node feeding both sides
        elif negative_slot is not None and negative_slot[0] == (positive or ""):
            # one encoder making both sides (TextEncodeQwenImage21: prompt and
            # negative_prompt, outputs 0 and 1)
            found["negative"] = _literal(graph, negative_slot[0], ("negative_prompt",))
        latent = _latent_source(graph, _linked(graph, sampler, "latent_image"))
        if latent is not None and _class(graph, latent).startswith("Empty"):
            found.update(_latent_size(graph, latent))
    if found.get("width") is None:
        latents = [
            k
            for k in _nodes_of(graph, *{_class(graph, n) for n in graph})
            if _class(graph, k).startswith("Empty")
            and "Latent" in _class(graph, k)
            and {"width", "height"} <= set(_inputs(graph, k))
        ]
        if len(latents) == 1:
            found.update(_latent_size(graph, latents[0]))
    loaders = _nodes_of(graph, "LoadImage")
    if len(loaders) == 1:
        found["image"] = _literal(graph, loaders[0], ("image",))
    checkpoints = _nodes_of(graph, "CheckpointLoaderSimple")
    if len(checkpoints) == 1:
        found["model"] = _literal(graph, checkpoints[0], ("ckpt_name",))
    titled = _titled(graph)
    found.update(titled)
    replaces = set(found.pop("replaces", None) or ()) - set(titled)
    also = {k: v for k, v in (found.pop("also", None) or {}).items() if k not in titled}
    keep: dict[str, Any] = {name: slot for name, slot in found.items() if slot is not None}
    return WorkflowMapping(**keep, replaces=frozenset(replaces), also=also)


def _titled(graph: Mapping[str, Any]) -> dict[str, Slot]:
    """Slots marked by node title (``_meta.title``), e.g. a node titled "prompt"."""
    marked: dict[str, Slot] = {}
    for node_id in sorted(graph, key=lambda k: (len(k), k)):
        node = graph[node_id]
        meta = node.get("_meta") if isinstance(node, Mapping) else None
        title = meta.get("title") if isinstance(meta, Mapping) else None
        field = _TITLES.get(str(title).strip().lower()) if isinstance(title, str) else None
        if field is None or field in marked:
            continue
        slot = _literal(graph, node_id, _TITLE_INPUTS[field])
        if slot is not None:
            marked[field] = slot
    return marked


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
        text = str(error.get("message") or error.get("type") or "invalid prompt")
        details = str(error.get("details") or "").strip()
        # "Cannot execute because node X does not exist." + "Node ID '#50'"
        parts.append(f"{text} ({details})" if details and details not in text else text)
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
                # the details of a range error are just the input's name again
                extra = details if details and details != name and details != text else ""
                parts.append(f"{where}: {text}" + (f" ({extra})" if extra else ""))
    return scrub("; ".join(parts))


@dataclass
class _Run:
    """One prompt on the server, as :meth:`ComfyUIProvider.generate` follows it."""

    prompt_id: str
    graph: Mapping[str, Any]
    #: when the server accepted it, and when it started running it (``None``: queued)
    queued_at: float
    started_at: float | None = None
    #: POST /prompt was sent (the server may hold it) / it ended or is known gone
    sent: bool = False
    settled: bool = False
    #: the POST /prompt in flight: a cancel waits for its answer before deleting, since
    #: a delete that reaches the server first finds nothing and the prompt runs anyway
    posting: asyncio.Task[Any] | None = None
    ws: Any = None
    #: the last progress fraction reported, and one held for the preview that follows
    fraction: float | None = None
    pending: float | None = None
    #: a sampler reports steps (then node-level ``progress_state`` is not used)
    steps_seen: bool = False
    #: nodes the server answered from its cache (``execution_cached``)
    cached: set[str] = field(default_factory=set)
    #: taken back from the queue by a pause, to be queued again on resume
    taken_back: bool = False
    #: how far each node is (0..1), from ``progress_state``
    nodes: dict[str, float] = field(default_factory=dict)


#: an example mapping for each parameter a workflow may lack an input for
_EXAMPLES = {
    "an input image": "{'image': '10.image'}",
    "a negative prompt": "{'negative': '7.text'}",
    "n > 1": "{'batch_size': '5.batch_size'}",
    "a size": "{'width': '5.width', 'height': '5.height'}",
    "steps": "{'steps': '3.steps'}",
    "cfg_scale": "{'cfg': '3.cfg'}",
    "a sampler": "{'sampler': '3.sampler_name'}",
    "strength": "{'denoise': '3.denoise'}",
    "a model": "{'model': '4.ckpt_name'}",
    "a seed": "{'seed': '3.seed'}",
}


class _GaveUp(ProviderError):
    """The server stayed down past ``server_wait``: ends the probing (not retryable)."""

    retryable = False


#: a call through a restart: each connection failure waits for the server (in the
#: retry hook), then the call is made again, with no pause of its own
_RESTART_RETRY = RetryPolicy(
    name="server-restart",
    max_retries=_OUTAGES,
    base_delay=0.0,
    max_delay=0.0,
    jitter=(1.0, 1.0),
    retry_timeouts=False,
)


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

    Time: the attempt timeout (the runner's, or ``run_timeout``) counts from when the
    server starts the prompt; ``queue_timeout`` bounds the time it waits in ComfyUI's
    queue. When the server stops answering an attempt waits for it, then raises
    :class:`ServerUnavailableError` (the run pauses until the server answers again): a
    server that refuses connections (nothing listens: it is down or restarting, and its
    queue went with it) after ``unreachable_wait`` seconds; one that takes connections
    but does not answer them (busy loading, a slow network) after ``server_wait``.
    """

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label
    capabilities: Capabilities = INFO.capabilities
    own_timeout: ClassVar[bool] = True

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
        queue_timeout: float | None = 3600.0,
        run_timeout: float | None = None,
        server_wait: float = 90.0,
        unreachable_wait: float = 1.0,
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
        self.queue_timeout = queue_timeout
        self.run_timeout = run_timeout
        self.server_wait = server_wait
        self.unreachable_wait = unreachable_wait
        #: seconds between ``/queue`` looks when polling, and at least between two looks
        #: prompted by ``status`` broadcasts (a busy server sends many)
        self.queue_check = 2.0
        self.status_check = 1.0
        #: first pause between probes of a server that does not answer (doubles to 5 s)
        self.server_probe_interval = 0.5
        #: attempts now waiting for the server to answer again; outages lived through
        self.waiting_for_server = 0
        self.outages = 0
        #: the run is paused: prompts still pending in ComfyUI's queue are taken back
        self.taking_back = False
        self._down_since: float | None = None
        self._clock: Callable[[], float] = time.monotonic
        #: the wait between probes of a server that does not answer (tests inject theirs)
        self._sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        #: seed input maxima read from /object_info, per node class (once per server)
        self._seed_limits: dict[str, tuple[int, int] | None] = {}
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
            # the example names the first missing field's own mapping key
            example = _EXAMPLES[missing[0]]
            raise NotSupportedError(
                f"this ComfyUI workflow has no input mapped for {', '.join(missing)}; add "
                f"the node input to mapping= (e.g. mapping={example}) or a node titled "
                "for it, or clear the parameter",
                task_id=request.task_id,
            )
        if mapping.image is not None and not request.images:
            node_id, _ = mapping.image
            raise NotSupportedError(
                f"this ComfyUI workflow loads an input image (node {node_id}, "
                f"{self._graph_for(request)[0][node_id].get('class_type')}) and the task has "
                "none; add a reference image to the task (the workflow's own default image "
                "is not used silently)",
                task_id=request.task_id,
            )
        if mapping.prompt is None:
            raise NotSupportedError(
                "this ComfyUI workflow has no prompt input mapped; pass "
                "mapping={'prompt': '<node id>.text'}",
                task_id=request.task_id,
            )

    def pause_pending(self) -> None:
        """Take back the prompts still pending in ComfyUI's queue (noticed by each
        attempt at its next look, within ``idle_check`` seconds); running ones finish."""
        self.taking_back = True

    def resume_pending(self) -> None:
        """Queue the prompts taken back by a pause again."""
        self.taking_back = False

    async def check(self) -> None:
        """Probe the server: ``GET /system_stats``."""
        await self._http.json("GET", "/system_stats")

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ graph
    def build_graph(
        self,
        request: GenerationRequest,
        uploaded: list[str] | None = None,
        *,
        seed_range: tuple[int, int] | None = None,
    ) -> tuple[dict[str, Any], int | None]:
        """The graph for ``request`` with its fields filled in, and the seed used.

        ``seed_range`` is the mapped seed input's (min, max) from ``/object_info``; a
        drawn seed stays inside it. No seed is drawn (``None``) when none is mapped.
        """
        base, mapping = self._graph_for(request)
        graph = copy.deepcopy(base)
        p = request.params

        def put(name: str, value: Any) -> None:
            if value is not None:
                for node_id, input_name in mapping.targets(name):
                    graph[node_id]["inputs"][input_name] = value

        # A workflow's own fixed seed would give every task the same picture: a task
        # without a seed gets a fresh random one, recorded with its images.
        seed: int | None = None
        if mapping.seed is not None:
            low, high = seed_range or (0, _SEED_FALLBACK_MAX)
            high = min(high, _SEED_DRAW_MAX)
            if p.seed is not None and p.seed >= 0:
                seed = p.seed
            else:
                seed = self._rng.randint(max(0, low), max(0, low, high))
        put("prompt", request.prompt)
        put("negative", p.negative_prompt or ("" if self.builtin else None))
        put("seed", seed)
        dims = p.dimensions
        if dims:
            put("width", dims[0])
            put("height", dims[1])
        put("batch_size", p.n)
        put("steps", p.steps)
        put("cfg", p.cfg_scale)
        put("sampler", p.sampler)
        put("denoise", p.strength)
        put("model", p.model or self.model)
        if uploaded:
            put("image", uploaded[0])
        for key, value in p.extras.items():
            # extras: {"<node>.<input>": value} sets any other input of the graph
            node_id, _, input_name = str(key).partition(".")  # "98:31.values.a"
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
        uploaded = [
            await self._while_up(partial(self._upload, im.data, im.mime, request), request)
            for im in request.images
        ]
        seed_range = await self._while_up(partial(self._seed_range, request), request)
        graph, seed = self.build_graph(request, uploaded, seed_range=seed_range)
        client_id = uuid.uuid4().hex
        # Choosing the id ourselves (newer servers accept it; older ones ignore it and
        # answer their own) lets a cancel during POST /prompt still dequeue the run, and
        # tells after a lost connection whether the server got the prompt.
        run = _Run(str(uuid.uuid4()), graph, queued_at=self._clock())
        run.ws = await self._connect_ws(client_id) if self.websocket else None
        try:
            try:
                await self._submit(run, client_id, request)
                entry = await self._await_result(run, client_id, request, on_progress)
            except asyncio.CancelledError:
                if run.posting is not None and not run.posting.done():
                    await asyncio.wait({run.posting}, timeout=5.0)
                if run.sent and not run.settled:
                    await self._cancel(run.prompt_id)
                raise
            except ServerUnavailableError:
                raise  # nothing answers: no cancel can reach it (a restart lost it anyway)
            except ProviderError as exc:
                # The runner's next attempt queues the graph again, so this run must not
                # go on using the GPU meanwhile (a prompt never accepted needs nothing).
                if exc.retryable and run.sent and not run.settled:
                    await self._cancel(run.prompt_id)
                raise
            # finished: the outputs stay on the server, so /view retries are harmless
            images = await self._collect(entry, run.prompt_id, seed, request, run.cached)
        finally:
            if run.ws is not None:
                await self._close_ws(run.ws)
        if on_progress is not None:
            on_progress(1.0, None)
        return images

    async def _seed_range(self, request: GenerationRequest) -> tuple[int, int] | None:
        """(min, max) of the mapped seed input, from ``/object_info`` (once per class)."""
        graph, mapping = self._graph_for(request)
        if mapping.seed is None or (request.params.seed is not None and request.params.seed >= 0):
            return None
        ranges = []
        for node_id, input_name in mapping.targets("seed"):
            cls = str(graph[node_id].get("class_type"))
            key = f"{cls}.{input_name}"
            if key not in self._seed_limits:
                self._seed_limits[key] = await self._input_range(cls, input_name, request)
            ranges.append(self._seed_limits[key])
        if all(r is None for r in ranges):
            return None
        # several seed inputs set together (base and refiner): a seed all of them take;
        # one whose range is unknown counts with the safe fallback range
        both = [r or (0, _SEED_FALLBACK_MAX) for r in ranges]
        return max(r[0] for r in both), min(r[1] for r in both)

    async def _input_range(
        self, cls: str, input_name: str, request: GenerationRequest
    ) -> tuple[int, int] | None:
        try:
            body = await self._http.json("GET", f"/object_info/{cls}", task_id=request.task_id)
        except ProviderConnectionError:
            raise  # the server is down: the attempt's own wait handles it
        except ProviderError as exc:
            log.info("%s: /object_info/%s unavailable (%s)", self.name, cls, exc)
            return None
        schema = body.get(cls) if isinstance(body, Mapping) else None
        inputs = schema.get("input") if isinstance(schema, Mapping) else None
        if not isinstance(inputs, Mapping):
            return None
        for group in ("required", "optional"):
            spec = inputs.get(group)
            entry = spec.get(input_name) if isinstance(spec, Mapping) else None
            if isinstance(entry, list) and len(entry) > 1 and isinstance(entry[1], Mapping):
                low, high = entry[1].get("min", 0), entry[1].get("max")
                if isinstance(high, int) and isinstance(low, int) and high >= max(low, 0):
                    return low, high
        return None

    async def _submit(self, run: _Run, client_id: str, request: GenerationRequest) -> None:
        """``POST /prompt``; through a restart, queue it once the server answers again."""
        body = {"prompt": run.graph, "client_id": client_id, "prompt_id": run.prompt_id}
        broke = False

        async def post() -> Any:
            nonlocal broke
            if broke:
                # the POST may have reached the server before the connection broke
                state, _ = await self._whereabouts(run.prompt_id, request)
                if state is not None:
                    return {"prompt_id": run.prompt_id}
            run.sent = True
            run.posting = asyncio.ensure_future(
                self._http.json("POST", "/prompt", json=body, task_id=request.task_id)
            )
            try:
                # shielded: a cancel lets the POST finish, so the server has the prompt
                # (or said no) before the delete that takes it back
                return await asyncio.shield(run.posting)
            except ProviderConnectionError:
                broke = True
                raise
            except ProviderError as exc:
                if exc.status_code is not None:
                    run.sent = False  # the server answered an error: nothing was queued
                raise

        answer = await self._while_up(post, request)
        if not isinstance(answer, Mapping) or not isinstance(answer.get("prompt_id"), str):
            raise MalformedResponseError(
                f"{self.name}: POST /prompt answered without a prompt_id",
                provider=self.name,
                task_id=request.task_id,
            )
        run.prompt_id = answer["prompt_id"]
        run.queued_at = self._clock()

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

    @staticmethod
    async def _close_ws(ws: Any) -> None:
        """Close the socket; one whose closing handshake stalls is cut (never leaked)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2.0)
        transport = getattr(ws, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.abort()

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

    async def _await_result(
        self,
        run: _Run,
        client_id: str,
        request: GenerationRequest,
        on_progress: ProgressCallback | None,
    ) -> Mapping[str, Any]:
        """Follow the prompt until its history entry is there; raise if it cannot be.

        Events for this prompt come over the socket. When none came for ``idle_check``
        seconds (queued behind other work, or an event was missed) — however chatty the
        server's ``status`` broadcasts — ``/history`` and ``/queue`` say where it is; a
        ``status`` broadcast while it waits (the queue changed: cleared, say) makes that
        check at once. Without a socket, ``/history`` is polled and ``/queue`` looked at
        every ``queue_check`` seconds. A prompt that is neither running nor pending and
        has no history was removed from the queue: a retryable failure.
        """
        run_limit = self.run_timeout if self.run_timeout is not None else request.timeout
        last_own = last_check = self._clock()
        check_now = False
        reconnects = 0
        outages = self.outages
        while True:
            if self.taking_back and run.started_at is None:
                await self._take_back(run, request)
            if run.taken_back:
                while self.taking_back:  # set from the runner's pause/resume
                    await asyncio.sleep(self.poll_interval)
                run.prompt_id, run.taken_back, run.settled = str(uuid.uuid4()), False, False
                await self._submit(run, client_id, request)
                last_own = last_check = self._clock()
                continue
            now = self._clock()
            self._check_deadlines(run, run_limit, now, request)
            if self.outages != outages:
                # the server went away and came back meanwhile: events were missed, and
                # the socket (which the restart closed) may be had again
                outages, check_now, last_check = self.outages, True, 0.0
                if run.ws is None and self.websocket and reconnects <= 3:
                    reconnects += 1
                    run.ws = await self._connect_ws(client_id)
            if run.ws is None:
                entry = await self._while_up(
                    partial(self._history, run.prompt_id, request), request
                )
                if entry is None and (check_now or now - last_check >= self.queue_check):
                    check_now, last_check = False, now
                    entry = await self._while_up(partial(self._look, run, request), request)
                if entry is not None:
                    return entry
                await asyncio.sleep(self.poll_interval)
                continue
            due = last_check + self.status_check if check_now else last_own + self.idle_check
            try:
                raw = await asyncio.wait_for(run.ws.recv(), max(0.0, due - now))
            except asyncio.TimeoutError:
                self._flush(run, on_progress)
                now = self._clock()
                if now < due:
                    continue  # an injected clock that has not moved
                check_now, last_check, last_own = False, now, now
                entry = await self._while_up(
                    partial(self._history, run.prompt_id, request), request
                )
                if entry is None:
                    entry = await self._while_up(partial(self._look, run, request), request)
                if entry is not None:
                    return entry
                continue
            except Exception as exc:  # connection dropped: reconnect, or poll
                log.info("%s: WebSocket closed (%s)", self.name, exc)
                await self._close_ws(run.ws)
                run.ws = None
                reconnects += 1
                if reconnects <= 3:
                    run.ws = await self._connect_ws(client_id)
                check_now = True  # events may have been missed meanwhile
                continue
            outcome = self._on_frame(run, raw, request, on_progress)
            if outcome == "own":
                last_own = self._clock()
            elif outcome == "queue" and run.started_at is None:
                check_now = True
            elif outcome == "done":
                # the history entry is stored before the final "executing" event; when
                # it is not there, a restart lost it: the polling below finds that out
                entry = await self._while_up(
                    partial(self._history, run.prompt_id, request), request
                )
                if entry is not None:
                    run.settled = True
                    return entry
                await self._close_ws(run.ws)
                run.ws, reconnects, check_now = None, 4, True

    def _on_frame(
        self,
        run: _Run,
        raw: str | bytes,
        request: GenerationRequest,
        on_progress: ProgressCallback | None,
    ) -> str | None:
        """Handle one socket frame: ``"own"`` (about this prompt), ``"queue"`` (a queue
        status broadcast), ``"done"`` (this prompt finished) or ``None``."""
        if isinstance(raw, bytes):
            # binary frames: 4-byte event type; 1 = preview (4-byte format + image). A
            # preview follows the progress frame of its step: they are reported together,
            # so the preview neither resets the fraction nor is thinned away after it.
            if len(raw) > 8 and raw[:4] == b"\0\0\0\1":
                if on_progress is not None:
                    fraction = run.pending if run.pending is not None else run.fraction
                    run.pending = None
                    if fraction is not None:
                        run.fraction = fraction
                    on_progress(fraction, raw[8:])
                return "own"
            return None
        try:
            message = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(message, Mapping):
            return None
        kind, data = message.get("type"), message.get("data")
        if not isinstance(data, Mapping):
            return None
        if kind == "status":
            return "queue"
        if data.get("prompt_id") != run.prompt_id:
            return None
        if kind != "progress" and kind != "progress_state":
            self._flush(run, on_progress)
        if kind in ("execution_start", "execution_cached", "executing"):
            if run.started_at is None:
                run.started_at = self._clock()
            if kind == "execution_cached" and isinstance(data.get("nodes"), list):
                run.cached.update(str(n) for n in data["nodes"])
        if kind == "progress":
            value, top = data.get("value"), data.get("max")
            if isinstance(value, (int, float)) and isinstance(top, (int, float)) and top > 0:
                run.steps_seen = True
                self._flush(run, on_progress)
                run.pending = min(0.99, value / top)
        elif kind == "progress_state":
            fraction = self._node_progress(run, data.get("nodes"))
            if fraction is not None and not run.steps_seen:
                self._flush(run, on_progress)
                run.pending = fraction
        elif kind == "execution_error":
            run.settled = True
            raise self._execution_error(data, request)
        elif kind == "execution_interrupted":
            run.settled = True
            raise ServerError(
                f"{self.name}: the run was interrupted on the server (node "
                f"{data.get('node_id')}); someone pressed Cancel in ComfyUI?",
                provider=self.name,
                task_id=request.task_id,
                retryable=False,
            )
        elif kind == "executing" and data.get("node") is None:
            return "done"  # sent after the history entry is stored
        return "own"

    @staticmethod
    def _node_progress(run: _Run, nodes: object) -> float | None:
        """The share of the graph's nodes done, from a ``progress_state`` event."""
        if not isinstance(nodes, Mapping) or not run.graph:
            return None
        done = run.nodes  # kept across events: a server may send only the nodes that moved
        done.update({n: 1.0 for n in run.cached})
        for node_id, state in nodes.items():
            if not isinstance(state, Mapping):
                continue
            if state.get("state") == "finished":
                done[str(node_id)] = 1.0
            else:
                value, top = state.get("value"), state.get("max")
                if isinstance(value, (int, float)) and isinstance(top, (int, float)) and top > 0:
                    done[str(node_id)] = max(0.0, min(1.0, value / top))
        return min(0.99, sum(done.values()) / len(run.graph))

    @staticmethod
    def _flush(run: _Run, on_progress: ProgressCallback | None) -> None:
        """Report a progress value held back for a preview that did not come."""
        if run.pending is not None and on_progress is not None:
            run.fraction, run.pending = run.pending, None
            on_progress(run.fraction, None)

    def _check_deadlines(
        self, run: _Run, run_limit: float | None, now: float, request: GenerationRequest
    ) -> None:
        if run.started_at is None:
            if self.queue_timeout is not None and now - run.queued_at > self.queue_timeout:
                raise ProviderTimeoutError(
                    f"{self.name}: the prompt waited {self.queue_timeout:g} s in ComfyUI's "
                    "queue without starting (other work ahead of it); it is taken off the "
                    "queue. Raise queue_timeout= to wait longer on a busy server",
                    provider=self.name,
                    task_id=request.task_id,
                )
        elif run_limit is not None and now - run.started_at > run_limit:
            raise ProviderTimeoutError(
                f"{self.name}: no result {run_limit:g} s after ComfyUI started the prompt; "
                "it is stopped",
                provider=self.name,
                task_id=request.task_id,
            )

    async def _take_back(self, run: _Run, request: GenerationRequest) -> None:
        """Delete the prompt from ComfyUI's queue if it has not started (a pause)."""
        await self._while_up(
            partial(
                self._http.request,
                "POST",
                "/queue",
                json={"delete": [run.prompt_id]},
                task_id=request.task_id,
            ),
            request,
        )
        state, _ = await self._whereabouts(run.prompt_id, request)
        if state == "running" and run.started_at is None:
            run.started_at = self._clock()  # it started first: it runs to the end
        elif state is None:
            run.taken_back = run.settled = True
            log.info("%s: prompt %s taken back from the queue (paused)", self.name, run.prompt_id)

    async def _look(self, run: _Run, request: GenerationRequest) -> Mapping[str, Any] | None:
        """Where the prompt is: its history entry if done; raise if it left the queue."""
        state, entry = await self._whereabouts(run.prompt_id, request)
        if state == "running" and run.started_at is None:
            run.started_at = self._clock()
        if state is None:
            run.settled = True
            raise ServerError(
                f"{self.name}: the prompt was removed from ComfyUI's queue before it finished "
                "(someone cleared the queue, or the server restarted); the next attempt "
                "queues it again",
                provider=self.name,
                task_id=request.task_id,
                retryable=True,
            )
        return entry

    async def _whereabouts(
        self, prompt_id: str, request: GenerationRequest
    ) -> tuple[str | None, Mapping[str, Any] | None]:
        """``("running" | "pending" | "unknown", None)``, ``("done", entry)`` or
        ``(None, None)`` when the server has never heard of it (or lost it)."""
        state = await self._queue_state(prompt_id, request.task_id, retry=True)
        if state in ("running", "pending"):
            return state, None
        # ComfyUI stores the history entry before it takes a prompt off "running", so a
        # prompt absent from the queue above is in the history if it finished.
        entry = await self._history(prompt_id, request)
        if entry is not None:
            return "done", entry
        return (None, None) if state == "absent" else ("unknown", None)

    async def _queue_state(self, prompt_id: str, task_id: str | None, *, retry: bool) -> str:
        """``"running"``, ``"pending"``, ``"absent"`` or ``"unknown"``, from ``GET /queue``."""
        call = partial(self._http.json, "GET", "/queue", task_id=task_id)
        body = await (self._fetch(call) if retry else call())
        if not isinstance(body, Mapping):
            return "unknown"
        for key, name in (("queue_running", "running"), ("queue_pending", "pending")):
            rows = body.get(key)
            if not isinstance(rows, list):
                return "unknown"  # cannot tell: never conclude it is gone
            # rows are [number, prompt_id, graph, extra, outputs]
            if any(isinstance(r, list) and len(r) > 1 and r[1] == prompt_id for r in rows):
                return name
        return "absent"

    async def _wait_for_server(self, error: ProviderError, request: GenerationRequest) -> None:
        """Wait until the server answers again, or raise :class:`ServerUnavailableError`.

        A probe whose connection is refused (nothing listens at the address: ComfyUI is
        down or restarting, and its queue and running prompt went with it) ends the wait
        after ``unreachable_wait`` seconds, so that the run pauses for the server at once
        instead of holding its tasks as "running"; a probe that connects but gets no
        answer in time (a busy or far server) is waited for up to ``server_wait``.
        """
        started = self._clock()
        if self._down_since is None:
            self._down_since = started
            log.warning(
                "%s: the server at %s does not answer (%s); waiting for it",
                self.name,
                self.base_url,
                error,
            )
        last = error
        refused = True

        async def probe() -> None:
            nonlocal last, refused
            try:
                await self._http.request("GET", "/system_stats", task_id=request.task_id)
            except (ProviderConnectionError, ProviderTimeoutError) as exc:
                last = exc
                refused = not isinstance(exc, ProviderTimeoutError)
                bound = min(self.unreachable_wait, self.server_wait) if refused else None
                waited = self._clock() - started
                if waited >= self.server_wait or (bound is not None and waited >= bound):
                    raise _GaveUp(str(exc)) from None
                raise
            except ProviderError:
                pass  # it answers (even an error page): it is up

        policy = RetryPolicy(
            name="server-wait",
            max_retries=10**6,  # bounded by server_wait / unreachable_wait, in probe()
            base_delay=self.server_probe_interval,
            max_delay=5.0,
            jitter=(1.0, 1.0),
        )
        self.waiting_for_server += 1
        try:
            await retrying(probe, policy, sleep=self._sleep)
        except _GaveUp:
            self._down_since = None  # the run takes over the waiting (and says so)
            said = (
                "cannot be reached (nothing answers at that address)"
                if refused
                else f"has not answered for {self.server_wait:g} s"
            )
            raise ServerUnavailableError(
                f"{self.name}: the ComfyUI server at {self.base_url} {said} (last error: "
                f"{last}); start it again (or check the address): a run waits for it and "
                "goes on by itself, or retry the task",
                provider=self.name,
                task_id=request.task_id,
            ) from None
        finally:
            self.waiting_for_server -= 1
        self.outages += 1
        if self._down_since is not None:
            log.warning("%s: the server at %s answers again", self.name, self.base_url)
            self._down_since = None

    async def _while_up(self, call: Callable[[], Awaitable[T]], request: GenerationRequest) -> T:
        """``call()``, through a restart of the server: a connection failure waits for
        the server (:meth:`_wait_for_server`) and calls again, at most ``_OUTAGES``
        times; any other error is raised as it is (the runner's attempts handle it)."""

        async def on_retry(retry: Retry) -> None:
            error = retry.error
            if not isinstance(error, ProviderConnectionError) or isinstance(
                error, ServerUnavailableError
            ):
                raise error
            await self._wait_for_server(error, request)

        return await retrying(call, _RESTART_RETRY, on_retry=on_retry)

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

    async def _collect(
        self,
        entry: Mapping[str, Any],
        prompt_id: str,
        seed: int | None,
        request: GenerationRequest,
        cached: frozenset[str] | set[str] = frozenset(),
    ) -> list[ImageData]:
        """The images of a finished history entry (``cached``: nodes the server answered
        from its cache)."""
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
        videos: list[str] = []
        for node_id, out in outputs.items():
            if (wanted is not None and node_id != wanted) or not isinstance(out, Mapping):
                continue
            animated = out.get("animated")
            for key in ("images", "gifs", "videos"):
                for ref in out.get(key) or []:
                    if not isinstance(ref, Mapping):
                        continue
                    name = str(ref.get("filename", ""))
                    # SaveVideo / SaveWEBM list their file under "images" with
                    # "animated": [true]; VideoHelperSuite under "gifs"
                    if (
                        key != "images"
                        or name.lower().endswith(_VIDEO_EXTENSIONS)
                        or (isinstance(animated, list) and any(animated))
                    ):
                        videos.append(name)
                    else:
                        refs.append((node_id, ref))
        # Saved images are the results; previews only count when nothing was saved.
        saved = [r for r in refs if r[1].get("type", "output") == "output"]
        refs = saved or refs
        if not refs and videos:
            raise BadRequestError(
                f"{self.name}: the workflow's output is a video ({', '.join(videos[:3])}), "
                "and nbbatch keeps images; end the workflow in a SaveImage node (or map "
                "output= to a node that saves images)",
                provider=self.name,
                task_id=request.task_id,
            )
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
            if node_id in cached:
                # ComfyUI answered an identical graph from its cache: the same files as
                # the earlier run (same inputs and seed, so the same picture)
                info["cached"] = True
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
            if await self._queue_state(prompt_id, None, retry=False) == "running":
                await self._http.request("POST", "/interrupt", json={"prompt_id": prompt_id})

        try:
            await asyncio.wait_for(asyncio.shield(run()), 5.0)
        except (ProviderError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
            log.warning("%s: could not cancel prompt %s: %s", self.name, prompt_id, exc)
