"""The fakes, driven by each service's official Python client (issue 13, item 10).

A fake that only nbbatch's adapters talk to can drift with them; these tests hold each
fake to the client its service publishes. Every client talks to 127.0.0.1 only. The
clients come from the ``official-clients`` extra (``scripts/test`` installs it); a
test whose client is missing is skipped, naming it.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nbbatch.testing import (
    BatchClock,
    FakeA1111,
    FakeChat,
    FakeFal,
    FakeGemini,
    FakeHuggingFace,
    FakeOpenAI,
    FakeReplicate,
)
from tests.support import png_bytes

KEY = "test-key-official-client-0001"


def _is_image(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    return True


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # a developer's proxy settings must not route loopback traffic elsewhere
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# ---------------------------------------------------------------------- openai
@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY, response="url") as server:
        yield server


def test_openai_images_in_both_response_formats(openai_server: FakeOpenAI, no_proxy: None) -> None:
    openai = pytest.importorskip("openai")
    with openai.OpenAI(api_key=KEY, base_url=openai_server.base_url, max_retries=0) as client:
        b64 = client.images.generate(model="dall-e-3", prompt="a fox", response_format="b64_json")
        url = client.images.generate(model="dall-e-3", prompt="a fox", response_format="url")
        gpt = client.images.generate(model="gpt-image-1", prompt="a fox", size="1024x1024", n=2)
    assert b64.data and _is_image(base64.b64decode(b64.data[0].b64_json or ""))
    assert url.data and (url.data[0].url or "").startswith(openai_server.url)
    assert len(gpt.data or []) == 2 and gpt.usage is not None


def test_openai_image_edit_with_several_images(openai_server: FakeOpenAI, no_proxy: None) -> None:
    openai = pytest.importorskip("openai")
    images = [("a.png", png_bytes(), "image/png"), ("b.png", png_bytes(), "image/png")]
    with openai.OpenAI(api_key=KEY, base_url=openai_server.base_url, max_retries=0) as client:
        edited = client.images.edit(model="gpt-image-1", image=images, prompt="merge them")
    assert edited.data and _is_image(base64.b64decode(edited.data[0].b64_json or ""))
    assert openai_server.edits[-1]["image_fields"] == ["image[]", "image[]"]


def test_openai_errors_reach_the_client_typed(openai_server: FakeOpenAI, no_proxy: None) -> None:
    openai = pytest.importorskip("openai")
    url = openai_server.base_url
    with (
        openai.OpenAI(api_key="test-key-wrong", base_url=url, max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.images.generate(model="gpt-image-1", prompt="a fox")
    with (
        openai.OpenAI(api_key=KEY, base_url=url, max_retries=0) as good,
        pytest.raises(openai.BadRequestError, match=r"moderation_blocked|safety"),
    ):
        good.images.generate(model="gpt-image-1", prompt="something forbidden")


def test_openai_structured_outputs_against_the_chat_fake(no_proxy: None) -> None:
    openai = pytest.importorskip("openai")
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["tasks"],
        "properties": {
            "tasks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["prompt", "negative_prompt"],
                    "properties": {
                        "prompt": {"type": "string"},
                        "negative_prompt": {"type": ["string", "null"]},
                    },
                },
            }
        },
    }
    with (
        FakeChat() as server,
        openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0) as client,
    ):
        reply = client.chat.completions.create(
            model="fake-planner-1",
            messages=[{"role": "user", "content": "<master_prompt>a fox; an owl</master_prompt>"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "plan", "strict": True, "schema": schema},
            },
        )
    content = json.loads(reply.choices[0].message.content or "")
    assert content == {
        "tasks": [
            {"prompt": "a fox", "negative_prompt": None},
            {"prompt": "an owl", "negative_prompt": None},
        ]
    }


def test_openai_batch_api_files_and_batches(no_proxy: None) -> None:
    openai = pytest.importorskip("openai")
    clock = BatchClock()
    lines = [
        {
            "custom_id": f"t{i}",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"model": "gpt-image-1", "prompt": prompt, "size": "1024x1024"},
        }
        for i, prompt in enumerate(["a fox", "a forbidden fox", "an owl"])
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with (
        FakeOpenAI(api_key=KEY, batch_clock=clock, batch_timing=(1, 10, 1)) as server,
        openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0) as client,
    ):
        uploaded = client.files.create(file=("in.jsonl", jsonl), purpose="batch")
        job = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/images/generations",
            completion_window="24h",
            metadata={"nbbatch_batch": "b1"},
        )
        assert job.status == "validating" and job.metadata == {"nbbatch_batch": "b1"}
        clock.advance(6)
        running = client.batches.retrieve(job.id)
        assert running.status == "in_progress" and running.request_counts is not None
        assert running.request_counts.total == 3
        other = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/images/generations",
            completion_window="24h",
        )
        assert client.batches.cancel(other.id).status == "cancelling"
        assert [b.id for b in client.batches.list(limit=1)] == [other.id, job.id]
        clock.advance(10)
        done = client.batches.retrieve(job.id)
        assert done.status == "completed" and done.output_file_id and done.error_file_id
        assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
        output = client.files.content(done.output_file_id).read().decode().splitlines()
        errors = client.files.content(done.error_file_id).read().decode().splitlines()
    answers = {json.loads(x)["custom_id"]: json.loads(x)["response"] for x in output}
    assert sorted(answers) == ["t0", "t2"]
    image = answers["t0"]["body"]["data"][0]["b64_json"]
    assert _is_image(base64.b64decode(image)) and answers["t0"]["body"]["usage"]
    refused = json.loads(errors[0])
    assert refused["custom_id"] == "t1" and refused["response"]["status_code"] == 400


# ---------------------------------------------------------------------- replicate
def test_replicate_run_and_predictions(no_proxy: None) -> None:
    replicate = pytest.importorskip("replicate")
    with FakeReplicate(api_key=KEY, run_seconds=0.05) as server:
        client = replicate.Client(api_token=KEY, base_url=server.url)
        try:
            prediction = client.models.predictions.create(
                model="black-forest-labs/flux-schnell", input={"prompt": "a fox", "seed": 7}
            )
            prediction.wait()
            assert prediction.status == "succeeded", prediction.error
            output = (
                prediction.output if isinstance(prediction.output, list) else [prediction.output]
            )
            assert output and all(isinstance(u, str) for u in output)
            files = client.run(
                "black-forest-labs/flux-schnell", input={"prompt": "an owl"}, use_file_output=True
            )
            first = files[0] if isinstance(files, list) else files
            # the client wraps only https: and data: URLs in FileOutput; the fake's are
            # http://127.0.0.1, so they come back as strings
            data = first.read() if hasattr(first, "read") else httpx.get(str(first)).content
            assert _is_image(data)
        finally:
            # replicate.Client has no close(); its httpx client, made on first use, is
            # closed here so that its pooled socket is not left to the garbage collector
            # (and to a ResourceWarning in whichever later test that runs in)
            client._client.close()


# ---------------------------------------------------------------------- google-genai
@pytest.mark.parametrize("api_version", [None, "v1", "v1beta"])
def test_google_genai_generates_an_image(api_version: str | None, no_proxy: None) -> None:
    genai = pytest.importorskip("google.genai")
    from google.genai import types

    with FakeGemini(api_key=KEY) as server:
        options = types.HttpOptions(base_url=server.url, api_version=api_version)
        client = genai.Client(api_key=KEY, http_options=options)
        reference = types.Part.from_bytes(data=png_bytes((16, 16)), mime_type="image/png")
        answer = client.models.generate_content(
            model="gemini-2.5-flash-image",
            contents=[reference, "make it watercolour"],
            config=types.GenerateContentConfig(
                response_modalities=["TEXT", "IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="16:9"),
                seed=5,
            ),
        )
        info = client.models.get(model="gemini-2.5-flash-image")
    parts = answer.candidates[0].content.parts  # type: ignore[index, union-attr]
    images = [p.inline_data.data for p in parts or [] if p.inline_data and p.inline_data.data]
    assert images and _is_image(images[0])
    assert server.bodies[-1]["generationConfig"]["imageConfig"]["aspectRatio"] == "16:9"
    assert info.name == "models/gemini-2.5-flash-image"


def test_google_genai_batch_mode_with_a_file(tmp_path: Path, no_proxy: None) -> None:
    genai = pytest.importorskip("google.genai")
    from google.genai import types

    clock = BatchClock()
    lines = [
        {
            "key": key,
            "request": {
                "contents": [{"parts": [{"text": prompt}]}],
                "generation_config": {"response_modalities": ["TEXT", "IMAGE"]},
            },
        }
        for key, prompt in [("t0", "a fox"), ("t1", "a blocked fox"), ("t2", "an owl")]
    ]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with FakeGemini(api_key=KEY, batch_clock=clock, batch_timing=(1, 10, 1)) as server:
        options = types.HttpOptions(base_url=server.url)
        client = genai.Client(api_key=KEY, http_options=options)
        uploaded = client.files.upload(
            file=requests, config=types.UploadFileConfig(mime_type="jsonl")
        )
        assert uploaded.name and uploaded.name.startswith("files/")
        job = client.batches.create(
            model="gemini-2.5-flash-image",
            src=uploaded.name,
            config=types.CreateBatchJobConfig(display_name="nbbatch b1"),
        )
        assert job.name and job.state is not None and job.state.name == "JOB_STATE_PENDING"
        other = client.batches.create(model="gemini-2.5-flash-image", src=uploaded.name)
        assert other.name is not None
        client.batches.cancel(name=other.name)
        clock.advance(20)
        done = client.batches.get(name=job.name)
        assert done.state is not None and done.state.name == "JOB_STATE_SUCCEEDED"
        assert client.batches.get(name=other.name).state.name == "JOB_STATE_CANCELLED"  # type: ignore[union-attr]
        assert done.dest is not None and done.dest.file_name
        content = client.files.download(file=done.dest.file_name)
    answers = {json.loads(x)["key"]: json.loads(x) for x in content.decode().splitlines()}
    assert sorted(answers) == ["t0", "t1", "t2"]
    parts = answers["t0"]["response"]["candidates"][0]["content"]["parts"]
    assert _is_image(base64.b64decode(parts[-1]["inlineData"]["data"]))
    assert "promptFeedback" in answers["t1"]["response"]


# ---------------------------------------------------------------------- huggingface_hub
def test_huggingface_hub_text_to_image(no_proxy: None) -> None:
    hub = pytest.importorskip("huggingface_hub")
    with FakeHuggingFace(api_key=KEY) as server:
        client = hub.InferenceClient(
            base_url=f"{server.url}/models/black-forest-labs/FLUX.1-schnell", api_key=KEY
        )
        image = client.text_to_image("a fox", negative_prompt="blurry", seed=3)
    assert image.size[0] > 0


# ---------------------------------------------------------------------- fal-client
def test_fal_client_subscribe_with_and_without_logs(
    monkeypatch: pytest.MonkeyPatch, no_proxy: None
) -> None:
    fal_client = pytest.importorskip("fal_client")
    import fal_client.client as fal_module

    with FakeFal(api_key=KEY, run_seconds=0.05) as server:
        # fal_client builds https://queue.fal.run/... from a module constant; the fake
        # is plain HTTP on loopback
        monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", server.url + "/")
        client = fal_client.SyncClient(key=KEY)
        try:
            for with_logs in (True, False):
                result = client.subscribe(
                    "fal-ai/flux/schnell",
                    arguments={"prompt": "a fox"},
                    with_logs=with_logs,
                    client_timeout=30,
                )
                assert result["images"] and result["images"][0]["url"].startswith(server.url)
        finally:
            # SyncClient has no close(); its httpx client is a cached property, and left
            # open its pooled sockets surface as ResourceWarnings in whichever later test
            # the garbage collector happens to run
            http = client.__dict__.get("_client")
            if http is not None:
                http.close()


# ---------------------------------------------------------------------- webuiapi
@pytest.mark.parametrize("style", ["a1111", "forge"])
def test_webuiapi_txt2img_and_img2img(style: str, no_proxy: None) -> None:
    webuiapi = pytest.importorskip("webuiapi")
    with FakeA1111(style=style) as server:
        api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
        result = api.txt2img(prompt="a fox", negative_prompt="blurry", seed=11, steps=4)
        assert result.image is not None and result.info.get("seed") == 11
        init = Image.new("RGB", (32, 32), (10, 200, 10))
        again = api.img2img(images=[init], prompt="a green fox", denoising_strength=0.5)
        assert again.image is not None
        assert api.get_sd_models()
