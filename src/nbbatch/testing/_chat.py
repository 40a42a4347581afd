"""A fake OpenAI-compatible chat completions server, for the LLM planner.

``POST /v1/chat/completions`` answers in the OpenAI chat completions shape.
What it supports and how its "model" answers is set by ``behaviour``:

==================  ===============================================================
``"openai"``        json_schema, json_object and plain text all accepted; JSON reply
                    (with ``json_schema``: shaped to the schema, see below)
``"no_json_schema"`` 400 for ``json_schema`` (like servers without structured
                    outputs); ``json_object`` and text work
``"text_only"``     400 for any ``response_format``; the reply is prose with a fenced
                    ```json block
``"chatty"``        accepts everything, but wraps the JSON in prose and a fence
``"invalid_json"``  200 with content that is not JSON (``{"tasks": [ ...`` cut off)
``"wrong_shape"``   200 with ``{"images": [...]}``
``"empty"``         200 with ``{"tasks": []}``
``"too_many"``      200 with 300 tasks
``"refusal"``       200 with ``message.refusal`` set and ``content: null``
``"content_filter"`` 200 with ``finish_reason: "content_filter"``
``"length"``        200 with a cut-off reply and ``finish_reason: "length"``
==================  ===============================================================

With ``response_format: json_schema`` the fake behaves like structured outputs: a
``strict`` schema whose objects are not closed (``additionalProperties: false``) or do
not list every property in ``required`` is refused with a 400, as the real API does;
otherwise the reply is the planned object reshaped to the schema (unknown keys dropped
where the schema closes an object, every property present, ``null`` where allowed, an
empty value of the right type where not, enums kept to their values). The deliberately
misbehaving modes below ignore the schema: they stand for servers that do.

``vision=False`` makes it a text-only model: requests with image parts get a 400.
HTTP faults (401, 429, hangs) come from :class:`~nbbatch.testing.Fault` as for every
fake; with ``api_key=...`` the server also checks ``Authorization: Bearer`` and answers
401 in OpenAI's error shape when it does not match.

The "model" is deterministic: it reads the ``<master_prompt>`` block of the request
(the whole user text when there is none), splits it at ``;`` and new lines, and makes
one task per part -- or exactly N tasks when the request says ``Number of tasks:
exactly N`` (cycling the parts, numbered). Listed reference images are assigned in
turn. ``reply=`` replaces all of that with a scripted content string.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._server import ASGIApp, FakeServer

__all__ = ["BEHAVIOURS", "FakeChat", "conform", "strict_schema_errors"]

BEHAVIOURS = (
    "openai",
    "no_json_schema",
    "text_only",
    "chatty",
    "invalid_json",
    "wrong_shape",
    "empty",
    "too_many",
    "refusal",
    "content_filter",
    "length",
)


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    return [str(kind)] if kind else []


def strict_schema_errors(schema: Any, where: str = "root") -> list[str]:
    """What the real API says is wrong with ``schema`` for ``strict: true`` (empty: ok)."""
    if not isinstance(schema, dict):
        return [f"In context=({where}), schema must be a JSON object"]
    errors: list[str] = []
    for branch in schema.get("anyOf") or []:
        errors += strict_schema_errors(branch, where)
    if "object" in _types(schema):
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            errors.append(
                f"In context=({where}), 'additionalProperties' is required to be supplied "
                "and to be false"
            )
        missing = sorted(set(props) - set(schema.get("required") or []))
        if missing:
            errors.append(
                f"In context=({where}), 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing {missing!r}"
            )
        for name, sub in props.items():
            errors += strict_schema_errors(sub, f"{where}, 'properties', '{name}'")
    if "array" in _types(schema) and "items" in schema:
        errors += strict_schema_errors(schema["items"], f"{where}, 'items'")
    return errors


def conform(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` reshaped so that it validates against ``schema`` (a JSON Schema subset)."""
    if schema.get("anyOf"):
        branches = schema["anyOf"]
        if value is None and any("null" in _types(b) for b in branches):
            return None
        pick = next((b for b in branches if "null" not in _types(b)), branches[0])
        return conform(value, pick)
    types = _types(schema)
    if value is None and "null" in types:
        return None
    if "enum" in schema:
        options = list(schema["enum"])
        return value if value in options else (options[0] if options else None)
    kind = next((t for t in types if t != "null"), None)
    if kind == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        given = value if isinstance(value, dict) else {}
        out = {name: conform(given.get(name), sub) for name, sub in props.items()}
        if schema.get("additionalProperties") is not False:
            out.update({k: v for k, v in given.items() if k not in props})
        return out
    if kind == "array":
        items = schema.get("items") or {}
        return [conform(v, items) for v in value] if isinstance(value, list) else []
    if kind == "string":
        return value if isinstance(value, str) else ("" if value is None else str(value))
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return 0
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return bool(value)
    return value


_MASTER = re.compile(r"<master_prompt>\s*(.*?)\s*</master_prompt>", re.S)
_COUNT = re.compile(r"Number of tasks: exactly (\d+)")
_REF_LINE = re.compile(r"^\s*\d+\.\s+(.+?)\s+\(\d+x\d+ [A-Z]+\)\s*$", re.M)


