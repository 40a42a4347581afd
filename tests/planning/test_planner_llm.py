"""The LLM planner against a loopback OpenAI-compatible chat server, over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import nbbatch
from nbbatch import LLMConfig, RetryPolicy, Task, Workspace
from nbbatch.errors import (
    AuthenticationError,
    BadRequestError,
    ContentRefusedError,
    PlannerEmptyError,
    PlannerError,
    PlannerNoJSONError,
    PlannerShapeError,
    PlannerTooManyTasksError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
)
from nbbatch.testing import FakeChat, Fault

SENTINEL = "test-key-SENTINEL-planner-9f8e7d6c"
FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.002)


def llm(server: FakeChat, **extra: Any) -> dict[str, Any]:
    return {"base_url": server.base_url, "api_key": SENTINEL, "model": "m", "retry": FAST, **extra}


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    with FakeChat("openai", api_key=SENTINEL) as server:
        yield server


def _bodies(server: FakeChat) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in server.calls("*/chat/completions")]


# ------------------------------------------------------------------ the good paths


def test_openai_like_server_gets_strict_json_schema(chat: FakeChat) -> None:
    plan = nbbatch.plan("a fox in snow; an owl at night", llm=llm(chat), style="ink wash")
    assert [t.prompt for t in plan.tasks] == ["a fox in snow", "an owl at night"]
    assert all(isinstance(t, Task) for t in plan.tasks)
    assert plan.mode == "json_schema" and plan.warnings == []
    assert plan.usage["total_tokens"] > 0 and plan.model == "fake-planner-1"
    (body,) = _bodies(chat)
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    item = schema["properties"]["tasks"]["items"]
    assert item["additionalProperties"] is False
    assert sorted(item["required"]) == sorted(item["properties"])  # strict: all required
    user = body["messages"][1]["content"]
    assert "ink wash" in user and "<master_prompt>" in user


def test_server_without_json_schema_falls_back_to_json_object() -> None:
    with FakeChat("no_json_schema") as server:
        plan = nbbatch.plan("a; b; c", llm=llm(server))
    assert plan.mode == "json_object"
    assert [t.prompt for t in plan.tasks] == ["a", "b", "c"]
    assert server.response_formats() == ["json_schema", "json_object"]
    assert "fell back to json_object" in plan.warnings[0]


def test_server_without_response_format_falls_back_to_text_extraction() -> None:
    with FakeChat("text_only") as server:
        plan = nbbatch.plan("a; b", llm=llm(server))
    assert plan.mode == "text"
    assert server.response_formats() == ["json_schema", "json_object", None]
    assert [t.prompt for t in plan.tasks] == ["a", "b"]
    assert len(plan.warnings) == 2


def test_chatty_model_json_in_prose_and_fence_is_extracted() -> None:
    with FakeChat("chatty") as server:
        plan = nbbatch.plan("a red car; a blue car", llm=llm(server))
    assert plan.mode == "json_schema"
    assert [t.prompt for t in plan.tasks] == ["a red car", "a blue car"]
    assert plan.reply.startswith("Sure!")


def test_forced_mode_skips_the_earlier_ones() -> None:
    with FakeChat("openai") as server:
        plan = nbbatch.plan("a; b", llm=llm(server, mode="text"))
    assert plan.mode == "text" and server.response_formats() == [None]


def test_count_is_requested_and_a_mismatch_is_a_warning() -> None:
    with FakeChat("openai") as server:
        plan = nbbatch.plan("a lighthouse", llm=llm(server), count=4)
        assert [t.prompt for t in plan.tasks] == [
            f"a lighthouse, variation {i}" for i in range(1, 5)
        ]
        assert plan.warnings == []
    reply = json.dumps({"tasks": [{"prompt": "one"}]})
    with FakeChat("openai", reply=reply) as server:
        plan = nbbatch.plan("a lighthouse", llm=llm(server), count=3)
    assert plan.warnings == ["asked for 3 tasks, the model planned 1"]


def test_model_params_override_defaults_and_unknown_ones_are_noted() -> None:
    reply = json.dumps(
        {
            "tasks": [
                {
                    "prompt": "a fox",
                    "negative_prompt": "blur",
                    "image_references": None,
                    "params": {"size": "512x512", "seed": 7, "aspect": "16:9", "steps": None},
                }
            ]
        }
    )
    with FakeChat("openai", reply=reply) as server:
        plan = nbbatch.plan("x", llm=llm(server), params={"steps": 30, "size": "1024x1024"})
    (task,) = plan.tasks
    assert task.params == nbbatch.Params(size="512x512", seed=7, steps=30, negative_prompt="blur")
    assert plan.warnings == ["task 1: parameter 'aspect' ignored"]


# ------------------------------------------------------------------ references


def _png(color: str, size: tuple[int, int] = (1200, 800)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def refs(tmp_path: Path) -> Iterator[list[nbbatch.Reference]]:
    with Workspace(tmp_path / "ws") as ws:
        yield [
            ws.add_reference(_png("red"), "Cat.PNG"),
            ws.add_reference(_png("blue"), "dog.jpg.png"),
            ws.add_reference(_png("green"), "bird.webp"),
        ]


def test_references_map_by_name_stem_and_one_based_number(refs: list) -> None:
    tokens = ["cat", "CAT.png", 2, "#3", "image 1", "dog.jpg", "3", "nope.png", 0, 9]
    reply = json.dumps(
        {"tasks": [{"prompt": f"t{i}", "image_references": [tok]} for i, tok in enumerate(tokens)]}
    )
    with FakeChat("openai", reply=reply) as server:
        plan = nbbatch.plan("use them", llm=llm(server), references=refs)
    names = [[r.name for r in t.references] for t in plan.tasks]
    assert names == [
        ["Cat.PNG"],
        ["Cat.PNG"],
        ["dog.jpg.png"],
        ["bird.webp"],
        ["Cat.PNG"],
        ["dog.jpg.png"],
        ["bird.webp"],
        [],
        [],
        [],
    ]
    assert plan.unknown_references == [(8, "nope.png"), (9, "0"), (10, "9")]
    assert sum("unknown image reference" in w for w in plan.warnings) == 3
    body = _bodies(server)[0]
    assert "1. Cat.PNG (1200x800 PNG)" in body["messages"][1]["content"]


def test_strict_references_refuse_the_whole_plan(refs: list) -> None:
    reply = json.dumps({"tasks": [{"prompt": "a", "image_references": ["ghost"]}]})
    with (
        FakeChat("openai", reply=reply) as server,
        pytest.raises(PlannerShapeError, match="ghost"),
    ):
        nbbatch.plan("x", llm=llm(server), references=refs, strict_references=True)


def test_fake_assigns_listed_references_in_turn(refs: list) -> None:
    with FakeChat("openai") as server:
        plan = nbbatch.plan("a; b; c; d", llm=llm(server), references=refs)
    assert [t.references[0].name for t in plan.tasks] == [
        "Cat.PNG",
        "dog.jpg.png",
        "bird.webp",
        "Cat.PNG",
    ]


def test_vision_sends_downscaled_jpeg_data_urls(refs: list) -> None:
    with FakeChat("openai") as server:
        nbbatch.plan("describe", llm=llm(server), references=refs[:2], vision=True)
    content = _bodies(server)[0]["messages"][1]["content"]
    assert content[0]["type"] == "text"
    urls = [p["image_url"]["url"] for p in content[1:]]
    assert len(urls) == 2
    for url in urls:
        assert url.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
            assert img.format == "JPEG" and max(img.size) == 512


def test_text_only_model_gets_the_names_when_images_are_refused(refs: list) -> None:
    with FakeChat("openai", vision=False) as server:
        plan = nbbatch.plan("a; b", llm=llm(server), references=refs[:2], vision=True)
        first, second = _bodies(server)
    assert isinstance(first["messages"][1]["content"], list)
    assert isinstance(second["messages"][1]["content"], str)
    assert plan.mode == "json_schema"
    assert [t.references[0].name for t in plan.tasks] == ["Cat.PNG", "dog.jpg.png"]
    assert "does not take images" in plan.warnings[0]


# ------------------------------------------------------------------ broken servers


@pytest.mark.parametrize(
    ("behaviour", "error", "message"),
    [
        ("invalid_json", PlannerNoJSONError, "no JSON"),
        ("length", PlannerNoJSONError, "cut off"),
        ("wrong_shape", PlannerShapeError, '"tasks"'),
        ("empty", PlannerEmptyError, "zero tasks"),
        ("too_many", PlannerTooManyTasksError, "300 tasks; the limit is 50"),
        ("refusal", ContentRefusedError, "refused"),
        ("content_filter", ContentRefusedError, "content filter"),
    ],
)
def test_broken_replies_raise_typed_errors(behaviour: str, error: type, message: str) -> None:
    with FakeChat(behaviour) as server, pytest.raises(error, match=message):
        nbbatch.plan("a; b", llm=llm(server))
    assert len(server.calls("*/chat/completions")) == 1  # not retried, no fallback


def test_too_many_respects_a_raised_limit() -> None:
    with FakeChat("too_many") as server:
        plan = nbbatch.plan("x", llm=llm(server), max_tasks=300)
    assert len(plan.tasks) == 300
    with FakeChat("too_many") as server, pytest.raises(PlannerTooManyTasksError) as info:
        nbbatch.plan("x", llm=llm(server), max_tasks=299)
    assert (info.value.count, info.value.limit) == (300, 299)


def test_one_invalid_task_means_no_tasks_at_all() -> None:
    reply = json.dumps(
        {"tasks": [{"prompt": "fine"}, {"prompt": "   "}, {"prompt": "x", "params": {"n": 99}}]}
    )
    with FakeChat("openai", reply=reply) as server, pytest.raises(PlannerShapeError) as info:
        nbbatch.plan("x", llm=llm(server))
    assert [p.split(":")[0] for p in info.value.problems] == ["task 2", "task 3"]


def test_wrong_key_is_an_auth_error_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeChat("openai", api_key="sk-the-right-one") as server:
        with pytest.raises(AuthenticationError) as info:
            nbbatch.plan("a", llm=llm(server))
        assert len(server.calls("*/chat/completions")) == 1  # 401 is never retried
        sent = server.calls("*/chat/completions")[0].headers["authorization"]
    assert sent == f"Bearer {SENTINEL}"  # it was sent, on the wire only
    assert SENTINEL not in str(info.value) and SENTINEL not in repr(info.value)
    assert SENTINEL not in caplog.text
    config = LLMConfig(api_key=SENTINEL, base_url="http://127.0.0.1:9/v1")
    assert SENTINEL not in repr(config) and SENTINEL not in str(config)


def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    with FakeChat("openai", api_key=SENTINEL) as server:
        plan = nbbatch.plan("a", llm={"base_url": server.base_url, "model": "m"})
    assert len(plan.tasks) == 1


def test_429_is_retried_then_succeeds() -> None:
    with FakeChat("openai") as server:
        server.add_fault(Fault.status_code(429, headers={"retry-after": "0.01"}))
        plan = nbbatch.plan("a; b", llm=llm(server))
        assert len(server.calls("*/chat/completions")) == 2
    assert len(plan.tasks) == 2


def test_429_that_persists_is_unavailable_with_retry_after() -> None:
    with FakeChat("openai") as server:
        server.add_fault(Fault.status_code(429, headers={"retry-after": "0.01"}, times=5))
        with pytest.raises(RateLimitedError, match="rate limiting") as info:
            nbbatch.plan("a", llm=llm(server))
        assert len(server.calls("*/chat/completions")) == 3  # 1 + max_retries
    assert info.value.retry_after == pytest.approx(0.01)


def test_server_errors_are_retried_and_then_reported() -> None:
    with FakeChat("openai") as server:
        server.add_fault(Fault.status_code(503))
        assert len(nbbatch.plan("a", llm=llm(server)).tasks) == 1
        server.add_fault(Fault.status_code(500, times=3))
        with pytest.raises(ServerError, match="HTTP 500"):
            nbbatch.plan("a", llm=llm(server))
        assert len(server.calls("*/chat/completions")) == 2 + 3


def test_unreachable_server_is_unavailable_not_a_crash() -> None:
    with FakeChat("openai") as server:
        base = server.base_url
    with pytest.raises(ProviderConnectionError, match="could not connect"):
        nbbatch.plan("a", llm={"base_url": base, "retry": FAST})


def test_hung_server_times_out_within_the_budget() -> None:
    with FakeChat("openai") as server:
        # a hang that ran out would end in a 504 (a server error, not a timeout): the
        # timeout error itself shows the 0.2 s budget ended the wait
        server.add_fault(Fault.hang(3.0))
        with pytest.raises(ProviderTimeoutError):
            nbbatch.plan("a", llm=llm(server, timeout=0.2))
        assert len(server.calls("*/chat/completions")) == 1  # a timeout is not retried


def test_wrong_base_url_says_so() -> None:
    with FakeChat("openai") as server, pytest.raises(BadRequestError, match="base_url"):
        nbbatch.plan("a", llm=llm(server, base_url=server.url + "/nope"))


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(nbbatch.errors.ConfigError, match="unknown LLM setting"):
        LLMConfig.coerce({"modle": "x"})
    with pytest.raises(nbbatch.errors.ConfigError, match="count"):
        nbbatch.plan("a", llm={"base_url": "http://127.0.0.1:9/v1"}, count=0)
    with pytest.raises(nbbatch.errors.InvalidPromptError):
        nbbatch.plan("   ", llm={"base_url": "http://127.0.0.1:9/v1"})


# ------------------------------------------------------------------ enhance


def test_enhance_rewrites_one_prompt_via_the_same_endpoint() -> None:
    with FakeChat("openai", reply='"a red fox, soft morning light, 35mm"') as server:
        assert nbbatch.enhance("a fox", llm=llm(server)) == "a red fox, soft morning light, 35mm"
        body = _bodies(server)[0]
    assert "response_format" not in body
    assert body["messages"][1]["content"] == "a fox"
    with FakeChat("refusal") as server, pytest.raises(ContentRefusedError):
        nbbatch.enhance("a fox", llm=llm(server))


# ------------------------------------------------------------------ notebook use


async def test_plan_works_inside_a_running_loop_and_plan_async_awaits() -> None:
    with FakeChat("openai") as server:
        # a notebook cell: a loop is running, yet the blocking call still works
        blocking = nbbatch.plan("a; b", llm=llm(server))
        awaited = await nbbatch.plan_async("c; d", llm=llm(server))
    assert [t.prompt for t in blocking.tasks] == ["a", "b"]
    assert [t.prompt for t in awaited.tasks] == ["c", "d"]


def test_a_planned_list_can_be_journaled_and_run(tmp_path: Path) -> None:
    with FakeChat("openai") as server:
        plan = nbbatch.plan("a red fox; a lighthouse; an owl", llm=llm(server))
    with Workspace(tmp_path / "ws") as ws:
        batch = nbbatch.Batch.create(plan.tasks, workspace=ws).run_sync("demo")
        assert batch.counts == {"succeeded": 3}
        assert len(nbbatch.Batch.load(batch.id, ws).tasks) == 3
    expanded = nbbatch.expand("a {red|blue} car")
    with Workspace(tmp_path / "ws2") as ws:
        batch = nbbatch.Batch.create(expanded, workspace=ws).run_sync("demo")
        assert [t.prompt for t in batch.succeeded] == ["a red car", "a blue car"]


# ------------------------------------------------------------------ tolerant JSON


def test_extract_json_finds_the_tasks_object_among_others() -> None:
    text = 'Thinking {"note": 1} and [1, 2] then ```json\n{"tasks": [{"prompt": "a"}]}\n```'
    assert nbbatch.planning.extract_json(text) == {"tasks": [{"prompt": "a"}]}
    assert nbbatch.planning.extract_json('prefix {"tasks": []} suffix') == {"tasks": []}
    assert nbbatch.planning.extract_json('  {"a": 1}  ') == {"a": 1}
    with pytest.raises(PlannerNoJSONError):
        nbbatch.planning.extract_json("no json here at all")


def count_decoded_chars(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Characters the JSON decoder reads, one entry per decode attempt.

    The work ``extract_json`` does, counted instead of timed; the time itself is
    benchmarks/bench_planning.py's ``extract_hostile_2mb_ms``.
    """
    read: list[int] = []
    real = json.JSONDecoder.raw_decode

    def raw_decode(self: json.JSONDecoder, s: str, idx: int = 0) -> tuple[Any, int]:
        try:
            value, end = real(self, s, idx)
        except json.JSONDecodeError as exc:
            read.append(max(exc.pos - idx, 1))
            raise
        except (ValueError, RecursionError):
            read.append(len(s) - idx)
            raise
        read.append(end - idx)
        return value, end

    monkeypatch.setattr(json.JSONDecoder, "raw_decode", raw_decode)
    return read


