"""The classes of nbbatch's one exception tree; the tree is drawn in :mod:`nbbatch.errors`.

Each class's ``__module__`` is ``nbbatch.errors``, so tracebacks and reprs name the
module people import them from (``nbbatch.errors.AuthenticationError``).
"""

from __future__ import annotations

import re
from typing import Any

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


# Control characters (but tab and newline) and bidi overrides: messages quote server
# bodies, file contents and model replies, and end up in terminals, logs and the UI.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class NbbatchError(Exception):
    """Base class of every error nbbatch raises on purpose.

    ``message`` is kept printable: control characters in it (from a server's body, a
    file, a model's reply) are shown as escapes such as ``\\x1b``.
    """

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.task_id = task_id

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        text = str(value)
        self._message = _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text
        self.args = (self._message,)

    def __str__(self) -> str:
        return self.message


class ConfigError(NbbatchError, ValueError):
    """A bad argument or setting; fix the call or the configuration."""


class InvalidPromptError(ConfigError):
    """The prompt is empty or too long."""


class UnknownProviderError(ConfigError, LookupError):
    """No provider is registered under the given name."""


class NotSupportedError(ConfigError):
    """The provider cannot do what the task asks; raised before any request is sent."""


class InvalidTransitionError(NbbatchError):
    """A task status change the lifecycle does not allow."""


class TaskStateError(InvalidTransitionError):
    """A batch edit (edit, remove, retry…) that the task's current state does not allow.

    The message says what to do instead: cancel a running task first, or make a new task
    from a succeeded one (``batch.duplicate(task)`` / ``image.edit(...)``).
    """


class HeldElsewhereError(TaskStateError):
    """The tasks are queued or running in a live run of another process (another kernel).

    ``holders`` lists those runs (``RunHolder``: ``pid``, ``host``, ``task_ids``) and
    ``task_ids`` every task concerned. Wait for that run, stop it there, or follow it with
    ``batch.follow()``; nothing was changed or sent here.
    """

    def __init__(
        self, message: str, *, holders: tuple[object, ...] = (), task_ids: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, task_id=task_ids[0] if len(task_ids) == 1 else None)
        self.holders = holders
        self.task_ids = task_ids


class StoreError(NbbatchError):
    """A problem with the workspace on disk."""


class WorkspaceNotWritableError(StoreError):
    """The workspace folder cannot be created or written."""


class StoreBusyError(StoreError):
    """Another process held the workspace database for longer than the busy timeout."""


class SchemaVersionError(StoreError):
    """The workspace database was written by a newer version of nbbatch."""


class StorageError(StoreError):
    """Saving a result failed (disk full, permission denied, ...); nothing was marked done."""


class NotFoundError(StoreError, LookupError):
    """No batch or task with that id in this workspace."""


class ImageError(NbbatchError):
    """Base class for image problems."""


class ImageRejectedError(ImageError):
    """An image was refused before or while decoding.

    ``reason`` is one of ``"too_many_bytes"``, ``"too_many_pixels"``, ``"format"``,
    ``"corrupt"``, ``"too_slow"`` (decoding passed its timeout), ``"not_a_file"`` (a path
    that names a FIFO, a device or a folder); ``limit`` and ``actual``
    give the numbers where they apply.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        limit: int | None = None,
        actual: int | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id)
        self.reason = reason
        self.limit = limit
        self.actual = actual


class ImageMissingError(ImageError, FileNotFoundError):
    """A stored image's file is no longer in the workspace's ``images/`` folder.

    Also a ``FileNotFoundError``, so code that caught that keeps working.
    """

    def __init__(self, message: str, *, path: str, task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.path = path
        self.filename = path


class ProviderError(NbbatchError):
    """A generation request failed.

    ``retryable`` tells the runner whether another attempt may succeed; ``kind`` is a
    short stable word for the UI and the store (``"auth"``, ``"rate_limited"``, ...).
    ``retry_after`` is the wait in seconds the server asked for (``Retry-After``), on
    any status that sent one (a 503 may, not only a 429).
    """

    kind = "provider"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        task_id: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id)
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable


class AuthenticationError(ProviderError):
    kind = "auth"


class RateLimitedError(ProviderError):
    """HTTP 429 or an equivalent; ``retry_after`` is the server's wait in seconds, if any."""

    kind = "rate_limited"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        status_code: int | None = 429,
        task_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            status_code=status_code,
            task_id=task_id,
            retryable=retryable,
            retry_after=retry_after,
        )


