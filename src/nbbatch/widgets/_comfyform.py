"""The ComfyUI part of the Settings form: a workflow, and which input gets what.

The page gives a workflow: ``""`` (the provider's built-in txt2img graph), the path of
an API-format JSON file on the kernel's machine, or the JSON itself (pasted, or a file
the browser opened: ComfyUI's "Export (API)" downloads it to the browser's machine,
which need not be the kernel's). The kernel reads it, detects the mapping as the
provider would (:func:`~nbbatch.providers._comfyui.detect_mapping`) and answers the
nodes with the inputs that hold a value (a linked input cannot take one), so the page
offers a choice of node and input per slot, never JSON to type. On Save only the slots
the person changed from the detected ones are kept (``options["mapping"]`` of the
engine's :class:`~nbbatch.engine.ProviderConfig`), each checked against the workflow:
a linked or missing input is refused in words; a slot set to "not mapped" is kept as
``None`` (left unmapped, over detection). Given JSON is kept as a file beside the
settings (:func:`keep_workflow`), so the saved configuration names a path as always.

ComfyUI's own saved workflows (``GET /userdata?dir=workflows``) and templates are in
its UI format, whose widget values are only positional: turning them into the API
format needs each node's definition as the editor has it, so they are not read from the
server; the form asks for the API export instead and says so for a UI-format one.
"""

from __future__ import annotations

import hashlib
import json
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

__all__ = ["SLOTS", "checked_mapping", "keep_workflow", "read_workflow", "workflow_form"]

#: the slots the form shows, in its order (the provider knows a few more: cfg, sampler...)
SLOTS = ("prompt", "negative", "seed", "width", "height", "steps", "batch_size")
#: the largest workflow read for the form (a big API workflow is ~100 KB)
MAX_WORKFLOW_BYTES = 8 * 1024 * 1024
#: where given JSON is kept, under the settings' folder
WORKFLOWS_DIR = "comfyui-workflows"


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


def _parsed(text: str) -> dict[str, Any]:
    if len(text) > MAX_WORKFLOW_BYTES:
        raise ConfigError(
            "the workflow given is over 8 MB; an API-format workflow is far smaller: is "
            "this the right file?"
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the workflow given is not JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise ConfigError("the workflow given is not an API-format workflow (a JSON object)")
    return load_workflow(data)


def read_workflow(path: object, text: object = None) -> dict[str, Any]:
    """The graph of the JSON ``text`` when given (non-empty), else of the file at
    ``path`` (``""``: the built-in graph)."""
    if isinstance(text, str) and text.strip():
        return _parsed(text)
    if text not in (None, "") or not isinstance(path, str) or len(path) > 2000:
        raise UserFacingError("bad_request", type="workflow")
    return _graph(path)


def keep_workflow(folder: Path, text: str) -> Path:
    """Keep given JSON as a file under ``folder`` (named by its content, so the same
    workflow given twice is one file) and return its path."""
    graph = _parsed(text)
    body = json.dumps(graph, indent=1, ensure_ascii=False)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    where = folder / WORKFLOWS_DIR
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"workflow-{digest}_api.json"
    if not path.exists():
        partial = path.with_suffix(".part")
        partial.write_text(body, encoding="utf-8")
        partial.replace(path)
    return path


def _slot_text(slot: tuple[str, str] | None) -> str | None:
    return None if slot is None else f"{slot[0]}.{slot[1]}"


def workflow_form(path: object, text: object = None) -> dict[str, Any]:
    """What the form shows for the workflow at ``path`` (``""``: built-in) or given as
    JSON ``text``.

    ``nodes``: id, class, title and the inputs holding a value (links are left out);
    ``detected``: slot -> ``"node.input"`` (or ``None``) as the provider finds it;
    ``also``: slot -> the further inputs the detected slot sets together with it (a
    width that a scheduler needs too).
    """
    graph = read_workflow(path, text)
    detected = detect_mapping(graph)
    # a size computed for the latent alone is replaced by the task's (detected only)
    replaceable = {t for slot in detected.replaces for t in detected.targets(slot)}
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
        "also": {
            slot: [f"{n}.{i}" for n, i in detected.targets(slot)[1:]]
            for slot in SLOTS
            if len(detected.targets(slot)) > 1
        },
        "slots": list(SLOTS),
    }


def _texts(value: object, slot: str) -> str | list[str]:
    """One ``"node.input"`` or a list of them, as the page (or a saved file) gives it."""
    items: list[object] = list(value) if isinstance(value, list) else [value]
    texts = [i for i in items if isinstance(i, str) and "." in i and len(i) <= 300]
    if not texts or len(texts) != len(items) or len(texts) > 50:
        raise UserFacingError("bad_request", type=f"mapping.{slot}")
    return texts if isinstance(value, list) else texts[0]


def checked_mapping(
    path: object,
    raw: object,
    text: object = None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The slots of ``raw`` that differ from the detected mapping, checked against the
    workflow (at ``path``, or given as JSON ``text``); raises (in words) for a node or
    input it does not have, or an input linked to another node's output.

    ``""`` or ``None`` for a slot detected in the workflow keeps it unmapped (``None``);
    a slot the page leaves out stays as ``previous`` (the saved mapping) had it. The page
    shows a slot's first input: one that ``previous`` set together with others keeps
    them.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserFacingError("bad_request", type="mapping")
    graph = read_workflow(path, text)
    detected = detect_mapping(graph)
    before = dict(previous or {})
    # slots the form does not show (output, cfg, sampler... set in code) stay as saved
    changed: dict[str, Any] = {k: v for k, v in before.items() if k not in SLOTS}
    for slot in SLOTS:
        if slot not in raw:
            if slot in before:
                changed[slot] = before[slot]  # not sent: as saved
            continue
        value = raw[slot]
        if value in (None, "", []):
            if getattr(detected, slot) is not None:
                changed[slot] = None  # "not mapped", over what is detected
            continue
        chosen = _texts(value, slot)
        first = chosen[0] if isinstance(chosen, list) else chosen
        kept = before.get(slot)
        if isinstance(kept, list) and kept and kept[0] == first and not isinstance(chosen, list):
            chosen = [str(k) for k in kept]
        if chosen == _slot_text(getattr(detected, slot)):
            continue  # as detected (with the inputs detected with it)
        changed[slot] = chosen
    try:
        WorkflowMapping.from_dict(changed).check(graph)
    except ConfigError as exc:
        raise UserFacingError("bad_mapping", message=clip(exc.message, 300)) from None
    return changed
