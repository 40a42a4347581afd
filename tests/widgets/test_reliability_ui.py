"""The fault matrix's UI rows (19, 20, 24) and a fuzz of every widget's message handler.

Each widget receives what a hostile or broken page could send: unknown types, missing
or odd uuids, wrong value types, random binary buffers. The handler must answer with a
reply in words (or a notice when there is nobody to reply to), never raise into the
comm, never log an unexpected exception (that would mean a bad message reached code
that did not check it), and stay usable afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbbatch import Batch, Params, Task, Workspace
from nbbatch.testing import FakeOpenAI
from nbbatch.widgets import BatchStudio, Gallery, PromptPanel, SettingsPanel, TaskGrid, Upload
from nbbatch.widgets._upload import CHUNK_BYTES
from tests.support import SENTINEL, WRONG, hits, png_bytes

# -- a page that can send anything ---------------------------------------------------------


class AnyPage:
    """Captures what a widget sends; sends raw contents exactly as given."""

    def __init__(self, widget: Any) -> None:
        self.widget = widget
        self.sent: list[tuple[Any, list[bytes]]] = []
        widget.send = self._capture

    def _capture(self, content: Any, buffers: Any = None) -> None:
        json.dumps(content)  # whatever the kernel answers must still be JSON
        self.sent.append((content, [bytes(b) for b in buffers or ()]))

    def send(self, content: Any, buffers: list[bytes] | None = None) -> None:
        self.widget._on_msg(self.widget, content, [memoryview(b) for b in buffers or ()])

    def request(self, type: str, buffers: list[bytes] | None = None, **body: Any) -> Any:
        uid = f"probe-{len(self.sent)}-{type}"
        self.send({"type": type, "uuid": uid, **body}, buffers)
        replies = [c for c, _ in self.sent if isinstance(c, dict) and c.get("uuid") == uid]
        assert replies, f"no reply to {type}"
        return replies[-1]


def unexpected(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors logged with a traceback: a message reached code that did not expect it."""
    return [
        f"{r.getMessage()} [{r.exc_info[0].__name__ if r.exc_info and r.exc_info[0] else ''}]"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info
    ]


def answered_in_words(page: AnyPage, start: int) -> None:
    for content, _ in page.sent[start:]:
        if not isinstance(content, dict):
            continue
        if content.get("type") == "reply" and not content.get("ok"):
            error = content.get("error")
            assert isinstance(error, str) and error.strip(), content
            assert "Traceback" not in error and len(error) < 2000, error
        if content.get("type") == "notice":
            assert "Traceback" not in str(content.get("text")), content


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

# every key some handler reads, so the fuzz reaches past the first check
KEYS = [
    "id",
    "ids",
    "task",
    "task_id",
    "index",
    "image",
    "images",
    "start",
    "end",
    "filter",
    "query",
    "name",
    "value",
    "values",
    "prompt",
    "negative",
    "mode",
    "text",
    "params",
    "size",
    "n",
    "seed",
    "steps",
    "fid",
    "chunks",
    "which",
    "key",
    "remember",
    "provider",
    "to",
    "before",
    "after",
    "starred",
    "scope",
    "count",
    "title",
    "category",
    "path",
    "token",
    "kind",
    "format",
    "width",
    "height",
    "aspect",
    "watermark",
    "cap",
    "confirm",
    "lines",
    "file",
    "selection",
    "all",
]


def messages(types: list[str]) -> st.SearchStrategy[Any]:
    uid = st.one_of(st.none(), st.text(max_size=12), st.integers(), st.just("u1"))
    body = st.fixed_dictionaries(
        {"type": st.sampled_from([*types, "", "bogus", "__init__", "_on_msg"]) | JSON},
        optional={"uuid": uid, **{k: JSON for k in KEYS}},
    )
    # now and then not a dict at all
    return st.one_of(body, body, body, JSON)


BUFFERS = st.lists(st.binary(max_size=64), max_size=2)


@pytest.fixture
def little_batch(workspace: Workspace) -> Batch:
    return Batch.create(
        [Task("a red fox", params=Params(size="64x64", seed=1)), Task("an owl at dusk")],
        workspace=workspace,
    )


