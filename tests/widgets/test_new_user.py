"""What a new user meets first in BatchStudio(), without touching Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbbatch import Batch, Workspace
from nbbatch.widgets import BatchStudio


@pytest.fixture(autouse=True)
def _new_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBBATCH_CONFIG_DIR", str(tmp_path / "config"))  # nothing saved
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def ask(widget: Any, type: str, **body: Any) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    widget.send = lambda content, buffers=None: sent.append(content)
    widget._on_msg(widget, {"type": type, "uuid": "u1", **body}, [])
    (reply,) = [c for c in sent if c.get("uuid") == "u1"]
    return reply


def test_the_default_prompt_mode_works_without_an_llm(workspace: Workspace) -> None:
    # It was "Split with LLM" even on the offline demo: Create tasks showed a connection
    # error to api.openai.com.
    studio = BatchStudio(workspace=workspace)
    prompt = studio.prompt
    draft = ask(prompt, "hello")["draft"]
    assert draft["mode"] == "template"
    proposal = ask(prompt, "propose", draft={**draft, "prompt": "a {red|blue} fox"})
    assert proposal["ok"] and proposal["count"] == 2
    assert ask(prompt, "create")["added"] == 2


def test_split_with_llm_is_the_default_once_an_llm_is_set_up(workspace: Workspace) -> None:
    given = BatchStudio(workspace=workspace, llm={"base_url": "http://127.0.0.1:9/v1"})
    assert ask(given.prompt, "hello")["draft"]["mode"] == "llm"
    studio = BatchStudio(workspace=workspace)
    ask(studio.settings, "save", values={"llm_base_url": "http://127.0.0.1:11434/v1"})
    assert ask(studio.prompt, "hello")["draft"]["mode"] == "llm"
    # a mode the person picked stays picked
    ask(studio.prompt, "draft", draft={"mode": "lines", "prompt": ""})
    ask(studio.settings, "save", values={"llm_base_url": ""})
    assert studio.prompt.draft["mode"] == "lines"


def test_a_fresh_studio_batch_is_named_in_the_studios_language(workspace: Workspace) -> None:
    assert BatchStudio(workspace=workspace, lang="zh").batch.name.startswith("批次 ")
    assert BatchStudio(workspace=workspace, lang="en").batch.name.startswith("batch ")
    named = Batch.create(["x"], workspace=workspace, name="mine")
    assert BatchStudio(named, lang="zh").batch.name == "mine"


def test_the_empty_grid_points_at_the_prompt_panel_above_it(workspace: Workspace) -> None:
    # It said "Add some from Python: batch.add(...)" right under the prompt panel.
    studio = BatchStudio(workspace=workspace, lang="zh")
    assert "创建任务" in ask(studio.grid, "hello")["strings"]["empty"]
    alone = BatchStudio(workspace=workspace, panels=["grid"])
    assert "batch.add" in ask(alone.grid, "hello")["strings"]["empty"]


def test_finished_reaches_the_page_after_the_last_results(workspace: Workspace) -> None:
    # "Finished" showed while the last tasks were still completing: the state trait went
    # out at once, their rows and counts with the next coalesced patch.
    from nbbatch import events
    from nbbatch.widgets import TaskGrid
    from tests.widgets.page import FakeClock, FakeScheduler

    batch = Batch.create(["a fox", "a koi"], workspace=workspace)
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    grid = TaskGrid(batch, _clock=clock, _scheduler=scheduler)
    wire: list[str] = []
    grid.send = lambda content, buffers=None: wire.append(content["type"])
    grid.send_state = lambda key=None: wire.append(f"state:{key}")
    grid._on_msg(grid, {"type": "hello", "uuid": "h"}, [])
    grid._on_msg(grid, {"type": "rows", "uuid": "r", "start": 0, "end": 10}, [])
    clock.now += 10
    grid._hub_rows([batch.tasks[0].id], full=False)  # sent at once (nothing recent)
    grid._hub_rows([batch.tasks[1].id], full=False)  # held back (≤ 5 patches a second)
    wire.clear()
    grid._hub_run_state(str(events.RunState.FINISHED))
    assert wire == []  # not before the held-back rows
    scheduler.advance(1)
    assert wire[0] == "patch" and any(w.startswith("state:") for w in wire[1:]), wire
    assert grid.run_state == "finished"


def test_settings_sit_under_the_reference_images_not_in_a_bar_of_their_own(
    workspace: Workspace,
) -> None:
    studio = BatchStudio(workspace=workspace)
    first = studio.view.children[0]  # the inputs row, then the grid, gallery, history
    left, right = first.children
    assert right is studio.prompt and studio.settings in left.children
    assert list(studio.view.children[1:]) == [studio.grid, studio.gallery, studio.history]
    # without an upload panel, Settings keep their own bar on top
    bare = BatchStudio(workspace=workspace, panels=["settings", "grid"])
    assert list(bare.view.children) == [bare.settings, bare.grid]
