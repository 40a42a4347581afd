"""nbbatch: batch AI image generation from Jupyter notebooks, scripts and the CLI.

    >>> import nbbatch
    >>> batch = nbbatch.Batch.create(["a red fox in snow", "a lighthouse at dusk"])
    >>> await batch.run("demo", concurrency=3)        # in a notebook cell
    >>> batch.images[0]                                 # shows the image

Everything is journaled to a workspace folder (``./nbbatch-workspace`` by default), so a
kernel crash loses nothing: ``nbbatch.Workspace().batches()`` lists what is there.

The flow, one folder a layer (each imports only the ones below it)::

    widgets/  cli         what a person touches
    planning/             prompts, templates, files, folders, LLM plans -> tasks
    engine/               Batch (edit, run, subscribe) -> Runner -> Workspace journal
    providers/  images/   services over HTTP; decode, metadata, thumbnails, exports
    core/                 plain data: Task, Params, events, errors, retry, secrets

This module is the short list of what most notebooks need; the rest lives in public
namespaces: ``nbbatch.errors``, ``nbbatch.events``, ``nbbatch.images``,
``nbbatch.planning``, ``nbbatch.providers``, ``nbbatch.testing``, ``nbbatch.widgets``.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

# The public namespaces, reachable as attributes (nbbatch.errors.ConfigError, ...).
from . import errors as errors
from . import events as events
from . import images as images
from . import planning as planning
from . import providers as providers
from .core._errors import NbbatchError
from .core._model import GeneratedImage, Params, Reference, Task, TaskStatus
from .core._retry import RetryPolicy
from .core._secrets import Secret
from .core._version import __version__
from .engine._batch import Batch
from .engine._compare import compare
from .engine._runner import Runner
from .engine._settings import (
    ProviderConfig,
    Settings,
    check_connection,
    load_settings,
    save_secret,
    save_settings,
)
from .engine._store import BatchSummary, Workspace
from .images import contact_sheet, export_zip, postprocess, read_generation_info, thumbnail
from .images._metadata import task_from_image
from .planning import (
    LLMConfig,
    Plan,
    Preset,
    Presets,
    TaskList,
    count_prompts,
    enhance,
    enhance_async,
    expand,
    plan,
    plan_async,
    read_prompts,
    tasks_from_folder,
)
from .providers import Provider, available_providers, get_provider, register_provider

if _TYPE_CHECKING:
    from .widgets import BatchStudio


def __getattr__(name: str) -> _Any:
    # The studio loads ipywidgets and anywidget: only when asked for, so that the CLI and
    # scripts start fast. ``nbbatch.widgets`` imports the layers below, never this module.
    if name == "BatchStudio":
        from .widgets import BatchStudio

        return BatchStudio
    from .core._names import renamed

    return renamed("nbbatch", name, _RENAMED)


_RENAMED = {
    "aplan": ("nbbatch.plan_async", lambda: plan_async),
    "aenhance": ("nbbatch.enhance_async", lambda: enhance_async),
    "test_connection": ("nbbatch.check_connection", lambda: check_connection),
}


__all__ = [
    "Batch",
    "BatchStudio",
    "BatchSummary",
    "GeneratedImage",
    "LLMConfig",
    "NbbatchError",
    "Params",
    "Plan",
    "Preset",
    "Presets",
    "Provider",
    "ProviderConfig",
    "Reference",
    "RetryPolicy",
    "Runner",
    "Secret",
    "Settings",
    "Task",
    "TaskList",
    "TaskStatus",
    "Workspace",
    "__version__",
    "available_providers",
    "check_connection",
    "compare",
    "contact_sheet",
    "count_prompts",
    "enhance",
    "enhance_async",
    "expand",
    "export_zip",
    "get_provider",
    "load_settings",
    "plan",
    "plan_async",
    "postprocess",
    "read_generation_info",
    "read_prompts",
    "register_provider",
    "save_secret",
    "save_settings",
    "task_from_image",
    "tasks_from_folder",
    "thumbnail",
]
