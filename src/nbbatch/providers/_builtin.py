"""Registers the providers that ship with nbbatch (imported lazily by the registry)."""

from __future__ import annotations

from ._a1111 import A1111Provider
from ._comfyui import ComfyUIProvider
from ._demo import DemoProvider
from ._fal import FalProvider
from ._gemini import GeminiProvider
from ._huggingface import HuggingFaceProvider
from ._openai import OpenAIProvider
from ._pool import PoolProvider
from ._registry import register_provider
from ._replicate import ReplicateProvider
from ._stability import StabilityProvider

register_provider("demo", DemoProvider)
register_provider("openai", OpenAIProvider)
register_provider("a1111", A1111Provider)
# Forge speaks the same /sdapi/v1 API; "sdwebui" is the name people search for.
register_provider("forge", A1111Provider)
register_provider("sdwebui", A1111Provider)
register_provider("comfyui", ComfyUIProvider)
register_provider("stability", StabilityProvider)
register_provider("replicate", ReplicateProvider)
register_provider("gemini", GeminiProvider)
register_provider("huggingface", HuggingFaceProvider)
register_provider("fal", FalProvider)
register_provider("pool", PoolProvider)
