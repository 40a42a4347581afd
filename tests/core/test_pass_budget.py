"""Heavy inline steps share the event loop's passes instead of filling one.

The answers of a wave of concurrent requests arrive together; parsing and decoding them
all in one pass of the loop held it (and every timer, socket and kernel message behind
it) for 60-120 ms. ``PassBudget`` lets a pass run heavy steps for a bounded time and
moves the rest to later passes. The clock is injected: each step says what it cost.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from nbbatch.core import _aio
from nbbatch.core._aio import PassBudget
from nbbatch.providers import _offload
from nbbatch.providers._http import HttpClient


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_steps_past_the_budget_wait_for_a_later_pass() -> None:
    loop = asyncio.get_running_loop()
    clock = Clock()
    budget = PassBudget(loop, 0.008, clock=clock)
    order: list[str] = []

    async def step(name: str, cost: float) -> None:
        await budget.turn()
        order.append(name)
        clock.now += cost
        if name == "b":
            # queued now, this runs at the start of the next pass
            loop.call_soon(order.append, "next pass")

    await asyncio.gather(step("a", 0.005), step("b", 0.005), step("c", 0.005), step("d", 0.001))

    # a and b fit in the first pass (10 ms, the second began within the 8 ms budget);
    # c and d were deferred and run together in the next one
    assert order == ["a", "b", "next pass", "c", "d"]


async def test_the_first_step_of_a_pass_always_runs_however_long_it_is() -> None:
    clock = Clock()
    budget = PassBudget(asyncio.get_running_loop(), 0.008, clock=clock)
    ran: list[int] = []

    async def step(i: int) -> None:
        await budget.turn()
        ran.append(i)
        clock.now += 1.0  # each alone is far over the budget

    await asyncio.wait_for(asyncio.gather(*(step(i) for i in range(5))), 5)
    assert ran == [0, 1, 2, 3, 4]  # one per pass, in the order they asked, none starved


async def test_a_deferred_step_goes_before_one_that_asks_later() -> None:
    clock = Clock()
    budget = PassBudget(asyncio.get_running_loop(), 0.008, clock=clock)
    order: list[str] = []
    later: list[asyncio.Future[None]] = []

    async def step(name: str, cost: float) -> None:
        await budget.turn()
        order.append(name)
        clock.now += cost

    async def heavy() -> None:
        await step("heavy", 0.02)
        # a step queued now asks first in the next pass, before the deferred one wakes
        later.append(asyncio.ensure_future(step("late", 0.001)))

    await asyncio.gather(heavy(), step("deferred", 0.001))
    await later[0]
    assert order == ["heavy", "deferred", "late"]


async def test_a_cancelled_waiting_step_does_not_block_the_others() -> None:
    clock = Clock()
    budget = PassBudget(asyncio.get_running_loop(), 0.008, clock=clock)
    ran: list[str] = []

    async def step(name: str) -> None:
        await budget.turn()
        ran.append(name)
        clock.now += 1.0

    first = asyncio.ensure_future(step("first"))
    waiting = asyncio.ensure_future(step("cancelled"))
    await asyncio.sleep(0)  # both asked in one pass: the second is now deferred
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await first
    await asyncio.wait_for(step("after"), 5)
    assert ran == ["first", "after"]


async def test_each_loop_has_its_own_budget() -> None:
    await _aio.pass_turn(_aio.HEAVY_INLINE_BYTES + 1)
    loop = asyncio.get_running_loop()
    mine = _aio._budgets[loop]

    def other_loop() -> PassBudget:
        async def ask() -> PassBudget:
            await _aio.pass_turn(_aio.HEAVY_INLINE_BYTES + 1)
            return _aio._budgets[asyncio.get_running_loop()]

        return asyncio.run(ask())

    theirs = await asyncio.to_thread(other_loop)
    assert theirs is not mine


async def test_big_json_answers_take_turns_and_small_ones_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns: list[str] = []

    class Counted(PassBudget):
        async def turn(self) -> None:
            turns.append("turn")

    monkeypatch.setitem(
        _aio._budgets, asyncio.get_running_loop(), Counted(asyncio.get_running_loop())
    )
    big = json.dumps({"data": [{"b64_json": "QUJD" * 50_000}]}).encode()  # ~200 KB
    small = json.dumps({"data": []}).encode()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=big if request.url.path == "/big" else small)

    client = HttpClient("fake", "http://fake.test", transport=httpx.MockTransport(answer))
    try:
        assert len((await client.json("GET", "/big"))["data"][0]["b64_json"]) == 200_000
        assert await client.json("GET", "/small") == {"data": []}
    finally:
        await client.aclose()
    assert turns == ["turn"]


async def test_inline_work_on_big_data_takes_a_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    turns: list[int] = []

    class Counted(PassBudget):
        async def turn(self) -> None:
            turns.append(1)

    monkeypatch.setitem(
        _aio._budgets, asyncio.get_running_loop(), Counted(asyncio.get_running_loop())
    )
    assert await _offload.offload(len, b"x" * 200_000, size=200_000) == 200_000
    assert await _offload.offload(len, b"x" * 100, size=100) == 100
    assert turns == [1]
