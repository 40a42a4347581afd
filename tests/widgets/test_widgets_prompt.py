"""PromptPanel's message protocol: every mode proposes first, then adds to the batch."""

from __future__ import annotations

import asyncio

import pytest

from nbbatch import Batch, Workspace
from nbbatch.planning import Presets
from nbbatch.testing import FakeChat
from nbbatch.widgets import PromptPanel, Upload
from nbbatch.widgets._prompt import offered_params
from tests.support import png_bytes
from tests.widgets.page import PanelPage


@pytest.fixture
def batch(workspace: Workspace) -> Batch:
    return Batch.create([], workspace=workspace, allow_empty=True)


@pytest.fixture
def upload(workspace: Workspace) -> Upload:
    up = Upload(workspace)
    for i, name in enumerate(["mug.png", "cup.png", "jar.png"]):
        up.add(png_bytes(colour=(30 * i, 90, 200)), name)
    return up


def draft(mode: str, prompt: str = "", **more: str) -> dict[str, str]:
    return {"mode": mode, "prompt": prompt, "negative": "", **more}


def test_one_per_line_proposes_then_adds_to_the_batch(batch: Batch) -> None:
    page = PanelPage(PromptPanel(batch))
    proposal = page.ok("propose", draft=draft("lines", "a fox\n\n# note\na lighthouse\n"))
    assert proposal["count"] == 2
    assert [s["p"] for s in proposal["sample"]] == ["a fox", "a lighthouse"]
    assert len(batch.tasks) == 0  # nothing lands before the person confirms
    assert page.ok("create")["added"] == 2
    assert [t.prompt for t in batch.tasks] == ["a fox", "a lighthouse"]
    assert "Create tasks first" in page.refused("create")  # a proposal is used once


def test_same_prompt_for_every_image_makes_one_task_per_reference(
    batch: Batch, upload: Upload
) -> None:
    page = PanelPage(PromptPanel(batch, upload=upload))
    assert page.widget.refs == 3
    proposal = page.ok("propose", draft=draft("per_image", "as a watercolour", seed="7"))
    assert [s["refs"] for s in proposal["sample"]] == [["mug.png"], ["cup.png"], ["jar.png"]]
    page.ok("create")
    assert [t.references[0].name for t in batch.tasks] == ["mug.png", "cup.png", "jar.png"]
    assert {t.params.seed for t in batch.tasks} == {7}


def test_template_counts_live_and_refuses_an_explosion_until_confirmed(batch: Batch) -> None:
    page = PanelPage(PromptPanel(batch, cap=10))
    assert page.ok("count", template="a {red|blue} {car|bike}")["count"] == 4
    assert page.ok("count", template="{a|b|c}{d|e|f}{g|h}")["over"] is True
    proposal = page.ok("propose", draft=draft("template", "{a|b|c}{d|e|f}{g|h}"))
    assert proposal["over_cap"] is True and proposal["cap"] == 10
    assert "confirm" in page.refused("create")
    assert page.ok("create", confirm=True)["added"] == 18


def test_params_follow_the_providers_capabilities() -> None:
    demo = {f["name"] for f in offered_params("demo")}
    assert {"size", "n", "seed", "strength"} <= demo
    openai = {f["name"] for f in offered_params("openai")}
    assert "steps" not in openai and "seed" not in openai


def test_a_preset_inserts_or_replaces(batch: Batch) -> None:
    panel = PromptPanel(batch)
    page = PanelPage(panel)
    name = panel.presets.names[0]
    text = panel.presets.prompt(name)
    inserted = page.ok("preset", name=name, op="insert", prompt="a fox", negative="")
    assert inserted["prompt"].startswith("a fox") and text in inserted["prompt"]
    replaced = page.ok("preset", name=name, op="replace", prompt="a fox", negative="")
    assert "a fox" not in replaced["prompt"]
    assert "no longer exists" in page.refused("preset", name="nope", op="insert", prompt="")


def test_a_prompts_file_lists_its_skipped_lines(batch: Batch) -> None:
    page = PanelPage(PromptPanel(batch))
    read = page.ok("file", name="p.txt", text="a fox\n--seed=oops a broken line\na boat\n")
    assert read["count"] == 2 and len(read["skipped"]) == 1
    assert page.ok("propose", draft=draft("file"))["count"] == 2
    assert "not a prompts file" in page.refused("file", name="p.exe", text="x")


def test_the_draft_is_kept_in_the_kernel_for_the_next_view(batch: Batch) -> None:
    page = PanelPage(PromptPanel(batch))
    page.ok("draft", draft=draft("template", "a {b|c}", negative="blurry", seed="3"))
    hello = page.ok("hello")
    assert hello["draft"]["prompt"] == "a {b|c}" and hello["draft"]["seed"] == "3"
    assert hello["draft"]["mode"] == "template"


