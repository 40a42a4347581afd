"""Image providers: the interface, the registry and the built-in providers.

What each built-in provider is (names, class, key variables, capabilities, default URL,
settings form fields) is in one table: :func:`provider_catalog` / :func:`provider_info`.
Third-party packages add providers through the ``nbbatch.providers`` entry-point group
(name = provider name, value = a factory returning a :class:`Provider`).
"""

from ._a1111 import A1111Provider
from ._base import (
    Balance,
    Capabilities,
    GenerationRequest,
    ImageData,
    InputImage,
    ProgressCallback,
    Provider,
)
from ._catalog import (
    ProviderInfo,
    SettingField,
    offered_params,
    provider_catalog,
    provider_info,
)
from ._comfyui import ComfyUIProvider, WorkflowMapping, detect_mapping
from ._demo import DemoProvider, render_demo_image
from ._fal import FalProvider
from ._gemini import GeminiProvider
from ._http import Timeouts
from ._huggingface import HuggingFaceProvider
from ._openai import OpenAIProvider
from ._pool import Endpoint, PoolProvider
from ._registry import available_providers, get_provider, register_provider
from ._replicate import ReplicateProvider
from ._stability import StabilityProvider

__all__ = [
    "A1111Provider",
    "Balance",
    "Capabilities",
    "ComfyUIProvider",
    "DemoProvider",
    "Endpoint",
    "FalProvider",
    "GeminiProvider",
    "GenerationRequest",
    "HuggingFaceProvider",
    "ImageData",
    "InputImage",
    "OpenAIProvider",
    "PoolProvider",
    "ProgressCallback",
    "Provider",
    "ProviderInfo",
    "ReplicateProvider",
    "SettingField",
    "StabilityProvider",
    "Timeouts",
    "WorkflowMapping",
    "available_providers",
    "detect_mapping",
    "get_provider",
    "offered_params",
    "provider_catalog",
    "provider_info",
    "register_provider",
    "render_demo_image",
]
