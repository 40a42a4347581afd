"""Convert ComfyUI's UI-format workflows (as its templates ship) to the API format.

Only for measuring how many of ComfyUI's own templates the automatic mapping
understands: a real conversion needs the server's ``/object_info`` for each node's
widget names; here they come from the node's own ``inputs`` (widget entries) or, for
the nodes that matter to the mapping, from :data:`WIDGETS` (their order in ComfyUI's
node definitions). Subgraphs are flattened (ids ``"<instance>:<inner>"``, as ComfyUI's
own export does), legacy ``PrimitiveNode`` values are written into the inputs they
feed, ``Reroute`` nodes are passed through, and muted or virtual nodes (notes) dropped.
"""

from __future__ import annotations

from typing import Any

#: widget names in order, for node classes whose widgets the mapping reads
WIDGETS: dict[str, tuple[str, ...]] = {
    "KSampler": ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),
    "SamplerCustom": ("add_noise", "noise_seed", "cfg"),
    "RandomNoise": ("noise_seed",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "Flux2Scheduler": ("steps", "width", "height"),
    "KSamplerSelect": ("sampler_name",),
    "CFGGuider": ("cfg",),
    "DualCFGGuider": ("cfg_conds", "cfg_cond2_negative", "style"),
    "FluxGuidance": ("guidance",),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl", "empty_padding"),
    "CLIPTextEncodeHiDream": ("clip_l", "clip_g", "t5xxl", "llama"),
    "CLIPTextEncodeSDXL": (
        "width",
        "height",
        "crop_w",
        "crop_h",
        "target_width",
        "target_height",
        "text_g",
        "text_l",
    ),
    "CLIPTextEncodeLumina2": ("system_prompt", "user_prompt"),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "EmptyFlux2LatentImage": ("width", "height", "batch_size"),
    "EmptyHunyuanImageLatent": ("width", "height", "batch_size"),
    "EmptyChromaRadianceLatentImage": ("width", "height", "batch_size"),
    "EmptyHunyuanLatentVideo": ("width", "height", "length", "batch_size"),
    "EmptyHunyuanVideo15Latent": ("width", "height", "length", "batch_size"),
    "LoadImage": ("image", "upload"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "PrimitiveInt": ("value",),
    "PrimitiveFloat": ("value",),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
    "PrimitiveBoolean": ("value",),
    "SaveImage": ("filename_prefix",),
    "ControlNetApplyAdvanced": ("strength", "start_percent", "end_percent"),
}
#: the value ComfyUI's front end stores after a seed widget
_CONTROL = {"fixed", "increment", "decrement", "randomize"}
_SEEDS = {"seed", "noise_seed", "value"}
_VIRTUAL = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}


def _is_control(value: object) -> bool:
    return isinstance(value, str) and value in _CONTROL


def _widget_names(node: dict[str, Any]) -> tuple[str, ...] | None:
    known = WIDGETS.get(node.get("type", ""))
    if known is not None:
        return known
    named = [i["widget"]["name"] for i in node.get("inputs", []) if i.get("widget")]
    values = [v for v in node.get("widgets_values") or [] if not _is_control(v)]
    return tuple(named) if named and len(named) == len(values) else None


def _values(node: dict[str, Any]) -> dict[str, Any]:
    named = node.get("widgets_values_named")  # newer front ends save the names too
    if isinstance(named, dict):
        return {k: v for k, v in named.items() if not isinstance(v, (dict, list))}
    raw = node.get("widgets_values")
    if isinstance(raw, dict):
        return {k: v for k, v in raw.items() if not isinstance(v, (dict, list))}
    names = _widget_names(node)
    if not names or not isinstance(raw, list):
        return {}
    out: dict[str, Any] = {}
    values = list(raw)
    index = 0
    for name in names:
        if index >= len(values):
            break
        out[name] = values[index]
        index += 1
        if name in _SEEDS and index < len(values) and _is_control(values[index]):
            index += 1  # control_after_generate
    return out


class _Graph:
    """One (sub)graph level: its nodes and links by id."""

    def __init__(self, data: dict[str, Any], subgraphs: dict[str, dict[str, Any]]) -> None:
        self.nodes = {n["id"]: n for n in data.get("nodes", [])}
        self.links: dict[int, tuple[Any, int, Any, int, str]] = {}
        for link in data.get("links", []):
            if isinstance(link, list):
                lid, o, os_, t, ts, ty = link[:6]
            else:
                lid, o, os_, t, ts, ty = (
                    link["id"],
                    link["origin_id"],
                    link["origin_slot"],
                    link["target_id"],
                    link["target_slot"],
                    link.get("type", ""),
                )
            self.links[lid] = (o, os_, t, ts, ty)
        self.subgraphs = subgraphs


