"""The shared HTTP layer against a real loopback server: status mapping, faults, downloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nbbatch import Batch, Workspace
from nbbatch.errors import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
)
from nbbatch.providers import (
    OpenAIProvider,
)
from nbbatch.providers._base import GenerationRequest
from nbbatch.providers._http import HttpClient, Timeouts
from nbbatch.testing import FakeOpenAI, FakeServer, Fault


class EchoServer(FakeServer):
    name = "echo"

    def build_app(self) -> Any:
        async def echo(request: Request) -> Response:
            return JSONResponse({"body": (await request.body()).decode()})

        async def blob(request: Request) -> Response:
            return Response(b"\x89PNG" + b"x" * 2000, media_type="image/png")

        return Starlette(
            routes=[Route("/echo", echo, methods=["GET", "POST"]), Route("/blob", blob)]
        )


@pytest.fixture(scope="module")
def server() -> Any:
    with EchoServer() as s:
        yield s


@pytest.fixture
async def client(server: EchoServer) -> AsyncIterator[HttpClient]:
    server.clear_faults()
    # A generous read timeout: on a loaded machine a loopback answer can take over 0.3 s,
    # and only the hung-server test wants a short one (it makes its own client).
    c = HttpClient("echo", server.url, timeouts=Timeouts(read=30))
    yield c
    await c.aclose()


async def test_success_returns_json(client: HttpClient) -> None:
    assert await client.json("POST", "/echo", content=b"hello") == {"body": "hello"}


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (404, BadRequestError, False),
        (408, ProviderTimeoutError, True),
        (409, ServerError, True),
        (422, BadRequestError, False),
        (429, RateLimitedError, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
    ],
)
async def test_status_codes_map_to_the_error_tree(
    server: EchoServer, client: HttpClient, status: int, error: type, retryable: bool
) -> None:
    server.add_fault(Fault.status_code(status, {"error": {"message": "nope from server"}}))
    with pytest.raises(error) as info:
        await client.json("GET", "/echo")
    assert info.value.retryable is retryable
    assert info.value.status_code == status
    assert f"HTTP {status}" in str(info.value) and "nope from server" in str(info.value)


async def test_rate_limit_carries_the_servers_wait(server: EchoServer, client: HttpClient) -> None:
    server.add_fault(Fault.status_code(429, headers={"retry-after-ms": "1250"}))
    with pytest.raises(RateLimitedError) as info:
        await client.json("GET", "/echo")
    assert info.value.retry_after == 1.25


async def test_should_retry_header_overrides(server: EchoServer, client: HttpClient) -> None:
    server.add_fault(Fault.status_code(500, headers={"x-should-retry": "false"}))
    with pytest.raises(ServerError) as info:
        await client.json("GET", "/echo")
    assert not info.value.retryable


async def test_malformed_json_and_plain_text_errors(server: EchoServer, client: HttpClient) -> None:
    server.add_fault(Fault.malformed())
    with pytest.raises(MalformedResponseError, match="expected JSON"):
        await client.json("GET", "/echo")
    server.add_fault(Fault.status_code(502, "Bad gateway from the proxy"))
    with pytest.raises(ServerError, match="Bad gateway from the proxy"):
        await client.json("GET", "/echo")


async def test_hung_server_times_out_within_the_read_timeout(server: EchoServer) -> None:
    # A hang that runs its 30 s ends in a 504 (a ServerError): a timeout error means the
    # 0.3 s read timeout fired first, without timing it against the wall clock.
    server.clear_faults()
    server.add_fault(Fault.hang(30))
    client = HttpClient("echo", server.url, timeouts=Timeouts(read=0.3))
    try:
        with pytest.raises(ProviderTimeoutError, match="timed out"):
            await client.json("GET", "/echo")
    finally:
        await client.aclose()


async def test_truncated_download_is_retryable_and_returns_nothing(
    server: EchoServer, client: HttpClient
) -> None:
    server.add_fault(Fault.truncate(), path="/blob")
    with pytest.raises(ProviderConnectionError) as info:
        await client.download("/blob", max_bytes=10**6)
    assert info.value.retryable
    body, ctype = await client.download("/blob", max_bytes=10**6)
    assert len(body) == 2004 and ctype == "image/png"


async def test_download_over_the_cap_is_refused(client: HttpClient) -> None:
    with pytest.raises(MalformedResponseError, match="limit is 100"):
        await client.download("/blob", max_bytes=100)


async def test_connection_refused_says_what_to_check() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = HttpClient("echo", f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderConnectionError, match="check the base URL") as info:
        await c.json("GET", "/echo")
    assert info.value.retryable
    await c.aclose()


async def test_requests_are_recorded(server: EchoServer, client: HttpClient) -> None:
    before = len(server.calls("/echo", "POST"))
    await client.json("POST", "/echo", content=b"x", headers={"x-test": "1"})
    calls = server.calls("/echo", "POST")
    assert len(calls) == before + 1 and calls[-1].headers["x-test"] == "1"


async def test_a_read_response_is_freed_with_its_body_without_waiting_for_the_collector(
    client: HttpClient,
) -> None:
    import gc
    import weakref

    gc.disable()  # only reference counting may free it
    try:
        response = await client.request("POST", "/echo", content=b"x" * 100_000)
        assert response.json()["body"] == "x" * 100_000  # still readable as before
        gone = weakref.ref(response)
        del response
        assert gone() is None, "the response (and its body) waited for a collection"
    finally:
        gc.enable()


# -- one provider on several event loops ------------------------------------------------
# Defect 2 of the provider review: a provider object used on a second event loop
# (a second asyncio.run, a second run_sync) failed on the first loop's client.


def test_one_provider_instance_works_on_a_second_event_loop() -> None:
    with FakeOpenAI() as server:
        provider = OpenAIProvider(api_key="test-key-loops", base_url=server.base_url)
        request = GenerationRequest("a fox on two loops")
        # each asyncio.run is a new loop that is closed at the end, as in run_sync
        first = asyncio.run(provider.generate(request))
        second = asyncio.run(provider.generate(request))
        assert first[0].data and second[0].data
        asyncio.run(provider.aclose())


def test_two_run_sync_calls_share_one_provider(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        provider = OpenAIProvider(api_key="test-key-loops", base_url=server.base_url)
        for i in range(2):
            with Workspace(tmp_path / f"ws{i}") as ws:
                batch = Batch.create([f"fox {i}"], workspace=ws)
                batch.run_sync(provider, retry=0)
                assert [t.status.value for t in batch.tasks] == ["succeeded"], batch.tasks[0].error
