"""Registers the providers that ship with nbbatch (imported lazily by the registry)."""

from __future__ import annotations

from ._demo import DemoProvider
from ._fal import FalProvider
from ._gemini import GeminiProvider
from ._huggingface import HuggingFaceProvider
from ._pool import PoolProvider
from ._registry import register_provider
from ._replicate import ReplicateProvider
from ._stability import StabilityProvider

register_provider("demo", DemoProvider)
register_provider("stability", StabilityProvider)
register_provider("replicate", ReplicateProvider)
register_provider("gemini", GeminiProvider)
register_provider("huggingface", HuggingFaceProvider)
register_provider("fal", FalProvider)
register_provider("pool", PoolProvider)
