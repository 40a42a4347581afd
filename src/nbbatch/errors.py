"""The one exception tree of nbbatch (the tree itself is drawn in ``nbbatch.core._errors``).

Catch :class:`NbbatchError` for everything nbbatch raises on purpose; each error's
message says what happened and what to do, and never contains an API key::

    try:
        batch.edit(task, prompt="")
    except nbbatch.errors.InvalidPromptError as exc:
        print(exc)          # "the prompt is empty: write what to generate"
"""

from .core._errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentRefusedError,
    HeldElsewhereError,
    ImageError,
    ImageMissingError,
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
    TaskStateError,
    TemplateError,
    TemplateTooLargeError,
    UnknownProviderError,
    WorkspaceNotWritableError,
)

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ContentRefusedError",
    "HeldElsewhereError",
    "ImageError",
    "ImageMissingError",
    "ImageRejectedError",
    "InvalidPromptError",
    "InvalidTransitionError",
    "MalformedResponseError",
    "NbbatchError",
    "NotFoundError",
    "NotSupportedError",
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
    "PromptSourceError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitedError",
    "SchemaVersionError",
    "ServerError",
    "StorageError",
    "StoreBusyError",
    "StoreError",
    "TaskStateError",
    "TemplateError",
    "TemplateTooLargeError",
    "UnknownProviderError",
    "WorkspaceNotWritableError",
]

# Tracebacks and reprs name the module people catch from (``nbbatch.errors.ConfigError``),
# not the private module that defines the classes; pickling finds them here too.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
