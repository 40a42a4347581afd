"""Tasks from prompt files (.txt with A1111 options, .csv, .jsonl) and image folders."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import nbbatch
from nbbatch import Params, Workspace
from nbbatch.errors import PromptSourceError
from tests.support import needs_fifo, png_bytes, with_timeout


def png(width: int = 8, height: int = 8, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(side: int = 20_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


@pytest.fixture
def ws(tmp_path: Path):
    with Workspace(tmp_path / "ws") as workspace:
        yield workspace


# ------------------------------------------------------------------ one line


def test_a1111_options_become_params() -> None:
    line = (
        'a red fox --seed 5 --steps 20 --negative_prompt "blurry, dark" --width 512 '
        "--height 768 --cfg_scale 6.5 --sampler_name 'DPM++ 2M' --n_iter 2 --batch_size 3 "
        "--sd_model sdxl"
    )
    parsed = nbbatch.planning.parse_prompt_line(line)
    assert parsed.prompt == "a red fox"
    assert parsed.params == Params(
        seed=5,
        steps=20,
        negative_prompt="blurry, dark",
        size="512x768",
        cfg_scale=6.5,
        sampler="DPM++ 2M",
        n=6,
        model="sdxl",
    )
    assert parsed.warnings == ()


def test_prompt_option_and_plain_lines() -> None:
    assert nbbatch.planning.parse_prompt_line('--prompt "a cat, 4k" --seed 1').prompt == "a cat, 4k"
    plain = nbbatch.planning.parse_prompt_line("a cat's hat -- on a--table")
    assert plain.prompt == "a cat's hat -- on a--table"  # no option starts there
    assert plain.changes == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a cat --seed abc", "whole number"),
        ("a cat --seed", "needs a value"),
        ('a cat --negative_prompt "unclosed', "quotes"),
        ("a cat --width 512", "together"),
        ("a cat --n_iter 5 --batch_size 4", "limit per task is 16"),
        ("--seed 5", "empty"),
        ("a cat --steps 0", "steps"),
        ("a cat --seed 1 stray", "expected an option"),
    ],
)
def test_bad_lines_raise_a_typed_error_naming_the_line(line: str, message: str) -> None:
    with pytest.raises(PromptSourceError, match=message) as info:
        nbbatch.planning.parse_prompt_line(line, where="line 7")
    assert info.value.where == "line 7"
    assert str(info.value).startswith("line 7: ")


_option_names = st.sampled_from(
    ["seed", "steps", "width", "height", "cfg_scale", "negative_prompt", "n_iter", "x", "prompt"]
)
_values = st.one_of(
    st.integers(-10, 10**20).map(str), st.text(max_size=8), st.just('"'), st.just("--")
)
_lines = st.one_of(
    st.text(max_size=80),
    st.tuples(st.text(max_size=20), st.lists(st.tuples(_option_names, _values), max_size=5)).map(
        lambda t: t[0] + "".join(f" --{k} {v}" for k, v in t[1])
    ),
)


@settings(max_examples=400, deadline=None)
@given(_lines)
def test_line_parser_never_raises_anything_but_its_typed_error(line: str) -> None:
    try:
        parsed = nbbatch.planning.parse_prompt_line(line)
    except PromptSourceError as exc:
        assert str(exc)
        return
    assert parsed.prompt == parsed.prompt.strip() and parsed.prompt
    assert isinstance(parsed.params, Params)


# ------------------------------------------------------------------ files


def test_txt_file_skips_comments_reports_bad_lines_and_unknown_options(tmp_path: Path) -> None:
    source = tmp_path / "prompts.txt"
    source.write_text(
        "# my prompts\n"
        "a lighthouse at dusk\n"
        "\n"
        "a fox --seed 5 --steps 20 --tiling true\n"
        "a bad one --seed many\n"
        "an owl --n_iter 2\n",
        encoding="utf-8",
    )
    tasks = nbbatch.read_prompts(source, params={"size": "1024x1024", "steps": 30})
    assert [t.prompt for t in tasks] == ["a lighthouse at dusk", "a fox", "an owl"]
    assert tasks[0].params == Params(size="1024x1024", steps=30)
    assert tasks[1].params == Params(size="1024x1024", steps=20, seed=5)
    assert tasks[2].params.n == 2
    assert [(s.where, "whole number" in s.reason) for s in tasks.skipped] == [("line 5", True)]
    assert tasks.warnings == ["line 4: unknown option --tiling ignored"]
    assert tasks.summary() == "3 tasks -> 4 images; 1 skipped; 1 warning(s)"


def test_csv_rows_with_images_relative_to_the_file(tmp_path: Path, ws: Workspace) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png())
    source = tmp_path / "jobs.csv"
    source.write_text(
        "prompt,negative_prompt,seed,width,height,steps,cfg_scale,sampler,model,image,n,mood\n"
        "a castle,fog,3,640,480,25,7,euler,sdxl,img/a.png,2,happy\n"
        "a bridge,,,,,,,,,,,\n"
        "a tower,,notanumber,,,,,,,,,\n"
        "a boat,,,,,,,,,img/missing.png,,\n",
        encoding="utf-8",
    )
    tasks = nbbatch.read_prompts(source, workspace=ws)
    assert [t.prompt for t in tasks] == ["a castle", "a bridge"]
    castle = tasks[0]
    assert castle.params == Params(
        negative_prompt="fog",
        seed=3,
        size="640x480",
        steps=25,
        cfg_scale=7.0,
        sampler="euler",
        model="sdxl",
        n=2,
    )
    assert [r.name for r in castle.references] == ["a.png"]
    assert castle.references[0].path.read_bytes() == png()
    assert [s.where for s in tasks.skipped] == ["row 3 (line 4)", "row 4 (line 5)"]
    assert "seed" in tasks.skipped[0].reason
    assert "not found" in tasks.skipped[1].reason
    assert tasks.warnings == ["unknown column(s) ignored: mood"]


def test_csv_delimiter_comes_from_the_header(tmp_path: Path) -> None:
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("prompt;seed\na cat, red, 4k;3\n", encoding="utf-8")
    (task,) = nbbatch.read_prompts(semicolons)
    assert (task.prompt, task.params.seed) == ("a cat, red, 4k", 3)
    single = tmp_path / "single.csv"
    single.write_text('prompt\n"a dog; sitting, by a fire"\nan owl\n', encoding="utf-8")
    assert [t.prompt for t in nbbatch.read_prompts(single)] == [
        "a dog; sitting, by a fire",
        "an owl",
    ]


def test_csv_with_any_line_ends_reads_the_same_rows(tmp_path: Path) -> None:
    # Excel on Windows writes CRLF, old Mac tools a lone CR; a quoted prompt may span lines
    for name, end in (("crlf", "\r\n"), ("cr", "\r"), ("lf", "\n")):
        source = tmp_path / f"{name}.csv"
        text = f'prompt,seed{end}a red fox,1{end}"a tall{end}lighthouse",2{end}'
        source.write_bytes(text.encode())
        tasks = nbbatch.read_prompts(source)
        assert [(t.prompt, t.params.seed) for t in tasks] == [
            ("a red fox", 1),
            ("a tall\nlighthouse", 2),
        ], name


def test_a_csv_whose_first_line_is_only_a_carriage_return_is_refused_in_words(
    tmp_path: Path,
) -> None:
    # found by the fuzz: it used to escape as the csv module's own, untyped error
    source = tmp_path / "odd.csv"
    source.write_bytes(b"\r0")
    with pytest.raises(PromptSourceError, match="no 'prompt' column"):
        nbbatch.read_prompts(source)


def test_csv_without_prompt_column_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("text,seed\nhello,1\n", encoding="utf-8")
    with pytest.raises(PromptSourceError, match="no 'prompt' column"):
        nbbatch.read_prompts(source)


def test_jsonl_rows_and_per_row_errors(tmp_path: Path) -> None:
    source = tmp_path / "jobs.jsonl"
    rows = [
        {"prompt": "a cat", "size": "512x512", "seed": 9},
        "a dog",
        {"prompt": "", "seed": 1},
        [1, 2],
        {"prompt": "an eel", "steps": "twenty"},
        {"prompt": "a yak", "image": "y.png"},
    ]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n", encoding="utf-8")
    tasks = nbbatch.read_prompts(source)
    assert [t.prompt for t in tasks] == ["a cat", "a dog"]
    assert tasks[0].params == Params(size="512x512", seed=9)
    assert [s.where for s in tasks.skipped] == [
        "row 3 (line 3)",
        "row 4 (line 4)",
        "row 5 (line 5)",
        "row 6 (line 6)",
        "row 7 (line 7)",
    ]
    assert "workspace=" in tasks.skipped[3].reason
    assert "not valid JSON" in tasks.skipped[4].reason


def test_unreadable_sources_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptSourceError, match="no such file"):
        nbbatch.read_prompts(tmp_path / "nope.txt")
    (tmp_path / "p.docx").write_bytes(b"PK")
    with pytest.raises(PromptSourceError, match="unknown prompts file type"):
        nbbatch.read_prompts(tmp_path / "p.docx")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(PromptSourceError, match="UTF-8"):
        nbbatch.read_prompts(tmp_path / "latin.txt")


# ------------------------------------------------------------------ image folders


def test_folder_one_prompt_times_every_image_with_caption_override(
    tmp_path: Path, ws: Workspace
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(color="red"))
    (folder / "b.PNG").write_bytes(png(color="blue"))
    (folder / "b.txt").write_text("  a blue\nsquare  ", encoding="utf-8")
    (folder / "c.jpg").write_bytes(_jpeg())
    tasks = nbbatch.tasks_from_folder(
        folder, "make it watercolor", workspace=ws, params={"strength": 0.6}
    )
    assert [(t.prompt, t.references[0].name) for t in tasks] == [
        ("make it watercolor", "a.png"),
        ("a blue square", "b.PNG"),
        ("make it watercolor", "c.jpg"),
    ]
    assert all(t.params.strength == 0.6 for t in tasks)
    assert tasks.skipped == []
    appended = nbbatch.tasks_from_folder(folder, "watercolor", workspace=ws, captions="append")
    assert appended[1].prompt == "watercolor, a blue square"
    ignored = nbbatch.tasks_from_folder(folder, "watercolor", workspace=ws, captions="ignore")
    assert {t.prompt for t in ignored} == {"watercolor"}


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(buf, "JPEG")
    return buf.getvalue()


def test_folder_refusals_are_listed_with_reasons(tmp_path: Path, ws: Workspace) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.png").write_bytes(png())
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4")
    (folder / "fake.png").write_bytes(b"II*\x00" + b"\0" * 100)  # a TIFF named .png
    (folder / "bomb.png").write_bytes(bomb_png())
    (folder / "huge.png").write_bytes(png() + b"\0" * (10 * 1024 * 1024))
    (folder / "sub").mkdir()
    tasks = nbbatch.tasks_from_folder(folder, "restyle", workspace=ws)
    assert [t.references[0].name for t in tasks] == ["good.png"]
    reasons = {s.where: s.reason for s in tasks.skipped}
    assert set(reasons) == {"notes.pdf", "fake.png", "bomb.png", "huge.png", "sub"}
    assert "not an accepted image type (.pdf)" in reasons["notes.pdf"]
    assert "TIFF is not an accepted image format" in reasons["fake.png"]
    assert "pixels" in reasons["bomb.png"]
    assert "MiB; the limit is 10 MiB" in reasons["huge.png"]


def test_folder_takes_at_most_fifty_images_by_default(tmp_path: Path, ws: Workspace) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(53):
        (folder / f"img{i:03d}.png").write_bytes(png(color=(i, 0, 0)))  # type: ignore[arg-type]
    tasks = nbbatch.tasks_from_folder(folder, "restyle", workspace=ws)
    assert len(tasks) == 50
    assert [s.where for s in tasks.skipped] == ["img050.png", "img051.png", "img052.png"]
    assert all("limit of 50 images" in s.reason for s in tasks.skipped)
    assert len(nbbatch.tasks_from_folder(folder, "x", workspace=ws, max_images=60)) == 53


def test_folder_without_prompt_needs_captions(tmp_path: Path, ws: Workspace) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(png())
    (folder / "a.txt").write_text("from caption", encoding="utf-8")
    (folder / "b.png").write_bytes(png(color="blue"))
    tasks = nbbatch.tasks_from_folder(folder, workspace=ws)
    assert [t.prompt for t in tasks] == ["from caption"]
    assert tasks.skipped[0].where == "b.png" and "no prompt" in tasks.skipped[0].reason
    with pytest.raises(PromptSourceError, match="not a folder"):
        nbbatch.tasks_from_folder(folder / "a.png", "x", workspace=ws)


# -- hostile input (found by trying to break nbbatch) ----------------------------
# Defect 4: special files (a FIFO, a link to /dev/zero, huge captions) named as prompt
# files or found in image folders were waited on or read whole. Defect 5: image paths in
# .csv/.jsonl files could leave the file's folder. Defect 6: control characters from
# files. The folder size limit must read the same in messages and README.


@needs_fifo
def test_a_fifo_named_like_a_prompts_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "prompts.txt"
    os.mkfifo(fifo)
    with pytest.raises(PromptSourceError, match="named pipe"):
        with_timeout(lambda: nbbatch.read_prompts(fifo))


def test_a_link_to_dev_zero_is_refused_not_read_until_memory_runs_out(tmp_path: Path) -> None:
    link = tmp_path / "prompts.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(PromptSourceError, match="character device"):
        with_timeout(lambda: nbbatch.read_prompts(link))


@needs_fifo
def test_special_files_in_an_image_folder_are_skipped_with_their_reason(
    tmp_path: Path, workspace: Workspace
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes())
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(folder / "good.txt")  # a caption that is a FIFO: warned, prompt used
    tasks = with_timeout(lambda: nbbatch.tasks_from_folder(folder, "ink", workspace=workspace))
    assert [t.prompt for t in tasks] == ["ink"]  # type: ignore[attr-defined]
    reasons = {s.where: s.reason for s in tasks.skipped}  # type: ignore[attr-defined]
    assert "named pipe" in reasons["pipe.png"]
    assert "character device" in reasons["zero.png"]
    assert any("good.txt" in w for w in tasks.warnings)  # type: ignore[attr-defined]


def test_an_oversized_caption_is_not_read_into_memory(tmp_path: Path, workspace: Workspace) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(png_bytes())
    (folder / "cat.txt").write_bytes(b"x" * 200_000)
    tasks = nbbatch.tasks_from_folder(folder, "ink", workspace=workspace)
    assert [t.prompt for t in tasks] == ["ink"]
    assert any("limit" in w for w in tasks.warnings)


def _csv(folder: Path, image: str) -> Path:
    path = folder / "prompts.csv"
    path.write_text(f"prompt,image\na fox,{image}\n")
    return path


def test_csv_image_paths_outside_the_files_folder_are_refused(
    tmp_path: Path, workspace: Workspace
) -> None:
    (tmp_path / "secret.png").write_bytes(png_bytes(colour="blue"))
    inside = tmp_path / "prompts"
    inside.mkdir()
    (inside / "ok.png").write_bytes(png_bytes())
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
    (tmp_path / "shared.png").write_bytes(png_bytes(colour="green"))
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


def test_prompts_from_files_lose_their_control_characters(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text('a \x1b[2Jfox --negative_prompt "no\x07ise"\n')
    (tmp_path / "p.csv").write_text('prompt\n"a\x00 owl\u202e"\n')
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a\u2066 cat\x9b"}) + "\n")
    txt = nbbatch.read_prompts(tmp_path / "p.txt")
    assert txt[0].prompt == "a [2Jfox" and txt[0].params.negative_prompt == "noise"
    assert nbbatch.read_prompts(tmp_path / "p.csv")[0].prompt == "a owl"
    assert nbbatch.read_prompts(tmp_path / "p.jsonl")[0].prompt == "a cat"


def test_the_folder_size_limit_reads_the_same_in_messages_and_readme(
    tmp_path: Path, workspace: Workspace
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "huge.png").write_bytes(png_bytes() + b"\0" * (10 * 1024 * 1024))
    reason = nbbatch.tasks_from_folder(folder, "x", workspace=workspace).skipped[0].reason
    assert "the limit is 10 MiB" in reason and "10.5" not in reason
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "≤ 10 MiB" in readme and "≤ 10 MB" not in readme
