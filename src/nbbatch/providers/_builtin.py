"""Registers the providers that ship with nbbatch (imported lazily by the registry)."""

from __future__ import annotations

from ._a1111 import A1111Provider
from ._comfyui import ComfyUIProvider
from ._demo import DemoProvider
from ._openai import OpenAIProvider
from ._registry import register_provider

register_provider("demo", DemoProvider)
register_provider("openai", OpenAIProvider)
register_provider("a1111", A1111Provider)
# Forge speaks the same /sdapi/v1 API; "sdwebui" is the name people search for.
register_provider("forge", A1111Provider)
register_provider("sdwebui", A1111Provider)
register_provider("comfyui", ComfyUIProvider)
