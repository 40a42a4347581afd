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
from ._registry import available_providers, get_provider, register_provider

__all__ = [
    "Capabilities",
    "DemoProvider",
    "GenerationRequest",
    "ImageData",
    "InputImage",
    "ProgressCallback",
    "Provider",
    "available_providers",
    "get_provider",
    "register_provider",
    "render_demo_image",
]