def ui_to_api(workflow: dict[str, Any]) -> dict[str, Any]:
    """The API-format graph of a UI-format workflow (see the module's notes)."""
    subgraphs = {g["id"]: g for g in workflow.get("definitions", {}).get("subgraphs", [])}
    api: dict[str, Any] = {}
    _flatten(_Graph(workflow, subgraphs), "", {}, {}, api)
    # drop links to nodes that were not emitted (virtual, muted, unresolved)
    for node in api.values():
        for name, value in list(node["inputs"].items()):
            if isinstance(value, list) and str(value[0]) not in api:
                del node["inputs"][name]
    return api


Source = tuple[Any, Any]  # (api node id, slot), or (None, literal)
#: an unfed subgraph input: the inner node keeps its own widget value
_KEEP: Source = ("keep", None)


def _flatten(
    graph: _Graph,
    prefix: str,
    outer_inputs: dict[int, Source],
    outer_values: dict[int, Any],
    api: dict[str, Any],
) -> dict[int, Source]:
    """Emit ``graph``'s nodes into ``api``; return the sources of its output slots."""

    def source(origin: Any, slot: int, seen: frozenset[Any] = frozenset()) -> Source | None:
        if origin == -10:  # the subgraph's input node: what feeds the instance
            if slot in outer_inputs:
                return outer_inputs[slot]
            # unfed: the inner node keeps its own widget value (promoted widgets)
            return (None, outer_values[slot]) if slot in outer_values else _KEEP
        node = graph.nodes.get(origin)
        if node is None or origin in seen:
            return None
        kind = node.get("type", "")
        if kind == "PrimitiveNode":
            values = node.get("widgets_values") or []
            return (None, values[0]) if values else None
        if kind == "Reroute" or node.get("mode") == 4:  # pass through (bypassed: first input)
            for entry in node.get("inputs", []):
                if entry.get("link") is not None and entry["link"] in graph.links:
                    o, os_, *_ = graph.links[entry["link"]]
                    return source(o, os_, seen | {origin})
            return None
        if kind in graph.subgraphs:
            outputs = expanded.get(origin)
            return outputs.get(slot) if outputs is not None else None
        return (f"{prefix}{origin}", slot)

    expanded: dict[Any, dict[int, Source]] = {}
    # subgraph instances first: their outputs feed the nodes around them
    for node_id, node in graph.nodes.items():
        if node.get("type") in graph.subgraphs and node.get("mode", 0) == 0:
            inner = graph.subgraphs[node["type"]]
            feeds: dict[int, Source] = {}
            values: dict[int, Any] = {}
            # the instance's inputs match the definition's inputs by name
            slots = {entry.get("name"): k for k, entry in enumerate(inner.get("inputs", []))}
            for entry in node.get("inputs", []):
                slot = slots.get(entry.get("name"))
                if slot is None:
                    continue
                if entry.get("link") is not None and entry["link"] in graph.links:
                    o, os_, *_ = graph.links[entry["link"]]
                    fed = source(o, os_)
                    if fed is not None and fed is not _KEEP:
                        feeds[slot] = fed
            # the instance's inputs map to the definition's inputs by position
            expanded[node_id] = {}
            sub = _Graph(inner, graph.subgraphs)
            outs = _flatten(sub, f"{prefix}{node_id}:", feeds, values, api)
            expanded[node_id] = outs
    for node_id, node in graph.nodes.items():
        kind = node.get("type", "")
        if kind in _VIRTUAL or kind in graph.subgraphs or node.get("mode", 0) in (2, 4):
            continue
        inputs: dict[str, Any] = dict(_values(node))
        for entry in node.get("inputs", []):
            link = entry.get("link")
            if link is None or link not in graph.links:
                continue
            o, os_, *_ = graph.links[link]
            fed = source(o, os_)
            if fed is _KEEP:
                continue
            if fed is None:
                inputs.pop(entry["name"], None)
            elif fed[0] is None:
                inputs[entry["name"]] = fed[1]
            else:
                inputs[entry["name"]] = [fed[0], fed[1]]
        api[f"{prefix}{node_id}"] = {
            "class_type": kind,
            "inputs": inputs,
            "_meta": {"title": node.get("title") or kind},
        }
    # what leaves through the output node (-20), by output slot
    outputs: dict[int, Source] = {}
    for o, os_, t, ts, _ in graph.links.values():
        if t == -20:
            fed = source(o, os_)
            if fed is not None:
                outputs[ts] = fed
    return outputs
