"""What nbbatch knows about each built-in provider, in one table.

Every fact that more than one part of nbbatch needs lives here and nowhere else: the
names a provider is registered under, the class that implements it, the environment
variables its key is read from and whether it needs one, its default base URL, its
declared capabilities, and the fields a settings form shows for it. The adapters take
their name, label, capabilities and key rules from this table; the registry registers
the names; :mod:`nbbatch.engine._settings` reads the key variables and key parameter;
the studio's settings panel renders its form from :attr:`ProviderInfo.settings`.

This module is plain data (it imports no adapter), so every adapter can read it. The
class is named the way entry points name it (``"module:Class"``); the registry imports
the classes and refuses to start if a name here and a class disagree.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Literal

from ..core._errors import UnknownProviderError
from ._base import Capabilities

__all__ = [
    "PARAM_NAMES",
    "FieldKind",
    "KeyRule",
    "ProviderInfo",
    "SettingField",
    "offered_params",
    "provider_catalog",
    "provider_info",
]

#: how a settings form shows a field: a URL box, a text box, a masked secret box, a
#: whole-number box, or a drop-down of :attr:`SettingField.choices`
FieldKind = Literal["url", "text", "secret", "int", "choice"]

#: ``"always"``: no key, no provider; ``"default_url"``: a key is needed for the
#: service's own URL but not for another ``base_url`` (a self-hosted or compatible
#: server); ``"never"``: the provider takes no key
KeyRule = Literal["always", "default_url", "never"]

Value = str | int | None

#: the generation parameters (``Params`` fields) a settings or prompt form may offer,
#: in the order forms show them; the negative prompt has its own capability flag
PARAM_NAMES = ("size", "n", "seed", "steps", "cfg_scale", "sampler", "strength", "model")


@dataclass(frozen=True)
class SettingField:
    """One field of a provider's settings form.

    ``name`` is where the value goes: ``base_url``, ``model``, ``concurrency`` and
    ``api_key`` are :class:`~nbbatch.ProviderConfig` attributes; any other name is a
    constructor option (``ProviderConfig.options``). A ``secret`` field is never saved
    in the settings file: it is the provider's key, kept in memory, read from the
    environment or from the 0600 secrets file (:func:`~nbbatch.save_secret`).
    """

    name: str
    label: str
    kind: FieldKind
    default: Value = None
    help: str = ""
    choices: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class ProviderInfo:
    """The facts about one built-in provider (see the module docstring)."""

    name: str
    label: str
    #: the implementing class as ``"module:Class"`` (the entry-point syntax)
    class_path: str
    capabilities: Capabilities
    aliases: tuple[str, ...] = ()
    #: environment variables the key is read from, first set one wins
    key_env: tuple[str, ...] = ()
    key_rule: KeyRule = "never"
    #: the constructor keyword that receives the key (``"password"`` for HTTP Basic)
    key_param: str = "api_key"
    default_base_url: str | None = None
    settings: tuple[SettingField, ...] = ()
    #: why a key is needed, for the "no key" message (``"an API key"``, ``"a token"``)
    key_noun: str = "an API key"
    #: the generation parameters (of :data:`PARAM_NAMES`) the adapter sends to the
    #: service; a field not listed would be silently ignored, so forms do not offer it
    params: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The name and every alias, as the registry knows them."""
        return (self.name, *self.aliases)

    @property
    def takes_key(self) -> bool:
        return self.key_rule != "never"

    def needs_key(self, base_url: str | None = None) -> bool:
        """True when building this provider for ``base_url`` without a key must fail."""
        if self.key_rule == "always":
            return True
        if self.key_rule == "default_url":
            return base_url is None or _same_url(base_url, self.default_base_url)
        return False

    def missing_key_message(self) -> str:
        """What to do when no key was found, naming this provider's variables."""
        where = " or ".join(self.key_env)
        how = f"set {where} or pass {self.key_param}=..." if where else f"pass {self.key_param}=..."
        extra = (
            " (another base_url, such as a self-hosted server, may need none)"
            if self.key_rule == "default_url"
            else ""
        )
        return f"{self.label} needs {self.key_noun}: {how}{extra}"

    def offered_params(self, capabilities: Capabilities | None = None) -> tuple[str, ...]:
        """The parameters a form offers: those the adapter sends, less what the
        capabilities (this entry's, or a built provider's own) rule out."""
        caps = capabilities or self.capabilities
        ruled_out = {
            "n": caps.max_n <= 1,
            "seed": not caps.seed,
            "strength": not (caps.img2img or caps.max_references),
        }
        return tuple(p for p in self.params if not ruled_out.get(p, False))

    def field(self, name: str) -> SettingField:
        for f in self.settings:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no settings field {name!r}")


def _same_url(a: str, b: str | None) -> bool:
    # the host decides: any path on the service's own host is the service
    return b is not None and urllib.parse.urlsplit(a).hostname == urllib.parse.urlsplit(b).hostname


# ---------------------------------------------------------------------- field builders
def _key(info_env: tuple[str, ...], label: str = "API key") -> SettingField:
    env = " or ".join(info_env)
    return SettingField(
        "api_key",
        label,
        "secret",
        help=f"Read from {env} when left empty; never written to the settings file."
        if env
        else "Never written to the settings file.",
    )


