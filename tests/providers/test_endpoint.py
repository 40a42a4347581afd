"""Endpoints: one gate per server and key, fed by the answers' x-ratelimit headers."""

from __future__ import annotations

import pytest

from nbbatch.errors import RateLimitedError
from nbbatch.providers import GenerationRequest, OpenAIProvider
from nbbatch.providers._endpoint import endpoint_key, gate_of, generate_paced
from nbbatch.testing import FakeOpenAI, Fault


async def test_two_keys_on_one_server_are_two_endpoints_and_the_key_never_shows() -> None:
    secret = "test-key-endpoint-SENTINEL-77"
    one = OpenAIProvider(api_key=secret, base_url="http://127.0.0.1:9/v1")
    same = OpenAIProvider(api_key=secret, base_url="http://127.0.0.1:9/v1")
    other = OpenAIProvider(api_key="sk-another", base_url="http://127.0.0.1:9/v1")
    try:
        key = endpoint_key(one)
        assert key is not None and key == endpoint_key(same) != endpoint_key(other)
        assert secret not in key and key.startswith("openai|http://127.0.0.1:9/v1|")
        assert gate_of(one) is gate_of(same)
    finally:
        for p in (one, same, other):
            await p.aclose()


async def test_a_429_with_ratelimit_headers_teaches_the_endpoint_its_limit() -> None:
    with FakeOpenAI(render="fast") as server:
        provider = OpenAIProvider(api_key="k", base_url=server.base_url)
        try:
            server.add_fault(
                Fault.status_code(
                    429,
                    headers={
                        "retry-after": "0.01",
                        "x-ratelimit-limit-requests": "42",
                        "x-ratelimit-remaining-requests": "0",
                        "x-ratelimit-reset-requests": "20ms",
                    },
                ),
                path="/v1/images/generations",
            )
            request = GenerationRequest(prompt="a fox")
            with pytest.raises(RateLimitedError):
                await generate_paced(provider, request)
            gate = gate_of(provider)
            assert gate is not None and gate.learned_rpm == 42
            assert gate.hold_until > 0, "nothing remains until the reset: the endpoint waits"
            images = await generate_paced(provider, request)  # after the 20 ms reset
            assert images and gate.sent == 2 and gate.limited == 1
        finally:
            await provider.aclose()
