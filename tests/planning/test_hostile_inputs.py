"""Regression tests for the defects found by trying to break nbbatch (4, 5, 6, 8, 9, 12).

Defect 1 (dead runs) is in ``test_reliability_lease.py``; defect 11 is the ComfyUI give-up
test, which now waits on the fake's state instead of racing it.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from PIL import Image

import nbbatch
from nbbatch import Batch, Params, Task, Workspace
from nbbatch import _cli as cli
from nbbatch.core._model import check_prompt, clean_text
from nbbatch.errors import ImageRejectedError, PlannerShapeError, PromptSourceError
from nbbatch.images import ImageLimits
from nbbatch.testing import FakeChat

HOSTILE = "a\x00b \x1b[31mred\x1b[0m \u202efox\u202c\r\nnext\rline\x7f\x85"
CLEAN = "ab [31mred[0m fox\nnext\nline"


def png(colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, "PNG")
    return buf.getvalue()


def _with_timeout(fn: object, seconds: float = 10.0) -> object:
    """Run ``fn`` in a thread: a regression to "hangs on a FIFO" fails instead of hanging."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()  # type: ignore[operator]
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the call hung"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


# ------------------------------------------------------------------ defect 4: special files


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


@needs_fifo
def test_a_fifo_named_like_a_prompts_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "prompts.txt"
    os.mkfifo(fifo)
    with pytest.raises(PromptSourceError, match="named pipe"):
        _with_timeout(lambda: nbbatch.read_prompts(fifo))


def test_a_link_to_dev_zero_is_refused_not_read_until_memory_runs_out(tmp_path: Path) -> None:
    link = tmp_path / "prompts.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(PromptSourceError, match="character device"):
        _with_timeout(lambda: nbbatch.read_prompts(link))


@needs_fifo
def test_special_files_in_an_image_folder_are_skipped_with_their_reason(
    tmp_path: Path, workspace: Workspace
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(png())
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(folder / "good.txt")  # a caption that is a FIFO: warned, prompt used
    tasks = _with_timeout(lambda: nbbatch.tasks_from_folder(folder, "ink", workspace=workspace))
    assert [t.prompt for t in tasks] == ["ink"]  # type: ignore[attr-defined]
    reasons = {s.where: s.reason for s in tasks.skipped}  # type: ignore[attr-defined]
    assert "named pipe" in reasons["pipe.png"]
    assert "character device" in reasons["zero.png"]
    assert any("good.txt" in w for w in tasks.warnings)  # type: ignore[attr-defined]


def test_an_oversized_caption_is_not_read_into_memory(tmp_path: Path, workspace: Workspace) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(png())
    (folder / "cat.txt").write_bytes(b"x" * 200_000)
    tasks = nbbatch.tasks_from_folder(folder, "ink", workspace=workspace)
    assert [t.prompt for t in tasks] == ["ink"]
    assert any("limit" in w for w in tasks.warnings)


@needs_fifo
def test_a_fifo_given_to_add_reference_is_refused_at_once_not_waited_on(
    tmp_path: Path, workspace: Workspace
) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageRejectedError, match="named pipe") as caught:
        _with_timeout(lambda: workspace.add_reference(fifo))
    assert caught.value.reason == "not_a_file"
    assert workspace.known_digests() == set()


def test_a_link_to_dev_zero_given_to_add_reference_is_refused_unread(
    tmp_path: Path, workspace: Workspace
) -> None:
    link = tmp_path / "photo.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageRejectedError, match="character device") as caught:
        _with_timeout(lambda: workspace.add_reference(link))
    assert caught.value.reason == "not_a_file"


@needs_fifo
def test_the_async_add_reference_refuses_a_fifo_too(tmp_path: Path, workspace: Workspace) -> None:
    import asyncio

    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageRejectedError, match="named pipe"):
        _with_timeout(lambda: asyncio.run(workspace.aadd_reference(fifo)))


def test_a_reference_file_over_the_byte_cap_is_refused_with_its_size(
    tmp_path: Path, workspace: Workspace
) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(png() + b"\0" * 5000)
    limits = ImageLimits(max_bytes=1000)
    with pytest.raises(ImageRejectedError, match="limit") as caught:
        workspace.add_reference(big, limits=limits)
    assert caught.value.reason == "too_many_bytes"
    assert caught.value.limit == 1000
    ref = workspace.add_reference(_write(tmp_path / "ok.png", png()))  # a regular file still works
    assert ref.width == 8


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ defect 5: confined images


def _csv(folder: Path, image: str) -> Path:
    path = folder / "prompts.csv"
    path.write_text(f"prompt,image\na fox,{image}\n")
    return path


def test_csv_image_paths_outside_the_files_folder_are_refused(
    tmp_path: Path, workspace: Workspace
) -> None:
    (tmp_path / "secret.png").write_bytes(png("blue"))
    inside = tmp_path / "prompts"
    inside.mkdir()
    (inside / "ok.png").write_bytes(png())
    (inside / "link.png").symlink_to(tmp_path / "secret.png")
    for image, reason in [
        (str(tmp_path / "secret.png"), "absolute path"),
        ("../secret.png", "outside"),
        ("sub/../../secret.png", "outside"),
        ("link.png", "outside"),
    ]:
        tasks = nbbatch.read_prompts(_csv(inside, image), workspace=workspace)
        assert len(tasks) == 0, image
        assert reason in tasks.skipped[0].reason, (image, tasks.skipped)
    tasks = nbbatch.read_prompts(_csv(inside, "ok.png"), workspace=workspace)
    assert [r.name for r in tasks[0].references] == ["ok.png"]