def _url(default: str | None, help: str = "") -> SettingField:
    return SettingField(
        "base_url", "Base URL", "url", default=default, help=help or "Where the API is served."
    )


def _model(default: str | None, help: str, choices: tuple[str, ...] = ()) -> SettingField:
    return SettingField(
        "model", "Model", "choice" if choices else "text", default=default, help=help,
        choices=choices,
    )  # fmt: skip


def _concurrency(default: int | None = None) -> SettingField:
    return SettingField(
        "concurrency",
        "Requests at once",
        "int",
        default=default,
        help="This provider's own cap on requests in flight (empty: only the run's limit).",
    )


#: what a form offers for a provider the table does not describe (a plug-in, a pool):
#: the parameters every adapter understands, still gated by the capabilities
_GENERIC_PARAMS = ("size", "n", "seed", "strength", "model")

_OPENAI_ENV = ("OPENAI_API_KEY",)
_STABILITY_ENV = ("STABILITY_API_KEY",)
_REPLICATE_ENV = ("REPLICATE_API_TOKEN",)
_GEMINI_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_HF_ENV = ("HF_TOKEN",)
_FAL_ENV = ("FAL_KEY",)

_ENTRIES: tuple[ProviderInfo, ...] = (
    ProviderInfo(
        name="demo",
        label="Demo (offline, no key)",
        class_path="nbbatch.providers._demo:DemoProvider",
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=1,
            max_n=8,
            seed=True,
            negative_prompt=True,
            progress=True,
            cancel=True,
        ),
        params=("size", "n", "seed", "strength"),
        settings=(_concurrency(),),
    ),
    ProviderInfo(
        name="openai",
        label="OpenAI Images",
        class_path="nbbatch.providers._openai:OpenAIProvider",
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=16,
            mask=True,
            max_n=10,
        ),
        key_env=_OPENAI_ENV,
        key_rule="default_url",
        default_base_url="https://api.openai.com/v1",
        params=("size", "n", "model"),
        settings=(
            _key(_OPENAI_ENV),
            _url(
                "https://api.openai.com/v1",
                "api.openai.com, or any OpenAI-compatible server (ending in /v1).",
            ),
            _model("gpt-image-1", "Used when a task does not name one."),
            SettingField("organization", "Organization", "text", help="OpenAI-Organization."),
            SettingField("project", "Project", "text", help="OpenAI-Project."),
            _concurrency(),
        ),
    ),
    ProviderInfo(
        name="a1111",
        label="Stable Diffusion WebUI (A1111 / Forge)",
        class_path="nbbatch.providers._a1111:A1111Provider",
        # Forge speaks the same /sdapi/v1 API; "sdwebui" is the name people search for.
        aliases=("forge", "sdwebui"),
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=1,
            mask=True,
            max_n=16,
            seed=True,
            negative_prompt=True,
            progress=True,
            cancel=True,
        ),
        key_param="password",
        default_base_url="http://127.0.0.1:7860",
        params=("size", "n", "seed", "steps", "cfg_scale", "sampler", "strength", "model"),
        settings=(
            _url("http://127.0.0.1:7860", "The WebUI, started with --api."),
            _model(None, "Checkpoint to switch to per request (empty: the loaded one)."),
            SettingField("username", "User name", "text", help="For --api-auth."),
            SettingField(
                "password", "Password", "secret", help="For --api-auth; kept in the secrets file."
            ),
            # the WebUI runs one generation at a time; more would only queue on the server
            _concurrency(1),
        ),
    ),
    ProviderInfo(
        name="comfyui",
        label="ComfyUI",
        class_path="nbbatch.providers._comfyui:ComfyUIProvider",
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=1,
            max_n=16,
            seed=True,
            negative_prompt=True,
            progress=True,
            cancel=True,
        ),
        default_base_url="http://127.0.0.1:8188",
        params=("size", "n", "seed", "steps", "cfg_scale", "sampler", "strength", "model"),
        settings=(
            _url("http://127.0.0.1:8188", "The ComfyUI server."),
            SettingField(
                "workflow",
                "Workflow (API format)",
                "text",
                help="Path to a workflow saved with 'Save (API Format)' (empty: built-in).",
            ),
            _model(None, "Checkpoint file for the workflow's model input."),
            _concurrency(),
        ),
    ),
    ProviderInfo(
        name="stability",
        label="Stability AI",
        class_path="nbbatch.providers._stability:StabilityProvider",
        # the union over the endpoints; the adapter applies the per-endpoint limits
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=1,
            max_n=1,
            seed=True,
            negative_prompt=True,
        ),
        key_env=_STABILITY_ENV,
        key_rule="always",
        default_base_url="https://api.stability.ai",
        params=("size", "seed", "cfg_scale", "strength", "model"),
        settings=(
            _key(_STABILITY_ENV),
            _url("https://api.stability.ai"),
            _model(
                "core",
                "'core' is text-to-image only; 'ultra' and sd3 models also take an image.",
                ("core", "ultra", "sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium"),
            ),
            SettingField(
                "output_format",
                "Image format",
                "choice",
                "png",
                help="The format the service encodes the image in.",
                choices=("png", "jpeg", "webp"),
            ),
            _concurrency(),
        ),
    ),
    ProviderInfo(
        name="replicate",
        label="Replicate",
        class_path="nbbatch.providers._replicate:ReplicateProvider",
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=1,
            max_n=4,
            seed=True,
            negative_prompt=True,
            progress=True,
            cancel=True,
        ),
        key_env=_REPLICATE_ENV,
        key_rule="always",
        key_noun="an API token",
        default_base_url="https://api.replicate.com",
        params=("size", "n", "seed", "steps", "cfg_scale", "strength", "model"),
        settings=(
            _key(_REPLICATE_ENV, "API token"),
            _url("https://api.replicate.com"),
            _model(
                "black-forest-labs/flux-schnell",
                "owner/name, owner/name:version or a version id.",
            ),
            SettingField(
                "wait",
                "Sync wait (s)",
                "int",
                5,
                help="How long the create call may wait for the result (0-60).",
            ),
            _concurrency(),
        ),
    ),
    ProviderInfo(
        name="gemini",
        label="Google Gemini (image)",
        class_path="nbbatch.providers._gemini:GeminiProvider",
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=14,
            max_n=1,
            seed=True,
        ),
        key_env=_GEMINI_ENV,
        key_rule="always",
        default_base_url="https://generativelanguage.googleapis.com",
        params=("size", "seed", "model"),
        settings=(
            _key(_GEMINI_ENV),
            _url("https://generativelanguage.googleapis.com"),
            _model("gemini-2.5-flash-image", "A Gemini model with image output."),
            _concurrency(),
        ),
    ),
    ProviderInfo(
        name="huggingface",
        label="Hugging Face Inference",
        class_path="nbbatch.providers._huggingface:HuggingFaceProvider",
        capabilities=Capabilities(
            txt2img=True,
            max_n=1,
            seed=True,
            negative_prompt=True,
        ),
        key_env=_HF_ENV,
        key_rule="default_url",
        key_noun="a token",
        default_base_url="https://router.huggingface.co/hf-inference/models",
        params=("size", "seed", "steps", "cfg_scale", "sampler", "model"),
        settings=(
            _key(_HF_ENV, "Token"),
            _url(
                "https://router.huggingface.co/hf-inference/models",
                "The public router, or a self-hosted endpoint (which may need no token).",
            ),
            _model("black-forest-labs/FLUX.1-schnell", "A Hub id such as owner/name."),
            _concurrency(),
        ),
    ),
    ProviderInfo(
        name="fal",
        label="fal.ai",
        class_path="nbbatch.providers._fal:FalProvider",
        capabilities=Capabilities(
            txt2img=True,
            img2img=True,
            max_references=1,
            max_n=4,
            seed=True,
            negative_prompt=True,
            progress=True,
            cancel=True,
        ),
        key_env=_FAL_ENV,
        key_rule="always",
        default_base_url="https://queue.fal.run",
        params=("size", "n", "seed", "steps", "cfg_scale", "strength", "model"),
        settings=(
            _key(_FAL_ENV),
            _url("https://queue.fal.run"),
            _model("fal-ai/flux/schnell", "A fal model id such as fal-ai/flux/dev."),
            _concurrency(),
        ),
    ),
    ProviderInfo(
        name="pool",
        label="Pool of endpoints",
        class_path="nbbatch.providers._pool:PoolProvider",
        # a pool's real capabilities are computed from its endpoints when it is built
        capabilities=Capabilities(),
        params=_GENERIC_PARAMS,
    ),
)