@pytest.mark.parametrize(
    "hostile",
    [
        # 199 lists that open and never close, between prose (just under the 2 MB cap)
        pytest.param(("prose {x} [" + "1," * 4999) * 199, id="unclosed-lists"),
        # one unclosed 2 MB list opened 150 times: decoding from each "[" in turn
        # would read the whole tail again, ~150 x 2 MB
        pytest.param("[" * 150 + "1," * 990_000, id="nested-unclosed-list"),
    ],
)
def test_extract_json_gives_up_on_hostile_input_after_linear_work(
    hostile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(hostile) <= nbbatch.planning._llm.MAX_REPLY_CHARS  # really scanned
    read = count_decoded_chars(monkeypatch)
    with pytest.raises(PlannerNoJSONError) as err:
        nbbatch.planning.extract_json(hostile)
    assert "limit" not in str(err.value)
    assert read  # the decoder was really run ...
    assert sum(read) <= 6 * len(hostile)  # ... over a few times the text, not 100s of MB


def test_extract_json_refuses_a_reply_over_the_size_limit() -> None:
    with pytest.raises(PlannerNoJSONError, match="limit"):
        nbbatch.planning.extract_json("x" * 2_000_001)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_extract_json_on_any_text_only_raises_its_typed_error(text: str) -> None:
    try:
        value = nbbatch.planning.extract_json(text)
    except PlannerNoJSONError:
        return
    assert isinstance(value, (dict, list))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), _json_values, st.text(max_size=40), st.booleans())
