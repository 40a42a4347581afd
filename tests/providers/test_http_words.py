"""What the HTTP layer says about redirects and unreadable JSON (issue 26, LOW).

A redirect (http -> https, the common case) failed as a bare "HTTP 301" without saying
where to; a body that was not JSON said "expected JSON, got 'application/json' (N
bytes)", which reads as a contradiction.
"""

from __future__ import annotations

import json
import zlib

import httpx
import pytest

from nbbatch.errors import BadRequestError, MalformedResponseError
from nbbatch.providers import GenerationRequest, OpenAIProvider
from nbbatch.providers._http import HttpClient

KEY = "test-key-redirect-0001"


def redirecting(location: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(301, headers={"location": location})

    return httpx.MockTransport(handler)


async def test_a_redirect_says_where_to_and_is_not_followed_with_the_key() -> None:
    seen: list[httpx.Request] = []
    target = "https://api.example.com/v1/images/generations?signature=s3cr3t-token"
    provider = OpenAIProvider(
        api_key=KEY, base_url="http://api.example.com/v1", transport=redirecting(target, seen)
    )
    try:
        with pytest.raises(BadRequestError) as info:
            await provider.generate(GenerationRequest("a fox"))
    finally:
        await provider.aclose()
    text = str(info.value)
    assert "HTTP 301" in text
    assert "redirects to https://api.example.com/v1/images/generations" in text
    assert "set the base URL" in text
    assert "s3cr3t-token" not in text and KEY not in text  # no query, no key
    assert not info.value.retryable
    # sent once, to the address asked for: the key never went to the redirect target
    assert [str(r.url.copy_with(query=None)) for r in seen] == [
        "http://api.example.com/v1/images/generations"
    ]


async def test_a_relative_redirect_and_one_without_a_location_are_explained() -> None:
    seen: list[httpx.Request] = []
    client = HttpClient(
        "svc",
        "http://svc.test",
        headers={"x-api-key": KEY},
        transport=redirecting("/v2/answer", seen),
    )
    try:
        with pytest.raises(BadRequestError, match=r"redirects to http://svc\.test/v2/answer"):
            await client.json("GET", "/v1/answer")
    finally:
        await client.aclose()

    def nowhere(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302)

    client = HttpClient(
        "svc", "http://svc.test", headers={"x-api-key": KEY}, transport=httpx.MockTransport(nowhere)
    )
    try:
        with pytest.raises(BadRequestError, match="without saying where to"):
            await client.json("GET", "/v1/answer")
    finally:
        await client.aclose()


async def test_a_body_that_is_not_json_says_so_in_words() -> None:
    body = b"<html>" + b"x" * 3000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    client = HttpClient("svc", "http://svc.test", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(MalformedResponseError) as info:
            await client.json("GET", "/answer")
    finally:
        await client.aclose()
    text = str(info.value)
    assert "could not be read as JSON" in text
    assert "2.9 KiB" in text  # a size in words, not "3006 bytes"
    assert "got 'application/json'" not in text


async def test_a_content_coding_nbbatch_did_not_ask_for_is_refused_in_words() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(
            200,
            stream=httpx.ByteStream(b"\x1b\x00\x00"),  # not read by the transport
            headers={"content-type": "application/json", "content-encoding": "br"},
        )

    client = HttpClient("svc", "http://svc.test", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(MalformedResponseError, match="content coding 'br'") as info:
            await client.json("GET", "/answer")
    finally:
        await client.aclose()
    assert "did not ask for" in str(info.value) and not info.value.retryable
    # only the codings nbbatch inflates step by step are asked for
    assert asked == ["gzip, deflate"]


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_corrupt_compressed_body_is_a_typed_error(coding: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            stream=httpx.ByteStream(b"\x1f\x8b\x08\x00" + b"\xff" * 64),
            headers={"content-type": "application/json", "content-encoding": coding},
        )

    client = HttpClient("svc", "http://svc.test", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(MalformedResponseError, match=f"the {coding} body is corrupt"):
            await client.json("GET", "/answer")
    finally:
        await client.aclose()


class Pieces(httpx.AsyncByteStream):
    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes = data, sizes

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        at = 0
        for size in [*self.sizes, len(self.data)]:
            if at < len(self.data):
                yield self.data[at : at + size]
                at += size


def compressed(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        import gzip

        return gzip.compress(data)
    wbits = zlib.MAX_WBITS if coding == "deflate" else -zlib.MAX_WBITS
    pack = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return pack.compress(data) + pack.flush()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
@pytest.mark.parametrize("sizes", [[1], [1, 1, 5], [3], [10_000]])
async def test_compressed_answers_in_any_pieces_read_whole(coding: str, sizes: list[int]) -> None:
    answer = {"data": [{"b64_json": "A" * 50_000, "n": i} for i in range(5)]}
    body = compressed(coding, json.dumps(answer).encode())
    header = "deflate" if coding == "raw-deflate" else coding

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            stream=Pieces(body, sizes),
            headers={"content-type": "application/json", "content-encoding": header},
        )

    client = HttpClient("svc", "http://svc.test", transport=httpx.MockTransport(handler))
    try:
        assert await client.json("GET", "/answer") == answer
    finally:
        await client.aclose()
