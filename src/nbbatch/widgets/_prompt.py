"""``PromptPanel``: from a master prompt to tasks in the batch (its own anywidget).

Modes: ``llm`` (Split with LLM: ``plan_async``), ``template`` (Dynamic Prompts), ``lines`` (one
per line), ``per_image`` (the same prompt for every uploaded image), ``file`` (a .txt /
.csv / .jsonl prompts file). ``Create tasks`` first proposes (count, cost when known,
the first prompts with their references); only ``create`` adds them (``batch.add``).

Wire protocol (custom messages, request → one reply as in the grid):

page → kernel
    ``hello``                     strings, draft, presets, offered params, modes, cap
    ``params``                    the offered params, the negative flag, their defaults
    ``draft {draft}``             the page's inputs, kept in the kernel (reload, re-display)
    ``count {template}``          live count of a template (``count`` or ``error``)
    ``propose {draft}``           what ``create`` would add; the LLM mode replies when the
                                  plan is ready (``cancel`` stops it)
    ``create {confirm}``          add the proposal to the batch (``confirm`` above the cap)
    ``cancel``                    stop the running plan / enhance
    ``enhance {prompt}``          the prompt rewritten by the planner LLM
    ``preset {name, op, prompt, negative}``  op ``insert`` | ``replace``: the new texts
    ``file {name, text}``         a prompts file chosen in the browser (≤ 4 MiB of text)
    ``preset_save {name, category, prompt, negative}``   the prompt as a new preset
    ``preset_edit {old, name, category, text, negative}``, ``preset_move {name, index}``,
    ``preset_delete {name, confirm}``   manage the workspace's presets (``Presets``);
                                  each replies with the updated lists

Synced traits: ``lang``, ``busy`` (a plan or an enhance runs), ``refs`` (how many
reference images the linked ``Upload`` holds), ``created`` (tasks added so far),
``params_version`` (the offered params changed: ask ``params``). Prompts
and drafts are not traits: widget state may be saved into the notebook file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import traitlets

import nbbatch.errors as E
import nbbatch.providers as providers
from nbbatch.core._model import Params, Reference, Task
from nbbatch.engine import Batch, Workspace
from nbbatch.errors import NbbatchError
from nbbatch.planning import (
    LLMConfig,
    Plan,
    Presets,
    count_prompts,
    enhance_async,
    expand,
    plan_async,
    read_prompts,
)

# the template caps (not re-exported at the top level): one place decides them
from nbbatch.planning._templates import COUNT_LIMIT, DEFAULT_CAP

from ._dispatch import DEFERRED as _DEFERRED
from ._dispatch import Cancels
from ._i18n import catalogue, tr
from ._panel import Panel
from ._upload import Upload
from ._words import UserFacingError, clip, describe

__all__ = ["PromptPanel", "offered_params"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
MODES = ("llm", "template", "lines", "per_image", "file")
_MAX_FILE_CHARS = 4 * 1024 * 1024
_SAMPLE = 12  # prompts shown in a proposal
_DRAFT_FIELDS = {
    "prompt": 20_000,
    "negative": 4_000,
    "mode": 20,
    "count": 10,
    "file_name": 255,
    "size": 20,
    "n": 4,
    "seed": 24,
    "steps": 6,
    "cfg_scale": 8,
    "strength": 6,
    "sampler": 60,
    "model": 120,
}
_SIZES = ("512x512", "768x768", "1024x1024", "1024x768", "768x1024", "1536x1024", "1024x1536")


def _provider_facts(provider: Any) -> tuple[str, providers.Capabilities]:
    """The registered name and the capabilities of what runs: a name, a saved
    configuration (``ProviderConfig``) or a built ``Provider``."""
    if isinstance(provider, providers.Provider):
        return str(provider.name), provider.capabilities
    name = str(getattr(provider, "provider", provider))  # a ProviderConfig names its kind
    try:
        return name, providers.provider_info(name).capabilities
    except E.UnknownProviderError:
        return name, providers.Capabilities()


#: how the prompt panel shows each parameter the catalogue may offer
_FIELD_SHAPES: dict[str, dict[str, Any]] = {
    "size": {"kind": "size", "choices": list(_SIZES)},
    "n": {"kind": "int", "min": 1},
    "seed": {"kind": "int", "min": 0},
    "steps": {"kind": "int", "min": 1, "max": 1000},
    "cfg_scale": {"kind": "float", "min": 0, "max": 30},
    "sampler": {"kind": "text"},
    "strength": {"kind": "float", "min": 0, "max": 1},
    "model": {"kind": "text"},
}


def offered_params(provider: Any) -> list[dict[str, Any]]:
    """The generation parameters to offer for ``provider``: what it cannot do is not shown.

    Which ones is the provider catalogue's answer (``nbbatch.providers.offered_params``);
    this only says how each is shown.
    """
    name, caps = _provider_facts(provider)
    fields = []
    for param in providers.offered_params(name, caps):
        field = {"name": param, **_FIELD_SHAPES[param]}
        if param == "n":
            field["max"] = min(16, caps.max_n)
        fields.append(field)
    return fields


class PromptPanel(Panel):
    """Master prompt → tasks: LLM split, template, lines, one per image, or a file.

    ``PromptPanel(batch, upload=Upload(), llm=dict(base_url=..., model=...))``. Tasks land
    in ``batch`` (a new one in ``workspace`` when none is given; ``panel.batch``).
    """

    _esm = _STATIC / "prompt.js"
    _css = _STATIC / "prompt.css"

    busy = traitlets.Unicode("").tag(sync=True)  # "", "plan" or "enhance"
    refs = traitlets.Int(0).tag(sync=True)
    created = traitlets.Int(0).tag(sync=True)
    #: bumped when the offered params change (another provider): views ask ``params``
    params_version = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        batch: Batch | None = None,
        *,
        upload: Upload | None = None,
        llm: LLMConfig | Mapping[str, Any] | None = None,
        provider: Any = "demo",
        workspace: Workspace | str | os.PathLike[str] | None = None,
        cap: int = DEFAULT_CAP,
        max_tasks: int = 50,
        vision: bool = False,
        price_per_image: float | None = None,
        lang: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(lang=lang, **kwargs)
        if batch is None:
            batch = Batch.create([], workspace=workspace, allow_empty=True)
        self.batch = batch
        self.upload = upload
        self.llm = llm
        self.provider = provider
        self.defaults: dict[str, Any] = {}
        self.cap = cap
        self.max_tasks = max_tasks
        self.vision = vision
        self.price_per_image = price_per_image
        self.presets = Presets.load(batch.workspace)
        # "Split with LLM" only when an LLM is set up: without one it could only fail (or
        # send the prompt to api.openai.com without a key); a template always works
        self.draft: dict[str, str] = {
            "mode": "llm" if llm is not None else "template",
            "prompt": "",
            "negative": "",
        }
        self._mode_chosen = False  # the person picked a mode: set_llm leaves it
        self._proposal: list[Task] | None = None
        self._over_cap = False
        self._job: asyncio.Future[Any] | None = None
        self._job_uid: object = None
        self._cancels = Cancels()  # a page that stops waiting stops the LLM call
        self._file_tasks: list[Task] | None = None
        self._file_notes: dict[str, Any] = {}
        self._over_source: tuple[str, Params] = ("", Params())
        if upload is not None:
            self.refs = upload.count
            upload.observe(self._on_refs, names=["count"])
        self._handle(
            {
                "hello": ("doing_request", self._on_hello),
                "params": ("doing_request", self._on_params),
                "draft": ("doing_request", self._on_draft),
                "count": ("doing_count", self._on_count),
                "propose": ("doing_propose", self._on_propose),
                "create": ("doing_create", self._on_create),
                "cancel": ("doing_request", self._on_cancel),
                "enhance": ("doing_enhance", self._on_enhance),
                "preset": ("doing_preset", self._on_preset),
                "preset_save": ("doing_preset_save", self._on_preset_save),
                "preset_edit": ("doing_preset_save", self._on_preset_edit),
                "preset_move": ("doing_preset_move", self._on_preset_move),
                "preset_delete": ("doing_preset_delete", self._on_preset_delete),
                "file": ("doing_file", self._on_file),
            }
        )

    def _repr_detail(self) -> str:
        mode = self.draft.get("mode", "")
        return f"batch {self.batch.name!r} · mode {mode} · {self.created} tasks created"

    # ----------------------------------------------------------- public API
    @property
    def references(self) -> list[Reference]:
        return self.upload.references if self.upload is not None else []

    def set_provider(self, provider: Any, *, defaults: Mapping[str, Any] | None = None) -> None:
        """Offer the params of another provider; open views redraw their param fields.

        ``defaults`` (``Params`` fields) fill what a draft leaves empty and show as the
        fields' placeholders (the settings panel's "Defaults for new tasks").
        """
        self.provider = provider
        self.defaults = dict(defaults or {})
        self.params_version += 1

    def _on_refs(self, change: Mapping[str, Any]) -> None:
        self.refs = int(change["new"])

    # ----------------------------------------------------------- receiving
    def _words(self, exc: BaseException, action: str) -> str:
        """What happened (the engine's words) and, for the LLM, what to do next."""
        text = describe(exc, self.lang, action)
        for kind, key in (
            # the planner raises the provider errors (provider="planner")
            (E.AuthenticationError, "next_llm_key"),
            (E.ProviderTimeoutError, "next_llm_timeout"),
            (E.ContentRefusedError, "next_llm_refused"),
            (E.ProviderError, "next_llm_url"),
            (E.PlannerTooManyTasksError, "next_llm_too_many"),
            (E.PlannerOutputError, "next_llm_output"),
        ):
            if isinstance(exc, kind):
                return f"{text}\n{tr(self.lang, key)}"
        return text

    # ----------------------------------------------------------- handlers
    def _preset_lists(self) -> dict[str, Any]:
        """The picker's groups (by category, first use first) and the list in order."""
        groups: dict[str, list[dict[str, str]]] = {}
        for p in self.presets:
            groups.setdefault(p.category, []).append({"name": p.name, "text": p.text})
        return {
            "presets": [{"category": c, "presets": ps} for c, ps in groups.items()],
            "preset_list": [
                {"name": p.name, "category": p.category, "text": p.text, "negative": p.negative}
                for p in self.presets
            ],
        }

    def _on_hello(self, content: dict[str, Any]) -> dict[str, Any]:
        return {
            "strings": catalogue(self.lang, "prompt"),
            "draft": self.draft,
            **self._preset_lists(),
            **self._on_params(content),
            "cap": self.cap,
            "max_tasks": self.max_tasks,
            "busy": self.busy,
        }

    def _on_params(self, content: dict[str, Any]) -> dict[str, Any]:
        offered = offered_params(self.provider)
        names = {f["name"] for f in offered}
        return {
            "params": offered,
            "negative": bool(_provider_facts(self.provider)[1].negative_prompt),
            "defaults": {k: str(v) for k, v in self.defaults.items() if k in names},
        }

    def set_llm(self, llm: LLMConfig | Mapping[str, Any] | None, *, ready: bool) -> None:
        """Plan with ``llm``; ``ready``: it is set up (a key, or a local base URL). Until
        the person picks a mode, the default follows: "Split with LLM" when ready, else
        "Template"."""
        self.llm = llm
        if not self._mode_chosen and self.draft.get("mode") in ("llm", "template"):
            self.draft = {**self.draft, "mode": "llm" if ready else "template"}

    def _keep_draft(self, draft: dict[str, str]) -> None:
        if draft.get("mode", self.draft.get("mode")) != self.draft.get("mode"):
            self._mode_chosen = True
        self.draft = draft

    def _on_draft(self, content: dict[str, Any]) -> None:
        self._keep_draft(_clean_draft(content.get("draft")))

    def _on_count(self, content: dict[str, Any]) -> dict[str, Any]:
        template = content.get("template")
        if not isinstance(template, str):
            raise UserFacingError("bad_request", type="count")
        if not template.strip():
            return {"count": 0, "exact": True}
        try:
            return {"count": count_prompts(template, limit=self.cap), "exact": True}
        except E.TemplateTooLargeError as exc:
            return {"count": exc.count, "exact": False, "over": True}
        except E.TemplateError as exc:
            return {"error": clip(exc.message, 300)}

    def _params(self, draft: Mapping[str, str]) -> Params:
        values: dict[str, Any] = {}
        kinds = {f["name"]: f["kind"] for f in offered_params(self.provider)}
        for name, kind in kinds.items():
            raw = (draft.get(name) or "").strip() or str(self.defaults.get(name, ""))
            if not raw:
                continue
            try:
                values[name] = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
            except ValueError:
                raise UserFacingError("bad_param", name=tr(self.lang, f"param_{name}")) from None
        negative = (draft.get("negative") or "").strip()
        if negative:
            values["negative_prompt"] = negative
        return Params.from_dict(values)

    def _on_propose(self, content: dict[str, Any]) -> dict[str, Any]:
        if self._job is not None and not self._job.done():
            raise UserFacingError("still_planning")
        draft = _clean_draft(content.get("draft"))
        self._keep_draft(draft)
        mode = draft.get("mode", "llm")
        prompt = draft.get("prompt", "").strip()
        params = self._params(draft)
        if mode not in MODES:
            raise UserFacingError("bad_request", type=f"mode {mode!r}")
        if mode == "file":
            if self._file_tasks is None:
                raise UserFacingError("no_file")
            return self._propose(list(self._file_tasks), extra=self._file_notes)
        if not prompt:
            raise UserFacingError("no_prompt")
        if mode == "lines":
            lines = [ln.strip() for ln in prompt.splitlines()]
            tasks = [
                Task(prompt=ln, params=params) for ln in lines if ln and not ln.startswith("#")
            ]
            return self._propose(tasks)
        if mode == "per_image":
            refs = self.references
            if not refs:
                raise UserFacingError("no_images")
            return self._propose([Task(prompt=prompt, params=params, references=[r]) for r in refs])
        if mode == "template":
            try:
                listed = expand(prompt, params=params, cap=self.cap)
            except E.TemplateTooLargeError as exc:
                return self._over(prompt, params, exc)
            return self._propose(list(listed), extra={"skipped": [str(s) for s in listed.skipped]})
        return self._plan(content.get("uuid"), prompt, draft, params)

    def _over(self, prompt: str, params: Params, exc: E.TemplateTooLargeError) -> dict[str, Any]:
        """An explosion: say how many, and build them only once the person confirms."""
        self._proposal = None
        self._over_cap = True
        self._over_source = (prompt, params)
        return {"count": exc.count, "exact": exc.exact, "over_cap": True, "cap": self.cap}

    def _propose(self, tasks: list[Task], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self._proposal = tasks
        self._over_cap = False
        images = sum(t.params.n for t in tasks)
        body: dict[str, Any] = {
            "count": len(tasks),
            "images": images,
            "sample": [
                {"p": t.prompt, "refs": [r.name for r in t.references]} for t in tasks[:_SAMPLE]
            ],
            "over_cap": False,
            **(extra or {}),
        }
        if self.price_per_image is not None:
            body["cost"] = f"${images * self.price_per_image:,.2f}"
        return body

    def _plan(
        self, uid: object, prompt: str, draft: Mapping[str, str], params: Params
    ) -> dict[str, Any]:
        count_raw = (draft.get("count") or "").strip()
        count = None
        if count_raw:
            if not count_raw.isdigit() or not 1 <= int(count_raw) <= self.max_tasks:
                raise UserFacingError("bad_count", n=self.max_tasks)
            count = int(count_raw)
        refs = self.references
        llm = self.llm
        self.busy = "plan"
        self._proposal = None
        coro = plan_async(
            prompt,
            llm=llm,
            references=refs,
            count=count,
            params=params,
            max_tasks=self.max_tasks,
            vision=self.vision and bool(refs),
        )
        self._start(uid, coro, self._planned, "doing_propose")
        return _DEFERRED

    def _planned(self, uid: object, plan: Plan) -> None:
        body = self._propose(list(plan.tasks), extra={"warnings": list(plan.warnings)[:20]})
        self._reply(uid, True, body)

    def _start(
        self,
        uid: object,
        coro: Any,
        done: Callable[[object, Any], None],
        action: str,
    ) -> None:
        try:
            job: asyncio.Future[Any] = asyncio.ensure_future(coro)
        except RuntimeError:
            coro.close()
            self.busy = ""
            raise UserFacingError("needs_loop") from None
        self._job = job
        self._job_uid = uid
        self._cancels.track(uid, job)

        def finished(f: asyncio.Future[Any]) -> None:
            self.busy = ""
            if self._job is f:
                self._job = None
            if f.cancelled():
                self._reply(uid, True, {"cancelled": True})
                return
            exc = f.exception()
            if exc is not None:
                if not isinstance(exc, NbbatchError):
                    log.error("nbbatch prompt panel: %s failed", action, exc_info=exc)
                self._reply(uid, False, {"error": self._words(exc, action)})
                return
            try:
                done(uid, f.result())
            except Exception as exc2:
                self._reply(uid, False, {"error": self._words(exc2, action)})

        job.add_done_callback(finished)

    def _on_cancel(self, content: dict[str, Any]) -> None:
        if self._job is not None and not self._job.done():
            self._job.cancel()

    def _on_create(self, content: dict[str, Any]) -> dict[str, Any]:
        if self._over_cap:
            if content.get("confirm") is not True:
                raise UserFacingError("over_cap", cap=self.cap)
            prompt, params = self._over_source
            listed = expand(prompt, params=params, cap=COUNT_LIMIT)
            self._proposal = list(listed)
            self._over_cap = False
        tasks = self._proposal
        if not tasks:
            raise UserFacingError("nothing_proposed")
        self._proposal = None
        added = self.batch.add(tasks)
        self.created += len(added)
        return {"added": len(added)}

    def _on_enhance(self, content: dict[str, Any]) -> dict[str, Any]:
        prompt = content.get("prompt")
        if not isinstance(prompt, str):
            raise UserFacingError("bad_request", type="enhance")
        if not prompt.strip():
            raise UserFacingError("no_prompt")
        if self._job is not None and not self._job.done():
            raise UserFacingError("still_planning")
        self.busy = "enhance"
        self._start(
            content.get("uuid"),
            enhance_async(prompt, llm=self.llm),
            lambda uid, text: self._reply(uid, True, {"prompt": text}),
            "doing_enhance",
        )
        return _DEFERRED

    def _on_preset(self, content: dict[str, Any]) -> dict[str, Any]:
        name, op = content.get("name"), content.get("op")
        prompt, negative = content.get("prompt") or "", content.get("negative") or ""
        if not isinstance(name, str) or op not in ("insert", "replace"):
            raise UserFacingError("bad_request", type="preset")
        if not isinstance(prompt, str) or not isinstance(negative, str):
            raise UserFacingError("bad_request", type="preset")
        preset = next((p for p in self.presets if p.name == name), None)
        if preset is None:
            raise UserFacingError("preset_gone", name=name[:60])
        if op == "replace":
            new = preset.text.replace("{prompt}", "").strip(" ,")
        else:
            new = preset.apply(prompt.strip())
        if preset.negative:
            negative = f"{negative}, {preset.negative}" if negative.strip() else preset.negative
        return {"prompt": new, "negative": negative}

    # ----------------------------------------------------------- managing presets
    def _preset_text(self, content: dict[str, Any], key: str, limit: int) -> str:
        value = content.get(key, "")
        if not isinstance(value, str) or len(value) > limit:
            raise UserFacingError("bad_request", type=f"preset {key}")
        return value.strip()

    def _on_preset_save(self, content: dict[str, Any]) -> dict[str, Any]:
        """Save the current prompt (and negative prompt) as a new preset."""
        name = self._preset_text(content, "name", 200)
        category = self._preset_text(content, "category", 200) or "style"
        text = self._preset_text(content, "prompt", 20_000)
        negative = self._preset_text(content, "negative", 20_000)
        if not name:
            raise UserFacingError("preset_needs_title")
        if not text and not negative:
            raise UserFacingError("preset_needs_text")
        self.presets.add(name, text, category=category, negative=negative)
        return {"saved": name, **self._preset_lists()}

    def _on_preset_edit(self, content: dict[str, Any]) -> dict[str, Any]:
        old = self._preset_text(content, "old", 200)
        changes = {
            "name": self._preset_text(content, "name", 200),
            "category": self._preset_text(content, "category", 200) or "style",
            "text": self._preset_text(content, "text", 20_000),
            "negative": self._preset_text(content, "negative", 20_000),
        }
        if not changes["name"]:
            raise UserFacingError("preset_needs_title")
        if old not in self.presets:
            raise UserFacingError("preset_gone", name=old[:60])
        self.presets.edit(old, **changes)
        return {"saved": changes["name"], **self._preset_lists()}

    def _on_preset_move(self, content: dict[str, Any]) -> dict[str, Any]:
        name = self._preset_text(content, "name", 200)
        index = content.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise UserFacingError("bad_request", type="preset_move")
        if name not in self.presets:
            raise UserFacingError("preset_gone", name=name[:60])
        self.presets.move(name, max(0, min(index, len(self.presets) - 1)))
        return self._preset_lists()

    def _on_preset_delete(self, content: dict[str, Any]) -> dict[str, Any]:
        name = self._preset_text(content, "name", 200)
        if content.get("confirm") is not True:  # the page asks first; so does the kernel
            raise UserFacingError("preset_confirm_delete", name=name[:60])
        if name not in self.presets:
            raise UserFacingError("preset_gone", name=name[:60])
        self.presets.remove(name)
        return {"deleted": name, **self._preset_lists()}

    def _on_file(self, content: dict[str, Any]) -> dict[str, Any]:
        name, text = content.get("name"), content.get("text")
        if not isinstance(name, str) or not isinstance(text, str):
            raise UserFacingError("bad_request", type="file")
        if len(text) > _MAX_FILE_CHARS:
            raise UserFacingError("file_too_big")
        suffix = pathlib.Path(name).suffix.lower()
        if suffix not in (".txt", ".csv", ".jsonl"):
            raise UserFacingError("file_type", name=name[:80])
        # read_prompts reads a path (and resolves relative image paths next to it): a
        # private temporary folder holds the text for the time of the read.
        with tempfile.TemporaryDirectory(prefix="nbbatch-prompts-") as tmp:
            path = pathlib.Path(tmp) / f"prompts{suffix}"
            path.write_text(text, encoding="utf-8")
            listed = read_prompts(
                path, params=self._params(self.draft), workspace=self.batch.workspace
            )
        skipped = [str(s) for s in listed.skipped][:50]
        self._file_tasks = list(listed)
        self._file_notes = {"skipped": skipped, "warnings": list(listed.warnings)[:20]}
        self.draft = {**self.draft, "file_name": name[:255], "mode": "file"}
        return {"count": len(listed), "skipped": skipped, "warnings": self._file_notes["warnings"]}


def _clean_draft(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise UserFacingError("bad_request", type="draft")
    out: dict[str, str] = {}
    for key, limit in _DRAFT_FIELDS.items():
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            out[key] = value[:limit]
    if out.get("mode") not in MODES:
        out["mode"] = "llm"
    return out
