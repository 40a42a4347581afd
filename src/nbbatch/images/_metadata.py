"""Generation parameters inside image files: written by nbbatch, read from many tools.

Where the bytes go in each container is ``_containers``' job; this module holds what
they mean (nbbatch's record and the dialects of other tools).

Writing (:func:`embed_metadata`, called by the runner for every saved image):

* **PNG** — a ``parameters`` text chunk in AUTOMATIC1111's *infotext* format (prompt
  line(s), ``Negative prompt: …``, then ``Steps: 20, Sampler: Euler a, CFG scale: 7,
  Seed: 123, Size: 512x512, Model: …``), which A1111/Forge's PNG Info, SD.Next, Civitai
  and most image browsers read, plus an ``nbbatch`` text chunk holding nbbatch's full JSON
  record (task id, parent id, batch id, provider, params, timings). Both go right after
  ``IHDR``: tools that only read the header (Pillow's lazy ``Image.open``, hence A1111)
  see them, and the pixels are not re-encoded — the chunks are spliced into the bytes.
* **JPEG / WebP** — the infotext in EXIF ``UserComment`` (what A1111 writes for those
  formats) and the JSON record in an XMP packet. Segments/chunks are spliced in too; the
  compressed image data is copied byte for byte.
* GIF is left as it is (no widely read place for parameters).

Reading (:func:`read_generation_info`) understands nbbatch's own files, A1111/Forge
infotext (by the rules A1111's PNG Info applies, see :func:`parse_infotext`), ComfyUI's
``prompt`` / ``workflow`` JSON chunks, SwarmUI's ``sui_image_params`` JSON and
InvokeAI's ``invokeai_metadata`` JSON. It never
decodes pixels; every length read from the file is bounded. :func:`task_from_image` turns
a dropped file into a new task ("remix from file").
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError, ImageError, ImageRejectedError
from ..core._model import Params, Task
from ..core._secrets import scrub
from ._containers import (
    INFOTEXT_KEY,
    RECORD_KEY,
    ContainerError,
    embed_texts,
    read_texts,
    xmp_fields,
)
from ._decode import DEFAULT_LIMITS, ImageInfo, ImageLimits, sniff_format

if TYPE_CHECKING:
    from ..core._model import GeneratedImage

__all__ = [
    "GenerationInfo",
    "embed_metadata",
    "format_infotext",
    "generation_record",
    "parse_infotext",
    "read_generation_info",
    "task_from_image",
]

log = logging.getLogger("nbbatch")

RECORD_FORMAT = "nbbatch/1"


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class GenerationInfo:
    """Generation parameters found in an image file.

    ``source`` says who wrote them: ``"nbbatch"``, ``"a1111"`` (also Forge / SD.Next
    infotext), ``"comfyui"``, ``"swarmui"``, ``"invokeai"`` or ``"none"`` when the file
    carries none.
    ``extras`` holds every other key the writer recorded (e.g. ``"Schedule type"``);
    ``record`` is nbbatch's full JSON record when present; ``raw`` maps each metadata
    field found (PNG keyword, ``"UserComment"``, ``"XMP"``) to its text.
    """

    source: str = "none"
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    strength: float | None = None
    provider: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] | None = None
    raw: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.prompt is not None

    def to_params(self) -> Params:
        """The fields nbbatch understands, as :class:`Params`; out-of-range values dropped."""
        if self.record is not None:
            try:
                params = Params.from_dict(self.record.get("params") or {})
            except (ConfigError, TypeError):
                params = Params()
            seed = self.seed if _valid_seed(self.seed) else params.seed
            if _server_infotext(self.record) is not None:
                # the service's own account of the image wins over what was asked
                server = GenerationInfo(
                    sampler=self.sampler, model=self.model, steps=self.steps,
                    cfg_scale=self.cfg_scale, width=self.width, height=self.height,
                ).to_params()  # fmt: skip
                changes = {
                    k: getattr(server, k)
                    for k in ("sampler", "model", "steps", "cfg_scale", "size")
                    if getattr(server, k) is not None
                }
                params = params.replace(**changes)
            return params.replace(seed=seed, n=1)
        size = None
        if self.width and self.height and 0 < self.width < 100_000 and 0 < self.height < 100_000:
            size = f"{self.width}x{self.height}"
        return Params(
            size=size,
            seed=self.seed if _valid_seed(self.seed) else None,
            steps=self.steps if self.steps is not None and 1 <= self.steps <= 1000 else None,
            cfg_scale=self.cfg_scale,
            negative_prompt=self.negative_prompt or None,
            sampler=self.sampler,
            strength=(
                self.strength if self.strength is not None and 0 <= self.strength <= 1 else None
            ),
            model=self.model,
        )

    def to_task(self, *, keep_seed: bool = True, provider: str | None = None) -> Task:
        """A new (idle) task that regenerates this image; ``keep_seed=False`` re-rolls it.

        The task is not pinned to the provider that made the image (``self.provider``)
        unless ``provider`` is given: it runs on whatever provider the batch runs with.
        """
        if not self.prompt:
            raise ImageError(
                f"the image carries no prompt (metadata source: {self.source}); nothing to "
                "remix. Images saved by chat apps and social sites usually lost it."
            )
        params = self.to_params()
        if not keep_seed:
            params = params.replace(seed=None)
        parent = None
        original = None
        if self.record is not None:
            parent = _str_or_none(self.record.get("task_id"))
            original = _str_or_none(self.record.get("original_prompt"))
        return Task(
            prompt=self.prompt,
            params=params,
            provider=provider,
            parent_id=parent,
            original_prompt=original,
        )


def _valid_seed(seed: int | None) -> bool:
    return seed is not None and 0 <= seed < 2**63


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --------------------------------------------------------------------------- records
def generation_record(
    task: Task,
    *,
    provider: str,
    seed: int | None,
    index: int = 0,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """nbbatch's JSON record for one image of ``task`` (what :func:`embed_metadata` writes)."""
    params = task.params.to_dict()
    params.pop("n", None)  # one file is one image
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "task_id": task.id,
        "parent_id": task.parent_id,
        "batch_id": task.batch_id,
        "image_index": index,
        "prompt": task.prompt,
        "original_prompt": task.original_prompt,
        "negative_prompt": task.params.negative_prompt,
        "seed": seed,
        "provider": provider,
        "params": params,
        "references": [r.to_dict() for r in task.references],
        "attempts": task.attempts,
        "timings": {
            "created_at": task.created_at,
            "started_at": task.started_at,
            "saved_at": time.time(),
        },
    }
    if info:
        record["info"] = dict(info)
    return record


