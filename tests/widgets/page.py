"""A stand-in for the browser side of a widget: sends what the page sends, keeps replies."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from nbbatch.widgets import TaskGrid


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeScheduler:
    """Collects delayed calls; the test runs them by advancing time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> object:
        self.calls.append((self.clock.now + delay, fn))
        return None

    def advance(self, seconds: float) -> None:
        end = self.clock.now + seconds
        while True:
            due = sorted((c for c in self.calls if c[0] <= end), key=lambda c: c[0])
            if not due:
                break
            when, fn = due[0]
            self.calls.remove(due[0])
            self.clock.now = max(self.clock.now, when)
            fn()
        self.clock.now = end


class Page:
    """Drives ``widget`` through its message handler, as the front end would."""

    _ids = itertools.count(1)

    def __init__(self, widget: TaskGrid) -> None:
        self.widget = widget
        self.sent: list[tuple[dict[str, Any], list[bytes]]] = []
        widget.send = self._capture  # type: ignore[method-assign]

    def _capture(self, content: dict[str, Any], buffers: Any = None) -> None:
        # what would go over the wire: JSON plus binary frames
        json.dumps(content)
        self.sent.append((content, [bytes(b) for b in buffers or ()]))

    def request(self, type: str, **body: Any) -> dict[str, Any]:
        uid = f"u{next(self._ids)}"
        self.widget._on_msg(self.widget, {"type": type, "uuid": uid, **body}, [])
        for content, buffers in reversed(self.sent):
            if content.get("uuid") == uid:
                return {**content, "_buffers": buffers}
        raise AssertionError(f"no reply to {type}")

    def ok(self, type: str, **body: Any) -> dict[str, Any]:
        reply = self.request(type, **body)
        assert reply["ok"], reply.get("error")
        return reply

    def refused(self, type: str, **body: Any) -> str:
        reply = self.request(type, **body)
        assert not reply["ok"], reply
        assert isinstance(reply["error"], str) and reply["error"]
        return str(reply["error"])

    def of_type(self, type: str) -> list[dict[str, Any]]:
        return [c for c, _ in self.sent if c.get("type") == type]

    def rows(self, start: int = 0, end: int = 50, **filters: Any) -> list[dict[str, Any]]:
        return list(self.ok("rows", start=start, end=end, **filters)["rows"])


class PanelPage:
    """Drives a panel's request/reply messages (``uuid`` in, one reply out) as the page does."""

    _ids = itertools.count(1)

    def __init__(self, widget: Any) -> None:
        self.widget = widget
        self.sent: list[dict[str, Any]] = []
        widget.send = self._capture

    def _capture(self, content: dict[str, Any], buffers: Any = None) -> None:
        json.dumps(content)
        self.sent.append(content)

    def request(self, type: str, **body: Any) -> str:
        uid = f"p{next(self._ids)}"
        self.widget._on_msg(self.widget, {"type": type, "uuid": uid, **body}, [])
        return uid

    def reply(self, uid: str) -> dict[str, Any] | None:
        return next((c for c in self.sent if c.get("uuid") == uid), None)

    def ok(self, type: str, **body: Any) -> dict[str, Any]:
        reply = self.reply(self.request(type, **body))
        assert reply is not None and reply["ok"], reply
        return reply

    def refused(self, type: str, **body: Any) -> str:
        reply = self.reply(self.request(type, **body))
        assert reply is not None and not reply["ok"], reply
        return str(reply["error"])
