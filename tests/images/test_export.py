"""Export: safe generated names, a truthful manifest, streaming, ZIP and folder."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nbbatch import Batch, GeneratedImage, Params, Task, Workspace, export_zip
from nbbatch.core._model import clean_text
from nbbatch.errors import ConfigError, StorageError
from nbbatch.images import ConvertFormat, Resize, derived_images, export_folder, postprocess
from nbbatch.images._export import safe_name, slugify

SAFE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
RESERVED = (
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}
)


def is_reserved(name: str) -> bool:
    return name.split(".")[0].upper() in RESERVED


NASTY = [
    "../../x",
    "/etc/passwd",
    "C:\\Windows\\system32",
    "CON",
    "con.tar",
    "Lpt1",
    "a\\b",
    "NUL\x00",
    "nul",
    "\x00\x01\x02",
    "🦊" * 300,
    "...",
    ".hidden",
    " ",
    "",
    "x" * 500,
    "dup",
    "DUP",
    "dup",
    "ﬁle",  # ligature: NFKD folds it to "file"
    "e\u0301t\u00e9",  # combining and precomposed accents
]


def test_fixed_nasty_names() -> None:
    used: set[str] = set()
    names = [safe_name(stem, "png", used) for stem in NASTY]
    assert all(SAFE.match(n) for n in names), names
    assert not any(is_reserved(n) for n in names)
    assert len({n.lower() for n in names}) == len(names)
    assert names[0] == "x.png" and names[1] == "passwd.png"
    assert names[3] == "image-CON.png"
    assert names[19] == "file.png"


@settings(max_examples=300, deadline=None)
@given(
    stems=st.lists(st.text(max_size=300), min_size=1, max_size=30),
    ext=st.text(max_size=12),
)
def test_any_text_becomes_a_safe_unique_name(stems: list[str], ext: str) -> None:
    used: set[str] = set()
    names = [safe_name(s, ext, used) for s in stems]
    for n in names:
        assert SAFE.match(n), n
        assert not is_reserved(n), n
        assert n not in (".", "..") and not n.startswith(".")
    assert len({n.lower() for n in names}) == len(names)


@given(st.text(max_size=200))
def test_slugs_are_plain(text: str) -> None:
    slug = slugify(text)
    assert re.fullmatch(r"([a-z0-9]+(-[a-z0-9]+)*)?", slug)
    assert len(slug) <= 40


# ------------------------------------------------------------------ archives
@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("img")
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="PNG")
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    path = folder / f"{sha}.png"
    path.write_bytes(data)
    return path, sha


def fake_task(prompt: str, order: int, image: tuple[Path, str], **kw: object) -> Task:
    """A finished task pointing at an existing file (no provider run needed)."""
    task = Task(prompt, params=Params(seed=order), **kw)  # type: ignore[arg-type]
    task.order = order
    path, sha = image
    task.images.append(GeneratedImage(task.id, 0, path, sha, 16, 16, "PNG", seed=order))
    return task


def assert_extracts_inside(archive: Path, target: Path) -> list[Path]:
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            assert SAFE.match(name), name
            resolved = (target / name).resolve()
            assert resolved.is_relative_to(target.resolve())
        zf.extractall(target)
    found = [p for p in target.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(target.resolve()) for p in found)
    return found


prompt_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=120
).filter(lambda s: bool(clean_text(s).strip()))  # control characters alone are no prompt


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(prompts=st.lists(prompt_text, min_size=1, max_size=6))
def test_zip_of_any_prompts_extracts_inside_the_target(
    tmp_path_factory: pytest.TempPathFactory,
    image_file: tuple[Path, str],
    prompts: list[str],
) -> None:
    out = tmp_path_factory.mktemp("zip")
    tasks = [fake_task(p, i, image_file) for i, p in enumerate(prompts)]
    archive = export_zip(tasks, out / "export.zip")
    files = assert_extracts_inside(archive, out / "x")
    assert len(files) == len(prompts) + 1  # images + manifest
    manifest = json.loads((out / "x" / "manifest.json").read_text())
    assert [m["prompt"] for m in manifest["images"]] == [t.prompt for t in tasks]


def test_manifest_holds_prompts_params_seeds_lineage_and_sources(
    tmp_path: Path, image_file: tuple[Path, str]
) -> None:
    parent = fake_task("a red car", 6, image_file)
    child = fake_task("a red car, at night", 7, image_file, parent_id=parent.id)
    archive = export_zip([parent, child], tmp_path / "e.zip", batch={"id": "b1", "name": "cars"})
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = zf.namelist()
    path, sha = image_file
    first, second = manifest["images"]
    assert first["file"] == f"0007_a-red-car_{sha[:6]}.png"
    assert second["file"] == f"0008_a-red-car-at-night_{sha[:6]}.png"
    assert set(names) == {first["file"], second["file"], "manifest.json"}
    assert first["prompt"] == "a red car" and first["seed"] == 6
    assert first["children"] == [child.id]
    assert second["parent_id"] == parent.id
    assert first["source_file"] == f"images/{sha[:2]}/{path.name}"
    assert first["sha256"] == first["file_sha256"] == sha
    assert first["params"] == {} and manifest["tasks"][0]["params"] == {"seed": 6}
    assert manifest["batch"] == {"id": "b1", "name": "cars"}
    assert manifest["postprocess"] is None


def test_a_missing_source_fails_cleanly_without_leaving_files(
    tmp_path: Path, image_file: tuple[Path, str]
) -> None:
    gone = (tmp_path / "gone.png", "0" * 64)
    tasks = [fake_task("ok", 0, image_file), fake_task("missing", 1, gone)]
    with pytest.raises(StorageError, match="missing"):
        export_zip(tasks, tmp_path / "out" / "e.zip")
    assert list((tmp_path / "out").iterdir()) == []  # no archive, no temp file


def test_path_must_be_a_zip(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.zip"):
        export_zip([], tmp_path / "e.tar")


def test_zip_is_streamed_not_built_in_memory(tmp_path: Path) -> None:
    # 12 incompressible 1 MB files: a ZIP built in memory would hold >= 12 MB at once.
    tasks = []
    for i in range(12):
        data = os.urandom(1024 * 1024)
        sha = hashlib.sha256(data).hexdigest()
        p = tmp_path / f"{sha}.png"
        p.write_bytes(data)
        t = Task(f"noise {i}")
        t.order = i
        t.images.append(GeneratedImage(t.id, 0, p, sha, 1, 1, "PNG"))
        tasks.append(t)
    tracemalloc.start()
    try:
        export_zip(tasks, tmp_path / "big.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "big.zip").stat().st_size > 12 * 1024 * 1024
    assert peak < 4 * 1024 * 1024


# ------------------------------------------------------------------ real batches
@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    ws = Workspace(tmp_path / "ws")
    b = Batch.create(
        ["../../etc/passwd", "CON", "a red car"], workspace=ws, params=Params(seed=5, n=2)
    )
    b.run_sync("demo")
    yield b
    ws.close()


def test_batch_export_zip_still_works(batch: Batch, tmp_path: Path) -> None:
    archive = batch.export_zip(tmp_path / "b.zip")
    files = assert_extracts_inside(archive, tmp_path / "x")
    assert len(files) == 7
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["batch"]["id"] == batch.id
    assert {m["prompt"] for m in manifest["images"]} == {"../../etc/passwd", "CON", "a red car"}
    assert sorted(m["seed"] for m in manifest["images"]) == [5, 5, 5, 6, 6, 6]
    for m in manifest["images"]:
        data = (tmp_path / "x" / m["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["sha256"]


def test_export_with_post_processing(batch: Batch, tmp_path: Path) -> None:
    archive = export_zip(
        batch.tasks,
        tmp_path / "small.zip",
        steps=[Resize(128), ConvertFormat("jpeg", quality=80)],
        max_workers=2,
    )
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        for m in manifest["images"]:
            assert m["file"].endswith(".jpg")
            data = zf.read(m["file"])
            assert hashlib.sha256(data).hexdigest() == m["file_sha256"] != m["sha256"]
            with Image.open(io.BytesIO(data)) as img:
                assert img.format == "JPEG" and max(img.size) == 128
    assert [s["step"] for s in manifest["postprocess"]] == ["resize", "format"]
    # The workspace originals are untouched.
    for im in batch.images:
        assert hashlib.sha256(im.read_bytes()).hexdigest() == im.sha256


def test_a_cached_export_holds_the_workspaces_derived_copies(batch: Batch, tmp_path: Path) -> None:
    steps = [Resize(96), ConvertFormat("webp", quality=80)]
    made = {d.sha256 for d in postprocess(batch.tasks[2], steps)}  # the task's 2 copies
    archive = export_zip(batch.tasks, tmp_path / "c.zip", steps=steps, cache=True)
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        hashes = {m["file_sha256"] for m in manifest["images"]}
    assert made <= hashes and len(hashes) == 6
    # the copies the export made are in the workspace now, one per image
    for im in batch.images:
        assert [d.sha256 for d in derived_images(im)] != []
        assert {d.sha256 for d in derived_images(im)} <= hashes


def test_export_to_a_folder(batch: Batch, tmp_path: Path) -> None:
    folder = export_folder(batch.tasks, tmp_path / "out", batch={"id": batch.id})
    names = sorted(p.name for p in folder.iterdir())
    assert "manifest.json" in names and len(names) == 7
    assert all(SAFE.match(n) for n in names)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {m["file"] for m in manifest["images"]} == set(names) - {"manifest.json"}
    with pytest.raises(ConfigError, match="not empty"):
        export_folder(batch.tasks, folder)
    again = export_folder(batch.tasks[:1], folder, overwrite=True)
    assert len(list(again.iterdir())) == 7  # same names replaced, others left alone
    assert not list(folder.glob(".tmp-*"))
