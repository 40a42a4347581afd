"""The one settings home, shared by Python, the CLI and the studio's settings panel.

A :class:`ProviderConfig` says which provider to use and how (base URL, model, default
parameters, concurrency, timeouts, extra options); ``config.build()`` makes the
provider. :class:`Settings` holds everything a person sets once: the named provider
configurations (and which is the default), the planner LLM (:class:`LLMSettings`), the
run defaults (:class:`RunDefaults`: concurrency and retries) and the price table. It is
saved as JSON (``config.json``) in the user's config folder
(``platformdirs.user_config_dir("nbbatch")``, or ``$NBBATCH_CONFIG_DIR``). A
``studio.json`` that an older studio wrote beside it (LLM base URL and model,
concurrency, retries) is folded in when the config file predates those sections.

Keys are never written to that file. A provider's key is found, in this order:

1. the explicit ``api_key`` (argument or ``ProviderConfig.api_key``, held as a
   :class:`~nbbatch.core._secrets.Secret`, masked in every repr);
2. the provider's standard environment variables, as the provider catalogue lists them
   (:func:`nbbatch.providers.provider_info` ``(name).key_env``: ``OPENAI_API_KEY``,
   ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``, ...);
3. the optional secrets file ``secrets.json`` next to the config, which
   :func:`save_secret` creates with mode 0600 (``O_CREAT | O_EXCL`` on a temporary
   name, then an atomic rename); reading one that others can read warns.

A password inside ``base_url`` (``http://user:KEY@host``) is a key too: the
configuration keeps it apart, as a masked :class:`Secret`, and ``base_url`` holds the URL
without it, so it is never saved, printed or shown in a repr. It is put back only when
the provider is built (which turns it into HTTP Basic auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import stat
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import platformdirs

from ..core._errors import ConfigError, NbbatchError, UnknownProviderError
from ..core._model import Params
from ..core._names import renamed
from ..core._ratelimit import RateLimit, check_rate_limits
from ..core._secrets import Secret, resolve_key, scrub, split_url_credentials
from ..providers._base import Provider
from ..providers._catalog import ProviderInfo, provider_catalog, provider_info
from ..providers._http import Timeouts
from ._ledger import check_token_prices

__all__ = [
    "KEY_ENV_VARS",
    "LLM_BASE_URL_ENV",
    "LLM_KEY_ENV",
    "LLM_SECRET",
    "ConnectionResult",
    "LLMSettings",
    "ProviderConfig",
    "RunDefaults",
    "Settings",
    "check_connection",
    "config_dir",
    "delete_secret",
    "load_secrets",
    "load_settings",
    "save_secret",
    "save_settings",
]

log = logging.getLogger("nbbatch")

CONFIG_FILE = "config.json"
SECRETS_FILE = "secrets.json"
#: the file older studios kept the LLM and the run defaults in; read once, folded in
STUDIO_FILE = "studio.json"
#: 2 added the "llm" and "run" sections; 1 files are still read
_VERSION = 2
#: the name the planner LLM's key is saved under in ``secrets.json``
LLM_SECRET = "llm"
#: the environment variables the planner LLM's key and base URL are read from
LLM_KEY_ENV: tuple[str, ...] = ("OPENAI_API_KEY",)
LLM_BASE_URL_ENV = "OPENAI_BASE_URL"
#: bounds of the run defaults (the runner's own cap may be raised per run)
MAX_RETRIES = 10

#: the standard environment variables each provider's key is read from (a view of the
#: provider catalogue, kept for callers that want a mapping)
KEY_ENV_VARS: Mapping[str, tuple[str, ...]] = {
    name: info.key_env for info in provider_catalog() if info.key_env for name in info.names
}


def _info(provider: str) -> ProviderInfo | None:
    """The catalogue entry of a built-in provider; ``None`` for a plug-in."""
    try:
        return provider_info(provider)
    except UnknownProviderError:
        return None


_SECRET_WORDS = ("key", "token", "secret", "password", "auth", "credential")
_TIMEOUT_FIELDS = {f.name for f in dataclasses.fields(Timeouts)}


def config_dir() -> Path:
    """Where settings live: ``$NBBATCH_CONFIG_DIR`` or the platform's user config folder."""
    override = os.environ.get("NBBATCH_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("nbbatch"))


def _looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


@dataclass
class ProviderConfig:
    """How to reach one provider. Everything but ``api_key`` may be saved to disk.

    ``provider`` is a registered provider name (``"stability"``, ``"comfyui"``, ...);
    ``name`` labels this configuration (default: the provider name), so two servers of
    one kind can sit side by side. ``params`` are default generation parameters (the
    fields of :class:`~nbbatch.Params`), ``concurrency`` the provider's own cap,
    ``timeouts`` per-phase seconds (``connect``, ``read``, ``write``, ``pool``),
    ``options`` any other constructor argument, and ``endpoints`` the members of a
    ``"pool"``.
    """

    provider: str
    name: str = ""
    base_url: str | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    concurrency: int | None = None
    timeouts: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    endpoints: list[ProviderConfig] = field(default_factory=list)
    api_key: Secret | None = field(default=None, repr=False, compare=False)
    #: (user, password) taken out of ``base_url``; never saved (see the module docstring)
    # an init field so that dataclasses.replace() carries it over
    url_credentials: tuple[str, Secret] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str) or not self.provider.strip():
            raise ConfigError("ProviderConfig needs a provider name, e.g. 'stability'")
        self.provider = self.provider.strip().lower()
        self.name = (self.name or self.provider).strip()
        if isinstance(self.api_key, str):
            self.api_key = Secret(self.api_key) if self.api_key.strip() else None
        if isinstance(self.base_url, str):
            self.base_url, found = split_url_credentials(self.base_url)
            self.url_credentials = found or self.url_credentials
        Params.from_dict(self.params)  # raises ConfigError on unknown or bad fields
        if self.concurrency is not None and (
            not isinstance(self.concurrency, int) or self.concurrency < 1
        ):
            raise ConfigError(f"{self.name}: concurrency must be a whole number >= 1")
        unknown = set(self.timeouts) - _TIMEOUT_FIELDS
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown timeout(s) {sorted(unknown)}; use {sorted(_TIMEOUT_FIELDS)}"
            )
        for option in self.options:
            if _looks_secret(option):
                raise ConfigError(
                    f"{self.name}: option {option!r} looks like a credential; keys are never "
                    "kept in the settings. Pass api_key=..., set the environment variable "
                    f"{' or '.join(self.key_env) or '(none)'} or use save_secret()."
                )
        self.endpoints = [
            e if isinstance(e, ProviderConfig) else ProviderConfig.from_dict(e)
            for e in self.endpoints
        ]
        if self.endpoints and self.provider != "pool":
            raise ConfigError(f"{self.name}: only a 'pool' has endpoints")

    # ------------------------------------------------------------------ keys
    @property
    def key_env(self) -> tuple[str, ...]:
        """The environment variables this provider's key is read from (the catalogue's)."""
        info = _info(self.provider)
        return info.key_env if info is not None else ()

    def base_url_for_build(self) -> str | None:
        """``base_url`` with its credentials put back: only for handing to the provider."""
        if self.base_url is None or self.url_credentials is None:
            return self.base_url
        user, password = self.url_credentials
        parts = urllib.parse.urlsplit(self.base_url)
        quote = partial(urllib.parse.quote, safe="")
        auth = f"{quote(user)}:{quote(password.reveal())}"
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc}"))

    def resolve_key(
        self, api_key: str | Secret | None = None, *, secrets_path: Path | None = None
    ) -> Secret | None:
        """The key to use: ``api_key``, ``self.api_key``, the env var, the secrets file."""
        key = resolve_key(api_key or self.api_key, self.key_env)
        if key is not None:
            return key
        return load_secrets(secrets_path).get(self.name)

    # ------------------------------------------------------------------ building
    def default_params(self) -> Params:
        return Params.from_dict(self.params)

    def build(
        self, *, api_key: str | Secret | None = None, secrets_path: Path | None = None
    ) -> Provider:
        """Make the provider this configuration describes."""
        from ..providers._pool import Endpoint
        from ..providers._registry import _REGISTRY, available_providers

        names = available_providers()
        factory = _REGISTRY.get(self.provider)
        if factory is None:
            raise ConfigError(
                f"{self.name}: unknown provider {self.provider!r}; available: {', '.join(names)}"
            )
        kwargs: dict[str, Any] = {}
        if self.base_url:
            kwargs["base_url"] = self.base_url_for_build()
        if self.model:
            kwargs["model"] = self.model
        if self.concurrency is not None:
            kwargs["max_concurrency"] = self.concurrency
        if self.timeouts:
            kwargs["timeouts"] = Timeouts(**{k: float(v) for k, v in self.timeouts.items()})
        if self.provider == "pool":
            if not self.endpoints:
                raise ConfigError(f"{self.name}: a pool needs at least one endpoint")
            kwargs["endpoints"] = [
                Endpoint(e.build(secrets_path=secrets_path), e.concurrency, e.name)
                for e in self.endpoints
            ]
            kwargs.pop("max_concurrency", None)  # a pool's cap is the sum of its endpoints'
        kwargs.update(self.options)
        info = _info(self.provider)
        # the keyword that receives the key: "api_key", or "password" for HTTP Basic
        key_param = info.key_param if info is not None else "api_key"
        accepted = _accepted(factory)
        if accepted is not None:
            wants_key = key_param in accepted
            extra = sorted(set(kwargs) - accepted)
            if extra:
                raise ConfigError(
                    f"{self.name}: provider {self.provider!r} does not take {', '.join(extra)}"
                )
        else:
            wants_key = bool(self.key_env)
        if wants_key:
            key = self.resolve_key(api_key, secrets_path=secrets_path)
            if key is not None:
                kwargs[key_param] = key
        return factory(**kwargs)

    # ------------------------------------------------------------------ (de)serialising
    def to_dict(self) -> dict[str, Any]:
        """The non-secret fields, JSON-ready (the key is never included)."""
        out: dict[str, Any] = {"provider": self.provider, "name": self.name}
        for key in ("base_url", "model", "concurrency"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        for key in ("params", "timeouts", "options"):
            value = getattr(self, key)
            if value:
                out[key] = dict(value)
        if self.endpoints:
            out["endpoints"] = [e.to_dict() for e in self.endpoints]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a provider configuration must be an object, got {data!r}")
        allowed = {f.name for f in dataclasses.fields(cls)} - {"api_key", "url_credentials"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(
                f"unknown provider setting(s) {sorted(unknown)}; known: {sorted(allowed)}"
            )
        return cls(**dict(data))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        key = "set" if self.api_key is not None else "not set"
        return f"ProviderConfig({fields}, api_key=<{key}>)"


def _accepted(factory: Any) -> set[str] | None:
    """Keyword names ``factory`` accepts, or ``None`` when it takes ``**kwargs``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {
        name
        for name, p in sig.parameters.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def _whole(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as a whole number in ``[low, high]``, or a ConfigError in words."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"{low} or more"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < float(value) < float("inf"):
        raise ConfigError(f"{name} must be more than 0 seconds, got {value!r}")
    return float(value)


def _known(data: Mapping[str, Any], cls: type, what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a JSON object, got {type(data).__name__}")
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {sorted(unknown)}; known: {sorted(allowed)}")
    return dict(data)


@dataclass
class LLMSettings:
    """The planner LLM as saved: which model, where, how long to wait. Never its key.

    ``base_url`` is the part before ``/chat/completions`` (``None``: ``$OPENAI_BASE_URL``,
    then OpenAI). The key is found as for providers: the explicit one, then
    :data:`LLM_KEY_ENV` (``OPENAI_API_KEY``), then the secrets file under
    :data:`LLM_SECRET` (``"llm"``). The planner turns this into its ``LLMConfig``
    (``nbbatch.planning.LLMConfig.from_settings``).
    """

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    timeout: float = 120.0
    temperature: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("the LLM model must be named, e.g. 'gpt-4o-mini'")
        self.model = self.model.strip()
        if self.base_url is not None:
            if not isinstance(self.base_url, str):
                raise ConfigError(f"the LLM base URL must be text, got {self.base_url!r}")
            # a password in the URL is a key: keys are never kept in the settings
            url, found = split_url_credentials(self.base_url.strip())
            if found:
                raise ConfigError(
                    "the LLM base URL holds a user name and password; keys are never kept "
                    "in the settings. Give the URL without them and the key through "
                    f"{LLM_KEY_ENV[0]} or save_secret({LLM_SECRET!r}, ...)."
                )
            self.base_url = url or None
        self.timeout = _seconds(self.timeout, "the LLM timeout")
        if self.temperature is not None:
            if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)):
                raise ConfigError(f"the LLM temperature must be a number, got {self.temperature!r}")
            self.temperature = float(self.temperature)
        if self.max_tokens is not None:
            self.max_tokens = _whole(self.max_tokens, "the LLM max_tokens", 1)

    def resolve_key(
        self, api_key: str | Secret | None = None, *, secrets_path: Path | None = None
    ) -> Secret | None:
        """The LLM key: ``api_key``, then ``$OPENAI_API_KEY``, then the secrets file."""
        key = resolve_key(api_key, LLM_KEY_ENV)
        if key is not None:
            return key
        return load_secrets(secrets_path).get(LLM_SECRET)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model}
        for name in ("base_url", "temperature", "max_tokens"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.timeout != 120.0:
            out["timeout"] = self.timeout
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LLMSettings:
        return cls(**_known(data, cls, "LLM"))


@dataclass
class RunDefaults:
    """What a run uses when the call does not say: tasks at once, automatic retries.

    ``concurrency`` is checked against the runner's cap (10, or
    ``$NBBATCH_MAX_CONCURRENCY``) when a run starts; ``retries`` is 0 to 10.
    """

    concurrency: int = 3
    retries: int = 2

    def __post_init__(self) -> None:
        self.concurrency = _whole(self.concurrency, "the run concurrency", 1)
        self.retries = _whole(self.retries, "the number of retries", 0, MAX_RETRIES)

    def to_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "retries": self.retries}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunDefaults:
        return cls(**_known(data, cls, "run"))


@dataclass
class Settings:
    """Everything a person sets once, in one place: providers, LLM, run defaults, prices.

    Read with :func:`load_settings` (or ``Settings.load()``), change the fields, write
    with :func:`save_settings` (or ``settings.save()``). Python, the CLI and the
    studio's settings panel all read and write this one object, kept in ``config.json``
    in :func:`config_dir`. Keys are never part of it (see the module docstring).

    - ``providers``: :class:`ProviderConfig` by name; ``default`` names the one used when
      none is named (``add``, ``get``, ``remove``; iterating gives the configurations).
    - ``llm``: :class:`LLMSettings` (planner model, base URL, timeout, temperature,
      max_tokens); the LLM key comes from ``$OPENAI_API_KEY`` or the secrets file under
      ``"llm"`` (``settings.llm.resolve_key()``).
    - ``run``: :class:`RunDefaults` (``concurrency``, ``retries``): ``Batch.start`` /
      ``run`` / ``run_sync`` and the CLI use them when not told otherwise.
    - ``prices``: price of one image keyed ``"<provider>"`` or ``"<provider>/<model>"``
      (the model wins); ``Workspace.stats()`` turns images into spend with it.
    - ``token_prices`` (per model, with its date) turn billed usage into money and
      ``rate_limits`` (per provider name or base URL) pace requests; see README, "Spend
      and pace".

    ``to_dict()`` / ``from_dict()`` give and take the JSON form (``version`` 2; version 1
    files, which had no ``llm`` / ``run``, are read, with an older studio's
    ``studio.json`` folded in by :func:`load_settings`).
    """

    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    default: str | None = None
    #: price of one image, keyed ``"<provider>"`` or ``"<provider>/<model>"`` (the model
    #: wins); ``Workspace.stats()`` turns images into spend with it. Any currency, as long
    #: as it is one.
    prices: dict[str, float] = field(default_factory=dict)
    llm: LLMSettings = field(default_factory=LLMSettings)
    run: RunDefaults = field(default_factory=RunDefaults)
    #: token prices per ``"<provider>/<model>"`` with their ``date``, dollars per million
    #: tokens (``engine/_ledger.py``): over the built-in table, for billed usage
    token_prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: limits per provider name or base URL (``requests_per_minute``,
    #: ``images_per_minute``, ``concurrency``; ``core/_ratelimit.py``), none by default
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prices = _check_prices(self.prices)
        self.token_prices = check_token_prices(self.token_prices)
        self.rate_limits = check_rate_limits(self.rate_limits)
        if isinstance(self.llm, Mapping):
            self.llm = LLMSettings.from_dict(self.llm)
        if isinstance(self.run, Mapping):
            self.run = RunDefaults.from_dict(self.run)
        if not isinstance(self.llm, LLMSettings):
            raise ConfigError(f"llm must be LLMSettings or a dict, got {type(self.llm).__name__}")
        if not isinstance(self.run, RunDefaults):
            raise ConfigError(f"run must be RunDefaults or a dict, got {type(self.run).__name__}")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Settings:
        """:func:`load_settings`."""
        return load_settings(path)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """:func:`save_settings`; returns the file's path."""
        return save_settings(self, path)

    def add(self, config: ProviderConfig, *, replace: bool = False) -> ProviderConfig:
        if config.name in self.providers and not replace:
            raise ConfigError(
                f"a provider configuration named {config.name!r} exists (pass replace=True)"
            )
        self.providers[config.name] = config
        if self.default is None:
            self.default = config.name
        return config

    def get(self, name: str | None = None) -> ProviderConfig:
        """The configuration ``name`` (default: the default one)."""
        key = name or self.default
        if key is None or key not in self.providers:
            known = ", ".join(sorted(self.providers)) or "none yet"
            raise ConfigError(f"no provider configuration named {key!r}; configured: {known}")
        return self.providers[key]

    def remove(self, name: str) -> None:
        self.get(name)
        del self.providers[name]
        if self.default == name:
            self.default = next(iter(self.providers), None)

    def __iter__(self) -> Iterator[ProviderConfig]:
        return iter(self.providers.values())

    def __len__(self) -> int:
        return len(self.providers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "default": self.default,
            "providers": [c.to_dict() for c in self.providers.values()],
            "llm": self.llm.to_dict(),
            "run": self.run.to_dict(),
            **({"prices": dict(self.prices)} if self.prices else {}),
            **({"token_prices": dict(self.token_prices)} if self.token_prices else {}),
            **(
                {"rate_limits": {k: v.to_dict() for k, v in self.rate_limits.items()}}
                if self.rate_limits
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        if not isinstance(data, Mapping):
            raise ConfigError("the settings file must hold a JSON object")
        version = data.get("version", _VERSION)
        if not isinstance(version, int) or version > _VERSION:
            raise ConfigError(
                f"the settings file has version {version!r}; this nbbatch reads up to "
                f"{_VERSION}. Upgrade nbbatch."
            )
        settings = cls()
        for item in data.get("providers") or []:
            settings.add(ProviderConfig.from_dict(item))
        default = data.get("default")
        if default is not None and not isinstance(default, str):
            raise ConfigError(
                f"'default' must name a configured provider, got {type(default).__name__}"
            )
        if default is not None and default not in settings.providers:
            raise ConfigError(f"the default provider {default!r} is not configured")
        settings.default = default if default is not None else settings.default
        settings.prices = _check_prices(data.get("prices") or {})
        settings.token_prices = check_token_prices(data.get("token_prices") or {})
        settings.rate_limits = check_rate_limits(data.get("rate_limits") or {})
        if data.get("llm") is not None:
            settings.llm = LLMSettings.from_dict(data["llm"])
        if data.get("run") is not None:
            settings.run = RunDefaults.from_dict(data["run"])
        return settings


def _check_prices(prices: object) -> dict[str, float]:
    """A price table as given, checked: text keys, finite prices of zero or more."""
    if not isinstance(prices, Mapping):
        raise ConfigError(f"'prices' must map names to prices, got {type(prices).__name__}")
    out: dict[str, float] = {}
    for key, value in prices.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"a price needs a provider name (or provider/model), got {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"the price of {key!r} must be a number, got {value!r}")
        if not 0 <= float(value) < float("inf"):
            raise ConfigError(f"the price of {key!r} must be zero or more, got {value!r}")
        out[key.strip()] = float(value)
    return out


# ---------------------------------------------------------------------- files
def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a new private temp file and a rename.

    The temp file is created with ``O_CREAT | O_EXCL`` and ``mode`` so the bytes are
    never readable by others, not even for an instant.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _settings_path(path: str | os.PathLike[str] | None) -> Path:
    return Path(path) if path is not None else config_dir() / CONFIG_FILE


def _secrets_path(path: str | os.PathLike[str] | None) -> Path:
    return Path(path) if path is not None else config_dir() / SECRETS_FILE


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the settings file (an empty :class:`Settings` when there is none yet).

    When the file predates the ``llm`` / ``run`` sections (or does not exist) and an
    older studio left a ``studio.json`` beside it, that file's LLM base URL and model,
    concurrency and retries are folded in; the next :func:`save_settings` writes them
    into ``config.json``, after which ``studio.json`` is no longer read. A
    ``studio.json`` that cannot be used is skipped with a warning in the log.
    """
    target = _settings_path(path)
    data: Any = {}
    try:
        raw = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raw = None
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {target}: {exc}") from None
    if raw is not None:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(
                f"the settings file {target} is not valid JSON ({exc}); fix or delete it"
            ) from None
    settings = Settings.from_dict(data)
    if isinstance(data, Mapping) and "llm" not in data and "run" not in data:
        _fold_studio_file(settings, target.with_name(STUDIO_FILE))
    return settings


def _fold_studio_file(settings: Settings, studio: Path) -> None:
    """Take the LLM and run defaults an older studio kept in ``studio.json``."""
    try:
        raw = studio.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("nbbatch settings: cannot read %s (%s); skipped", studio, exc)
        return
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ConfigError("it does not hold a JSON object")
        llm = settings.llm.to_dict()
        if isinstance(data.get("llm_model"), str) and data["llm_model"].strip():
            llm["model"] = data["llm_model"]
        if isinstance(data.get("llm_base_url"), str):
            llm["base_url"] = data["llm_base_url"].strip() or None
        run = settings.run.to_dict()
        for key in ("concurrency", "retries"):
            if key in data:
                run[key] = data[key]
        folded_llm, folded_run = LLMSettings.from_dict(llm), RunDefaults.from_dict(run)
    except (ValueError, ConfigError) as exc:
        log.warning("nbbatch settings: %s cannot be used (%s); skipped", studio, exc)
        return
    settings.llm, settings.run = folded_llm, folded_run


def save_settings(settings: Settings, path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``settings`` (never any key) atomically; returns the file's path."""
    target = _settings_path(path)
    text = json.dumps(settings.to_dict(), indent=2, sort_keys=False) + "\n"
    _atomic_write(target, text.encode("utf-8"), 0o644)
    return target


def _warn_if_exposed(path: Path) -> None:
    if os.name == "nt":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        warnings.warn(
            f"the nbbatch secrets file {path} can be read by other users (mode {mode:o}); "
            f"run: chmod 600 {path}",
            UserWarning,
            stacklevel=3,
        )


def load_secrets(path: str | os.PathLike[str] | None = None) -> dict[str, Secret]:
    """Keys saved with :func:`save_secret`, by configuration name (masked)."""
    target = _secrets_path(path)
    _warn_if_exposed(target)
    try:
        raw = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
        keys = data["keys"]
        if not isinstance(keys, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"the secrets file {target} is damaged; delete it and save the keys again"
        ) from None
    return {str(k): Secret(v) for k, v in keys.items() if isinstance(v, str) and v.strip()}


def _write_secrets(target: Path, keys: Mapping[str, Secret]) -> None:
    payload = {"version": _VERSION, "keys": {k: v.reveal() for k, v in keys.items()}}
    _atomic_write(target, json.dumps(payload, indent=2).encode("utf-8"), 0o600)


def save_secret(name: str, value: str | Secret, path: str | os.PathLike[str] | None = None) -> Path:
    """Keep a key for the configuration ``name`` in the 0600 secrets file."""
    if not name or not name.strip():
        raise ConfigError("save_secret needs the provider configuration's name")
    target = _secrets_path(path)
    keys = load_secrets(target)
    keys[name.strip()] = value if isinstance(value, Secret) else Secret(value)
    _write_secrets(target, keys)
    return target


def delete_secret(name: str, path: str | os.PathLike[str] | None = None) -> bool:
    """Forget the saved key of ``name``; True when there was one."""
    target = _secrets_path(path)
    keys = load_secrets(target)
    if keys.pop(name, None) is None:
        return False
    _write_secrets(target, keys)
    return True


# ---------------------------------------------------------------------- test connection
@dataclass(frozen=True)
class ConnectionResult:
    """What :func:`check_connection` found, in words a person can act on."""

    name: str
    provider: str
    ok: bool
    message: str
    seconds: float
    #: True when the service was actually asked (False: no probe exists for it)
    verified: bool = True
    error_kind: str | None = None

    def __str__(self) -> str:
        mark = "OK" if self.ok else "FAILED"
        return f"{self.name} ({self.provider}): {mark} - {self.message}"


async def check_connection(
    config: ProviderConfig,
    *,
    api_key: str | Secret | None = None,
    timeout: float = 30.0,
    secrets_path: Path | None = None,
) -> ConnectionResult:
    """Build the provider and call its ``check()``; never raises for a failed check."""
    start = time.monotonic()

    def result(ok: bool, message: str, **kw: Any) -> ConnectionResult:
        return ConnectionResult(
            config.name,
            config.provider,
            ok,
            scrub(message),
            round(time.monotonic() - start, 3),
            **kw,
        )

    try:
        provider = config.build(api_key=api_key, secrets_path=secrets_path)
    except NbbatchError as exc:
        return result(False, f"not usable: {exc}", error_kind="config")
    try:
        if type(provider).check is Provider.check:
            return result(
                True,
                "settings are valid; this provider has no connection probe, so the key is "
                "first tried by a real generation",
                verified=False,
            )
        await asyncio.wait_for(provider.check(), timeout)
    except asyncio.TimeoutError:
        return result(False, f"no answer within {timeout:g} s", error_kind="timeout")
    except NbbatchError as exc:
        return result(False, str(exc), error_kind=getattr(exc, "kind", "error"))
    finally:
        await provider.aclose()
    return result(True, f"connected in {time.monotonic() - start:.2f} s")


_RENAMED = {"test_connection": ("check_connection", lambda: check_connection)}


def __getattr__(name: str) -> Any:
    # test_connection: pytest collected the imported coroutine as a test
    return renamed(__name__, name, _RENAMED)
