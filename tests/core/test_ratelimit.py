"""Endpoint gates: per-minute limits, back-off on 429s, x-ratelimit headers, sharing."""

from __future__ import annotations

import asyncio

import pytest

from nbbatch import Batch, Workspace
from nbbatch.core._ratelimit import Gate, RateLimit, check_rate_limits, set_rate_limit
from nbbatch.errors import ConfigError
from nbbatch.providers import PoolProvider
from nbbatch.providers._endpoint import endpoint_key, gate_of
from nbbatch.testing import RateLimitedProvider, VirtualTimeLoop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_are_never_more_than_the_limit_in_any_minute() -> None:
    clock = Clock()
    gate = Gate("x", RateLimit(requests_per_minute=2), clock=clock)
    assert gate.wait_time() == 0
    gate._sends.append((clock.now, 1))
    clock.now += 10
    gate._sends.append((clock.now, 1))
    assert gate.wait_time() == pytest.approx(50.0), "the first send leaves the window at 60 s"
    clock.now += 50
    assert gate.wait_time() == 0


def test_images_per_minute_count_the_images_of_each_request() -> None:
    clock = Clock()
    gate = Gate("x", RateLimit(images_per_minute=4), clock=clock)
    gate._sends.append((clock.now, 3))
    assert gate.wait_time(1) == 0
    assert gate.wait_time(2) == pytest.approx(60.0)


def test_a_passing_429_changes_nothing_but_a_run_of_them_halves_and_holds_the_endpoint() -> None:
    clock = Clock()
    gate = Gate("x", clock=clock)
    runs = _FakeRun(10)
    gate.attach(runs)
    stamps = [_send(gate, clock) for _ in range(10)]
    for s in stamps[:5]:
        gate.succeeded(s)
    gate.rate_limited(stamps[5], retry_after=5.0)
    assert gate.slowed_to is None and gate.hold_until <= clock.now, "one 429 is not a limit"
    for s in stamps[6:9]:
        gate.rate_limited(s, retry_after=5.0)
    assert gate.pressed
    assert gate.slowed_to == 1, "halved from what was in flight (2 -> 1)"
    assert gate.hold_until == pytest.approx(clock.now + 5.0), "the whole endpoint waits it out"
    assert gate.learned_rpm == 6, "what the server took in the last minute (5 done, 1 sent)"
    assert gate.describe() == "slowed to 1 by rate limits"


def test_concurrency_grows_back_after_sustained_success_never_above_the_configured() -> None:
    clock = Clock()
    gate = Gate("x", clock=clock)
    run = _FakeRun(4)
    gate.attach(run)
    gate.pressed = True
    gate.adaptive = 2
    grown = []
    for _ in range(12):
        gate.succeeded(_send(gate, clock))
        grown.append(gate.slowed_to)
    assert grown[:2] == [2, 3], "one more slot per 'slots' successes"
    assert grown[-1] is None, "back to the run's own concurrency (4), not above"
    assert gate.slots == 4


def test_openai_ratelimit_headers_set_the_limit_and_hold_until_the_reset() -> None:
    clock = Clock()
    gate = Gate("x", clock=clock)
    gate.observe_headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6s",
        }
    )
    assert gate.learned_rpm == 60
    assert gate.wait_time() == pytest.approx(6.0)
    gate.observe_headers(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"}
    )
    assert gate.wait_time() == pytest.approx(90.0)


def test_rate_limits_are_checked_in_words() -> None:
    assert check_rate_limits({"openai": {"requests_per_minute": 60}})["openai"] == RateLimit(60)
    with pytest.raises(ConfigError, match="unknown rate limit setting"):
        check_rate_limits({"openai": {"rpm": 60}})
    with pytest.raises(ConfigError, match="more than 0"):
        RateLimit(requests_per_minute=0)


def test_against_a_hard_60_per_minute_limit_few_requests_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    provider = RateLimitedProvider(60, latency=2.0)
    loop = VirtualTimeLoop()
    ws = Workspace(tmp_path / "ws")
    seen: list[str] = []

    async def main() -> Batch:
        batch = Batch.create([f"p{i}" for i in range(130)], workspace=ws)
        run = batch.start(provider, concurrency=10)

        def watch(_: object) -> None:
            said = run.pace.describe()
            if said:
                seen.append(said)

        run.subscribe(watch)
        await run.wait()
        return batch

    try:
        batch = loop.run_until_complete(main())
    finally:
        loop.close()
        ws.close()
    assert len(batch.succeeded) == 130
    assert provider.refused / (provider.accepted + provider.refused) <= 0.05
    assert any(s.startswith("slowed to") for s in seen), "the run says it was slowed"


def test_a_pool_member_and_a_direct_run_share_one_endpoint_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    provider = RateLimitedProvider(1000, latency=1.0)
    key = endpoint_key(provider)
    assert key is not None
    set_rate_limit(key, requests_per_minute=3)
    pool = PoolProvider([provider], check_endpoints=False)
    assert gate_of(pool) is None and gate_of(provider) is gate_of(provider)
    loop = VirtualTimeLoop()
    ws = Workspace(tmp_path / "ws")

    async def main() -> None:
        one = Batch.create(["a", "b", "c"], workspace=ws).start(pool, concurrency=3)
        two = Batch.create(["d", "e", "f"], workspace=ws).start(provider, concurrency=3)
        await asyncio.gather(one.wait(), two.wait())

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        ws.close()
        set_rate_limit(key)
    sent = sorted(provider.sent_at)
    assert len(sent) == 6
    assert all(sent[i + 3] - sent[i] >= 60.0 for i in range(len(sent) - 3)), sent


class _FakeRun:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency

    def gate_concurrency(self) -> int:
        return self.concurrency

    def gate_wants(self) -> bool:
        return False

    def gate_poke(self) -> None:
        pass


def _send(gate: Gate, clock: Clock) -> float:
    gate._sends.append((clock.now, 1))
    gate.in_flight += 1
    return clock.now


def test_a_limit_keyed_by_a_url_with_a_password_is_kept_without_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nbbatch.engine import Settings, load_settings, save_settings
    from nbbatch.providers import A1111Provider

    # the table is saved in config.json: the password never is
    table = check_rate_limits({"http://ann:hunter2-pw@gpu.lan:7860/": {"requests_per_minute": 30}})
    assert list(table) == ["http://gpu.lan:7860"]
    settings = Settings(rate_limits=table)
    save_settings(settings, tmp_path / "config.json")
    assert "hunter2-pw" not in (tmp_path / "config.json").read_text(encoding="utf-8")
    assert load_settings(tmp_path / "config.json").rate_limits == table
    # and it reaches the server's gate, which knows the URL as the HTTP client keeps it
    name = "http://ann:hunter2-pw@gpu.lan:7861"
    try:
        set_rate_limit(name, requests_per_minute=12)
        provider = A1111Provider(base_url=name)
        gate = gate_of(provider)
        assert gate is not None and gate.limit.requests_per_minute == 12
        assert "hunter2-pw" not in gate.key
    finally:
        set_rate_limit(name)  # no limits: removed