def test_extract_json_recovers_an_embedded_tasks_object(
    before: str, extra: Any, after: str, fenced: bool
) -> None:
    payload = {"tasks": [{"prompt": "p", "x": extra}]}
    dumped = json.dumps(payload)
    text = f"{before}\n```json\n{dumped}\n```\n{after}" if fenced else f"{before} {dumped} {after}"
    assert nbbatch.planning.extract_json(text) == payload


@settings(max_examples=200, deadline=None)
@given(st.one_of(_json_values, st.text(max_size=50)))
def test_any_parsed_reply_becomes_tasks_or_a_typed_error(value: Any) -> None:
    """No reply shape crashes the planner or yields tasks from invalid output."""
    from nbbatch.planning._llm import _build_tasks

    for candidate in (value, {"tasks": value}, {"tasks": [value]}):
        warnings: list[str] = []
        try:
            tasks = _build_tasks(
                candidate,
                references=[],
                max_tasks=50,
                base=nbbatch.Params(),
                strict_references=False,
                reply="",
                warnings=warnings,
                unknown=[],
            )
        except PlannerError:
            continue
        assert tasks and all(isinstance(t, Task) and t.prompt for t in tasks)


# -- hostile input from the LLM ------------------------------------------------
# Defect 6: control characters in replies; defect 8: a deeply nested reply was reported
# as holding no JSON, and messages quoted megabytes of a bad value.


