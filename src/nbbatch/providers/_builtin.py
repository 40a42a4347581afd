"""The providers that ship with nbbatch, registered under the catalogue's names.

The catalogue (:mod:`._catalog`) says which names and which class each provider has;
this module imports the classes and checks that the two agree, so a renamed class or a
new adapter without a catalogue entry fails at import, not at a user's first run.
"""

from __future__ import annotations

from collections.abc import Callable

from ._a1111 import A1111Provider
from ._base import Provider
from ._catalog import provider_catalog, provider_info
from ._comfyui import ComfyUIProvider
from ._demo import DemoProvider
from ._fal import FalProvider
from ._gemini import GeminiProvider
from ._huggingface import HuggingFaceProvider
from ._openai import OpenAIProvider
from ._pool import PoolProvider
from ._replicate import ReplicateProvider
from ._stability import StabilityProvider

_CLASSES: tuple[type[Provider], ...] = (
    DemoProvider,
    OpenAIProvider,
    A1111Provider,
    ComfyUIProvider,
    StabilityProvider,
    ReplicateProvider,
    GeminiProvider,
    HuggingFaceProvider,
    FalProvider,
    PoolProvider,
)


def _builtins() -> dict[str, Callable[..., Provider]]:
    out: dict[str, Callable[..., Provider]] = {}
    for cls in _CLASSES:
        info = provider_info(cls.name)
        where = f"{cls.__module__}:{cls.__qualname__}"
        if info.class_path != where:
            raise RuntimeError(
                f"the catalogue names {info.class_path} for {cls.name!r}, not {where}"
            )
        for name in info.names:
            out[name] = cls
    missing = [i.name for i in provider_catalog() if i.name not in out]
    if missing:
        raise RuntimeError(f"catalogue entries without a class: {missing}")
    return out


BUILTINS: dict[str, Callable[..., Provider]] = _builtins()
