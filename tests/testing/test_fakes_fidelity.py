"""The fakes answer what the real services answer to the real clients' requests.

Each test sends what an official client sends (issue 13, item 10); a fake that
rejects it would hide adapter bugs. ``test_official_clients.py`` drives the fakes with
the clients themselves where they are installed.
"""

from __future__ import annotations

import base64
import inspect
import json
import re

import httpx
import pytest

import nbbatch
from nbbatch.testing import FakeChat, FakeFal, FakeGemini, FakeOpenAI
from nbbatch.testing._chat import conform, strict_schema_errors
from tests.support import png_bytes

KEY = "test-key-fidelity-0001"


def _png_with_urlsafe_alphabet() -> bytes:
    # any PNG will do as long as its base64 uses '+' or '/' (so the URL-safe form differs)
    for shade in range(256):
        data = png_bytes((16, 16), (shade, 40, 200))
        text = base64.b64encode(data).decode()
        if "+" in text or "/" in text:
            return data
    raise AssertionError("no PNG with '+' or '/' in its base64")  # pragma: no cover


@pytest.mark.parametrize("flag", ["true", "false", "1", None])
def test_fal_status_always_has_logs(flag: str | None) -> None:
    # counted in polls, not seconds: the first poll is IN_PROGRESS however slow the machine
    with FakeFal(run_polls=100) as server:
        headers = {"Authorization": f"Key {KEY}"}
        with httpx.Client(base_url=server.url, headers=headers) as client:
            submitted = client.post("/fal-ai/flux/schnell", json={"prompt": "a fox"}).json()
            params = {} if flag is None else {"logs": flag}
            status = client.get(submitted["status_url"], params=params).json()
    assert status["status"] == "IN_PROGRESS"
    assert "logs" in status
    assert isinstance(status["logs"], list) == (flag in ("true", "1"))


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_gemini_serves_both_api_versions_and_url_safe_base64(version: str) -> None:
    image = _png_with_urlsafe_alphabet()
    urlsafe = base64.urlsafe_b64encode(image).decode().rstrip("=")
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "make it blue"},
                    {"inline_data": {"mime_type": "image/png", "data": urlsafe}},
                ],
            }
        ],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]},
    }
    with FakeGemini() as server:
        answer = httpx.post(
            f"{server.url}/{version}/models/gemini-2.5-flash-image:generateContent",
            json=body,
            headers={"x-goog-api-key": KEY},
        )
        model = httpx.get(
            f"{server.url}/{version}/models/gemini-2.5-flash-image",
            headers={"x-goog-api-key": KEY},
        )
    assert answer.status_code == 200, answer.text
    assert model.status_code == 200


def test_openai_b64_json_wins_over_url_mode() -> None:
    with FakeOpenAI(response="url") as server:
        body = {"model": "dall-e-3", "prompt": "a fox", "response_format": "b64_json"}
        answer = httpx.post(f"{server.base_url}/images/generations", json=body).json()
        url_answer = httpx.post(
            f"{server.base_url}/images/generations", json={**body, "response_format": "url"}
        ).json()
    assert "b64_json" in answer["data"][0] and "url" not in answer["data"][0]
    assert "url" in url_answer["data"][0]


def _chat(server: FakeChat, schema: dict[str, object], *, strict: bool = True) -> httpx.Response:
    body = {
        "model": "fake-planner-1",
        "messages": [{"role": "user", "content": "<master_prompt>a fox; an owl</master_prompt>"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "strict": strict, "schema": schema},
        },
    }
    return httpx.post(f"{server.base_url}/chat/completions", json=body)


MOOD_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tasks", "mood"],
    "properties": {
        "mood": {"type": ["string", "null"]},
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["prompt", "weight"],
                "properties": {"prompt": {"type": "string"}, "weight": {"type": "integer"}},
            },
        },
    },
}


def test_chat_replies_in_the_shape_of_the_schema_it_was_given() -> None:
    with FakeChat() as server:
        reply = _chat(server, MOOD_SCHEMA).json()
    content = json.loads(reply["choices"][0]["message"]["content"])
    assert content == {
        "tasks": [{"prompt": "a fox", "weight": 0}, {"prompt": "an owl", "weight": 0}],
        "mood": None,
    }
    assert conform(content, MOOD_SCHEMA) == content


def test_chat_refuses_a_strict_schema_that_is_not_closed() -> None:
    loose = {"type": "object", "properties": {"tasks": {"type": "array"}}}
    with FakeChat() as server:
        refused = _chat(server, loose)
        allowed = _chat(server, loose, strict=False)
    assert refused.status_code == 400
    assert "additionalProperties" in refused.json()["error"]["message"]
    assert allowed.status_code == 200
    assert strict_schema_errors(MOOD_SCHEMA) == []


# -- the fakes' docs (defect 12 of the review: they named fault builders that did not exist)


def test_the_testing_docs_only_name_fault_builders_that_exist() -> None:
    import nbbatch.testing._server as server_module

    docs = "\n".join(
        inspect.getdoc(obj) or ""
        for obj in (nbbatch.testing, server_module, *vars(nbbatch.testing).values())
        if inspect.ismodule(obj) or inspect.isclass(obj)
    )
    named = set(re.findall(r"Fault\.(\w+)\(", docs))
    assert named, "the docs show how to build faults"
    assert {n for n in named if not hasattr(nbbatch.testing.Fault, n)} == set()
