"""Whatever a server answers, the OpenAI / WebUI / ComfyUI parsers raise only typed errors.

Hypothesis feeds arbitrary JSON (and near-miss shapes of the real answers) to the
parsing step of each adapter; the only acceptable outcomes are images or a
ProviderError subclass (reliability.md §B8 row 7).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbbatch.errors import MalformedResponseError, ProviderError
from nbbatch.providers import A1111Provider, ComfyUIProvider, GenerationRequest, OpenAIProvider
from nbbatch.providers._comfyui import node_errors_message

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
b64ish = st.one_of(
    st.just(base64.b64encode(PNG).decode()),
    st.text(max_size=12),
    st.just("data:image/png;base64," + base64.b64encode(PNG).decode()),
)


def transport() -> httpx.MockTransport:
    # Any download an answer points at gets a tiny PNG (or a 404 for odd paths).
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith((".png", "/view")):
            return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
        return httpx.Response(404, json={"error": {"message": "no such file"}})

    return httpx.MockTransport(handler)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "data": st.lists(
                    st.one_of(
                        json_values,
                        st.fixed_dictionaries({"b64_json": b64ish}),
                        st.fixed_dictionaries(
                            {"url": st.sampled_from(["http://cdn.test/a.png", "ftp://x", ""])}
                        ),
                    ),
                    max_size=3,
                ),
                "usage": json_values,
                "output_format": json_values,
            }
        ),
    )
)
def test_openai_answers_parse_or_raise_typed_errors(body: Any) -> None:
    async def attempt() -> None:
        p = OpenAIProvider(
            api_key="sk-fuzz-0000", base_url="http://api.test/v1", transport=transport()
        )
        try:
            images = await p._read_images(body, GenerationRequest("x"))
            assert images and all(isinstance(im.data, bytes) for im in images)
        except ProviderError:
            pass
        finally:
            await p.aclose()

    run(attempt())


@FUZZ
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "images": st.lists(st.one_of(b64ish, json_values), max_size=3),
                "info": st.one_of(
                    json_values,
                    st.builds(
                        lambda seeds, first: (
                            f'{{"all_seeds": {seeds}, "index_of_first_image": {first}}}'
                        ),
                        st.lists(st.integers(-5, 5), max_size=3),
                        st.integers(-2, 4),
                    ),
                ),
            }
        ),
    )
)
def test_webui_answers_parse_or_raise_malformed(body: Any) -> None:
    p = A1111Provider(transport=transport())
    try:
        images = p._read(body, GenerationRequest("x"))
        assert images
    except MalformedResponseError:
        pass
    finally:
        run(p.aclose())


@FUZZ
@given(json_values)
def test_node_errors_message_never_raises(body: Any) -> None:
    assert isinstance(node_errors_message(body), str)


@FUZZ
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "status": st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {
                            "status_str": st.sampled_from(["success", "error"]),
                            "messages": st.lists(
                                st.one_of(
                                    json_values,
                                    st.tuples(st.just("execution_error"), json_values).map(list),
                                ),
                                max_size=2,
                            ),
                        }
                    ),
                ),
                "outputs": st.one_of(
                    json_values,
                    st.dictionaries(
                        st.sampled_from(["7", "9"]),
                        st.fixed_dictionaries({"images": st.lists(json_values, max_size=2)}),
                        max_size=2,
                    ),
                ),
            }
        ),
    )
)
def test_comfyui_history_entries_collect_or_raise_typed_errors(entry: Any) -> None:
    async def attempt() -> None:
        p = ComfyUIProvider(base_url="http://comfy.test", transport=transport())
        try:
            # /history entries reach _collect only as objects (_history checks that)
            if isinstance(entry, dict):
                images = await p._collect(entry, "pid", 1, GenerationRequest("x"))
                assert images
        except ProviderError:
            pass
        finally:
            await p.aclose()

    run(attempt())