def test_hostile_or_broken_requests_are_answered_in_words(batch: Batch) -> None:
    page = PanelPage(PromptPanel(batch))
    assert "does not understand" in page.refused("rm -rf")
    assert "incomplete" in page.refused("draft", draft="not a dict")
    assert "master prompt" in page.refused("propose", draft=draft("lines", "  "))
    assert "number" in page.refused("propose", draft=draft("lines", "a", seed="abc"))
    assert page.ok("hello")["strings"]["master_prompt"] == "Master prompt"


async def test_split_with_llm_assigns_references_and_failures_say_what_next(
    batch: Batch, upload: Upload
) -> None:
    with FakeChat() as chat:
        llm = {"base_url": chat.base_url, "model": "fake-planner-1", "api_key": "test-key-x"}
        panel = PromptPanel(batch, upload=upload, llm=llm)
        page = PanelPage(panel)
        uid = page.request("propose", draft=draft("llm", "a mug on marble; a cup in a café"))
        assert panel.busy == "plan"
        while page.reply(uid) is None:
            await asyncio.sleep(0.02)
        proposal = page.reply(uid)
        assert proposal is not None and proposal["ok"], proposal
        assert proposal["count"] == 2
        assert all(s["refs"] for s in proposal["sample"])
        assert panel.busy == ""
        page.ok("create")
        assert all(t.references for t in batch.tasks)

    with FakeChat("invalid_json") as bad:
        panel = PromptPanel(batch, llm={"base_url": bad.base_url, "model": "m"})
        page = PanelPage(panel)
        uid = page.request("propose", draft=draft("llm", "three mugs"))
        while page.reply(uid) is None:
            await asyncio.sleep(0.02)
        reply = page.reply(uid)
        assert reply is not None and not reply["ok"]
        assert "Next: try again" in reply["error"]


async def test_cancel_stops_the_llm(batch: Batch) -> None:
    with FakeChat(latency=30) as slow:
        panel = PromptPanel(batch, llm={"base_url": slow.base_url, "model": "m"})
        page = PanelPage(panel)
        uid = page.request("propose", draft=draft("llm", "three mugs"))
        await asyncio.sleep(0.05)
        page.ok("cancel")
        while page.reply(uid) is None:
            await asyncio.sleep(0.02)
        assert page.reply(uid) == {"type": "reply", "uuid": uid, "ok": True, "cancelled": True}
        assert panel.busy == ""


def test_presets_are_managed_where_they_are_picked(batch: Batch) -> None:
    panel = PromptPanel(batch)
    page = PanelPage(panel)
    saved = page.ok(
        "preset_save", name="Harbour", category="Places", prompt="a harbour at dawn", negative="fog"
    )
    assert saved["saved"] == "Harbour" and saved["preset_list"][-1]["category"] == "places"
    assert any(g["category"] == "places" for g in saved["presets"])
    stored = Presets.load(batch.workspace)  # in the workspace, for the next panel too
    assert stored["Harbour"].text == "a harbour at dawn" and stored["Harbour"].negative == "fog"

    page.ok("preset_edit", old="Harbour", name="Harbour dawn", category="places",
            text="a harbour at first light", negative="")  # fmt: skip
    page.ok("preset_move", name="Harbour dawn", index=0)
    assert Presets.load(batch.workspace).names[0] == "Harbour dawn"

    # delete asks first, and the kernel holds to that too
    assert "Confirm" in page.refused("preset_delete", name="Harbour dawn")
    gone = page.ok("preset_delete", name="Harbour dawn", confirm=True)
    assert "Harbour dawn" not in [p["name"] for p in gone["preset_list"]]
    assert "Harbour dawn" not in Presets.load(batch.workspace)


def test_preset_mistakes_are_refused_in_words(batch: Batch) -> None:
    page = PanelPage(PromptPanel(batch))
    first = Presets.load(batch.workspace).names[0]
    assert "title" in page.refused("preset_save", name=" ", prompt="x")
    assert "needs text" in page.refused("preset_save", name="Empty", prompt="", negative="")
    assert "already exists" in page.refused("preset_save", name=first.upper(), prompt="x")
    assert "no longer exists" in page.refused("preset_move", name="nope", index=0)
    assert "no longer exists" in page.refused(
        "preset_edit", old="nope", name="x", text="x", category="", negative=""
    )


async def test_a_page_that_stops_waiting_stops_the_llm(batch: Batch) -> None:
    # the page's channel sends cancel_request for the propose it no longer waits for
    # (its view went away): the LLM call is cancelled, not left running
    with FakeChat(latency=30) as slow:
        panel = PromptPanel(batch, llm={"base_url": slow.base_url, "model": "m"})
        page = PanelPage(panel)
        uid = page.request("propose", draft=draft("llm", "three mugs"))
        job = panel._job
        assert job is not None and not job.done()
        panel._on_msg(panel, {"type": "cancel_request", "uuid": uid}, [])
        await asyncio.gather(job, return_exceptions=True)
        assert job.cancelled()
        assert panel.busy == ""
