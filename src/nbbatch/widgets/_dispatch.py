"""How every widget answers what its page sends: one request, one reply in words.

A page sends ``{"type": ..., "uuid": ..., ...}``; the widget's ``_handlers`` maps each
type to the catalogue key of what it is doing ("loading the rows") and the handler. The
handler's dict is the reply; a handler that answers later itself (work off the event
loop) returns :data:`DEFERRED`. Whatever goes wrong — a message that is not an object,
an unknown type, a refusal, a bug — becomes a reply in the widget's language (or a
notice, when the message had no uuid to reply to), never an exception into the comm.

A page that no longer waits for a reply (its view went away, the person gave up) sends
``{"type": "cancel_request", "uuid": <the request's uuid>}``: deferred work the widget
tracked under that uuid in its :class:`Cancels` is cancelled; nothing is replied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ._words import UserFacingError, describe

__all__ = ["CANCEL_REQUEST", "DEFERRED", "Cancels", "Handlers", "answer"]

#: returned by a handler that sends its reply itself, later
DEFERRED: dict[str, Any] = {"__deferred__": True}

#: message type -> (catalogue key of the action, handler)
Handlers = Mapping[str, tuple[str, Callable[..., Any]]]

#: the page's "stop the work of this request" (handled here, for every widget)
CANCEL_REQUEST = "cancel_request"


class _Job(Protocol):
    """An asyncio or concurrent future: all :class:`Cancels` needs of it."""

    def cancel(self) -> bool: ...
    def done(self) -> bool: ...
    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


class Cancels:
    """Deferred work by the uuid of the request it answers, until it is done.

    ``track(uid, job)`` after starting ``job`` for request ``uid``; a
    ``cancel_request`` naming ``uid`` cancels it (an asyncio task stops at its next
    await; an executor future not started yet never starts).
    """

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._on_cancel: dict[str, Callable[[], None]] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def track(self, uid: object, job: _Job, on_cancel: Callable[[], None] | None = None) -> None:
        """Track ``job`` for request ``uid``; ``on_cancel()`` runs when it is cancelled."""
        if not isinstance(uid, str) or job.done():
            return
        self._jobs[uid] = job
        if on_cancel is not None:
            self._on_cancel[uid] = on_cancel

        def forget(_: object) -> None:
            if self._jobs.get(uid) is job:
                del self._jobs[uid]
                self._on_cancel.pop(uid, None)

        job.add_done_callback(forget)

    def cancel(self, uid: object) -> bool:
        """Cancel the work of request ``uid``; False when there is none (done already)."""
        job = self._jobs.pop(uid, None) if isinstance(uid, str) else None
        on_cancel = self._on_cancel.pop(uid, None) if isinstance(uid, str) else None
        if job is None:
            return False
        cancelled = job.cancel()
        if cancelled and on_cancel is not None:
            # now, not from a done callback on the loop's next turn: work already under
            # way in a thread checks the flag this sets, and may finish before that turn
            on_cancel()
        return cancelled

    def cancel_all(self) -> None:
        """Cancel everything still running (the widget is closing)."""
        for uid in list(self._jobs):
            self.cancel(uid)


def answer(
    content: object,
    handlers: Handlers,
    *,
    lang: str,
    reply: Callable[[object, bool, dict[str, Any]], None],
    notify: Callable[[str], None] | None = None,
    buffers: Sequence[Any] | None = None,
    words: Callable[[BaseException, str], str] | None = None,
    cancels: Cancels | None = None,
) -> None:
    """Run the handler ``content`` names and send its reply (see the module docstring).

    ``buffers``: given, handlers are called with ``(content, buffers)`` (binary uploads);
    ``words``: how an error is put (default :func:`describe`); ``notify``: where an error
    goes when the message has no uuid (default: a reply without one); ``cancels``: the
    widget's deferred work, which a ``cancel_request`` stops (never replied to).
    """
    uid = content.get("uuid") if isinstance(content, dict) else None
    kind = content.get("type") if isinstance(content, dict) else None
    action = "doing_request"
    if kind == CANCEL_REQUEST:
        if cancels is not None:
            cancels.cancel(uid)
        return
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
