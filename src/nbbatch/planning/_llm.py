"""The LLM planner: one master prompt in, a reviewable list of tasks out.

It talks to any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, Ollama
``/v1``, vLLM, LM Studio, OpenRouter) and asks for::

    {"tasks": [{"prompt": str, "negative_prompt": str|null,
                "image_references": [str]|null, "params": {...}|null}]}

**Output modes.** First with ``response_format`` ``json_schema`` (strict); when the
server rejects that request (HTTP 400/422, as servers without structured outputs do)
with ``json_object``; when that is rejected too, with no ``response_format`` and the
JSON block is picked out of the reply text (prose, a fenced block). Whatever the mode,
the reply is read tolerantly and then validated strictly. The mode that worked is
``Plan.mode``; each fallback leaves a line in ``Plan.warnings``.

**Reference images** are listed to the model by number and name. In the reply a
reference may be written as the name (case-insensitive, with or without the extension)
or as its number: **numbers are 1-based**, as in the list the model was shown (``1``,
``"1"``, ``"#1"``, ``"image 1"``). A reference that matches nothing is left off that
task and reported in ``Plan.warnings`` and ``Plan.unknown_references`` (or raises
:class:`PlannerShapeError` with ``strict_references=True``). With ``vision=True`` the
images themselves go along as downscaled JPEG data URLs (at most 512 px).

**Bounds.** At most ``max_tasks`` tasks (default 50): a longer list is refused, not
cut. Each prompt goes through the same check as every task (non-empty, at most
``MAX_PROMPT_CHARS``). The reply is read only up to 2 MB. The whole call is bounded by
``timeout`` seconds. Any invalid reply raises a :class:`PlannerOutputError`; no task is
made from a reply that is not valid throughout.

**Errors.** What goes wrong on the way to the LLM is a provider error, as for image
providers, with ``provider="planner"``: :class:`~nbbatch.errors.AuthenticationError`
(401/403), :class:`~nbbatch.errors.RateLimitedError`,
:class:`~nbbatch.errors.ServerError`, :class:`~nbbatch.errors.ProviderConnectionError`,
:class:`~nbbatch.errors.ProviderTimeoutError`, :class:`~nbbatch.errors.BadRequestError`
and :class:`~nbbatch.errors.ContentRefusedError` (the model's ``refusal`` or a content
filter). No key for a hosted API is a :class:`~nbbatch.errors.ConfigError` before
anything is sent.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core._aio import run_blocking
from ..core._errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentRefusedError,
    InvalidPromptError,
    MalformedResponseError,
    PlannerEmptyError,
    PlannerNoJSONError,
    PlannerShapeError,
    PlannerTooManyTasksError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
)
from ..core._model import MAX_PROMPT_CHARS, Params, Reference, Task, check_prompt
from ..core._names import renamed
from ..core._retry import PLANNER_RETRY, RetryPolicy, retrying
from ..core._secrets import Secret, resolve_key, scrub
from ..engine._settings import LLM_KEY_ENV, LLM_SECRET, LLMSettings, Settings, load_settings
from ._tasklist import summarize

__all__ = [
    "DEFAULT_MAX_TASKS",
    "LLMConfig",
    "Plan",
    "enhance",
    "enhance_async",
    "extract_json",
    "plan",
    "plan_async",
]

DEFAULT_MAX_TASKS = 50
#: Replies longer than this are not parsed (a plan of 50 prompts is a few tens of KB).
MAX_REPLY_CHARS = 2_000_000
#: Reference images sent with ``vision=True`` are shrunk to fit this many pixels a side.
VISION_MAX_SIDE = 512

Mode = Literal["json_schema", "json_object", "text"]
_MODES: tuple[Mode, ...] = ("json_schema", "json_object", "text")

#: Parameters the model may set per task; anything else it sends is dropped with a note.
_PLAN_PARAMS = ("size", "n", "seed", "steps", "cfg_scale", "strength")


@dataclass(frozen=True)
class LLMConfig:
    """Where the planner LLM lives. ``api_key`` falls back to ``$OPENAI_API_KEY``.

    ``base_url`` is the part before ``/chat/completions`` (e.g.
    ``http://localhost:11434/v1`` for Ollama); it falls back to ``$OPENAI_BASE_URL`` and
    then to OpenAI. Local servers usually need no key: then none is sent.
    ``mode`` forces an output mode instead of starting at ``json_schema``.

    Without a key, a call is refused before anything is sent unless the base URL is a
    local one (loopback, a private network address, a one-word host name, ``.local``):
    a hosted API would only answer 401. ``require_key=False`` lets a keyless call go to
    any host; ``True`` asks for a key everywhere. ``retry`` is a :class:`RetryPolicy`
    or a whole number of retries.
    """

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: Secret | str | None = None
    timeout: float = 120.0
    temperature: float | None = None
    max_tokens: int | None = None
    mode: Mode | None = None
    #: a RetryPolicy, or a whole number of retries (``retry=0`` sends once)
    retry: RetryPolicy | int = PLANNER_RETRY
    headers: Mapping[str, str] = field(default_factory=dict)
    require_key: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("LLMConfig.model must name the chat model, e.g. 'gpt-4o-mini'")
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", Secret(self.api_key))
        if self.api_key is None:
            object.__setattr__(self, "api_key", resolve_key(None, ["OPENAI_API_KEY"]))
        if self.base_url is None:
            env = os.environ.get("OPENAI_BASE_URL", "").strip()
            object.__setattr__(self, "base_url", env or "https://api.openai.com/v1")
        if not (self.timeout > 0):
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.mode is not None and self.mode not in _MODES:
            raise ConfigError(f"mode must be one of {_MODES}, got {self.mode!r}")
        retry: object = self.retry
        if isinstance(retry, int) and not isinstance(retry, bool):
            # LLMConfig(retry=0): a number of retries (issue 26: it used to fail later
            # with an AttributeError inside the first call)
            object.__setattr__(self, "retry", dataclasses.replace(PLANNER_RETRY, max_retries=retry))
        elif not isinstance(retry, RetryPolicy):
            raise ConfigError(
                "retry must be a number of retries (e.g. retry=0) or a RetryPolicy, "
                f"got {type(retry).__name__}"
            )

    @classmethod
    def from_settings(
        cls,
        settings: Settings | LLMSettings | None = None,
        *,
        api_key: Secret | str | None = None,
        secrets_path: Path | None = None,
    ) -> LLMConfig:
        """The planner as saved in the one :class:`~nbbatch.Settings` (default: the
        saved file), its key from ``api_key``, ``$OPENAI_API_KEY`` or the secrets file.
        """
        if settings is None:
            settings = load_settings()
        saved = settings.llm if isinstance(settings, Settings) else settings
        return cls(
            model=saved.model,
            base_url=saved.base_url,
            api_key=saved.resolve_key(api_key, secrets_path=secrets_path),
            timeout=saved.timeout,
            temperature=saved.temperature,
            max_tokens=saved.max_tokens,
        )

    @classmethod
    def coerce(cls, value: LLMConfig | LLMSettings | Mapping[str, Any] | None) -> LLMConfig:
        """An :class:`LLMConfig` from itself, the saved :class:`LLMSettings`, a dict of
        its fields, or ``None`` (what the saved settings say; the defaults when none)."""
        if isinstance(value, LLMConfig):
            return value
        if value is None or isinstance(value, LLMSettings):
            return cls.from_settings(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"llm must be an LLMConfig or a dict, got {type(value).__name__}")
        data = dict(value)
        if "key" in data and "api_key" not in data:
            data["api_key"] = data.pop("key")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown LLM setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def __repr__(self) -> str:
        key = "set" if self.api_key is not None else "none"
        return f"LLMConfig(model={self.model!r}, base_url={self.base_url!r}, api_key={key})"


@dataclass
class Plan:
    """What the planner made: ``tasks`` plus how (``mode``), notes and token usage."""

    tasks: list[Task]
    mode: Mode
    warnings: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    unknown_references: list[tuple[int, str]] = field(default_factory=list)
    reply: str = ""

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    def summary(self, *, price_per_image: float | None = None) -> str:
        text = summarize(self.tasks, price_per_image=price_per_image)
        text += f" (via {self.mode}"
        if self.warnings:
            text += f", {len(self.warnings)} warning(s)"
        return text + ")"

    def __repr__(self) -> str:
        return f"<Plan: {self.summary()}>"


# ------------------------------------------------------------------ prompts

_SYSTEM = """You plan batches of image generations. The user gives a master prompt, \
maybe reference images and a target number of images. Split the request into \
independent image generation tasks: one task per distinct image to make. Each task \
prompt must stand on its own (repeat the shared subject and style in every prompt; \
never write 'same as above'). Use image_references to name which reference images a \
task should be based on, by their exact file name, or null when none apply. Use \
negative_prompt only for things to avoid, else null. Use params only for size \
("WIDTHxHEIGHT"), seed, steps, cfg_scale or strength when the user asks for them, else \
null. Answer with JSON only, exactly this shape: \
{"tasks": [{"prompt": "...", "negative_prompt": null, "image_references": null, \
"params": null}]}"""

_ENHANCE_SYSTEM = """You improve prompts for an image generation model. Rewrite the \
user's prompt into one richer prompt: keep the subject and every explicit \
instruction, add concrete detail about composition, lighting, medium and style. \
Answer with the rewritten prompt only: no quotes, no preamble, no explanation."""


def _plan_schema() -> dict[str, Any]:
    # Strict structured outputs: every object closed and every property required;
    # optional values are nullable (OpenAI's rules for ``strict: true`` schemas).
    nullable_str = {"type": ["string", "null"]}
    params = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "required": list(_PLAN_PARAMS),
        "properties": {
            "size": nullable_str,
            "n": {"type": ["integer", "null"]},
            "seed": {"type": ["integer", "null"]},
            "steps": {"type": ["integer", "null"]},
            "cfg_scale": {"type": ["number", "null"]},
            "strength": {"type": ["number", "null"]},
        },
    }
    task = {
        "type": "object",
        "additionalProperties": False,
        "required": ["prompt", "negative_prompt", "image_references", "params"],
        "properties": {
            "prompt": {"type": "string"},
            "negative_prompt": nullable_str,
            "image_references": {"type": ["array", "null"], "items": {"type": "string"}},
            "params": params,
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["tasks"],
        "properties": {"tasks": {"type": "array", "items": task}},
    }


def _user_text(
    master: str,
    references: Sequence[Reference],
    count: int | None,
    style: str | None,
    max_tasks: int,
) -> str:
    parts = [f"<master_prompt>\n{master}\n</master_prompt>"]
    if references:
        lines = [
            f"{i}. {r.name} ({r.width}x{r.height} {r.format})" for i, r in enumerate(references, 1)
        ]
        parts.append("Reference images:\n" + "\n".join(lines))
    else:
        parts.append("Reference images: none")
    if count is not None:
        parts.append(f"Number of tasks: exactly {count}")
    else:
        parts.append(f"Number of tasks: as many as the request needs, at most {max_tasks}")
    if style:
        parts.append(f"Style notes: {style}")
    parts.append("Reply with the JSON object only.")
    return "\n\n".join(parts)


def _data_url(ref: Reference) -> str:
    from PIL import Image

    with Image.open(ref.path) as img:
        img.thumbnail((VISION_MAX_SIDE, VISION_MAX_SIDE))
        rgb = img.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------ tolerant JSON


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\r?\n(.*?)```", re.S)
#: Starting points tried by the scanner before giving up (bounds work on hostile text).
_MAX_STARTS = 200
#: longest piece of model-written text quoted in an error or warning
_QUOTE_CHARS = 120


def _clip(text: str, limit: int = _QUOTE_CHARS) -> str:
    """``text`` cut to ``limit`` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _quote(value: Any) -> str:
    """A bounded ``repr`` of a value the model wrote (a 1 MB value stays one line)."""
    if isinstance(value, str) and len(value) > _QUOTE_CHARS:
        return _clip(repr(value[: _QUOTE_CHARS + 2])) + f" ({len(value):,} characters)"
    try:
        shown = repr(value)
    except RecursionError:
        shown = f"<deeply nested {type(value).__name__}>"
    return _clip(shown)


class _TooDeep:
    pass


#: JSON that is valid but nests deeper than the decoder can follow
_TOO_DEEP: Any = _TooDeep()


def extract_json(text: str) -> Any:
    """The JSON value in a model reply: the whole text, a fenced block, or the first
    ``{...}`` / ``[...]`` in prose. Objects holding ``"tasks"`` win over other values.

    Raises :class:`PlannerNoJSONError` when there is none and :class:`PlannerShapeError`
    when the JSON is nested too deeply to decode; never anything else.
    """
    if not isinstance(text, str):
        raise PlannerNoJSONError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_REPLY_CHARS:
        raise PlannerNoJSONError(
            f"the reply has {len(text):,} characters; the limit is {MAX_REPLY_CHARS:,}",
            reply=text[:500],
        )
    candidates: list[Any] = []
    stripped = text.strip().lstrip("\ufeff")
    whole = _loads(stripped)
    if whole is _TOO_DEEP:
        raise PlannerShapeError(
            "the reply is JSON nested too deeply to read (thousands of levels; a plan "
            "needs four); ask the model again or try another model",
            problems=["nested too deeply"],
            reply=text[:500],
        )
    if whole is not _NOTHING:
        candidates.append(whole)
    if not _has_tasks(candidates):
        for match in _FENCE.finditer(text):
            value = _loads(match.group(2).strip())
            if value is _TOO_DEEP:
                raise PlannerShapeError(
                    "the reply's JSON block is nested too deeply to read (thousands of "
                    "levels; a plan needs four); ask the model again or try another model",
                    problems=["nested too deeply"],
                    reply=text[:500],
                )
            if value is not _NOTHING:
                candidates.append(value)
                if _has_tasks([value]):
                    break
    deep: list[int] = []
    if not _has_tasks(candidates):
        candidates.extend(_scan(text, deep))
    for value in candidates:
        if _has_tasks([value]):
            return value
    if deep:
        raise PlannerShapeError(
            "the reply holds JSON nested too deeply to read (thousands of levels; a plan "
            "needs four); ask the model again or try another model",
            problems=["nested too deeply"],
            reply=text[:500],
        )
    for value in candidates:
        if isinstance(value, (dict, list)):
            return value
    raise PlannerNoJSONError(
        "the model's reply holds no JSON object; it may not follow instructions for "
        "structured output -- try another model or a lower temperature",
        reply=text[:500],
    )


class _Nothing:
    pass


_NOTHING: Any = _Nothing()


def _loads(text: str) -> Any:
    if not text or text[0] not in "{[":
        return _NOTHING
    try:
        return json.loads(text)
    except RecursionError:
        return _TOO_DEEP
    except ValueError:
        return _NOTHING


def _has_tasks(values: Sequence[Any]) -> bool:
    return any(isinstance(v, dict) and "tasks" in v for v in values)


def _scan(text: str, deep: list[int] | None = None) -> list[Any]:
    """JSON values found by decoding from each ``{`` / ``[`` in turn.

    Bounded twice: at most ``_MAX_STARTS`` starting points, and at most about four
    times the text's length decoded in total -- a 2 MB unclosed list with many ``[``
    would otherwise cost hundreds of MB of re-scanning.
    """
    decoder = json.JSONDecoder()
    found: list[Any] = []
    deep = [] if deep is None else deep  # where a value nested too deeply to decode starts
    budget = 4 * len(text) + 100_000
    starts = 0
    i = 0
    while starts < _MAX_STARTS and budget > 0:
        brace, bracket = text.find("{", i), text.find("[", i)
        positions = [p for p in (brace, bracket) if p >= 0]
        if not positions:
            break
        pos = min(positions)
        starts += 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            budget -= max(exc.pos - pos, 1)
            i = pos + 1
            continue
        except RecursionError:
            deep.append(pos)
            budget -= len(text) - pos
            i = pos + 1
            continue
        except ValueError:
            budget -= len(text) - pos
            i = pos + 1
            continue
        budget -= end - pos
        if isinstance(value, (dict, list)):
            found.append(value)
            if _has_tasks([value]):
                break
        i = end
    return found


# ------------------------------------------------------------------ validation


def _match_reference(token: Any, references: Sequence[Reference]) -> tuple[Reference | None, str]:
    """The reference ``token`` names (1-based numbers, names with/without extension)."""
    shown = json.dumps(token) if not isinstance(token, str) else token
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        return None, shown
    if isinstance(token, int):
        return (references[token - 1] if 1 <= token <= len(references) else None), shown
    text = token.strip()
    number = re.fullmatch(r"(?:#|(?:image|img|reference|ref)\s*#?\s*)?(\d{1,6})", text, re.I)
    if number:
        index = int(number.group(1))
        if 1 <= index <= len(references):
            return references[index - 1], shown
    lowered = text.lower()
    for ref in references:
        name = ref.name.lower()
        stem = name.rsplit(".", 1)[0] if "." in name else name
        if lowered in (name, stem):
            return ref, shown
    return None, shown


def _build_tasks(
    value: Any,
    *,
    references: Sequence[Reference],
    max_tasks: int,
    base: Params,
    strict_references: bool,
    reply: str,
    warnings: list[str],
    unknown: list[tuple[int, str]],
) -> list[Task]:
    if isinstance(value, list):
        warnings.append('the reply was a bare JSON list, not {"tasks": [...]}; read as tasks')
        items: Any = value
    elif isinstance(value, dict) and "tasks" in value:
        items = value["tasks"]
    else:
        keys = (
            ", ".join(_clip(k, 40) for k in sorted(map(str, value))[:8])
            if isinstance(value, dict)
            else ""
        )
        raise PlannerShapeError(
            f'the reply is JSON but has no "tasks" list (keys: {keys or "none"})',
            problems=['missing "tasks"'],
            reply=reply[:500],
        )
    if not isinstance(items, list):
        raise PlannerShapeError(
            f'"tasks" must be a list, got {type(items).__name__}',
            problems=['"tasks" is not a list'],
            reply=reply[:500],
        )
    if not items:
        raise PlannerEmptyError(
            "the model planned zero tasks; rephrase the master prompt", reply=reply[:500]
        )
    if len(items) > max_tasks:
        raise PlannerTooManyTasksError(
            f"the model planned {len(items)} tasks; the limit is {max_tasks}. Ask for fewer "
            f"(count=...) or raise max_tasks.",
            count=len(items),
            limit=max_tasks,
            reply=reply[:500],
        )
    problems: list[str] = []
    tasks: list[Task] = []
    for number, item in enumerate(items, 1):
        try:
            tasks.append(
                _one_task(number, item, references, base, strict_references, warnings, unknown)
            )
        except (ValueError, ConfigError) as exc:
            # Messages may quote what the model wrote: keep each readable.
            problems.append(f"task {number}: {_clip(str(exc), 300)}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise PlannerShapeError(
            "the plan is not valid, so no task was created: " + "; ".join(problems[:3]) + more,
            problems=problems,
            reply=reply[:500],
        )
    return tasks


def _one_task(
    number: int,
    item: Any,
    references: Sequence[Reference],
    base: Params,
    strict_references: bool,
    warnings: list[str],
    unknown: list[tuple[int, str]],
) -> Task:
    if not isinstance(item, dict):
        raise ValueError(f"expected an object with a prompt, got {type(item).__name__}")
    prompt = item.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError('"prompt" must be text')
    try:
        prompt = check_prompt(prompt)
    except InvalidPromptError as exc:
        raise ValueError(str(exc)) from None
    changes: dict[str, Any] = {}
    negative = item.get("negative_prompt")
    if negative is not None:
        if not isinstance(negative, str):
            raise ValueError('"negative_prompt" must be text or null')
        changes["negative_prompt"] = negative.strip() or None
    raw_params = item.get("params")
    if raw_params is not None:
        if not isinstance(raw_params, dict):
            raise ValueError('"params" must be an object or null')
        for key, val in raw_params.items():
            if key not in _PLAN_PARAMS:
                warnings.append(f"task {number}: parameter {_quote(key)} ignored")
            elif val is not None:
                if key in ("n", "seed", "steps") and (
                    isinstance(val, bool) or not isinstance(val, int)
                ):
                    raise ValueError(f"params.{key} must be a whole number, got {_quote(val)}")
                if key in ("cfg_scale", "strength") and (
                    isinstance(val, bool) or not isinstance(val, (int, float))
                ):
                    raise ValueError(f"params.{key} must be a number, got {_quote(val)}")
                if key == "size" and not isinstance(val, str):
                    raise ValueError(f"params.size must be text like '1024x768', got {_quote(val)}")
                changes[key] = val
    params = base.replace(**changes)  # ConfigError on out-of-range values
    chosen: list[Reference] = []
    raw_refs = item.get("image_references")
    if raw_refs is not None:
        if isinstance(raw_refs, (str, int)) and not isinstance(raw_refs, bool):
            raw_refs = [raw_refs]
        if not isinstance(raw_refs, list):
            raise ValueError('"image_references" must be a list of names or null')
        for token in raw_refs:
            ref, shown = _match_reference(token, references)
            if ref is None:
                known = ", ".join(r.name for r in references) or "none were given"
                message = (
                    f"task {number}: unknown image reference {_quote(shown)} "
                    f"(known: {_clip(known, 300)})"
                )
                if strict_references:
                    raise ValueError(message.split(": ", 1)[1])
                warnings.append(message + "; left off")
                unknown.append((number, shown))
            elif ref not in chosen:
                chosen.append(ref)
    return Task(prompt=prompt, params=params, references=chosen)


# ------------------------------------------------------------------ transport


class _Chat:
    """One planner call's HTTP client, retries and error translation."""

    def __init__(self, config: LLMConfig) -> None:
        from ..providers._http import HttpClient, Timeouts

        _check_key(config)  # before any connection is opened
        self.config = config
        headers = {"Content-Type": "application/json", **dict(config.headers)}
        if isinstance(config.api_key, Secret):  # __post_init__ wrapped any str
            headers["Authorization"] = f"Bearer {config.api_key.reveal()}"
        read = config.timeout
        self.http = HttpClient(
            "planner",
            str(config.base_url),
            headers=headers,
            timeouts=Timeouts(connect=min(10.0, read), read=read, write=read, pool=read),
        )

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        # the planner's own timeout bounds the whole call: a timed-out request is not retried
        retry = self.config.retry
        assert isinstance(retry, RetryPolicy)  # __post_init__ made any number one
        policy = dataclasses.replace(retry, retry_timeouts=False)
        data = await retrying(
            lambda: self.http.json("POST", "/chat/completions", json=body), policy
        )
        if not isinstance(data, dict):
            raise PlannerNoJSONError(
                f"the endpoint answered {type(data).__name__}, not a chat completion"
            )
        return data

    async def aclose(self) -> None:
        await self.http.aclose()


def _is_local(url: str) -> bool:
    """True for a server on this machine or this network (which may need no key)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host  # a one-word name: a machine on this network
    return address.is_loopback or address.is_private or address.is_link_local


def _check_key(config: LLMConfig) -> None:
    """Refuse, before sending, a keyless call to a hosted API (as providers do)."""
    if config.api_key is not None or config.require_key is False:
        return
    if config.require_key is None and _is_local(str(config.base_url)):
        return
    raise ConfigError(
        f"the planner LLM at {config.base_url} needs an API key: set "
        f"{' or '.join(LLM_KEY_ENV)}, save one with save_secret({LLM_SECRET!r}, ...) or "
        "pass llm={'api_key': ...}. A local server (Ollama, LM Studio, vLLM) needs none: "
        "give its base_url, e.g. llm={'base_url': 'http://localhost:11434/v1'}; another "
        "server without keys: llm={'require_key': False}"
    )


def _translate(exc: ProviderError, config: LLMConfig) -> ProviderError:
    """The same provider error, ``provider="planner"``, its message saying where and
    what to do (the transport errors are the provider family's, not copies of them)."""
    where = f"planner LLM at {config.base_url}"
    detail = scrub(str(exc)).removeprefix("planner: ")
    if isinstance(exc, AuthenticationError):
        text = (
            f"{where} refused the API key ({detail}); set OPENAI_API_KEY, save one with "
            f"save_secret({LLM_SECRET!r}, ...) or pass llm={{'api_key': ...}}"
        )
    elif isinstance(exc, ProviderTimeoutError):
        text = f"{where} did not answer in time ({detail})"
    elif isinstance(exc, RateLimitedError):
        text = f"{where} is rate limiting requests ({detail}); wait and try again"
    elif isinstance(exc, MalformedResponseError):  # too large, not JSON
        text = f"{where} sent an answer nbbatch cannot use ({detail})"
    elif isinstance(exc, BadRequestError):
        hint = ""
        if exc.status_code == 404:
            hint = "; check base_url (it usually ends in /v1) and the model name"
        text = f"{where} rejected the request ({detail}){hint}"
    else:
        text = f"{where} failed ({detail})"
    exc.message = text
    exc.provider = "planner"
    return exc


def _timed_out(config: LLMConfig) -> ProviderTimeoutError:
    return ProviderTimeoutError(
        f"planner LLM at {config.base_url} did not answer within {config.timeout:g} s",
        provider="planner",
    )


def _message(data: Mapping[str, Any]) -> tuple[str, str | None]:
    """(content, finish_reason) of the first choice, raising refusals and bad shapes."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise PlannerNoJSONError("the endpoint's answer has no choices; is it a chat endpoint?")
    choice = choices[0]
    raw_message = choice.get("message")
    message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
    finish = choice.get("finish_reason")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        raise ContentRefusedError(
            f"the model refused: {scrub(refusal.strip())[:300]}", provider="planner"
        )
    if finish == "content_filter":
        raise ContentRefusedError(
            "the model's answer was blocked by a content filter; rephrase the prompt",
            provider="planner",
        )
    content = message.get("content")
    if isinstance(content, list):  # some servers return content parts
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if finish == "length":
        raise PlannerNoJSONError(
            "the model's answer was cut off (finish_reason=length); ask for fewer tasks or "
            "raise max_tokens",
            reply=(content or "")[:500] if isinstance(content, str) else None,
        )
    if not isinstance(content, str) or not content.strip():
        raise PlannerNoJSONError("the model answered with no text")
    return content, finish if isinstance(finish, str) else None


def _rejects_mode(exc: ProviderError) -> bool:
    # Servers without structured outputs answer 400 (OpenAI-shaped invalid_request_error)
    # or 422 (FastAPI validation); anything else is not about the response format.
    return isinstance(exc, BadRequestError) and exc.status_code in (400, 422)


# ------------------------------------------------------------------ public API


async def plan_async(
    master_prompt: str,
    *,
    llm: LLMConfig | Mapping[str, Any] | None = None,
    references: Sequence[Reference] = (),
    count: int | None = None,
    style: str | None = None,
    params: Params | Mapping[str, Any] | None = None,
    max_tasks: int = DEFAULT_MAX_TASKS,
    vision: bool = False,
    strict_references: bool = False,
) -> Plan:
    """Plan tasks from ``master_prompt`` with an LLM (``await`` it in a notebook cell).

    ``count`` asks for exactly that many tasks (the model may differ; then a warning).
    ``params`` are defaults for every task; the model's per-task params override them.
    See the module doc for modes, references, bounds and errors.
    """
    config = LLMConfig.coerce(llm)
    master = check_prompt(master_prompt)
    if not isinstance(max_tasks, int) or max_tasks < 1:
        raise ConfigError(f"max_tasks must be a whole number >= 1, got {max_tasks!r}")
    if count is not None and (not isinstance(count, int) or not 1 <= count <= max_tasks):
        raise ConfigError(f"count must be between 1 and max_tasks ({max_tasks}), got {count!r}")
    base = params if isinstance(params, Params) else Params.from_dict(params)
    if style is not None and (not isinstance(style, str) or len(style) > MAX_PROMPT_CHARS):
        raise ConfigError(f"style must be text of at most {MAX_PROMPT_CHARS:,} characters")
    refs = list(references)
    if not all(isinstance(r, Reference) for r in refs):
        raise ConfigError("references must be Reference objects (see Workspace.add_reference)")
    text = _user_text(master, refs, count, style, max_tasks)
    content: Any = text
    if vision and refs:
        image_parts = await asyncio.to_thread(lambda: [_data_url(r) for r in refs])
        content = [{"type": "text", "text": text}] + [
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}} for url in image_parts
        ]
    messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": content}]
    modes = _MODES[_MODES.index(config.mode) :] if config.mode else _MODES
    warnings: list[str] = []
    chat = _Chat(config)
    try:
        data, mode = await asyncio.wait_for(
            _ask(chat, config, messages, modes, max_tasks, warnings), config.timeout
        )
    except asyncio.TimeoutError:
        raise _timed_out(config) from None
    finally:
        await chat.aclose()
    reply, _finish = _message(data)
    value = extract_json(reply)
    unknown: list[tuple[int, str]] = []
    tasks = _build_tasks(
        value,
        references=refs,
        max_tasks=max_tasks,
        base=base,
        strict_references=strict_references,
        reply=reply,
        warnings=warnings,
        unknown=unknown,
    )
    if count is not None and len(tasks) != count:
        warnings.append(f"asked for {count} tasks, the model planned {len(tasks)}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    model = data.get("model") if isinstance(data.get("model"), str) else config.model
    return Plan(tasks, mode, warnings, dict(usage or {}), model, unknown, reply)


async def _ask(
    chat: _Chat,
    config: LLMConfig,
    messages: list[dict[str, Any]],
    modes: Sequence[Mode],
    max_tasks: int,
    warnings: list[str],
) -> tuple[dict[str, Any], Mode]:
    i = 0
    while True:
        mode = modes[i]
        body: dict[str, Any] = {"model": config.model, "messages": messages}
        if config.temperature is not None:
            body["temperature"] = config.temperature
        if config.max_tokens is not None:
            body["max_tokens"] = config.max_tokens
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "image_tasks",
                    "strict": True,
                    "schema": _plan_schema(),
                },
            }
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        try:
            return await chat.complete(body), mode
        except ProviderError as exc:
            if not _rejects_mode(exc):
                raise _translate(exc, config) from None
            detail = scrub(str(exc))[:160]
            if _has_images(messages) and "image" in detail.lower():
                # A text-only model: plan from the reference names alone, same mode.
                messages = _without_images(messages)
                warnings.append(
                    f"the model does not take images ({detail}); planned from the "
                    "reference names only"
                )
                continue
            if i + 1 >= len(modes):
                raise _translate(exc, config) from None
            warnings.append(
                f"the server rejected response_format {mode} ({detail}); "
                f"fell back to {modes[i + 1]}"
            )
            i += 1


def _has_images(messages: list[dict[str, Any]]) -> bool:
    return any(isinstance(m.get("content"), list) for m in messages)


def _without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            text = "".join(
                str(p.get("text", ""))
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
            m = {**m, "content": text}
        out.append(m)
    return out


async def enhance_async(
    prompt: str,
    *,
    llm: LLMConfig | Mapping[str, Any] | None = None,
    style: str | None = None,
) -> str:
    """Rewrite one prompt into a richer one via the planner LLM (plain text reply)."""
    config = LLMConfig.coerce(llm)
    original = check_prompt(prompt)
    text = original if not style else f"{original}\n\nStyle notes: {style}"
    messages = [
        {"role": "system", "content": _ENHANCE_SYSTEM},
        {"role": "user", "content": text},
    ]
    body: dict[str, Any] = {"model": config.model, "messages": messages}
    if config.temperature is not None:
        body["temperature"] = config.temperature
    chat = _Chat(config)
    try:
        data = await asyncio.wait_for(chat.complete(body), config.timeout)
    except asyncio.TimeoutError:
        raise _timed_out(config) from None
    except ProviderError as exc:
        raise _translate(exc, config) from None
    finally:
        await chat.aclose()
    reply, _ = _message(data)
    cleaned = reply.strip()
    fenced = _FENCE.search(cleaned)
    if fenced:
        cleaned = fenced.group(2).strip()
    if len(cleaned) >= 2 and cleaned[0] == cleaned[-1] and cleaned[0] in "\"'":
        cleaned = cleaned[1:-1].strip()
    try:
        return check_prompt(cleaned)
    except InvalidPromptError as exc:
        raise PlannerShapeError(
            f"the enhanced prompt is not usable: {exc}", problems=[str(exc)], reply=reply[:500]
        ) from None


def plan(
    master_prompt: str,
    *,
    llm: LLMConfig | Mapping[str, Any] | None = None,
    references: Sequence[Reference] = (),
    count: int | None = None,
    style: str | None = None,
    params: Params | Mapping[str, Any] | None = None,
    max_tasks: int = DEFAULT_MAX_TASKS,
    vision: bool = False,
    strict_references: bool = False,
) -> Plan:
    """Blocking :func:`plan_async`: works in a script and in a notebook cell alike."""
    result: Plan = run_blocking(
        lambda: plan_async(
            master_prompt,
            llm=llm,
            references=references,
            count=count,
            style=style,
            params=params,
            max_tasks=max_tasks,
            vision=vision,
            strict_references=strict_references,
        )
    )
    return result


def enhance(
    prompt: str,
    *,
    llm: LLMConfig | Mapping[str, Any] | None = None,
    style: str | None = None,
) -> str:
    """Blocking :func:`enhance_async`."""
    result: str = run_blocking(lambda: enhance_async(prompt, llm=llm, style=style))
    return result


_RENAMED = {
    "aplan": ("plan_async", lambda: plan_async),
    "aenhance": ("enhance_async", lambda: enhance_async),
}


def __getattr__(name: str) -> Any:
    return renamed(__name__, name, _RENAMED)
