"""Retry policy: the delay table, Retry-After parsing (property-tested), give-up rules."""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbbatch.core._retry import MAX_RETRY_AFTER, RetryPolicy, parse_duration, parse_retry_after
from nbbatch.errors import (
    AuthenticationError,
    ProviderConnectionError,
    RateLimitedError,
    ServerError,
)
from nbbatch.providers import (
    OpenAIProvider,
)
from nbbatch.providers._base import GenerationRequest
from nbbatch.testing import FakeOpenAI, Fault

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250", "retry-after": "9"}, 0.25),  # ms wins
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": email.utils.formatdate(NOW + 20, usegmt=True)}, 20.0),
        ({"retry-after": email.utils.formatdate(NOW - 20, usegmt=True)}, 0.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "Fri, 99 Foo 99999 99:99:99 GMT"}, None),
        ({"retry-after-ms": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_table(headers: dict[str, str], expected: float | None) -> None:
    got = parse_retry_after(headers, now=NOW)
    assert got == (pytest.approx(expected, abs=1) if expected else expected)


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "x"]), st.text()))
def test_retry_after_never_raises_and_is_never_negative(headers: dict[str, str]) -> None:
    got = parse_retry_after(headers, now=NOW)
    assert got is None or (got >= 0 and math.isfinite(got))


@given(st.text())
def test_parse_duration_never_raises(text: str) -> None:
    got = parse_duration(text)
    assert got is None or got >= 0


def test_parse_duration_reads_protobuf_durations() -> None:
    assert parse_duration("17s") == 17.0
    assert parse_duration("0.25s") == 0.25
    assert parse_duration("17") is None


@pytest.mark.parametrize(
    ("retry", "low", "high"),
    [
        (1, 0.375, 0.5),
        (2, 0.75, 1.0),
        (3, 1.5, 2.0),
        (4, 3.0, 4.0),
        (5, 6.0, 8.0),
        (6, 6.0, 8.0),
        (2000, 6.0, 8.0),
    ],
)
def test_backoff_doubles_from_half_a_second_up_to_eight(
    retry: int, low: float, high: float
) -> None:
    policy = RetryPolicy(max_retries=10_000)
    for seed in range(20):
        assert low <= policy.backoff(retry, random.Random(seed)) <= high


def test_which_errors_are_retried_and_for_how_long() -> None:
    policy = RetryPolicy()
    assert policy.delay_for(ServerError("x"), 1) is not None
    assert policy.delay_for(ProviderConnectionError("x"), 2) is not None
    assert policy.delay_for(ServerError("x"), 3) is None  # only 2 retries
    assert policy.delay_for(AuthenticationError("x"), 1) is None
    assert policy.delay_for(ValueError("x"), 1) is None
    assert policy.delay_for(RateLimitedError("x", retry_after=120), 1) == 120
    assert policy.delay_for(RateLimitedError("x", retry_after=121), 1) is None
    assert 0.375 <= (policy.delay_for(RateLimitedError("x", retry_after=0), 1) or 0) <= 0.5
    assert policy.delay_for(RateLimitedError("x", retry_after=math.inf), 1) is not None


def test_max_retry_after_is_still_accepted_with_a_deprecation_naming_the_shared_cap() -> None:
    # RetryPolicy(max_retry_after=...) was removed without a deprecation when every policy
    # got the one cap MAX_RETRY_AFTER; code passing it raised TypeError.
    with pytest.warns(DeprecationWarning, match="MAX_RETRY_AFTER") as caught:
        policy = RetryPolicy(max_retries=1, max_retry_after=30)
    assert caught[0].filename == __file__  # points at the caller's line
    assert policy.delay_for(RateLimitedError("x", retry_after=30), 1) == 30
    assert policy.delay_for(RateLimitedError("x", retry_after=31), 1) is None  # still honoured
    with pytest.warns(DeprecationWarning, match="max_retry_after is deprecated"):
        assert policy.max_retry_after == 30
    # a replaced policy keeps the cap without warning again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        copy = dataclasses.replace(policy, max_retries=2)
    assert copy.delay_for(RateLimitedError("x", retry_after=31), 1) is None
    assert copy == dataclasses.replace(copy)


def test_max_retry_after_never_raises_the_shared_cap() -> None:
    with pytest.warns(DeprecationWarning, match="up to 120 s"):
        policy = RetryPolicy(max_retry_after=600)
    assert policy.delay_for(RateLimitedError("x", retry_after=120), 1) == 120
    assert policy.delay_for(RateLimitedError("x", retry_after=121), 1) is None
    with pytest.warns(DeprecationWarning):
        assert RetryPolicy().max_retry_after == MAX_RETRY_AFTER
    with pytest.raises(ValueError, match="max_retry_after"):
        RetryPolicy(max_retry_after=-1)
    assert "max_retry_after" not in repr(RetryPolicy()) and "_retry" not in repr(RetryPolicy())


def test_negative_retry_count_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


# -- Retry-After on every retried status -------------------------------------------
# Defect 3 of the provider review: Retry-After was honoured on 429 only.


async def test_a_503_with_retry_after_waits_what_the_server_asked() -> None:
    with FakeOpenAI() as server:
        server.add_fault(Fault.status_code(503, headers={"retry-after": "2"}))
        provider = OpenAIProvider(api_key="test-key-503", base_url=server.base_url)
        with pytest.raises(ServerError) as info:
            await provider.generate(GenerationRequest("a fox"))
        await provider.aclose()
    assert info.value.retry_after == 2.0
    # the runner's decision, with jitter that would otherwise give 0.375-0.5 s
    assert RetryPolicy().delay_for(info.value, 1) == 2.0


def test_a_retry_after_above_the_cap_still_fails_at_once() -> None:
    err = ServerError("busy", status_code=503, retry_after=600.0)
    assert RetryPolicy().delay_for(err, 1) is None
