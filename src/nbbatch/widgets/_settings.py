"""``SettingsPanel``: LLM, image provider and runner settings, in a dialog.

Keys never become traits and never go back to the page: a key typed into the dialog
travels once by message, the field clears itself, and the key lives in the kernel as a
``Secret`` (``Remember on this computer`` also writes it to the 0600 secrets file). When
the standard environment variable holds a key the dialog says so and shows no field.

Wire protocol (request → one reply, as in the grid):

page → kernel
    ``hello``                        strings, the values, where each key comes from, the
                                     problem with the config file (if any)
    ``set_key {which, key, remember}``  which: ``llm`` | ``provider``
    ``forget_key {which}``
    ``save {values}``                write the config file (``save_settings``) and the
                                     studio's own small file (LLM, runner defaults)
    ``test {values}``                ``check_connection`` of the image provider, in words
    ``workflow {workflow, workflow_json}``  ComfyUI: the workflow's nodes and detected
                                     mapping (``_comfyform``), of a file or of given
                                     JSON; ``save`` then takes ``mapping`` (and
                                     ``workflow_json``, kept as a file)
    ``set_webhook {url, remember}``  the notification webhook, a secret like a key
    ``forget_webhook``
    ``balance {values}``             the account balance of the form's provider, where
                                     its service has an API for it (``_spend``)

``hello`` and ``save`` also carry ``pace``: the webhook (where it comes from, its host
only), the rate limits and the token price table; ``save {values, pace}`` keeps them in
the engine's settings (``_spend``).

Synced traits: ``lang``, ``key_set`` and ``llm_key_set`` (booleans, never the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pathlib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import traitlets

import nbbatch.providers as providers
from nbbatch.core._model import Params
from nbbatch.core._secrets import Secret
from nbbatch.engine import (
    ProviderConfig,
    Settings,
    check_connection,
    load_settings,
    save_secret,
    save_settings,
)

# where the files are and the secrets file's own helpers (not re-exported at the top)
from nbbatch.engine._settings import RunDefaults, config_dir, delete_secret, load_secrets
from nbbatch.errors import ConfigError, NbbatchError, UnknownProviderError
from nbbatch.planning import LLMConfig
from nbbatch.providers import available_providers

from ._comfyform import checked_mapping, keep_workflow, workflow_form
from ._dispatch import DEFERRED as _DEFERRED
from ._i18n import catalogue
from ._panel import Panel
from ._session import provider_choices
from ._spend import (
    apply_rate_limits,
    forget_webhook,
    has_balance_api,
    pace_from,
    pace_info,
    set_webhook_from,
)
from ._words import UserFacingError, clip, describe

__all__ = ["SettingsPanel", "provider_fields"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
_LLM_SECRET = "llm"
_TOP = ("base_url", "model")  # catalogue fields that are values of their own
_INT_PARAMS = frozenset({"n", "seed", "steps"})
_FLOAT_PARAMS = frozenset({"cfg_scale", "strength"})


def provider_fields(provider: str) -> dict[str, Any]:
    """What the settings form shows for ``provider``, from the provider catalogue.

    ``fields``: the catalogue's non-secret settings fields (name, label, kind, default,
    help, choices) but its own concurrency, which is ``limit`` (how many requests at
    once it takes at most, or None); ``key``: the label of its secret field and the
    variables it is read from (``None`` when it takes no secret); ``params``: the
    generation parameters whose defaults may be set (what the provider cannot do is
    left out). A plug-in the
    catalogue does not describe gets a base URL and a model.
    """
    try:
        info = providers.provider_info(provider)
    except UnknownProviderError:
        info = providers.ProviderInfo(
            name=provider,
            label=provider,
            class_path="",
            capabilities=providers.Capabilities(),
            settings=(
                providers.SettingField("base_url", "Base URL", "url"),
                providers.SettingField("model", "Model", "text"),
            ),
        )
    secret = next((f for f in info.settings if f.kind == "secret"), None)
    cap = next((f for f in info.settings if f.name == "concurrency"), None)
    return {
        "label": info.label,
        # one concurrency the person sets (the run's); the provider's own cap is a limit
        "limit": cap.default if cap is not None and isinstance(cap.default, int) else None,
        "fields": [
            {
                "name": f.name,
                "label": f.label,
                "kind": f.kind,
                "default": f.default,
                "help": f.help,
                "choices": list(f.choices),
            }
            for f in info.settings
            if f.kind != "secret" and f.name != "concurrency"
        ],
        "key": None
        if secret is None
        else {
            "field": secret.name,
            "label": secret.label,
            "env": list(info.key_env),
            "required": info.takes_key,
        },
        "key_env": list(info.key_env),
        "needs_key": secret is not None,
        # the model has its own field above; n, seed and the rest are defaults here
        "params": [
            p for p in providers.offered_params(info.name, info.capabilities) if p != "model"
        ],
    }


class _RedactKeys(logging.Filter):
    """Takes typed keys out of the ``comm`` package's DEBUG log of every comm message.

    ``comm`` logs each incoming message whole (``handle_msg[id]({msg})``) before any
    widget sees it, so a key sent by the dialog would land in a DEBUG log file.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_carries_key(a) for a in args):
            record.args = tuple(_without_key(a) if _carries_key(a) else a for a in args)
        return True


