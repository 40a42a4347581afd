"""How every widget answers what its page sends: one request, one reply in words.

A page sends ``{"type": ..., "uuid": ..., ...}``; the widget's ``_handlers`` maps each
type to the catalogue key of what it is doing ("loading the rows") and the handler. The
handler's dict is the reply; a handler that answers later itself (work off the event
loop) returns :data:`DEFERRED`. Whatever goes wrong — a message that is not an object,
an unknown type, a refusal, a bug — becomes a reply in the widget's language (or a
notice, when the message had no uuid to reply to), never an exception into the comm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._words import UserFacingError, describe

__all__ = ["DEFERRED", "Handlers", "answer"]

#: returned by a handler that sends its reply itself, later
DEFERRED: dict[str, Any] = {"__deferred__": True}

#: message type -> (catalogue key of the action, handler)
Handlers = Mapping[str, tuple[str, Callable[..., Any]]]


def answer(
    content: object,
    handlers: Handlers,
    *,
    lang: str,
    reply: Callable[[object, bool, dict[str, Any]], None],
    notify: Callable[[str], None] | None = None,
    buffers: Sequence[Any] | None = None,
    words: Callable[[BaseException, str], str] | None = None,
) -> None:
    """Run the handler ``content`` names and send its reply (see the module docstring).

    ``buffers``: given, handlers are called with ``(content, buffers)`` (binary uploads);
    ``words``: how an error is put (default :func:`describe`); ``notify``: where an error
    goes when the message has no uuid (default: a reply without one).
    """
    uid = content.get("uuid") if isinstance(content, dict) else None
    kind = content.get("type") if isinstance(content, dict) else None
    action = "doing_request"
    try:
        if not isinstance(content, dict) or not isinstance(kind, str):
            raise UserFacingError("bad_request", type=repr(kind)[:40])
        entry = handlers.get(kind)
        if entry is None:
            raise UserFacingError("unknown_request", type=kind[:40])
        action, handler = entry
        result = handler(content) if buffers is None else handler(content, buffers)
        if result is DEFERRED:
            return
        reply(uid, True, result or {})
    except Exception as exc:
        text = words(exc, action) if words is not None else describe(exc, lang, action)
        if uid is None and notify is not None:
            notify(text)
        else:
            reply(uid, False, {"error": text})
