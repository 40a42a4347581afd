"""The provider catalogue is the one place that knows each provider's facts."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from nbbatch import ProviderConfig
from nbbatch.engine._settings import KEY_ENV_VARS
from nbbatch.errors import ConfigError, UnknownProviderError
from nbbatch.providers import (
    Capabilities,
    ProviderInfo,
    SettingField,
    available_providers,
    get_provider,
    offered_params,
    provider_catalog,
    provider_info,
)
from nbbatch.providers._access import open_service
from nbbatch.providers._builtin import BUILTINS
from nbbatch.providers._catalog import PARAM_NAMES

CATALOG = provider_catalog()
KEYED = [i for i in CATALOG if i.key_rule != "never" and i.key_env]
KINDS = {"url", "text", "secret", "int", "choice"}
#: settings fields that are ProviderConfig attributes, with the constructor keyword
CONFIG_FIELDS = {"base_url": "base_url", "model": "model", "concurrency": "max_concurrency"}


def test_every_name_and_alias_is_registered_with_the_catalogue_class() -> None:
    for info in CATALOG:
        module, _, cls_name = info.class_path.partition(":")
        for name in info.names:
            cls = BUILTINS[name]
            assert (cls.__module__, cls.__qualname__) == (module, cls_name)
            assert name in available_providers()
            assert provider_info(name) is info


def test_adapters_declare_what_the_catalogue_says() -> None:
    for info in CATALOG:
        cls = BUILTINS[info.name]
        assert (cls.name, cls.label, cls.capabilities) == (
            info.name,
            info.label,
            info.capabilities,
        )


def test_facts_are_frozen() -> None:
    info = provider_info("openai")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.settings[0].default = "x"  # type: ignore[misc]


def test_lookup_is_by_name_or_alias_case_insensitive() -> None:
    assert provider_info(" Forge ").name == "a1111"
    with pytest.raises(UnknownProviderError, match="built-ins: a1111"):
        provider_info("nope")


def test_settings_keep_a_mapping_view_of_the_key_variables() -> None:
    assert {n: v for n, v in KEY_ENV_VARS.items()} == {
        name: i.key_env for i in CATALOG if i.key_env for name in i.names
    }
    for info in CATALOG:
        assert ProviderConfig(info.name).key_env == info.key_env


@pytest.mark.parametrize("info", CATALOG, ids=lambda i: i.name)
def test_settings_fields_fit_the_constructor(info: ProviderInfo) -> None:
    # a settings form built from the catalogue must produce arguments the class takes,
    # and show the class's own defaults
    params = inspect.signature(BUILTINS[info.name]).parameters
    for f in info.settings:
        assert isinstance(f, SettingField) and f.kind in KINDS and f.label and f.help
        if f.kind == "choice":
            assert f.choices and (f.default is None or f.default in f.choices)
        if f.name == "api_key":
            assert f.kind == "secret" and info.key_param in params
            continue
        keyword = CONFIG_FIELDS.get(f.name, f.name)
        assert keyword in params, f"{info.name}: {keyword} is not a constructor argument"
        default = params[keyword].default
        if default is not inspect.Parameter.empty and default is not None:
            assert f.default == default, f"{info.name}.{f.name}"
    names = [f.name for f in info.settings]
    assert len(names) == len(set(names))
    if info.key_rule != "never":
        assert info.field("api_key").kind == "secret"


@pytest.mark.parametrize("info", CATALOG, ids=lambda i: i.name)
def test_default_base_url_is_the_constructor_default(info: ProviderInfo) -> None:
    params = inspect.signature(BUILTINS[info.name]).parameters
    if info.default_base_url is None:
        assert "base_url" not in params or params["base_url"].default in (None,)
        return
    default = params["base_url"].default
    # Hugging Face takes base_url=None to mean "the public router"
    assert default in (info.default_base_url, None)


@pytest.mark.parametrize("info", KEYED, ids=lambda i: i.name)
def test_a_missing_key_names_every_variable_it_is_read_from(
    info: ProviderInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as raised:
        get_provider(info.name)
    for var in info.key_env:
        assert var in str(raised.value)
    for var in info.key_env:
        monkeypatch.setenv(var, "test-key-from-env-0001")
        assert get_provider(info.name) is not None
        monkeypatch.delenv(var)


@pytest.mark.parametrize("info", [i for i in KEYED if i.key_rule == "default_url"])
def test_another_base_url_may_need_no_key(info: ProviderInfo) -> None:
    assert info.needs_key(None) and info.needs_key(info.default_base_url)
    assert not info.needs_key("http://127.0.0.1:8000/v1")
    get_provider(info.name, base_url="http://127.0.0.1:8000/v1")


def test_the_webui_password_is_its_key_parameter() -> None:
    info = provider_info("a1111")
    assert info.key_param == "password" and info.field("password").kind == "secret"
    built = ProviderConfig("a1111", options={"username": "me"}, api_key="test-key-pw-1").build()
    assert built._http._auth is not None  # type: ignore[attr-defined]


def test_the_keyed_client_only_serves_its_own_origin() -> None:
    access = open_service(
        provider_info("replicate"), api_key="test-key-origin", base_url="http://127.0.0.1:5"
    )
    assert access.client_for("http://127.0.0.1:5/v1/predictions/x") is access.api
    assert access.client_for("/v1/predictions/x") is access.api
    for foreign in ("http://127.0.0.1:6/x", "https://127.0.0.1:5/x", "http://cdn.example/x"):
        assert access.client_for(foreign) is access.files
    assert "Authorization" in access.api.headers and not access.files.headers


@pytest.mark.parametrize("info", CATALOG, ids=lambda i: i.name)
def test_offered_parameters_are_ones_the_adapter_sends(info: ProviderInfo) -> None:
    """A form field the adapter never reads would be silently ignored: none is listed."""
    source = inspect.getsource(inspect.getmodule(BUILTINS[info.name]))  # type: ignore[arg-type]
    for name in info.params:
        assert name in PARAM_NAMES
        if info.name == "pool":
            continue  # the endpoints send them; the pool only passes the request on
        read = r"\.(size|dimensions)\b" if name == "size" else rf"\.{name}\b"
        assert re.search(read, source), f"{info.name} lists {name!r} but never reads it"


def test_what_a_provider_cannot_do_is_not_offered() -> None:
    assert offered_params("a1111") == (
        "size", "n", "seed", "steps", "cfg_scale", "sampler", "strength", "model",
    )  # fmt: skip
    # OpenAI Images has no seed, steps, CFG or sampler
    assert offered_params("openai") == ("size", "n", "model")
    # one image per request, text only: no 'images per task', no 'strength'
    assert offered_params("huggingface") == (
        "size",
        "seed",
        "steps",
        "cfg_scale",
        "sampler",
        "model",
    )
    assert offered_params("forge") == offered_params("a1111")  # aliases too


def test_a_built_providers_own_capabilities_rule_fields_out() -> None:
    text_only = Capabilities(txt2img=True, max_n=1)
    assert offered_params("a1111", text_only) == ("size", "steps", "cfg_scale", "sampler", "model")
    # a plug-in the table does not know: what every adapter understands, gated alike
    assert offered_params("my-plugin", text_only) == ("size", "model")
    assert offered_params("my-plugin", Capabilities(max_n=4, seed=True)) == (
        "size", "n", "seed", "model",
    )  # fmt: skip
