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
    PlannerError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    SchemaVersionError,
    ServerError,
    StorageError,
    StoreBusyError,
    StoreError,
    UnknownProviderError,
    WorkspaceNotWritableError,
)
from ._export import export_folder, export_zip
from ._images import ImageInfo, ImageLimits, decode_image, inspect_image
from ._metadata import GenerationInfo, read_generation_info, task_from_image
from ._model import GeneratedImage, Params, Reference, Task, TaskStatus
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
from ._retry import RetryPolicy
from ._runner import Runner
from ._store import BatchSummary, RecoveryReport, Workspace
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
    "MalformedResponseError",
    "NbbatchError",
    "NotFoundError",
    "NotSupportedError",
    "PadToAspect",
    "Params",
    "Pipeline",
    "PlannerError",
    "Provider",
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
    "ServerError",
    "StorageError",
    "StoreBusyError",
    "StoreError",
    "StripMetadata",
    "Task",
    "TaskStatus",
    "ThumbnailCache",
    "UnknownProviderError",
    "Watermark",
    "Workspace",
    "WorkspaceNotWritableError",
    "__version__",
    "auto_postprocess",
    "available_providers",
    "contact_sheet",
    "decode_image",
    "derived_images",
    "export_folder",
    "export_zip",
    "get_provider",
    "inspect_image",
    "postprocess",
    "postprocess_async",
    "prune_caches",
    "read_generation_info",
    "register_provider",
    "task_from_image",
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