_BY_NAME: dict[str, ProviderInfo] = {n: info for info in _ENTRIES for n in info.names}
if len(_BY_NAME) != sum(len(i.names) for i in _ENTRIES):  # pragma: no cover
    raise RuntimeError("two catalogue entries share a provider name")


def provider_catalog() -> tuple[ProviderInfo, ...]:
    """Every built-in provider's facts, in menu order (plug-ins are not listed)."""
    return _ENTRIES


def provider_info(name: str) -> ProviderInfo:
    """The facts about the built-in provider ``name`` (or one of its aliases)."""
    key = str(name).strip().lower()
    try:
        return _BY_NAME[key]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise UnknownProviderError(
            f"no built-in provider named {name!r}; built-ins: {known}"
        ) from None


def offered_params(name: str, capabilities: Capabilities | None = None) -> tuple[str, ...]:
    """The generation parameters a form offers for provider ``name``.

    A built-in offers what its adapter sends (:meth:`ProviderInfo.offered_params`); a
    plug-in, which the table does not describe, the parameters every adapter
    understands. ``capabilities`` (a built provider's own) rule fields out either way.
    """
    try:
        info = provider_info(name)
    except UnknownProviderError:
        info = ProviderInfo(
            name=str(name),
            label=str(name),
            class_path="",
            capabilities=capabilities or Capabilities(),
            params=_GENERIC_PARAMS,
        )
    return info.offered_params(capabilities)