def test_prompts_from_an_llm_lose_their_control_characters() -> None:
    reply = json.dumps(
        {"tasks": [{"prompt": "a fox\x1b]0;owned\x07", "negative_prompt": "x\x00y"}]}
    )
    with FakeChat("openai", reply=reply) as server:
        plan = nbbatch.plan("anything", llm={"base_url": server.base_url, "model": "m"})
    assert plan.tasks[0].prompt == "a fox]0;owned"
    assert plan.tasks[0].params.negative_prompt == "xy"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_deeply_nested_plan_is_reported_as_too_deep_not_as_holding_no_json() -> None:
    reply = '{"tasks": [{"prompt": "a fox", "params": {"extras": ' + _deep(100_000) + "}}]}"
    with (
        FakeChat("openai", reply=reply) as server,
        pytest.raises(PlannerShapeError, match="nested too deeply") as info,
    ):
        nbbatch.plan("a fox", llm={"base_url": server.base_url, "model": "m"})
    assert "holds no JSON" not in str(info.value)
    with pytest.raises(PlannerShapeError, match="nested too deeply"):
        nbbatch.planning.extract_json("Here you go: " + _deep(50_000))


@pytest.mark.parametrize(
    "task",
    [
        {"prompt": "a fox", "params": {"size": "9" * 1_000_000}},
        {"prompt": "a fox", "params": {"steps": "9" * 1_000_000}},
        {"prompt": "a fox", "params": {"x" * 1_000_000: 1}, "image_references": 5},
        {"prompt": "a fox", "image_references": ["r" * 1_000_000]},
    ],
)
def test_planner_messages_quote_at_most_a_little_of_a_huge_bad_value(task: dict) -> None:
    reply = json.dumps({"tasks": [task]})
    with FakeChat("openai", reply=reply) as server:
        llm = {"base_url": server.base_url, "model": "m"}
        try:
            plan = nbbatch.plan("a fox", llm=llm, strict_references=True)
        except PlannerShapeError as exc:
            assert len(str(exc)) < 2_000 and all(len(p) < 1_000 for p in exc.problems)
        else:
            assert all(len(w) < 1_000 for w in plan.warnings)
