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
from ._images import ImageLimits
from ._model import GeneratedImage, Params, Reference, Task, TaskStatus
from ._planner import LLMConfig, Plan, aenhance, aplan, enhance, extract_json, plan
from ._presets import Preset, Presets
from ._retry import RetryPolicy
from ._runner import Runner
from ._sources import ParsedLine, parse_prompt_line, read_prompts, tasks_from_folder
from ._store import BatchSummary, RecoveryReport, Workspace
from ._tasklist import Skipped, TaskList
from ._templates import count_prompts, expand
from .providers import Provider, available_providers, get_provider, register_provider

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchSummary",
    "ConfigError",
    "ConnectionResult",
    "ContentRefusedError",
    "GeneratedImage",
    "ImageError",
    "ImageLimits",
    "ImageRejectedError",
    "InvalidPromptError",
    "InvalidTransitionError",
    "LLMConfig",
    "MalformedResponseError",
    "NbbatchError",
    "NotFoundError",
    "NotSupportedError",
    "Params",
    "ParsedLine",
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
    "RetryPolicy",
    "Runner",
    "SchemaVersionError",
    "ServerError",
    "Settings",
    "Skipped",
    "StorageError",
    "StoreBusyError",
    "StoreError",
    "Task",
    "TaskList",
    "TaskStatus",
    "TemplateError",
    "TemplateTooLargeError",
    "UnknownProviderError",
    "Workspace",
    "WorkspaceNotWritableError",
    "__version__",
    "aenhance",
    "aplan",
    "available_providers",
    "count_prompts",
    "enhance",
    "expand",
    "extract_json",
    "get_provider",
    "load_settings",
    "parse_prompt_line",
    "plan",
    "read_prompts",
    "register_provider",
    "save_secret",
    "save_settings",
    "tasks_from_folder",
    "test_connection",
]

# Show public objects as nbbatch.X in reprs and tracebacks, not nbbatch._module.X.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("nbbatch._"):
        with _contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "nbbatch"
del _name, _obj