async def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Let what the messages started (thumbnails, ZIPs, LLM calls) finish or fail."""
    me = asyncio.current_task()
    for _ in range(200):  # a bound, not a race: work still running is simply not judged
        others = [t for t in asyncio.all_tasks(loop) if t is not me and not t.done()]
        if not others:
            break
        await asyncio.wait(others, timeout=0.01)
    await asyncio.sleep(0)


def fuzz(make: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> None:
    """Fuzz the widget ``make()`` builds, on an event loop of its own (as in a kernel)."""
    loop = asyncio.new_event_loop()

    async def build() -> Any:
        return make()

    widget = loop.run_until_complete(build())
    page = AnyPage(widget)
    types = sorted(widget._handlers)

    async def deliver(batch_of_messages: list[tuple[Any, list[bytes]]]) -> None:
        for content, buffers in batch_of_messages:
            page.send(content, buffers)  # must not raise
        await _drain(loop)

    @settings(
        max_examples=int(os.environ.get("NBBATCH_FUZZ_EXAMPLES", "100")),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch_of_messages=st.lists(st.tuples(messages(types), BUFFERS), max_size=6))
    def check(batch_of_messages: list[tuple[Any, list[bytes]]]) -> None:
        caplog.clear()
        start = len(page.sent)
        loop.run_until_complete(deliver(batch_of_messages))
        assert unexpected(caplog) == []
        answered_in_words(page, start)
        hello = page.request("hello")
        assert hello["ok"], hello  # still usable

    try:
        with caplog.at_level(logging.ERROR):
            check()
    finally:
        widget.close()
        loop.run_until_complete(_drain(loop))
        # as asyncio.run ends: what is still running (a run "run_all" started) is
        # cancelled and allowed to wind down, so nothing outlives its loop
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()

        async def wound_down() -> None:
            await asyncio.gather(*left, return_exceptions=True)

        loop.run_until_complete(wound_down())
        loop.close()


# -- row 24: unknown type / missing uuid, fuzzed over every widget --------------------------


def test_b8_row24_any_message_to_the_grid_is_answered_and_the_grid_stays_usable(
    little_batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    fuzz(lambda: TaskGrid(little_batch), caplog)


def test_b8_row24_any_message_to_the_studio_is_answered_and_the_studio_stays_usable(
    little_batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    fuzz(lambda: BatchStudio(little_batch).grid, caplog)


def test_b8_row24_any_message_to_the_gallery_is_answered_and_it_stays_usable(
    little_batch: Batch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    fuzz(lambda: Gallery(little_batch, save_dir=tmp_path), caplog)


def test_b8_row24_any_message_to_the_upload_is_answered_and_it_stays_usable(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    fuzz(lambda: Upload(workspace), caplog)


def test_b8_row24_any_message_to_the_prompt_panel_is_answered_and_it_stays_usable(
    little_batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    fuzz(lambda: PromptPanel(little_batch), caplog)


def test_b8_row24_any_message_to_the_settings_panel_is_answered_and_it_stays_usable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fuzz(lambda: SettingsPanel(config_dir=tmp_path / "config"), caplog)


def test_b8_row24_a_message_without_uuid_becomes_a_notice_every_view_sees(
    little_batch: Batch,
) -> None:
    grid = TaskGrid(little_batch)
    page = AnyPage(grid)
    page.send({"type": "frobnicate"})  # nobody to reply to
    (notice,) = [c for c, _ in page.sent if c.get("type") == "notice"]
    assert "Reload the page" in notice["text"]
    assert page.request("hello")["notice"]["text"] == notice["text"]


# -- row 19: an oversized upload is refused before decoding, at the limit exactly -----------


def test_b8_row19_upload_cap_is_enforced_at_n_bytes_exactly(workspace: Workspace) -> None:
    image = png_bytes(size=(64, 64))
    cap = len(image)
    upload = Upload(workspace, max_bytes=cap)
    page = AnyPage(upload)
    at_cap = page.request("begin", fid="a", name="at-cap.png", size=cap)
    assert at_cap["ok"] and "refused" not in at_cap
    over = page.request("begin", fid="b", name="over.png", size=cap + 1)
    assert over["ok"] and "over.png" not in upload._pending
    assert "too big" in over["refused"].lower() or "MB" in over["refused"]
    # the file at the cap goes through the decoder and is kept
    for index in range(at_cap["chunks"]):
        part = image[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
        assert page.request("chunk", [part], fid="a", index=index)["ok"]
    page.request("end", fid="a")
    assert [r.name for r in upload.references] == ["at-cap.png"]
    listed = page.request("list")
    assert [r["name"] for r in listed["refused"]] == ["over.png"]


def test_b8_row19_a_page_that_sends_more_bytes_than_it_declared_loses_that_file_only(
    workspace: Workspace,
) -> None:
    image = png_bytes(size=(32, 32))
    upload = Upload(workspace, max_bytes=len(image))
    page = AnyPage(upload)
    page.request("begin", fid="a", name="liar.png", size=len(image) - 10)
    reply = page.request("chunk", [image], fid="a", index=0)  # 10 bytes more than declared
    assert not reply["ok"] and reply["error"]
    assert upload.references == [] and "a" not in upload._pending
    assert page.request("hello")["ok"]


# -- row 20: a key typed into the settings panel, a 401, then success: 0 hits anywhere -------


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=SENTINEL, echo_key=True, render="fast") as s:
        yield s


async def test_b8_row20_a_key_typed_in_the_settings_panel_leaks_nowhere_through_a_401(
    server: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ipywidgets.embed import embed_data  # type: ignore[import-untyped]

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = tmp_path / "config"
    panel = SettingsPanel(config_dir=cfg)
    settings_page = AnyPage(panel)
    saved = settings_page.request(
        "save", values={"provider": "openai", "base_url": server.base_url, "model": "dall-e-2"}
    )
    assert saved["ok"], saved
    # a wrong key first: the server answers 401 and quotes the key it was sent
    assert settings_page.request("set_key", which="provider", key=WRONG, remember=False)["ok"]
    ws = Workspace(tmp_path / "ws")
    batch = Batch.create([Task("a fox", params=Params(size="64x64"))], workspace=ws)
    bad = panel.provider_config().build()
    studio = BatchStudio(batch, provider=bad)
    studio_page = AnyPage(studio.grid)
    assert studio_page.request("run_all")["ok"]
    await studio.runner.wait()
    await asyncio.sleep(0)
    (task,) = batch.tasks
    assert task.status.value == "failed" and task.error_kind == "auth"
    row = studio_page.request("rows", start=0, end=5)["rows"][0]
    assert "authentication failed" in row["er"] and "Check the API key" in row["er"], row

    # then the right one, remembered in the 0600 secrets file: the retry succeeds
    assert settings_page.request("set_key", which="provider", key=SENTINEL, remember=True)["ok"]
    good = panel.provider_config().build()
    studio.use_provider(good)
    assert studio_page.request("retry_failed")["ok"]
    await studio.runner.wait()
    await asyncio.sleep(0)
    assert batch.status == "succeeded"
    zipped = batch.export_zip(tmp_path / "out.zip")

    notebook_state = json.dumps(embed_data(views=[studio.grid, panel])["manager_state"])
    # what a notebook saved "with widget state" holds: every live widget's state
    widget_states = json.dumps([studio.grid.get_state(), panel.get_state()], default=str)
    artefacts = [
        notebook_state,
        widget_states,
        json.dumps([settings_page.sent, studio_page.sent], default=str),
        repr(panel),
        repr(panel.provider_config()),
        repr(bad),
        repr(good),
        repr(studio),
        caplog.text,
        zipped,
        tmp_path / "ws",
    ]
    await bad.aclose()
    await good.aclose()
    ws.close()
    assert hits(*artefacts) == []
    # the only file that holds the key is the private secrets file, as asked
    holding = [p.name for p in cfg.rglob("*") if p.is_file() and hits(p)]
    assert holding == ["secrets.json"]
    assert (cfg / "secrets.json").stat().st_mode & 0o777 == 0o600