def _quote(value: str) -> str:
    # A value with a comma, colon, quote or newline would break the `key: value, …` line;
    # A1111 writes such values as JSON strings and unquotes them when parsing.
    if any(c in value for c in ',:"\n\r'):
        return json.dumps(value, ensure_ascii=False)
    return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_infotext(
    prompt: str,
    negative_prompt: str | None = None,
    fields: Mapping[str, object] | None = None,
) -> str:
    """A1111 infotext: prompt, optional ``Negative prompt:`` line, ``key: value`` line."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    parts = []
    for key, value in (fields or {}).items():
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            text = str(value)
        elif isinstance(value, (int, float)):
            text = _num(value)
        else:
            text = _quote(str(value))
        parts.append(f"{key}: {text}")
    if parts:
        lines.append(", ".join(parts))
    return "\n".join(lines)


def _server_infotext(record: Mapping[str, Any]) -> str | None:
    """The infotext the service itself wrote for the image (A1111 / Forge), if any."""
    info = record.get("info")
    text = info.get("infotext") if isinstance(info, Mapping) else None
    return text if isinstance(text, str) and text.strip() else None


def _record_infotext(record: Mapping[str, Any], info: ImageInfo) -> str:
    server = _server_infotext(record)
    if server is not None:
        return server  # what really produced the image; the record keeps what was asked
    params = record.get("params") or {}
    from ..core._version import __version__

    fields: dict[str, object] = {
        "Steps": params.get("steps"),
        "Sampler": params.get("sampler"),
        "CFG scale": params.get("cfg_scale"),
        "Seed": record.get("seed"),
        "Size": f"{info.width}x{info.height}",
        "Model": params.get("model"),
        "Denoising strength": params.get("strength"),
        "Provider": record.get("provider"),
        # Always at least three fields (Size, Provider, Version): A1111's parser only
        # treats the last line as parameters when it holds three or more.
        "Version": f"nbbatch {__version__}",
    }
    return format_infotext(
        str(record.get("prompt") or ""), record.get("negative_prompt") or None, fields
    )


# --------------------------------------------------------------------------- writing
def embed_metadata(data: bytes, info: ImageInfo, record: Mapping[str, Any]) -> bytes:
    """Return ``data`` with the infotext and the JSON ``record`` embedded.

    Pixels are never re-encoded. Any existing ``parameters``/``nbbatch`` PNG chunk, EXIF
    ``UserComment`` and XMP packet is replaced; everything else the file carried is kept.
    A file whose container cannot be parsed is returned unchanged (logged): metadata
    must never cost a generated image.
    """
    # Files get shared: a key that leaked into a provider's info dict must not travel.
    infotext = scrub(_record_infotext(record, info))
    payload = scrub(json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str))
    try:
        return embed_texts(data, info, infotext, payload)
    except (ContainerError, ValueError, struct.error, IndexError, KeyError, TypeError) as exc:
        log.warning("could not embed generation metadata in a %s: %s", info.format, exc)
    return data


def read_generation_info(
    source: bytes | str | os.PathLike[str] | GeneratedImage,
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> GenerationInfo:
    """Generation parameters embedded in an image (path, bytes or ``GeneratedImage``).

    Returns ``GenerationInfo(source="none")`` (falsy) when the file carries none; raises
    :class:`ImageRejectedError` for files that are too large or not PNG/JPEG/WebP/GIF.
    """
    data = _read_capped(source, limits)
    fmt = sniff_format(data)
    if fmt is None or fmt not in limits.formats:
        raise ImageRejectedError(
            f"{fmt or 'unknown data'} is not an accepted image format; accepted: "
            f"{', '.join(limits.formats)}",
            reason="format",
        )
    try:
        texts = read_texts(data, fmt)
    except ContainerError as exc:
        raise ImageRejectedError(
            f"{fmt} file structure is damaged: {exc}", reason="corrupt"
        ) from None
    return parse_texts(texts)


def _read_capped(
    source: bytes | str | os.PathLike[str] | GeneratedImage, limits: ImageLimits
) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source.path) if hasattr(source, "path") else Path(source)
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageRejectedError(
                f"{path.name}: file is {size / 1e6:.1f} MB; the limit is "
                f"{limits.max_bytes / 1e6:.1f} MB",
                reason="too_many_bytes",
                limit=limits.max_bytes,
                actual=size,
            )
        data = path.read_bytes()
    if len(data) > limits.max_bytes:
        raise ImageRejectedError(
            f"image is {len(data) / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.1f} MB",
            reason="too_many_bytes",
            limit=limits.max_bytes,
            actual=len(data),
        )
    return data


def parse_texts(texts: Mapping[str, str]) -> GenerationInfo:
    """Interpret metadata fields (PNG keywords, ``UserComment``, ``XMP``) by who wrote them."""
    raw = dict(texts)
    record = _load_record(raw.get(RECORD_KEY))
    xmp = raw.get("XMP")
    xmp_record, xmp_comment = xmp_fields(xmp) if xmp else (None, None)
    if record is None and xmp_record:
        record = _load_record(xmp_record)
    if record is not None:
        return _from_record(record, raw)
    # Infotext: PNG "parameters", else EXIF UserComment, else the XMP copy, else a JPEG
    # comment (some converters move it there).
    infotext = raw.get(INFOTEXT_KEY) or raw.get("UserComment")
    if not infotext and xmp_comment:
        infotext = xmp_comment
    for candidate in (infotext, raw.get("Comment")):
        if not candidate:
            continue
        stripped = candidate.strip()
        if stripped.startswith("{"):
            swarm = _from_swarm(stripped, raw)
            if swarm is not None:
                return swarm
            continue
        return dataclasses.replace(parse_infotext(candidate), raw=raw)
    invoke = _from_invoke(raw)
    if invoke is not None:
        return invoke
    if "prompt" in raw or "workflow" in raw:
        comfy = _from_comfy(raw)
        if comfy is not None:
            return comfy
    return GenerationInfo(raw=raw)


def _load_record(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if isinstance(record, dict) and str(record.get("format", "")).startswith("nbbatch/"):
        return record
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                return _as_int(float(value))
            except ValueError:
                return None
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, str):
        try:
            return _as_float(float(value.strip()))
        except ValueError:
            return None
    return None


def _as_str(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _from_record(record: dict[str, Any], raw: dict[str, str]) -> GenerationInfo:
    params = record.get("params") if isinstance(record.get("params"), dict) else {}
    assert isinstance(params, dict)
    dims = _parse_size(str(params.get("size") or ""))
    if dims is None:
        # No size was asked for: the infotext written alongside has the actual one.
        text = raw.get(INFOTEXT_KEY) or raw.get("UserComment")
        if text:
            found = parse_infotext(text)
            if found.width and found.height:
                dims = (found.width, found.height)
    found = GenerationInfo(
        source="nbbatch",
        prompt=_as_str(record.get("prompt")),
        negative_prompt=_as_str(record.get("negative_prompt")),
        seed=_as_int(record.get("seed")),
        steps=_as_int(params.get("steps")),
        cfg_scale=_as_float(params.get("cfg_scale")),
        sampler=_as_str(params.get("sampler")),
        model=_as_str(params.get("model")),
        width=dims[0] if dims else None,
        height=dims[1] if dims else None,
        strength=_as_float(params.get("strength")),
        provider=_as_str(record.get("provider")),
        extras={k: v for k, v in params.items() if k == "extras"},
        record=record,
        raw=raw,
    )
    server = _server_infotext(record)
    if server is None:
        return found
    # The service wrote what it really did (sampler it fell back to, checkpoint, size it
    # rendered): that describes the image; the record beside it keeps what was asked.
    truth = parse_infotext(server)
    changes: dict[str, Any] = {
        k: getattr(truth, k)
        for k in ("seed", "steps", "cfg_scale", "sampler", "model", "width", "height")
        if getattr(truth, k) is not None
    }
    # A1111 writes the size it was asked for (70x50) and renders multiples of 8 (64x48):
    # the size that came back, recorded beside the text, is the image's.
    info = record.get("info")
    came_back = _parse_size(str(info.get("size") or "")) if isinstance(info, Mapping) else None
    if came_back is not None:
        changes["width"], changes["height"] = came_back
    return dataclasses.replace(found, **changes, extras={**truth.extras, **found.extras})


# A1111 infotext --------------------------------------------------------------
#: One ``key: value`` pair of the last line: a key starts with a word character and may
#: hold spaces, dashes and slashes; a value is a JSON-quoted string or runs to the comma.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def _parse_size(text: str) -> tuple[int, int] | None:
    m = _SIZE_RE.match(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_infotext(text: str) -> GenerationInfo:
    """Parse A1111/Forge infotext by the rules of A1111's PNG Info.

    * The last line holds the ``key: value`` pairs — but only when it has at least three
      of them; otherwise it is part of the prompt.
    * Lines before it are the prompt, until a line starting ``Negative prompt:``; that
      line (minus the label) and every line after it are the negative prompt.
    * Values in double quotes are JSON strings (they may contain commas and newlines).
    """
    lines = text.strip().split("\n")
    last = lines[-1]
    pairs = _PARAM_RE.findall(last)
    if len(pairs) < 3:
        pairs = []
        body = lines
    else:
        body = lines[:-1]
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in body:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    fields: dict[str, str] = {}
    for key, value in pairs:
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            with contextlib.suppress(ValueError):
                value = str(json.loads(value))
        fields[key.strip()] = value
    dims = _parse_size(fields.pop("Size", ""))
    known = {
        "Steps",
        "Sampler",
        "CFG scale",
        "Seed",
        "Model",
        "Denoising strength",
        "Provider",
    }
    return GenerationInfo(
        source="a1111",
        prompt="\n".join(prompt_lines),
        negative_prompt="\n".join(negative_lines) if in_negative else None,
        seed=_as_int(fields.get("Seed")),
        steps=_as_int(fields.get("Steps")),
        cfg_scale=_as_float(fields.get("CFG scale")),
        sampler=fields.get("Sampler") or None,
        model=fields.get("Model") or None,
        width=dims[0] if dims else None,
        height=dims[1] if dims else None,
        strength=_as_float(fields.get("Denoising strength")),
        provider=fields.get("Provider") or None,
        extras={k: v for k, v in fields.items() if k not in known},
        raw={INFOTEXT_KEY: text},
    )


# SwarmUI -------------------------------------------------------------------------
def _from_swarm(text: str, raw: dict[str, str]) -> GenerationInfo | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    params = doc.get("sui_image_params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        return None
    known = {"prompt", "negativeprompt", "seed", "steps", "cfgscale", "sampler", "model"}
    known |= {"width", "height", "initimagecreativity"}
    creativity = _as_float(params.get("initimagecreativity"))
    return GenerationInfo(
        source="swarmui",
        prompt=_as_str(params.get("prompt")),
        negative_prompt=_as_str(params.get("negativeprompt")),
        seed=_as_int(params.get("seed")),
        steps=_as_int(params.get("steps")),
        cfg_scale=_as_float(params.get("cfgscale")),
        sampler=_as_str(params.get("sampler")),
        model=_as_str(params.get("model")),
        width=_as_int(params.get("width")),
        height=_as_int(params.get("height")),
        strength=creativity,
        extras={k: v for k, v in params.items() if k not in known},
        raw=raw,
    )


# InvokeAI ------------------------------------------------------------------------
def _from_invoke(raw: dict[str, str]) -> GenerationInfo | None:
    """InvokeAI's ``invokeai_metadata`` PNG chunk: one flat JSON object."""
    doc = _json_obj(raw.get("invokeai_metadata"))
    if doc is None:
        return None
    model = doc.get("model")
    model_name = (
        (model.get("name") or model.get("model_name")) if isinstance(model, dict) else model
    )
    known = {"positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "scheduler"}
    known |= {"width", "height", "model", "strength"}
    return GenerationInfo(
        source="invokeai",
        prompt=_as_str(doc.get("positive_prompt")),
        negative_prompt=_as_str(doc.get("negative_prompt")),
        seed=_as_int(doc.get("seed")),
        steps=_as_int(doc.get("steps")),
        cfg_scale=_as_float(doc.get("cfg_scale")),
        sampler=_as_str(doc.get("scheduler")),
        model=_as_str(model_name),
        width=_as_int(doc.get("width")),
        height=_as_int(doc.get("height")),
        strength=_as_float(doc.get("strength")),
        extras={k: v for k, v in doc.items() if k not in known},
        raw=raw,
    )


# ComfyUI -------------------------------------------------------------------------
_SAMPLER_HINTS = ("KSampler", "SamplerCustom")
_MAX_HOPS = 8


def _from_comfy(raw: dict[str, str]) -> GenerationInfo | None:
    graph = _json_obj(raw.get("prompt"))
    if graph:
        found = _comfy_api_graph(graph)
        if found is not None:
            return dataclasses.replace(found, raw=raw)
    workflow = _json_obj(raw.get("workflow"))
    if workflow:
        found = _comfy_workflow(workflow)
        if found is not None:
            return dataclasses.replace(found, raw=raw)
    return None


def _json_obj(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _comfy_api_graph(graph: dict[str, Any]) -> GenerationInfo | None:
    """The executable ``prompt`` graph: ``{node_id: {class_type, inputs}}``."""
    nodes = {k: v for k, v in graph.items() if isinstance(v, dict)}
    samplers = [
        n
        for n in nodes.values()
        if any(h in str(n.get("class_type", "")) for h in _SAMPLER_HINTS)
        and isinstance(n.get("inputs"), dict)
    ]
    if not samplers:
        return None
    inputs: dict[str, Any] = samplers[0]["inputs"]

    def follow(link: object, want: tuple[str, ...]) -> Any:
        # Inputs are either literal values or links [node_id, output_index]; walk links
        # (through LoRA loaders, reroutes, primitive nodes) a bounded number of hops.
        for _ in range(_MAX_HOPS):
            if not (isinstance(link, list) and len(link) == 2):
                return link
            node = nodes.get(str(link[0]))
            if node is None or not isinstance(node.get("inputs"), dict):
                return None
            node_inputs = node["inputs"]
            for name in want:
                if name in node_inputs:
                    link = node_inputs[name]
                    break
            else:
                return None
        return None

    # Conditioning may pass through ControlNet / combine nodes that carry both a
    # positive and a negative input: follow the side we are looking for.
    text_keys = ("text", "text_g", "prompt", "string", "value", "conditioning")
    positive = follow(inputs.get("positive"), (*text_keys, "positive", "conditioning_1"))
    negative = follow(inputs.get("negative"), (*text_keys, "negative", "conditioning_1"))
    model = follow(inputs.get("model"), ("ckpt_name", "unet_name", "model_name", "model"))
    latent = inputs.get("latent_image")
    width = height = None
    if isinstance(latent, list) and len(latent) == 2:
        node = nodes.get(str(latent[0]))
        if node is not None and isinstance(node.get("inputs"), dict):
            width = _as_int(follow(node["inputs"].get("width"), ("value",)))
            height = _as_int(follow(node["inputs"].get("height"), ("value",)))
    seed = inputs.get("seed", inputs.get("noise_seed"))
    return GenerationInfo(
        source="comfyui",
        prompt=_as_str(positive),
        negative_prompt=_as_str(negative),
        seed=_as_int(follow(seed, ("seed", "value", "noise_seed"))),
        steps=_as_int(follow(inputs.get("steps"), ("value", "steps"))),
        cfg_scale=_as_float(follow(inputs.get("cfg"), ("value", "cfg"))),
        sampler=_as_str(follow(inputs.get("sampler_name"), ("value", "sampler_name"))),
        model=_as_str(model),
        width=width,
        height=height,
        strength=_as_float(inputs.get("denoise")),
        extras={"scheduler": inputs["scheduler"]}
        if isinstance(inputs.get("scheduler"), str)
        else {},
    )


def _comfy_workflow(workflow: dict[str, Any]) -> GenerationInfo | None:
    """The UI ``workflow`` graph: nodes with ``widgets_values`` and a ``links`` table."""
    nodes_list = workflow.get("nodes")
    links_list = workflow.get("links")
    if not isinstance(nodes_list, list):
        return None
    nodes = {n.get("id"): n for n in nodes_list if isinstance(n, dict)}
    origin: dict[Any, Any] = {}
    for link in links_list if isinstance(links_list, list) else []:
        if isinstance(link, list) and len(link) >= 3:
            origin[link[0]] = link[1]
    sampler = next(
        (n for n in nodes.values() if any(h in str(n.get("type", "")) for h in _SAMPLER_HINTS)),
        None,
    )
    if sampler is None:
        return None

    def source_text(input_name: str) -> str | None:
        for inp in sampler.get("inputs") or []:
            if isinstance(inp, dict) and inp.get("name") == input_name:
                node = nodes.get(origin.get(inp.get("link")))
                values = node.get("widgets_values") if node else None
                if isinstance(values, list) and values and isinstance(values[0], str):
                    return values[0]
        return None

    values = sampler.get("widgets_values")
    values = values if isinstance(values, list) else []
    # KSampler widgets: seed, control_after_generate, steps, cfg, sampler, scheduler, denoise
    pick = dict(enumerate(values))
    return GenerationInfo(
        source="comfyui",
        prompt=source_text("positive"),
        negative_prompt=source_text("negative"),
        seed=_as_int(pick.get(0)),
        steps=_as_int(pick.get(2)),
        cfg_scale=_as_float(pick.get(3)),
        sampler=_as_str(pick.get(4)),
        strength=_as_float(pick.get(6)),
    )


# --------------------------------------------------------------------------- remix
def task_from_image(
    source: bytes | str | os.PathLike[str] | GeneratedImage,
    *,
    keep_seed: bool = True,
    provider: str | None = None,
) -> Task:
    """A new task that regenerates the image in ``source`` ("remix from file").

    Reads nbbatch, A1111/Forge, ComfyUI and SwarmUI metadata; raises :class:`ImageError`
    when the file carries no prompt. Images made by nbbatch keep their lineage: the new
    task's ``parent_id`` is the task that made the image.
    """
    return read_generation_info(source).to_task(keep_seed=keep_seed, provider=provider)
