"""The one exception tree of nbbatch.

Catch :class:`NbbatchError` for everything nbbatch raises on purpose; each error's
message says what happened and what to do, and never contains an API key::

    try:
        batch.edit(task, prompt="")
    except nbbatch.errors.InvalidPromptError as exc:
        print(exc)          # "the prompt is empty: write what to generate"

The tree (keys are scrubbed from every message before an error is built, see
``nbbatch.providers._http``)::

    NbbatchError
    ├── ConfigError                 bad argument or setting (fix the call or the config)
    │   ├── InvalidPromptError      empty / too long prompt
    │   ├── UnknownProviderError    no provider registered under that name
    │   └── NotSupportedError       the provider cannot do what the task asks (before any request)
    ├── InvalidTransitionError      a task status change that the lifecycle forbids
    │   └── TaskStateError          an edit the task's state forbids (running / succeeded)
    │       └── HeldElsewhereError  the tasks are being run by another kernel (``holders``)
    ├── StoreError                  the workspace on disk
    │   ├── WorkspaceNotWritableError
    │   ├── StoreBusyError          another process holds the database longer than the timeout
    │   ├── SchemaVersionError      the database was written by a newer nbbatch
    │   ├── StorageError            disk full / permission denied while saving a result
    │   └── NotFoundError           no batch / task with that id
    ├── ImageError
    │   ├── ImageRejectedError      refused input or output image (reason says which limit)
    │   └── ImageMissingError       a stored image's file is gone from the workspace
    ├── ProviderError               a request failed (``retryable``: may another attempt help?)
    │   │                           image providers and the planner's LLM alike: the
    │   │                           planner's have ``provider="planner"``
    │   ├── AuthenticationError     401/403 key problems: never retried
    │   ├── RateLimitedError        429: ``retry_after`` seconds when the server said
    │   ├── ContentRefusedError     moderation / safety refusal (also the LLM's
    │   │                           ``refusal`` or content filter): never retried
    │   ├── BadRequestError         400/404/422: never retried
    │   ├── ServerError             5xx: retried
    │   ├── ProviderTimeoutError    the attempt took longer than its timeout: retried
    │   ├── ProviderConnectionError connection refused / reset / DNS: retried
    │   │   └── ServerUnavailableError  a (local) server stayed unreachable past a bounded wait
    │   └── MalformedResponseError  the service answered something we cannot read
    │       └── ResponseTooLargeError  the answer went over its body cap (``limit`` bytes)
    └── PlannerError                the planner's own input or output could not make tasks
        ├── PlannerOutputError      the reply cannot become tasks (nothing was created)
        │   ├── PlannerNoJSONError  no JSON in the reply (or it was cut off)
        │   ├── PlannerShapeError   JSON, but not ``{"tasks": [{"prompt": ...}]}``
        │   ├── PlannerEmptyError   zero tasks
        │   └── PlannerTooManyTasksError  more tasks than the configured maximum
        ├── TemplateError           bad Dynamic Prompts syntax / unknown wildcard
        ├── TemplateTooLargeError   the template expands to more prompts than the cap
        └── PromptSourceError       a prompts file / line / folder cannot be used

Errors that belong to a task carry ``task_id``; provider errors carry ``provider`` and,
where the server sent one, ``status_code``. So one ``except AuthenticationError`` catches
a bad key whether an image provider or the planner's LLM refused it.

Deprecated names (they still work, with a ``DeprecationWarning``): ``PlannerAuthError``
is :class:`AuthenticationError`, ``PlannerTimeoutError`` is
:class:`ProviderTimeoutError`, ``PlannerRefusedError`` is :class:`ContentRefusedError`
and ``PlannerUnavailableError`` is :class:`ProviderError`.
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
    PlannerEmptyError,
    PlannerError,
    PlannerNoJSONError,
    PlannerOutputError,
    PlannerShapeError,
    PlannerTooManyTasksError,
    PromptSourceError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ResponseTooLargeError,
    SchemaVersionError,
    ServerError,
    ServerUnavailableError,
    StorageError,
    StoreBusyError,
    StoreError,
    TaskStateError,
    TemplateError,
    TemplateTooLargeError,
    UnknownProviderError,
    WorkspaceNotWritableError,
    deprecated_name,
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
    "PlannerEmptyError",
    "PlannerError",
    "PlannerNoJSONError",
    "PlannerOutputError",
    "PlannerShapeError",
    "PlannerTooManyTasksError",
    "PromptSourceError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitedError",
    "ResponseTooLargeError",
    "SchemaVersionError",
    "ServerError",
    "ServerUnavailableError",
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


def __getattr__(name: str) -> type[ProviderError]:
    # PlannerAuthError & co., the planner's old copies of the provider errors
    return deprecated_name(__name__, name)