def _custom(value: object) -> dict[str, Any] | None:
    """The widget's own message inside a comm message (``data.content`` of "custom")."""
    if not isinstance(value, dict):
        return None
    content = value.get("content")
    data = content.get("data") if isinstance(content, dict) else None
    inner = data.get("content") if isinstance(data, dict) else None
    return inner if isinstance(inner, dict) else None


#: the messages that carry a secret, and its field
_SECRET_FIELDS = {"set_key": "key", "set_webhook": "url"}


def _carries_key(value: object) -> bool:
    inner = _custom(value)
    if inner is None:
        return False
    field = _SECRET_FIELDS.get(str(inner.get("type")))
    return field is not None and field in inner


def _without_key(msg: Any) -> Any:
    data = msg["content"]["data"]
    field = _SECRET_FIELDS[data["content"]["type"]]
    inner = {**data["content"], field: "***"}
    return {**msg, "content": {**msg["content"], "data": {**data, "content": inner}}}


_REDACT = _RedactKeys()


def _install_redaction() -> None:
    comm_log = logging.getLogger("Comm")
    if _REDACT not in comm_log.filters:
        comm_log.addFilter(_REDACT)


def _env_source(names: Sequence[str]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value and value.strip():
            return name
    return None


class SettingsPanel(Panel):
    """A ``Settings`` button and its dialog. ``panel.llm_config()`` and
    ``panel.provider_config()`` give what was set (keys included, as ``Secret``).
    """

    _esm = _STATIC / "settings.js"
    _css = _STATIC / "settings.css"

    key_set = traitlets.Bool(False).tag(sync=True)
    llm_key_set = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        *,
        config_dir: str | os.PathLike[str] | None = None,
        lang: str | None = None,
        on_change: Callable[[SettingsPanel], None] | None = None,
        **kwargs: Any,
    ) -> None:
        _install_redaction()
        super().__init__(lang=lang, **kwargs)
        self._dir = pathlib.Path(config_dir) if config_dir else None
        self._keys: dict[str, Secret] = {}
        self._on_change = on_change
        self.problem: str | None = None
        self.values = self._load()
        self._refresh_flags()
        self._handle(
            {
                "hello": ("doing_request", self._on_hello),
                "keys": ("doing_request", self._on_keys),
                "set_key": ("doing_key", self._on_set_key),
                "forget_key": ("doing_key", self._on_forget_key),
                "save": ("doing_save", self._on_save),
                "test": ("doing_test", self._on_test),
                "workflow": ("doing_request", self._on_workflow),
                "set_webhook": ("doing_webhook", self._on_set_webhook),
                "forget_webhook": ("doing_webhook", self._on_forget_webhook),
                "balance": ("doing_balance", self._on_balance),
            }
        )

    def _repr_detail(self) -> str:
        return f"provider {self.values['provider']} · concurrency {self.values['concurrency']}"

    # ----------------------------------------------------------- paths and loading
    def _config_dir(self) -> pathlib.Path:
        if self._dir is not None:
            return self._dir
        return config_dir()

    def _settings_path(self) -> pathlib.Path:
        return self._config_dir() / "config.json"

    def _secrets_path(self) -> pathlib.Path:
        return self._config_dir() / "secrets.json"

    def _load(self) -> dict[str, Any]:
        """The saved values, or the defaults with ``problem`` set (the file stays as is).

        Everything comes from the engine's one :class:`~nbbatch.engine.Settings` (the
        config file; an older ``studio.json`` beside it is folded in by the engine):
        the default provider configuration, the LLM and the run defaults. ``options``
        are the provider's other catalogue fields, ``defaults`` its default generation
        parameters, both as the text the form shows.
        """
        values: dict[str, Any] = {
            "llm_base_url": "",
            "llm_model": "gpt-4o-mini",
            "provider": "demo",
            "base_url": "",
            "model": "",
            "options": {},
            "defaults": {},
            "concurrency": 3,
            "retries": 2,
            "provider_limit": None,
            "mapping": {},
        }
        problems = []
        try:
            settings = load_settings(self._settings_path())
            values.update(
                llm_base_url=settings.llm.base_url or "",
                llm_model=settings.llm.model,
                concurrency=settings.run.concurrency,
                retries=settings.run.retries,
            )
            if settings.default is not None:
                cfg = settings.get()
                values.update(provider=cfg.provider, base_url=cfg.base_url or "")
                values.update(model=cfg.model or "")
                values["options"] = {k: str(v) for k, v in cfg.options.items() if k != "mapping"}
                mapping = cfg.options.get("mapping")
                if isinstance(mapping, dict):  # ComfyUI: slot -> "node.input", list, None
                    values["mapping"] = providers.WorkflowMapping.from_dict(mapping).to_dict()
                values["defaults"] = {k: str(v) for k, v in cfg.params.items()}
                # the configuration's own cap (set in code): kept, shown as a limit
                values["provider_limit"] = cfg.concurrency
        except NbbatchError as exc:
            problems.append(exc.message)
        if problems:
            self.problem = " ".join(problems)
            log.warning("nbbatch settings: %s; using the defaults", self.problem)
        return values

    def _secret_name(self, which: str, provider: str | None = None) -> str:
        """Where a key is kept: the LLM's under ``llm``, a provider's under its name."""
        return _LLM_SECRET if which == "llm" else provider or str(self.values["provider"])

    def _stored_key(self, which: str, provider: str | None = None) -> Secret | None:
        name = self._secret_name(which, provider)
        if name in self._keys:
            return self._keys[name]
        try:
            return load_secrets(self._secrets_path()).get(name)
        except NbbatchError:
            return None

    def _key_env(self, which: str, provider: str | None = None) -> list[str]:
        if which == "llm":
            return ["OPENAI_API_KEY"]
        return list(provider_fields(provider or str(self.values["provider"]))["key_env"])

    def _refresh_flags(self) -> None:
        self.llm_key_set = bool(_env_source(self._key_env("llm")) or self._stored_key("llm"))
        self.key_set = bool(_env_source(self._key_env("provider")) or self._stored_key("provider"))

    # ----------------------------------------------------------- public API
    def llm_config(self) -> LLMConfig:
        base = str(self.values.get("llm_base_url") or "") or None
        key = None if _env_source(self._key_env("llm")) else self._stored_key("llm")
        return LLMConfig(model=str(self.values["llm_model"]), base_url=base, api_key=key)

    def llm_ready(self) -> bool:
        """An LLM is set up: a key (saved, typed or in the environment) or a base URL of
        one that needs none (a local server)."""
        return bool(self.llm_key_set or str(self.values.get("llm_base_url") or "").strip())

    def provider_config(self) -> ProviderConfig:
        """The image provider as saved: what the studio's "Run all" builds and runs on."""
        v = self.values
        options: dict[str, Any] = {}
        concurrency = v.get("provider_limit")
        kinds = {f["name"]: f["kind"] for f in provider_fields(str(v["provider"]))["fields"]}
        for name, raw in dict(v.get("options") or {}).items():
            if not str(raw).strip() or name not in kinds:
                continue
            value: Any = int(raw) if kinds[name] == "int" else str(raw)
            if name == "concurrency":
                concurrency = value
            else:
                options[name] = value
        if v.get("mapping"):
            options["mapping"] = dict(v["mapping"])
        return ProviderConfig(
            provider=str(v["provider"]),
            base_url=str(v["base_url"]) or None,
            model=str(v["model"]) or None,
            concurrency=concurrency,
            options=options,
            params=_params_of(dict(v.get("defaults") or {})),
            api_key=self._stored_key("provider"),
        )

    def default_params(self) -> dict[str, Any]:
        """The saved default generation parameters (``Params`` fields, typed)."""
        return _params_of(dict(self.values.get("defaults") or {}))

    # ----------------------------------------------------------- receiving
    # (errors are put in words without the message itself: it may carry a key)

    def _keys_info(self, provider: str | None = None) -> dict[str, Any]:
        out = {}
        for which in ("llm", "provider"):
            env = _env_source(self._key_env(which, provider))
            key = provider_fields(provider or str(self.values["provider"]))["key"]
            out[which] = {
                "env": env,
                "set": bool(env or self._stored_key(which, provider)),
                "env_names": self._key_env(which, provider),
                "needs": which == "llm" or key is not None,
                "label": None if which == "llm" or key is None else key["label"],
                "field": None if which == "llm" or key is None else key["field"],
            }
        return out

    def _provider_of(self, content: dict[str, Any]) -> str:
        """The provider the form shows (it may differ from the saved one until Save)."""
        name = content.get("provider", self.values["provider"])
        if not isinstance(name, str) or name not in available_providers():
            raise UserFacingError("unknown_provider", name=str(name)[:60])
        return name

    def _page_values(self) -> dict[str, Any]:
        """The values as the page may see them: a URL's password never goes there."""
        shown = dict(self.values)
        for key in ("llm_base_url", "base_url"):
            shown[key] = _without_credentials(str(shown.get(key) or ""))
        return shown

    def _on_hello(self, content: dict[str, Any]) -> dict[str, Any]:
        # each provider once: "forge" and "sdwebui" are other names of "a1111"
        names = provider_choices(str(self.values["provider"]))
        return {
            "strings": catalogue(self.lang, "settings"),
            "values": self._page_values(),
            "providers": [{"name": n, "label": provider_fields(n)["label"]} for n in names],
            "forms": {n: provider_fields(n) for n in names},
            "keys": self._keys_info(),
            "problem": self.problem,
            "pace": self._pace_info(),
        }

    def _pace_info(self) -> dict[str, Any]:
        settings = Settings()
        with contextlib.suppress(NbbatchError):  # a broken file: its problem is said above
            settings = load_settings(self._settings_path())
        return pace_info(settings, self._secrets_path())

    def _on_set_webhook(self, content: dict[str, Any]) -> dict[str, Any]:
        set_webhook_from(content, self._secrets_path())
        return {"pace": self._pace_info()}

    def _on_forget_webhook(self, content: dict[str, Any]) -> dict[str, Any]:
        forget_webhook(self._secrets_path())
        return {"pace": self._pace_info()}

    def _on_keys(self, content: dict[str, Any]) -> dict[str, Any]:
        return {"keys": self._keys_info(self._provider_of(content))}

    def _which(self, content: dict[str, Any]) -> str:
        which = content.get("which")
        if which not in ("llm", "provider"):
            raise UserFacingError("bad_request", type="which")
        return str(which)

    def _on_set_key(self, content: dict[str, Any]) -> dict[str, Any]:
        which = self._which(content)
        provider = self._provider_of(content)
        raw = content.get("key")
        if not isinstance(raw, str) or not raw.strip() or len(raw) > 4096:
            raise UserFacingError("bad_key")
        secret = Secret(raw)
        del raw, content["key"]  # nothing keeps the plain text longer than this call
        name = self._secret_name(which, provider)
        self._keys[name] = secret
        if content.get("remember") is True:
            save_secret(name, secret, self._secrets_path())
        self._refresh_flags()
        self._changed()
        return {"keys": self._keys_info(provider)}

    def _on_forget_key(self, content: dict[str, Any]) -> dict[str, Any]:
        which = self._which(content)
        provider = self._provider_of(content)
        name = self._secret_name(which, provider)
        self._keys.pop(name, None)
        try:
            delete_secret(name, self._secrets_path())
        except NbbatchError as exc:
            raise UserFacingError("key_not_forgotten", message=clip(exc.message, 300)) from None
        self._refresh_flags()
        self._changed()
        return {"keys": self._keys_info(provider)}

    def _values_from(self, content: dict[str, Any]) -> dict[str, Any]:
        raw = content.get("values")
        if not isinstance(raw, dict):
            raise UserFacingError("bad_request", type="values")
        v = dict(self.values)
        for key in ("llm_base_url", "llm_model", "provider", "base_url", "model"):
            value = raw.get(key, v[key])
            if not isinstance(value, str) or len(value) > 2000:
                raise UserFacingError("bad_request", type=key)
            v[key] = value.strip()
        for key in ("llm_base_url", "base_url"):
            if _has_credentials(v[key]):
                # never saved, never sent back: the reply names the field, not the URL
                v[key] = ""
                raise UserFacingError(f"url_credentials_{key}")
        if v["provider"] not in available_providers():
            raise UserFacingError("unknown_provider", name=v["provider"][:60])
        for key, low, high in (("concurrency", 1, 10), ("retries", 0, 10)):
            try:
                number = int(raw.get(key, v[key]))
            except (TypeError, ValueError):
                raise UserFacingError("bad_number", name=key, low=low, high=high) from None
            if not low <= number <= high:
                raise UserFacingError("bad_number", name=key, low=low, high=high)
            v[key] = number
        if not v["llm_model"]:
            raise UserFacingError("bad_llm_model")
        form = provider_fields(v["provider"])
        same = v["provider"] == self.values["provider"]
        if not same:
            v["provider_limit"] = None
        v["options"] = _options_from(
            raw.get("options", v["options"] if same else {}), form["fields"]
        )
        v["defaults"] = _defaults_from(
            raw.get("defaults", v["defaults"] if same else {}), form["params"]
        )
        v["mapping"] = {}
        if v["provider"] == "comfyui":  # the workflow is read, the mapping checked on it
            given = raw.get("workflow_json")
            if given not in (None, ""):
                if not isinstance(given, str):
                    raise UserFacingError("bad_request", type="workflow_json")
                # JSON from the page (pasted, or a file the browser opened) is kept
                # beside the settings, which name its path as for any file
                v["options"]["workflow"] = str(keep_workflow(self._config_dir(), given))
            saved = self.values.get("mapping") if same else {}
            v["mapping"] = checked_mapping(
                v["options"].get("workflow", ""),
                raw.get("mapping", saved),
                previous=saved,
            )
        return v

    def _on_save(self, content: dict[str, Any]) -> dict[str, Any]:
        values = self._values_from(content)
        pace_from(content, Settings())  # checked before anything changes
        self.values = values
        cfg = self.provider_config()
        settings = Settings()
        # keep the other configurations of a readable file; a broken one is replaced
        # only now, because the person pressed Save
        with contextlib.suppress(NbbatchError):
            settings = load_settings(self._settings_path())
        settings.add(cfg, replace=True)
        settings.default = cfg.name
        # one home: the engine's Settings holds the LLM and the run defaults too
        settings.llm = dataclasses.replace(
            settings.llm, model=values["llm_model"], base_url=values["llm_base_url"] or None
        )
        settings.run = RunDefaults(values["concurrency"], values["retries"])
        limits_before = dict(settings.rate_limits)
        settings = pace_from(content, settings)
        path = save_settings(settings, self._settings_path())
        apply_rate_limits(limits_before, settings.rate_limits)  # this kernel's, at once
        self.problem = None
        self._refresh_flags()
        self._changed()
        return {
            "path": str(path),
            "keys": self._keys_info(),
            "values": self._page_values(),
            "pace": pace_info(settings, self._secrets_path()),
        }

    def _form_config(self, values: Mapping[str, Any]) -> ProviderConfig:
        """The provider the form shows (not saved yet), without its key."""
        return ProviderConfig(
            provider=values["provider"],
            base_url=values["base_url"] or None,
            model=values["model"] or None,
            options={k: v for k, v in _typed_options(values).items() if k != "concurrency"},
        )

    def _later(
        self,
        content: dict[str, Any],
        job: asyncio.Future[Any],
        action: str,
        body_of: Callable[[Any], dict[str, Any]],
    ) -> dict[str, Any]:
        """Reply to ``content`` when ``job`` ends (``body_of`` its result), in words."""
        uid = content.get("uuid")
        self._jobs.add(job)

        def done(f: asyncio.Future[Any]) -> None:
            self._jobs.discard(f)
            try:
                body = {"ok": True, **body_of(f.result())}
            except Exception as exc:
                body = {"ok": False, "error": describe(exc, self.lang, action)}
            self._post({"type": "reply", "uuid": uid, **body})

        job.add_done_callback(done)
        return _DEFERRED

    def _on_test(self, content: dict[str, Any]) -> dict[str, Any]:
        values = self._values_from(content)
        key = self._keys.get(values["provider"])
        job = asyncio.ensure_future(
            check_connection(
                self._form_config(values), api_key=key, secrets_path=self._secrets_path()
            )
        )
        return self._later(
            content,
            job,
            "doing_test",
            lambda result: {"passed": bool(result.ok), "message": str(result.message)},
        )

    def _on_balance(self, content: dict[str, Any]) -> dict[str, Any]:
        values = self._values_from(content)
        name = values["provider"]
        if not has_balance_api(name):
            # OpenAI and others show it only on their dashboards: nothing is invented
            return {"available": False, "provider": provider_fields(name)["label"]}
        cfg = self._form_config(values)
        key = self._keys.get(name)

        async def read() -> Any:
            provider = cfg.build(api_key=key, secrets_path=self._secrets_path())
            try:
                return await asyncio.wait_for(provider.balance(), 60.0)
            finally:
                await provider.aclose()

        return self._later(
            content,
            asyncio.ensure_future(read()),
            "doing_balance",
            lambda balance: {"available": True, "amount": balance.amount, "unit": balance.unit},
        )

    def _on_workflow(self, content: dict[str, Any]) -> dict[str, Any]:
        return workflow_form(content.get("workflow", ""), content.get("workflow_json"))

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:
                log.exception("nbbatch settings: a change listener failed")