class ContentRefusedError(ProviderError):
    kind = "refused"


class BadRequestError(ProviderError):
    kind = "bad_request"


class ServerError(ProviderError):
    kind = "server"
    retryable = True


class ProviderTimeoutError(ProviderError):
    kind = "timeout"
    retryable = True


class ProviderConnectionError(ProviderError):
    kind = "connection"
    retryable = True


class ServerUnavailableError(ProviderConnectionError):
    """The server stayed unreachable for longer than the provider waits for it.

    Raised by providers of a server the person runs (ComfyUI) after a bounded wait for
    it to come back (a restart): every other task would meet the same, so a runner can
    pause the run on it instead of spending each queued task's attempts. Retryable.
    """

    kind = "unavailable"


class MalformedResponseError(ProviderError):
    kind = "bad_response"


class ResponseTooLargeError(MalformedResponseError):
    """An answer went over its body cap (``limit`` bytes); nbbatch stopped reading it.

    Not retried: the service would most likely send (and bill) the same again.
    """

    def __init__(self, message: str, *, limit: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limit = limit


class PlannerError(NbbatchError):
    """The planner could not turn the input into tasks; no task was created."""


class PlannerOutputError(PlannerError):
    """The model answered, but the answer cannot become tasks; no task was created.

    ``reply`` holds the start of the model's text (for showing to the person).
    """

    def __init__(self, message: str, *, reply: str | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class PlannerNoJSONError(PlannerOutputError):
    """No JSON could be found in the reply (or the reply was cut off)."""


class PlannerShapeError(PlannerOutputError):
    """The reply is JSON but not ``{"tasks": [{"prompt": ...}, ...]}``; ``problems`` lists why."""

    def __init__(
        self, message: str, *, problems: list[str] | None = None, reply: str | None = None
    ) -> None:
        super().__init__(message, reply=reply)
        self.problems = list(problems or [])


class PlannerEmptyError(PlannerOutputError):
    """The reply held zero tasks."""


class PlannerTooManyTasksError(PlannerOutputError):
    """The reply held more tasks than allowed; ``count`` and ``limit`` give the numbers."""

    def __init__(self, message: str, *, count: int, limit: int, reply: str | None = None) -> None:
        super().__init__(message, reply=reply)
        self.count = count
        self.limit = limit


class TemplateError(PlannerError):
    """A prompt template has bad syntax or names a wildcard that does not exist."""


class TemplateTooLargeError(PlannerError):
    """A template expands to more prompts than the cap allows.

    ``count`` is the number of prompts (or a lower bound when ``exact`` is false) and
    ``cap`` the limit in force; raise the cap explicitly to go ahead.
    """

    def __init__(self, message: str, *, count: int, cap: int, exact: bool) -> None:
        super().__init__(message)
        self.count = count
        self.cap = cap
        self.exact = exact


class PromptSourceError(PlannerError):
    """A prompts file, line or image folder cannot be used (``where`` says which)."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


#: old planner names -> the provider transport errors the planner raises now
DEPRECATED_NAMES: dict[str, type[ProviderError]] = {
    "PlannerAuthError": AuthenticationError,
    "PlannerTimeoutError": ProviderTimeoutError,
    "PlannerRefusedError": ContentRefusedError,
    "PlannerUnavailableError": ProviderError,
}


def deprecated_name(module: str, name: str) -> type[ProviderError]:
    """The class behind a deprecated error name, with a warning saying the new one."""
    try:
        new = DEPRECATED_NAMES[name]
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None
    import warnings

    warnings.warn(
        f"{name} is deprecated: the planner raises nbbatch.errors.{new.__name__} "
        "(with provider='planner'); catch that instead",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


def __getattr__(name: str) -> type[ProviderError]:
    return deprecated_name(__name__, name)


for _name in __all__:
    globals()[_name].__module__ = "nbbatch.errors"
del _name
