"""The providers that ship with nbbatch, by the names the registry knows them under."""

from __future__ import annotations

from collections.abc import Callable

from ._a1111 import A1111Provider
from ._base import Provider
from ._comfyui import ComfyUIProvider
from ._demo import DemoProvider
from ._fal import FalProvider
from ._gemini import GeminiProvider
from ._huggingface import HuggingFaceProvider
from ._openai import OpenAIProvider
from ._pool import PoolProvider
from ._replicate import ReplicateProvider
from ._stability import StabilityProvider

BUILTINS: dict[str, Callable[..., Provider]] = {
    "demo": DemoProvider,
    "openai": OpenAIProvider,
    "a1111": A1111Provider,
    # Forge speaks the same /sdapi/v1 API; "sdwebui" is the name people search for.
    "forge": A1111Provider,
    "sdwebui": A1111Provider,
    "comfyui": ComfyUIProvider,
    "stability": StabilityProvider,
    "replicate": ReplicateProvider,
    "gemini": GeminiProvider,
    "huggingface": HuggingFaceProvider,
    "fal": FalProvider,
    "pool": PoolProvider,
}
