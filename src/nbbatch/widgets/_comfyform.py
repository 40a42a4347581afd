"""The ComfyUI part of the Settings form: a workflow, and which input gets what.

The page asks for a workflow (``""``: the provider's built-in txt2img graph, or the
path of an API-format JSON file on the kernel's machine); the kernel reads it, detects
the mapping as the provider would (:func:`~nbbatch.providers._comfyui.detect_mapping`)
and answers the nodes with the inputs that hold a value (a linked input cannot take
one), so the page offers a choice of node and input per slot, never JSON to type. On
Save only the slots the person changed from the detected ones are kept
(``options["mapping"]`` of the engine's :class:`~nbbatch.engine.ProviderConfig`),
each checked against the workflow: a linked or missing input is refused in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbbatch.errors import ConfigError
from nbbatch.providers._comfyui import (
    BUILTIN_TXT2IMG,
    WorkflowMapping,
    detect_mapping,
    load_workflow,
)

from ._words import UserFacingError, clip

__all__ = ["SLOTS", "checked_mapping", "workflow_form"]

#: the slots the form shows, in its order (the provider knows a few more: cfg, sampler...)
SLOTS = ("prompt", "negative", "seed", "width", "height", "steps", "batch_size")
#: the largest workflow file read for the form (a big API workflow is ~100 KB)
MAX_WORKFLOW_BYTES = 8 * 1024 * 1024


def _graph(path: str) -> dict[str, Any]:
    if not path.strip():
        return load_workflow(BUILTIN_TXT2IMG)
    file = Path(path.strip()).expanduser()
    try:
        size = file.stat().st_size
    except OSError:
        raise ConfigError(f"workflow file not found: {path.strip()}") from None
    if size > MAX_WORKFLOW_BYTES:
        raise ConfigError(
            f"{file.name} is {size // (1024 * 1024)} MB; an API-format workflow is far "
            "smaller: is this the right file?"
        )
    return load_workflow(file)


def _slot_text(slot: tuple[str, str] | None) -> str | None:
    return None if slot is None else f"{slot[0]}.{slot[1]}"


def workflow_form(path: object) -> dict[str, Any]:
    """What the form shows for the workflow at ``path`` (``""``: built-in).

    ``nodes``: id, class, title and the inputs holding a value (links are left out);
    ``detected``: slot -> ``"node.input"`` (or ``None``) as the provider finds it.
    """
    if not isinstance(path, str) or len(path) > 2000:
        raise UserFacingError("bad_request", type="workflow")
    graph = _graph(path)
    detected = detect_mapping(graph)
    # a size computed for the latent alone is replaced by the task's (detected only)
    replaceable = {getattr(detected, slot) for slot in detected.replaces}
    nodes = []
    for node_id, node in graph.items():
        inputs = node.get("inputs") or {}
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, Mapping) else None
        values = [
            name
            for name, value in inputs.items()
            if (not isinstance(value, list) and isinstance(value, (str, int, float)))
            or (str(node_id), name) in replaceable
        ]
        if values:
            nodes.append(
                {
                    "id": str(node_id),
                    "type": clip(str(node.get("class_type")), 80),
                    "title": clip(str(title), 80) if isinstance(title, str) else "",
                    "inputs": values,
                }
            )
    return {
        "nodes": nodes,
        "detected": {slot: _slot_text(getattr(detected, slot)) for slot in SLOTS},
        "slots": list(SLOTS),
    }


def checked_mapping(path: object, raw: object) -> dict[str, str]:
    """The slots of ``raw`` that differ from the detected mapping, checked against the
    workflow at ``path``; raises (in words) for a node or input it does not have, or
    an input linked to another node's output."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or not isinstance(path, str):
        raise UserFacingError("bad_request", type="mapping")
    chosen: dict[str, str] = {}
    for slot in SLOTS:
        value = raw.get(slot)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or "." not in value or len(value) > 300:
            raise UserFacingError("bad_request", type=f"mapping.{slot}")
        chosen[slot] = value
    graph = _graph(path)
    detected = detect_mapping(graph)
    changed = {k: v for k, v in chosen.items() if _slot_text(getattr(detected, k)) != v}
    try:
        WorkflowMapping.from_dict(changed).check(graph)
    except ConfigError as exc:
        raise UserFacingError("bad_mapping", message=clip(exc.message, 300)) from None
    return changed
