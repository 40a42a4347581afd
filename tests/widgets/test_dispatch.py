"""A page that stops waiting for a reply stops the kernel's work for it (cancel_request)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from nbbatch.widgets._dispatch import DEFERRED, Cancels, answer


class Replies:
    def __init__(self) -> None:
        self.sent: list[tuple[object, bool, dict[str, Any]]] = []

    def __call__(self, uid: object, ok: bool, body: dict[str, Any]) -> None:
        self.sent.append((uid, ok, body))


async def test_a_cancel_request_cancels_the_work_of_that_request_only() -> None:
    cancels = Cancels()
    replies = Replies()
    never = asyncio.Event()
    jobs: dict[str, asyncio.Task[Any]] = {}

    def slow(content: dict[str, Any]) -> dict[str, Any]:
        job = asyncio.ensure_future(never.wait())
        jobs[content["uuid"]] = job
        cancels.track(content["uuid"], job)
        return DEFERRED

    handlers = {"split": ("doing_request", slow)}
    for uid in ("a", "b"):
        answer({"type": "split", "uuid": uid}, handlers, lang="en", reply=replies, cancels=cancels)
    answer(
        {"type": "cancel_request", "uuid": "a"}, handlers, lang="en", reply=replies, cancels=cancels
    )
    (stopped,) = await asyncio.gather(jobs["a"], return_exceptions=True)
    assert isinstance(stopped, asyncio.CancelledError)
    assert not jobs["b"].done()
    # the page gave up on "a": nothing is replied to a cancel_request
    assert replies.sent == []
    never.set()
    await jobs["b"]
    assert len(cancels) == 0  # finished work is forgotten


def test_a_cancel_request_for_finished_or_unknown_work_is_ignored_quietly() -> None:
    cancels = Cancels()
    replies = Replies()
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    done.set_result(1)
    cancels.track("a", done)
    assert len(cancels) == 0
    answer({"type": "cancel_request", "uuid": "a"}, {}, lang="en", reply=replies, cancels=cancels)
    answer({"type": "cancel_request", "uuid": 7}, {}, lang="en", reply=replies, cancels=cancels)
    # a widget that tracks nothing ignores it too (no "unknown request" error to nobody)
    answer({"type": "cancel_request", "uuid": "x"}, {}, lang="en", reply=replies)
    assert replies.sent == []


def test_executor_work_not_started_yet_never_starts() -> None:
    cancels = Cancels()
    waiting: concurrent.futures.Future[int] = concurrent.futures.Future()
    cancels.track("q", waiting)
    assert cancels.cancel("q") is True
    assert waiting.cancelled()
    assert cancels.cancel("q") is False
