"""Fuzzing the boundaries: whatever comes in, the answer is a result or a typed error.

Every refusal must be an ``nbbatch.errors`` error (``NbbatchError``) with a readable
message: not empty, not a dump (bounded length), no raw control characters. The planner's
replies are fuzzed in the fault matrix (row 23), export names in row 22 and image bytes
in row 18; this file covers each provider's response bodies, uploads, prompt files,
folders with odd file names and settings files.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import nbbatch
from nbbatch import Workspace
from nbbatch.engine._settings import load_settings
from nbbatch.errors import ConfigError, NbbatchError, PromptSourceError
from nbbatch.providers import (
    A1111Provider,
    ComfyUIProvider,
    FalProvider,
    GeminiProvider,
    GenerationRequest,
    HuggingFaceProvider,
    OpenAIProvider,
    ReplicateProvider,
    StabilityProvider,
)

KEY = "test-key-fuzz-0001"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def readable(exc: BaseException) -> None:
    assert isinstance(exc, NbbatchError), f"untyped {type(exc).__name__}: {exc}"
    text = str(exc)
    assert text.strip(), "an empty message"
    assert len(text) < 3_000, f"a {len(text):,}-character message"
    assert not CONTROL.search(text), f"control characters in {text!r}"
    assert KEY not in text


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=16)
    | st.just(base64.b64encode(PNG).decode()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=120),
    st.just(PNG),
    json_values.map(lambda v: json.dumps(v).encode()),
)
answers = st.tuples(
    st.sampled_from([200, 200, 200, 201, 202, 404, 500]),
    st.sampled_from(["application/json", "image/png", "text/plain"]),
    bodies,
)

PROVIDERS: dict[str, Callable[[httpx.AsyncBaseTransport], Any]] = {
    "openai": lambda t: OpenAIProvider(api_key=KEY, base_url="http://fake.invalid/v1", transport=t),
    "a1111": lambda t: A1111Provider(
        base_url="http://fake.invalid", poll_interval=None, transport=t
    ),
    "comfyui": lambda t: ComfyUIProvider(
        base_url="http://fake.invalid", websocket=False, poll_interval=0.001, transport=t
    ),
    "stability": lambda t: StabilityProvider(
        api_key=KEY, base_url="http://fake.invalid", transport=t
    ),
    "replicate": lambda t: ReplicateProvider(
        api_key=KEY, base_url="http://fake.invalid", poll_interval=0.001, transport=t
    ),
    "gemini": lambda t: GeminiProvider(api_key=KEY, base_url="http://fake.invalid", transport=t),
    "huggingface": lambda t: HuggingFaceProvider(
        api_key=KEY, base_url="http://fake.invalid", transport=t
    ),
    "fal": lambda t: FalProvider(
        api_key=KEY, base_url="http://fake.invalid", poll_interval=0.001, transport=t
    ),
}


MAX_CALLS = 500  # answers a provider may ask for in one generate() before we stop it


class PolledForeverError(Exception):
    """Raised by the fake transport once a provider has asked ``MAX_CALLS`` times."""


@pytest.mark.parametrize("name", sorted(PROVIDERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(answers, min_size=1, max_size=4))
def test_any_response_body_gives_images_or_a_typed_error(
    name: str, script: list[tuple[int, str, bytes]]
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if calls >= MAX_CALLS:
            raise PolledForeverError(calls)
        status, ctype, body = script[min(calls, len(script) - 1)]
        calls += 1
        return httpx.Response(status, content=body, headers={"content-type": ctype})

    async def go() -> None:
        provider = PROVIDERS[name](httpx.MockTransport(handler))
        try:
            # A poller fed "still running" for ever is bounded by the runner's attempt
            # timeout in real use; here a count of answers stands in for it (the pollers
            # wait 1 ms between polls). The 30 s bound only catches a provider that hangs
            # without asking again (each example takes milliseconds), not a race.
            images = await asyncio.wait_for(provider.generate(GenerationRequest("a fox")), 30)
        except PolledForeverError:
            pass  # it kept asking: fine, the runner's attempt timeout ends this in real use
        except asyncio.TimeoutError:
            raise AssertionError(
                f"hung after {calls} answer(s) without asking the server again"
            ) from None
        except Exception as exc:
            readable(exc)
        else:
            assert all(isinstance(im.data, bytes) and im.data for im in images)
        finally:
            await provider.aclose()

    asyncio.run(go())


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    with Workspace(tmp_path_factory.mktemp("fuzz") / "ws") as ws:
        yield ws


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    data=st.binary(max_size=400) | st.just(PNG) | st.binary(max_size=64).map(lambda b: PNG[:40] + b)
)
def test_any_upload_is_kept_or_refused_with_a_typed_error(
    shared_ws: Workspace, data: bytes
) -> None:
    try:
        ref = shared_ws.add_reference(data, "upload.png")
    except Exception as exc:
        readable(exc)
    else:
        assert ref.path.exists() and ref.width > 0


lines = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from(list(',;"\t\n\r-{}[]#')),
    max_size=200,
)


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=lines | st.lists(json_values.map(json.dumps), max_size=5).map("\n".join))
def test_any_prompts_file_gives_tasks_and_reasons_or_a_typed_error(suffix: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"prompts{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            tasks = nbbatch.read_prompts(path)
        except PromptSourceError as exc:
            readable(exc)
        except Exception as exc:
            readable(exc)
            raise AssertionError(f"{type(exc).__name__} is not a PromptSourceError") from exc
        else:
            assert all(
                t.prompt.strip() and not CONTROL.search(t.prompt.replace("\t", "")) for t in tasks
            )
            assert all(s.reason.strip() for s in tasks.skipped)


names = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"),
    min_size=1,
    max_size=40,
).filter(lambda n: n not in (".", "..") and len(n.encode()) < 200)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(files=st.lists(st.tuples(names, st.sampled_from([".png", ".txt", ".jpg", ""])), max_size=5))
def test_a_folder_of_oddly_named_files_never_raises_for_one_file(
    shared_ws: Workspace, files: list[tuple[str, str]]
) -> None:
    ws = shared_ws
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for stem, ext in files:
            try:
                (folder / f"{stem}{ext}").write_bytes(PNG if ext != ".txt" else b"a caption")
            except OSError:
                continue  # a name this file system refuses
        tasks = nbbatch.tasks_from_folder(folder, "ink", workspace=ws)
        assert all(s.reason.strip() for s in tasks.skipped)


settings_shapes = st.one_of(
    st.text(max_size=80),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"providers": st.dictionaries(st.text(max_size=8), json_values, max_size=3)},
        optional={"default": json_values, "version": json_values},
    ).map(json.dumps),
    st.fixed_dictionaries(
        {
            "providers": st.dictionaries(
                st.text(min_size=1, max_size=8),
                st.fixed_dictionaries(
                    {"provider": st.sampled_from(["demo", "openai", "nope", ""])},
                    optional={
                        "base_url": json_values,
                        "options": json_values,
                        "concurrency": json_values,
                        "params": json_values,
                    },
                ),
                max_size=2,
            )
        }
    ).map(json.dumps),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=settings_shapes)
def test_any_settings_file_loads_or_is_refused_with_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            loaded = load_settings(path)
        except ConfigError as exc:
            readable(exc)
        except Exception as exc:
            raise AssertionError(f"untyped {type(exc).__name__}: {exc}") from exc
        else:
            for config in loaded:
                repr(config)
