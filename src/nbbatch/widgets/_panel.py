"""``Panel``: what every nbbatch widget shares.

The language (``lang``, a synced trait), one table of the requests the page may send
(``_handle``), how replies, notices and other messages go to the page (``_reply``,
``notify``, ``_post``), one way to do blocking work off the event loop (``_off_loop``),
a ``TypeError`` for a misspelt keyword (anywidget would only warn and go on) and a short
``repr``. Every request from the page carries a ``uuid`` and gets exactly one
``{"type": "reply", "uuid", "ok", ...}`` back, ``error`` in words when ``ok`` is false
(see ``_dispatch``).
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import anywidget
import traitlets

from ._dispatch import DEFERRED, Cancels, answer
from ._i18n import resolve_lang
from ._words import describe

__all__ = ["DEFERRED", "Panel", "check_keywords"]

log = logging.getLogger("nbbatch")

#: (catalogue key of what it does, handler): the handler's dict is the reply
Handler = Callable[..., Any]


def check_keywords(owner: str, given: Iterable[str], known: Iterable[str]) -> None:
    """A ``TypeError`` naming each keyword of ``given`` not in ``known``, with the
    closest known one (``provder`` → did you mean ``provider``?)."""
    known = sorted(set(known))
    wrong = [k for k in given if k not in known]
    if not wrong:
        return
    parts = []
    for name in wrong:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parts.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    noun = "argument" if len(wrong) == 1 else "arguments"
    raise TypeError(f"{owner}() got an unexpected keyword {noun} {', '.join(parts)}")


def _parameters(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name != "self"
            and not p.name.startswith("_")
        )
        if klass is Panel:
            break
    return names


class Panel(anywidget.AnyWidget):
    """The base of every nbbatch widget (see the module docstring)."""

    lang = traitlets.Unicode("en").tag(sync=True)

    def __init__(self, *, lang: str | None = None, **kwargs: Any) -> None:
        # anywidget takes any keyword as a trait and only warns about the others: a typo
        # such as concurency=5 would run at the default without a word
        check_keywords(
            type(self).__name__,
            kwargs,
            _parameters(type(self)) | set(self.class_trait_names()),
        )
        super().__init__(lang=resolve_lang(lang), **kwargs)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._handlers: dict[str, tuple[str, Handler]] = {}
        self._jobs: set[asyncio.Future[Any]] = set()
        self._notice: dict[str, str] | None = None
        # deferred work of a request, stopped when the page stops waiting for it
        self._cancels = Cancels()
        #: messages and bytes sent to the page (tests and the benchmark read them)
        self._sent_messages = 0
        self._sent_bytes = 0
        self.on_msg(self._on_msg)

    #: synced traits the page may write, each with its check (value -> allowed); every
    #: other write from the page is refused and the page is sent the kernel's value back
    _page_writable: ClassVar[Mapping[str, Callable[[Any], bool]]] = {}

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """A state update from the page: only what the page may write, checked (a page
        could otherwise set ``concurrency`` to 1,000,000 or ``count`` to 1e9)."""
        allowed = {
            k: v
            for k, v in sync_data.items()
            if k in self._page_writable and _fits(self._page_writable[k], v)
        }
        refused = [k for k in sync_data if k not in allowed]
        if refused:
            log.warning(
                "nbbatch widget: the page may not set %s; kept the kernel's value",
                ", ".join(sorted(refused))[:200],
            )
        if allowed:
            super().set_state(allowed)
        for key in refused:
            if key in self.keys:
                self.send_state(key)  # the page shows the kernel's value again

    def __repr__(self) -> str:
        detail = self._repr_detail()
        return f"<{type(self).__name__}{' ' + detail if detail else ''}>"

    def _repr_detail(self) -> str:
        return ""

    # ----------------------------------------------------------- receiving
    def _handle(self, table: Mapping[str, tuple[str, Handler]]) -> None:
        """Answer these request types: ``{type: (catalogue key of the action, handler)}``."""
        self._handlers.update(table)

    def _on_msg(self, _widget: object, content: object, buffers: Sequence[Any]) -> None:
        answer(
            content,
            self._handlers,
            lang=self.lang,
            reply=self._reply,
            notify=self.notify if self._shows_notices else None,
            words=self._words,
            buffers=(buffers or ()) if self._takes_buffers else None,
            cancels=self._cancels,
        )

    #: handlers are called with ``(content, buffers)`` (binary uploads)
    _takes_buffers = False
    #: the page shows ``notice`` messages (else an error without a uuid is a reply)
    _shows_notices = False

    def _words(self, exc: BaseException, action: str) -> str:
        """How an error is put to the person (a panel may add what to do next)."""
        return describe(exc, self.lang, action)

    # ----------------------------------------------------------- sending
    def _post(self, content: dict[str, Any], buffers: Sequence[bytes] | None = None) -> None:
        self._sent_messages += 1
        self._sent_bytes += _approx_size(content) + sum(len(b) for b in buffers or ())
        self.send(content, buffers=list(buffers) if buffers else None)

    def _reply(
        self, uid: object, ok: bool, body: dict[str, Any], buffers: Sequence[bytes] | None = None
    ) -> None:
        self._post({"type": "reply", "uuid": uid, "ok": ok, **body}, buffers)

    def notify(self, text: str, level: str = "error") -> None:
        """Show ``text`` in the widget (kept for views that render later)."""
        self._notice = {"level": level, "text": text}
        self._post({"type": "notice", **self._notice})

    # ----------------------------------------------------------- off the loop
    def _off_loop(
        self,
        uid: object,
        action: str,
        work: Callable[[], Any],
        reply: Callable[[Any], None],
        *,
        cancelled: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Run blocking ``work`` (file reads, thumbnails, ZIPs, SQLite scans) in a thread,
        then ``reply(result)`` on the loop; a failure is answered in words. Without a
        running loop (a script, a unit test) it runs here and now. Returns
        :data:`DEFERRED` for the handler to return.

        A ``cancel_request`` for ``uid`` (the page stopped waiting) drops the reply and,
        when the thread has not started it yet, the work; ``cancelled()`` is called then
        (work already under way may check a flag it sets)."""

        def failed(exc: BaseException) -> None:
            self._reply(uid, False, {"error": self._words(exc, action)})

        future = self._in_thread(work, reply, failed)
        if future is not None:
            self._cancels.track(uid, future, cancelled)
        return DEFERRED

    def _in_thread(
        self,
        work: Callable[[], Any],
        done: Callable[[Any], object],
        failed: Callable[[BaseException], object],
    ) -> asyncio.Future[Any] | None:
        """``work()`` in a thread, then ``done(result)`` — or ``failed(error)``, also when
        ``done`` itself fails — on the loop; here and now without a running loop.
        Returns the thread's future (None when it ran here)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            try:
                result = work()
            except Exception as exc:
                failed(exc)
                return None
            try:
                done(result)
            except Exception as exc:
                failed(exc)
            return None
        future = loop.run_in_executor(None, work)

        def finished(f: asyncio.Future[Any]) -> None:
            self._jobs.discard(f)
            if f.cancelled():
                return
            try:
                done(f.result())
            except Exception as exc:
                failed(exc)

        self._jobs.add(future)
        future.add_done_callback(finished)
        return future


def _fits(check: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(check(value))
    except Exception:
        return False


def _approx_size(content: dict[str, Any]) -> int:
    try:
        return len(json.dumps(content, separators=(",", ":"), default=str))
    except (TypeError, ValueError):
        return 0