def test_jsonl_image_lists_are_confined_too_and_image_root_widens_the_allow_list(
    tmp_path: Path, workspace: Workspace
) -> None:
    (tmp_path / "shared.png").write_bytes(png("green"))
    inside = tmp_path / "prompts"
    inside.mkdir()
    path = inside / "p.jsonl"
    path.write_text(json.dumps({"prompt": "x", "image": ["../shared.png"]}) + "\n")
    refused = nbbatch.read_prompts(path, workspace=workspace)
    assert len(refused) == 0 and "outside" in refused.skipped[0].reason
    allowed = nbbatch.read_prompts(path, workspace=workspace, image_root=inside)
    assert len(allowed) == 0  # image_root is the root *and* the base: ../ still leaves it
    widened = nbbatch.read_prompts(path, workspace=workspace, image_root=tmp_path)
    assert len(widened.skipped) == 1  # relative to the root now: "../shared.png" leaves it
    path.write_text(json.dumps({"prompt": "x", "image": ["shared.png"]}) + "\n")
    ok = nbbatch.read_prompts(path, workspace=workspace, image_root=tmp_path)
    assert [r.name for r in ok[0].references] == ["shared.png"]


# ------------------------------------------------------------------ defect 6: control characters


def test_control_and_bidi_characters_are_removed_at_the_model_boundary() -> None:
    assert check_prompt(HOSTILE) == CLEAN
    assert clean_text("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
    assert Params(negative_prompt="blur\x00ry\x1b").negative_prompt == "blurry"
    task = Task(HOSTILE, original_prompt="orig\x00inal")
    assert task.prompt == CLEAN and task.original_prompt == "original"


def test_prompts_from_files_lose_their_control_characters(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text('a \x1b[2Jfox --negative_prompt "no\x07ise"\n')
    (tmp_path / "p.csv").write_text('prompt\n"a\x00 owl\u202e"\n')
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a\u2066 cat\x9b"}) + "\n")
    txt = nbbatch.read_prompts(tmp_path / "p.txt")
    assert txt[0].prompt == "a [2Jfox" and txt[0].params.negative_prompt == "noise"
    assert nbbatch.read_prompts(tmp_path / "p.csv")[0].prompt == "a owl"
    assert nbbatch.read_prompts(tmp_path / "p.jsonl")[0].prompt == "a cat"


def test_prompts_from_an_llm_lose_their_control_characters() -> None:
    reply = json.dumps(
        {"tasks": [{"prompt": "a fox\x1b]0;owned\x07", "negative_prompt": "x\x00y"}]}
    )
    with FakeChat("openai", reply=reply) as server:
        plan = nbbatch.plan("anything", llm={"base_url": server.base_url, "model": "m"})
    assert plan.tasks[0].prompt == "a fox]0;owned"
    assert plan.tasks[0].params.negative_prompt == "xy"


def test_no_nul_reaches_the_png_text_chunks(workspace: Workspace) -> None:
    batch = Batch.create(
        [Task("a\x00fox", params=Params(size="64x64", negative_prompt="b\x00lur"))],
        workspace=workspace,
    )
    batch.run_sync("demo")
    with Image.open(batch.images[0].path) as im:
        chunks = dict(im.text)  # type: ignore[attr-defined]
    assert chunks and not any("\x00" in v for v in chunks.values())
    assert "afox" in chunks["parameters"]


def test_show_escapes_control_characters_instead_of_writing_them_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws_path = tmp_path / "ws"
    with Workspace(ws_path) as ws:
        batch = Batch.create(["a fox"], workspace=ws, name="n\x1b[2Jame")
    with sqlite3.connect(ws_path / "nbbatch.sqlite3") as conn:
        # An older workspace, or a server's error echoed into the journal.
        conn.execute(
            "UPDATE tasks SET status='failed', error=?, prompt=?",
            ("server said \x1b[31mno\u202e", "raw \x1b[5m prompt"),
        )
    assert cli.main(["show", batch.id, "--workspace", str(ws_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[31mno\\u202e" in out and "n\\x1b[2Jame" in out
    assert cli.main(["history", "--workspace", str(ws_path)]) == 0
    assert "\x1b" not in capsys.readouterr().out


# ------------------------------------------------------------------ defect 8: planner errors


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


# ------------------------------------------------------------------ defect 9: --max-tasks


def test_max_tasks_caps_templates_but_not_the_lines_of_a_prompts_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt {i} --width 32 --height 32\n" for i in range(12)))
    monkeypatch.setattr(cli, "LARGE_FILE_TASKS", 10)
    ws = str(tmp_path / "ws")
    code = cli.main(["run", "-q", "-f", str(prompts), "--max-tasks", "5", "-w", ws])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "lists 12 tasks" in err and "nbbatch resume" in err  # warned, told how to go on
    code = cli.main(["run", "-q", "-t", "{a|b|c} {d|e}", "--max-tasks", "5", "-w", ws])
    assert code == 2 and "more than 5" in capsys.readouterr().err


# ------------------------------------------------------------------ defect 12: docs


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


def test_the_folder_size_limit_reads_the_same_in_messages_and_readme(
    tmp_path: Path, workspace: Workspace
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "huge.png").write_bytes(png() + b"\0" * (10 * 1024 * 1024))
    reason = nbbatch.tasks_from_folder(folder, "x", workspace=workspace).skipped[0].reason
    assert "the limit is 10 MiB" in reason and "10.5" not in reason
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "≤ 10 MiB" in readme and "≤ 10 MB" not in readme
