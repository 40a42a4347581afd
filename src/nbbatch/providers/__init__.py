"""Image providers: the interface, the registry and the built-in providers.

Third-party packages add providers through the ``nbbatch.providers`` entry-point group
(name = provider name, value = a factory returning a :class:`Provider`).
"""

from ._base import (
    Capabilities,
    GenerationRequest,
    ImageData,
    InputImage,
    ProgressCallback,
    Provider,
)
from ._demo import DemoProvider, render_demo_image
from ._fal import FalProvider
from ._gemini import GeminiProvider
from ._huggingface import HuggingFaceProvider
from ._pool import Endpoint, PoolProvider
from ._registry import available_providers, get_provider, register_provider
from ._replicate import ReplicateProvider
from ._stability import StabilityProvider

__all__ = [
    "Capabilities",
    "DemoProvider",
    "Endpoint",
    "FalProvider",
    "GeminiProvider",
    "GenerationRequest",
    "HuggingFaceProvider",
    "ImageData",
    "InputImage",
    "PoolProvider",
    "ProgressCallback",
    "Provider",
    "ReplicateProvider",
    "StabilityProvider",
    "available_providers",
    "get_provider",
    "register_provider",
    "render_demo_image",
]