def _has_credentials(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return False
    return bool(parts.username or parts.password)


def _without_credentials(url: str) -> str:
    """``https://user:pw@host/`` → ``https://***@host/`` (what a page may show)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if not (parts.username or parts.password):
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


def _options_from(raw: object, fields: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The provider's other fields as the form sent them, checked against the catalogue."""
    if not isinstance(raw, dict):
        raise UserFacingError("bad_request", type="options")
    out: dict[str, str] = {}
    for f in fields:
        name = f["name"]
        if name in _TOP or name not in raw:
            continue
        value = raw[name]
        value = str(value).strip() if isinstance(value, (str, int)) else None
        if value is None or len(value) > 2000:
            raise UserFacingError("bad_request", type=name)
        if not value:
            continue
        if f["kind"] == "int" and not value.isdigit():
            raise UserFacingError("bad_setting", name=f["label"], value=clip(value, 40))
        if f["kind"] == "choice" and value not in f["choices"]:
            raise UserFacingError("bad_setting", name=f["label"], value=clip(value, 40))
        out[name] = value
    return out


def _typed_options(values: Mapping[str, Any]) -> dict[str, Any]:
    kinds = {f["name"]: f["kind"] for f in provider_fields(str(values["provider"]))["fields"]}
    return {k: int(v) if kinds.get(k) == "int" else v for k, v in dict(values["options"]).items()}


def _defaults_from(raw: object, offered: Sequence[str]) -> dict[str, str]:
    """Default generation parameters: only those offered, each one a valid value."""
    if not isinstance(raw, dict):
        raise UserFacingError("bad_request", type="defaults")
    out = {
        name: str(raw[name]).strip()[:200]
        for name in offered
        if isinstance(raw.get(name), (str, int, float)) and str(raw[name]).strip()
    }
    try:
        _params_of(out)
    except (ConfigError, ValueError) as exc:
        raise UserFacingError("bad_defaults", message=clip(str(exc), 200)) from None
    return out


def _params_of(texts: Mapping[str, Any]) -> dict[str, Any]:
    """``Params`` fields from the form's text (``"20"`` → 20), checked by ``Params``."""
    out: dict[str, Any] = {}
    for name, raw in texts.items():
        text = str(raw).strip()
        if not text:
            continue
        if name in _INT_PARAMS:
            out[name] = int(text)
        elif name in _FLOAT_PARAMS:
            out[name] = float(text)
        else:
            out[name] = text
    Params.from_dict(out)
    return out
