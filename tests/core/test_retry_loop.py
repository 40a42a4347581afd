"""One retry loop: ``retrying`` in core/_retry.py, used by the runner, planner and polls.

Issue 25 found three loops (runner, planner, polls) with two Retry-After caps and two
backoff formulas. The structural test below reads the source: a loop that both waits
(an awaited ``sleep``) and handles a provider error or asks for a retry delay is a retry
loop, and only ``core/_retry.py`` may hold one.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

import nbbatch.core._errors as errors_module
from nbbatch.core._retry import (
    MAX_RETRY_AFTER,
    PLANNER_RETRY,
    POLL_RETRY,
    TASK_RETRY,
    Retry,
    RetryPolicy,
    retrying,
)
from nbbatch.errors import (
    AuthenticationError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "nbbatch"
HOME = SRC / "core" / "_retry.py"
PROVIDER_ERRORS = {
    name
    for name, value in vars(errors_module).items()
    if isinstance(value, type) and issubclass(value, ProviderError)
}


def _catches_provider_errors(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return False
    for named in ast.walk(handler.type):
        label = named.attr if isinstance(named, ast.Attribute) else None
        label = label or (named.id if isinstance(named, ast.Name) else None)
        if label in PROVIDER_ERRORS:
            return True
    return False


def _waits(statements: list[ast.stmt]) -> bool:
    """True when ``statements`` await something (a pause before going round again)."""
    return any(isinstance(n, ast.Await) for s in statements for n in ast.walk(s))


def retry_loops(path: Path) -> list[str]:
    """Loops that catch a provider error and then wait before going round again.

    A progress poll that swallows an error and goes on at its own pace (no await in the
    handler) is not one; a loop that sleeps in its handler, or asks for a retry delay
    (``delay_for``, ``backoff``), is.
    """
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.While, ast.For, ast.AsyncFor)):
            continue
        handlers = [
            h
            for h in ast.walk(node)
            if isinstance(h, ast.ExceptHandler) and _catches_provider_errors(h)
        ]
        asks_delay = any(
            isinstance(n, ast.Attribute) and n.attr in {"delay_for", "backoff"}
            for n in ast.walk(node)
        )
        if any(_waits(h.body) for h in handlers) or (handlers and asks_delay):
            found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_the_only_retry_loop_is_in_core_retry() -> None:
    loops = [hit for path in sorted(SRC.rglob("*.py")) for hit in retry_loops(path)]
    assert [hit.split(":")[0] for hit in loops] == ["core/_retry.py"], loops
    # nothing outside the home computes a retry delay itself
    elsewhere = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        if path != HOME
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in {"delay_for", "backoff"}
    ]
    assert elsewhere == []


def test_the_detector_finds_the_old_loops() -> None:
    # the shape of the three loops issue 25 found (runner, planner, polls)
    old = """
async def complete(self, body):
    retry = 0
    while True:
        try:
            return await self.http.json("POST", "/x", json=body)
        except ProviderError as exc:
            retry += 1
            delay = self.config.retry.delay_for(exc, retry)
            if delay is None:
                raise
            await asyncio.sleep(delay)

async def retry_fetch(call, attempts, delay, sleep):
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ProviderError as exc:
            await sleep(delay * 2 ** (attempt - 1))
"""
    path = SRC / "_old_loops_probe.py"
    try:
        path.write_text(old)
        assert len(retry_loops(path)) == 2
    finally:
        path.unlink()


@pytest.mark.parametrize(
    ("module", "function"),
    [
        ("engine/_runner.py", "_execute"),
        ("planning/_llm.py", "complete"),
        ("providers/_fetch.py", "retry_fetch"),
    ],
)
def test_the_runner_planner_and_polls_call_retrying(module: str, function: str) -> None:
    tree = ast.parse((SRC / module).read_text())
    bodies = [
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function
    ]
    assert bodies, f"{module} has no {function}"
    calls = {
        c.func.id
        for body in bodies
        for c in ast.walk(body)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
    }
    assert "retrying" in calls


class Script:
    """An async call that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retrying_waits_the_policy_and_tells_on_retry_before_each_wait() -> None:
    pauses: list[float] = []
    told: list[tuple[int, float, str]] = []

    async def sleep(seconds: float) -> None:  # an injected clock: nothing waits
        pauses.append(seconds)

    async def on_retry(retry: Retry) -> None:
        told.append((retry.number, retry.delay, str(retry.error)))

    call = Script(ServerError("busy"), RateLimitedError("slow down", retry_after=7.0))
    policy = RetryPolicy(max_retries=2, jitter=(1.0, 1.0))
    assert await retrying(call, policy, on_retry=on_retry, sleep=sleep) == "ok"
    assert call.calls == 3
    assert pauses == [0.5, 7.0]
    assert told == [(1, 0.5, "busy"), (2, 7.0, "slow down")]


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("no"),
        RateLimitedError("later", retry_after=MAX_RETRY_AFTER + 1),
        ValueError("not a provider error"),
    ],
)
async def test_retrying_raises_at_once_what_waiting_cannot_help(error: Exception) -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("must not wait")

    call = Script(error)
    with pytest.raises(type(error)):
        await retrying(call, TASK_RETRY, sleep=sleep)
    assert call.calls == 1


async def test_retrying_gives_up_after_the_last_retry_with_the_last_error() -> None:
    async def sleep(seconds: float) -> None:
        pass

    call = Script(*(ServerError(f"busy {i}") for i in range(5)))
    with pytest.raises(ServerError, match="busy 2"):
        await retrying(call, RetryPolicy(max_retries=2), sleep=sleep, rng=random.Random(1))
    assert call.calls == 3


def test_the_named_policies_share_one_retry_after_cap() -> None:
    assert {p.name for p in (TASK_RETRY, PLANNER_RETRY, POLL_RETRY)} == {
        "task",
        "planner",
        "poll",
    }
    for policy in (TASK_RETRY, PLANNER_RETRY, POLL_RETRY):
        assert policy.delay_for(ServerError("x", retry_after=MAX_RETRY_AFTER), 1) == 120.0
        assert policy.delay_for(ServerError("x", retry_after=MAX_RETRY_AFTER + 1), 1) is None
    # the planner's own timeout bounds its call: a timeout is not retried there
    assert PLANNER_RETRY.delay_for(ProviderTimeoutError("slow"), 1) is None
    assert TASK_RETRY.delay_for(ProviderTimeoutError("slow"), 1) is not None
    assert POLL_RETRY.max_retries == 3
