"""nbbatch: batch AI image generation from Jupyter notebooks, scripts and the CLI.

    >>> import nbbatch
    >>> batch = nbbatch.Batch.create(["a red fox in snow", "a lighthouse at dusk"])
    >>> await batch.run("demo", concurrency=3)        # in a notebook cell
    >>> batch.images[0]                                 # shows the image

Everything is journaled to a workspace folder (``./nbbatch-workspace`` by default), so a
kernel crash loses nothing: ``nbbatch.Workspace().batches()`` lists what is there.
"""

import contextlib as _contextlib

from ._batch import Batch
from ._config import (
    ConnectionResult,
    ProviderConfig,
    Settings,
    load_settings,
    save_secret,
    save_settings,
    test_connection,
)
from ._contact import contact_sheet, varying_parameters, xy_grid
from ._errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentRefusedError,
    ImageError,
    ImageRejectedError,
    InvalidPromptError,
    InvalidTransitionError,
    MalformedResponseError,
    NbbatchError,
    NotFoundError,
    NotSupportedError,
    PlannerAuthError,
    PlannerEmptyError,
    PlannerError,
    PlannerNoJSONError,
    PlannerOutputError,
    PlannerRefusedError,
    PlannerShapeError,
    PlannerTimeoutError,
    PlannerTooManyTasksError,
    PlannerUnavailableError,
    PromptSourceError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    SchemaVersionError,
    ServerError,
    StorageError,
    StoreBusyError,
    StoreError,
    TemplateError,
    TemplateTooLargeError,
    UnknownProviderError,
    WorkspaceNotWritableError,
)
from ._export import export_folder, export_zip
from ._images import ImageInfo, ImageLimits, decode_image, inspect_image
from ._metadata import GenerationInfo, read_generation_info, task_from_image
from ._model import GeneratedImage, Params, Reference, Task, TaskStatus
from ._planner import LLMConfig, Plan, aenhance, aplan, enhance, extract_json, plan
from ._postprocess import (
    Adjust,
    AutoPostprocess,
    ConvertFormat,
    CropToAspect,
    DerivedImage,
    PadToAspect,
    Pipeline,
    Resize,
    StripMetadata,
    Watermark,
    auto_postprocess,
    derived_images,
    postprocess,
    postprocess_async,
)
from ._presets import Preset, Presets
from ._retry import RetryPolicy
from ._runner import Runner
from ._secrets import Secret
from ._sources import ParsedLine, parse_prompt_line, read_prompts, tasks_from_folder
from ._store import BatchSummary, RecoveryReport, Workspace
from ._tasklist import Skipped, TaskList
from ._templates import count_prompts, expand
from ._thumbs import ThumbnailCache, prune_caches, thumbnail, thumbnails
from .providers import Provider, available_providers, get_provider, register_provider

__version__ = "0.1.0"

__all__ = [
    "Adjust",
    "AuthenticationError",
    "AutoPostprocess",
    "BadRequestError",
    "Batch",
    "BatchSummary",
    "ConfigError",
    "ConnectionResult",
    "ContentRefusedError",
    "ConvertFormat",
    "CropToAspect",
    "DerivedImage",
    "GeneratedImage",
    "GenerationInfo",
    "ImageError",
    "ImageInfo",
    "ImageLimits",
    "ImageRejectedError",
    "InvalidPromptError",
    "InvalidTransitionError",
    "LLMConfig",
    "MalformedResponseError",
    "NbbatchError",
    "NotFoundError",
    "NotSupportedError",
    "PadToAspect",
    "Params",
    "ParsedLine",
    "Pipeline",
    "Plan",
    "PlannerAuthError",
    "PlannerEmptyError",
    "PlannerError",
    "PlannerNoJSONError",
    "PlannerOutputError",
    "PlannerRefusedError",
    "PlannerShapeError",
    "PlannerTimeoutError",
    "PlannerTooManyTasksError",
    "PlannerUnavailableError",
    "Preset",
    "Presets",
    "PromptSourceError",
    "Provider",
    "ProviderConfig",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitedError",
    "RecoveryReport",
    "Reference",
    "Resize",
    "RetryPolicy",
    "Runner",
    "SchemaVersionError",
    "Secret",
    "ServerError",
    "Settings",
    "Skipped",
    "StorageError",
    "StoreBusyError",
    "StoreError",
    "StripMetadata",
    "Task",
    "TaskList",
    "TaskStatus",
    "TemplateError",
    "TemplateTooLargeError",
    "ThumbnailCache",
    "UnknownProviderError",
    "Watermark",
    "Workspace",
    "WorkspaceNotWritableError",
    "__version__",
    "aenhance",
    "aplan",
    "auto_postprocess",
    "available_providers",
    "contact_sheet",
    "count_prompts",
    "decode_image",
    "derived_images",
    "enhance",
    "expand",
    "export_folder",
    "export_zip",
    "extract_json",
    "get_provider",
    "inspect_image",
    "load_settings",
    "parse_prompt_line",
    "plan",
    "postprocess",
    "postprocess_async",
    "prune_caches",
    "read_generation_info",
    "read_prompts",
    "register_provider",
    "save_secret",
    "save_settings",
    "task_from_image",
    "tasks_from_folder",
    "test_connection",
    "thumbnail",
    "thumbnails",
    "varying_parameters",
    "xy_grid",
]

# Show public objects as nbbatch.X in reprs and tracebacks, not nbbatch._module.X.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("nbbatch._"):
        with _contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "nbbatch"
del _name, _obj