class FakeChat(FakeServer):
    """Loopback OpenAI-compatible chat server; ``url + "/v1"`` is the base URL."""

    name = "fake-chat"

    def __init__(
        self,
        behaviour: str = "openai",
        *,
        reply: str | None = None,
        api_key: str | None = None,
        model: str = "fake-planner-1",
        vision: bool = True,
        latency: float = 0.0,
    ) -> None:
        super().__init__(latency=latency)
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}, got {behaviour!r}")
        self.behaviour = behaviour
        self.reply = reply
        self.api_key = api_key
        self.model = model
        self.vision = vision

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(status, "api_error")
        if 400 <= status < 500 and status not in (401, 429):
            kind = "invalid_request_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return body, "application/json"

    def response_formats(self) -> list[str | None]:
        """The ``response_format.type`` of every chat request received, in order."""
        out: list[str | None] = []
        for r in self.calls("*/chat/completions", "POST"):
            try:
                fmt = json.loads(r.body).get("response_format")
            except ValueError:
                fmt = None
            out.append(fmt.get("type") if isinstance(fmt, dict) else None)
        return out

    # ----------------------------------------------------------------- the "model"
    def plan_for(self, user_text: str) -> dict[str, Any]:
        """The tasks this fake plans for a request whose user message is ``user_text``."""
        found = _MASTER.search(user_text)
        master = found.group(1) if found else user_text
        parts = [p.strip() for p in re.split(r"[;\n]", master) if p.strip()] or ["untitled"]
        count = _COUNT.search(user_text)
        refs = _REF_LINE.findall(user_text)
        if count:
            wanted = int(count.group(1))
            prompts = [f"{parts[i % len(parts)]}, variation {i + 1}" for i in range(wanted)]
        else:
            prompts = parts
        tasks = []
        for i, prompt in enumerate(prompts):
            tasks.append(
                {
                    "prompt": prompt,
                    "negative_prompt": None,
                    "image_references": [refs[i % len(refs)]] if refs else None,
                    "params": None,
                }
            )
        return {"tasks": tasks}

    def _content(
        self, user_text: str, schema: dict[str, Any] | None = None
    ) -> tuple[str | None, str, str | None]:
        """(content, finish_reason, refusal) for the configured behaviour."""
        b = self.behaviour
        if b == "refusal":
            return None, "stop", "I can't help with that request."
        if b == "content_filter":
            return "", "content_filter", None
        if self.reply is not None:
            return self.reply, "stop", None
        plan = self.plan_for(user_text)
        if b == "invalid_json":
            return '{"tasks": [{"prompt": "a fox", ', "stop", None
        if b == "length":
            return json.dumps(plan)[:25], "length", None
        if b == "wrong_shape":
            return json.dumps({"images": [t["prompt"] for t in plan["tasks"]]}), "stop", None
        if b == "empty":
            return '{"tasks": []}', "stop", None
        if b == "too_many":
            many = [{"prompt": f"image {i}"} for i in range(300)]
            return json.dumps({"tasks": many}), "stop", None
        if schema is not None and b == "openai":
            return json.dumps(conform(plan, schema), indent=2), "stop", None
        text = json.dumps(plan, indent=2)
        if b in ("chatty", "text_only"):
            return (
                "Sure! Here is a plan for your images:\n\n```json\n"
                + text
                + "\n```\n\nLet me know if you want {more} variations.",
                "stop",
                None,
            )
        return text, "stop", None

    def build_app(self) -> ASGIApp:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        def error(status: int, message: str) -> Response:
            body, _ = self.error_response(status, message)
            return JSONResponse(body, status_code=status)

        async def completions(request: Request) -> Response:
            if self.api_key is not None:
                auth = request.headers.get("authorization", "")
                if auth != f"Bearer {self.api_key}":
                    return error(401, "Incorrect API key provided.")
            try:
                body = json.loads(await request.body())
            except ValueError:
                return error(400, "We could not parse the JSON body of your request.")
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return error(400, "'messages' is a required property")
            fmt = body.get("response_format")
            kind = fmt.get("type") if isinstance(fmt, dict) else None
            if kind == "json_schema" and self.behaviour in ("no_json_schema", "text_only"):
                return error(400, "response_format type 'json_schema' is not supported")
            schema: dict[str, Any] | None = None
            if kind == "json_schema":
                spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
                if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                    return error(400, "Missing required parameter: 'response_format.json_schema'.")
                schema = spec["schema"]
                if spec.get("strict"):
                    problems = strict_schema_errors(schema)
                    if problems:
                        name = spec.get("name", "response")
                        return error(
                            400,
                            f"Invalid schema for response_format '{name}': {problems[0]}.",
                        )
            if kind == "json_object" and self.behaviour == "text_only":
                return error(400, "response_format is not supported by this model")
            if kind == "json_object" and not any(
                "json" in json.dumps(m.get("content", "")).lower()
                for m in body["messages"]
                if isinstance(m, dict)
            ):
                return error(400, "'messages' must contain the word 'json' to use json_object")
            user_text = ""
            for m in body["messages"]:
                if isinstance(m, dict) and m.get("role") == "user":
                    content = m.get("content")
                    if (
                        isinstance(content, list)
                        and not self.vision
                        and any(
                            isinstance(p, dict) and p.get("type") == "image_url" for p in content
                        )
                    ):
                        return error(400, "image input is not supported by this model")
                    if isinstance(content, list):
                        content = "".join(
                            p.get("text", "")
                            for p in content
                            if isinstance(p, dict) and p.get("type") == "text"
                        )
                    user_text = str(content or "")
            content, finish, refusal = self._content(user_text, schema)
            return JSONResponse(
                {
                    "id": f"chatcmpl-{len(self.requests)}",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": self.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": content,
                                "refusal": refusal,
                            },
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": len(user_text.split()),
                        "completion_tokens": len((content or "").split()),
                        "total_tokens": len(user_text.split()) + len((content or "").split()),
                    },
                }
            )

        return Starlette(
            routes=[
                Route("/v1/chat/completions", completions, methods=["POST"]),
                Route("/chat/completions", completions, methods=["POST"]),
            ]
        )
