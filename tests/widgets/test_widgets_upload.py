"""Upload's message protocol, driven as the browser drives it: chunks, limits, hostility."""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from nbbatch import Workspace
from nbbatch.widgets import Upload
from nbbatch.widgets._upload import CHUNK_BYTES
from tests.support import png_bytes


class UploadPage:
    """Sends what the upload page sends and keeps what the kernel answers."""

    _ids = itertools.count(1)
    _fids = itertools.count(1)

    def __init__(self, widget: Upload) -> None:
        self.widget = widget
        self.sent: list[tuple[dict[str, Any], list[bytes]]] = []
        widget.send = self._capture  # type: ignore[method-assign]

    def _capture(self, content: dict[str, Any], buffers: Any = None) -> None:
        json.dumps(content)  # what goes over the wire must be JSON
        self.sent.append((content, [bytes(b) for b in buffers or ()]))

    def request(self, type: str, buffers: list[bytes] | None = None, **body: Any) -> dict[str, Any]:
        uid = f"u{next(self._ids)}"
        views = [memoryview(b) for b in buffers or ()]
        self.widget._on_msg(self.widget, {"type": type, "uuid": uid, **body}, views)
        for content, bufs in reversed(self.sent):
            if content.get("uuid") == uid:
                return {**content, "_buffers": bufs}
        raise AssertionError(f"no reply to {type}")

    def ok(self, type: str, buffers: list[bytes] | None = None, **body: Any) -> dict[str, Any]:
        reply = self.request(type, buffers, **body)
        assert reply["ok"], reply.get("error")
        return reply

    def refused(self, type: str, buffers: list[bytes] | None = None, **body: Any) -> str:
        reply = self.request(type, buffers, **body)
        assert not reply["ok"], reply
        return str(reply["error"])

    def upload(self, name: str, data: bytes, order: list[int] | None = None) -> dict[str, Any]:
        """The whole exchange for one file; returns the reply to ``end`` (or the refusal)."""
        fid = f"f{next(self._fids)}"
        begun = self.ok("begin", fid=fid, name=name, size=len(data))
        if "refused" in begun:
            return begun
        chunks = begun["chunks"]
        for index in order if order is not None else range(chunks):
            part = data[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
            got = self.ok("chunk", [part], fid=fid, index=index)
            if "refused" in got:
                return got
        return self.ok("end", fid=fid)


def big_png(target_bytes: int, seed: int = 1) -> bytes:
    """A PNG of about ``target_bytes`` (noise does not compress)."""
    import random

    side = int((target_bytes / 3) ** 0.5) + 1
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=0)
    return out.getvalue()


@pytest.fixture
def page(workspace: Workspace) -> UploadPage:
    return UploadPage(Upload(workspace))


def test_hello_tells_the_page_the_limits_and_the_chunk_size(page: UploadPage) -> None:
    reply = page.ok("hello")
    assert reply["limits"] == {
        "max_files": 50,
        "max_bytes": 10 * 1024 * 1024,
        "formats": ["JPG", "PNG", "GIF", "WebP"],
        "chunk": 4 * 1024 * 1024,
    }
    assert reply["items"] == [] and reply["refused"] == []
    assert reply["strings"]["add_images"] == "Add images"


def test_a_file_sent_in_chunks_becomes_a_reference_in_the_workspace(page: UploadPage) -> None:
    data = big_png(9 * 1024 * 1024)
    assert len(data) > 2 * CHUNK_BYTES  # three chunks
    reply = page.upload("big.png", data)
    refs = page.widget.references
    assert [r.name for r in refs] == ["big.png"]
    assert reply["id"] == refs[0].sha256
    assert refs[0].read_bytes() == data
    assert page.widget.count == 1
    item = page.ok("list")["items"][0]
    assert item["name"] == "big.png" and item["format"] == "PNG" and item["size"] == len(data)


def test_chunks_may_arrive_in_any_order(page: UploadPage) -> None:
    data = big_png(9 * 1024 * 1024, seed=2)
    page.upload("shuffled.png", data, order=[2, 0, 1])
    assert page.widget.references[0].read_bytes() == data


def test_a_file_too_big_is_refused_before_any_byte_is_sent(page: UploadPage) -> None:
    reply = page.ok("begin", fid="x", name="huge.png", size=12_000_000)
    assert reply["refused"] == "too big: 11 MB; the limit is 10 MB"
    assert page.widget.refused == [{"name": "huge.png", "reason": reply["refused"]}]


def test_a_file_that_is_not_an_image_is_refused_saying_what_it_is(page: UploadPage) -> None:
    reply = page.upload("notes.png", b"%PDF-1.7 not really a picture")
    assert "it is PDF" in reply["refused"]
    reply = page.upload("readme.txt", b"just some text")
    assert "it is unknown data" in reply["refused"]
    assert [r["name"] for r in page.widget.refused] == ["notes.png", "readme.txt"]
    assert page.widget.references == []


def test_files_over_the_count_limit_are_left_out_by_name(workspace: Workspace) -> None:
    page = UploadPage(Upload(workspace, max_files=2))
    for i in range(3):
        page.upload(f"img{i}.png", png_bytes(colour=(i * 40, 10, 10)))
    assert [r.name for r in page.widget.references] == ["img0.png", "img1.png"]
    assert page.widget.refused == [{"name": "img2.png", "reason": "left out: the limit is 2 files"}]


def test_a_corrupt_image_is_refused_with_the_decoders_words(page: UploadPage) -> None:
    broken = png_bytes()[:40]
    reply = page.upload("broken.png", broken)
    assert "could not be decoded" in reply["refused"] or "corrupt" in reply["refused"]


def test_the_same_image_twice_is_kept_once(page: UploadPage) -> None:
    data = png_bytes()
    page.upload("a.png", data)
    reply = page.upload("b.png", data)
    assert reply["refused"] == "the same image is already added (as a.png)"
    assert [r.name for r in page.widget.references] == ["a.png"]


def test_reorder_remove_and_clear(page: UploadPage) -> None:
    for i in range(3):
        page.upload(f"p{i}.png", png_bytes(colour=(10, i * 50, 10)))
    ids = [r.sha256 for r in page.widget.references]
    page.ok("move", id=ids[2], index=0)
    assert [r.name for r in page.widget.references] == ["p2.png", "p0.png", "p1.png"]
    page.ok("remove", id=ids[0])
    assert [r.name for r in page.widget.references] == ["p2.png", "p1.png"]
    version = page.widget.version
    page.widget.clear()
    assert page.widget.references == [] and page.widget.version > version
    assert page.ok("list")["items"] == []


def test_kernel_thumbnails_come_as_binary_buffers(page: UploadPage) -> None:
    page.upload("t.png", png_bytes(size=(300, 200)))
    sha = page.widget.references[0].sha256
    reply = page.ok("thumbs", ids=[sha, "nope"])
    assert reply["ids"] == [sha]
    assert reply["_buffers"][0][:4] == b"RIFF"  # WebP


def test_the_set_lives_in_the_kernel_so_a_new_view_sees_it(page: UploadPage) -> None:
    page.upload("kept.png", png_bytes())
    other_view = page.ok("hello")  # a reload or a second display asks again
    assert [i["name"] for i in other_view["items"]] == ["kept.png"]


# -- a hostile or confused page ----------------------------------------------------------


def test_an_unknown_message_type_gets_an_error_and_the_widget_stays_usable(
    page: UploadPage,
) -> None:
    assert "does not understand" in page.refused("format_disk")
    assert "incomplete" in page.refused("begin", fid="x", name="a.png", size="big")
    page.widget._on_msg(page.widget, ["not", "a", "dict"], [])  # no uuid: still answered
    assert page.sent[-1][0]["ok"] is False
    page.upload("fine.png", png_bytes())
    assert len(page.widget.references) == 1


def test_a_chunk_of_the_wrong_size_drops_that_file_only(page: UploadPage) -> None:
    data = big_png(5 * 1024 * 1024)
    page.ok("begin", fid="f", name="a.png", size=len(data))
    assert "incomplete" in page.refused("chunk", [data[:1000]], fid="f", index=0)
    assert "no longer expected" in page.refused("end", fid="f")
    assert page.widget.refused[-1]["name"] == "a.png"
    assert "broke off" in page.widget.refused[-1]["reason"]


def test_chunks_out_of_range_twice_or_without_bytes_are_refused(page: UploadPage) -> None:
    data = big_png(5 * 1024 * 1024, seed=3)
    first = data[:CHUNK_BYTES]
    for body, buffers in (
        ({"index": 7}, [first]),
        ({"index": -1}, [first]),
        ({"index": True}, [first]),
        ({"index": 0}, []),
        ({"index": 0}, [first, first]),
    ):
        page.ok("begin", fid="g", name="g.png", size=len(data))
        assert page.refused("chunk", buffers, fid="g", **body)
        assert "g" not in page.widget._pending
    page.ok("begin", fid="h", name="h.png", size=len(data))
    page.ok("chunk", [first], fid="h", index=0)
    assert page.refused("chunk", [first], fid="h", index=0)  # the same chunk again


def test_end_before_every_chunk_or_for_an_unknown_file_is_refused(page: UploadPage) -> None:
    data = big_png(5 * 1024 * 1024, seed=4)
    page.ok("begin", fid="e", name="e.png", size=len(data))
    page.ok("chunk", [data[:CHUNK_BYTES]], fid="e", index=0)
    assert page.refused("end", fid="e")
    assert page.refused("end", fid="never-begun")
    assert page.refused("chunk", [b"x"], fid="never-begun", index=0)
    assert page.widget.references == []


def test_a_page_cannot_open_unbounded_uploads(page: UploadPage) -> None:
    for i in range(8):
        page.ok("begin", fid=f"p{i}", name=f"{i}.png", size=1000)
    assert "Too many files at once" in page.refused("begin", fid="p9", name="9.png", size=1000)
    page.ok("abort", fid="p0")
    page.ok("begin", fid="p9", name="9.png", size=1000)


def test_chinese_reasons(workspace: Workspace) -> None:
    page = UploadPage(Upload(workspace, lang="zh"))
    reply = page.ok("begin", fid="z", name="大.png", size=20_000_000)
    assert reply["refused"].startswith("文件过大")


# -- a folder on the server ----------------------------------------------------------------


def a1111_png(prompt: str = "a lighthouse at dusk, oil painting") -> bytes:
    """A PNG as AUTOMATIC1111 saves it: its parameters in a 'parameters' text chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(
        "parameters",
        f"{prompt}\nNegative prompt: blurry, text\n"
        "Steps: 24, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 1234, Size: 64x48, Model: dreamy",
    )
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 200)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_server_folder_is_read_through_the_guarded_path(
    workspace: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "b.png").write_bytes(png_bytes(colour=(1, 2, 3)))
    (folder / "a.png").write_bytes(png_bytes(colour=(4, 5, 6)))
    (folder / "big.png").write_bytes(big_png(300_000))
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_bytes(b"%PDF-1.4 a document")
    os.mkfifo(folder / "pipe.png")  # reading it would wait forever for a writer
    (folder / "outside.png").symlink_to(tmp_path / "elsewhere.png")
    (folder / "sub").mkdir()
    up = Upload(workspace, max_bytes=200_000, server_root=tmp_path)
    added = up.add_folder(folder)
    assert [r.name for r in added] == ["shots/a.png", "shots/b.png"]
    reasons = {r["name"]: r["reason"] for r in up.refused}
    assert "200 KB" in reasons["shots/big.png"] or "limit" in reasons["shots/big.png"]
    assert "not an image file name" in reasons["shots/notes.txt"]
    assert "PDF" in reasons["shots/fake.png"]
    assert "named pipe" in reasons["shots/pipe.png"]
    assert "symbolic link" in reasons["shots/outside.png"]
    assert "sub-folders" in reasons["shots/sub"]


def test_choose_folder_on_server_opens_a_picker_confined_to_its_root(
    workspace: Workspace, tmp_path: Path
) -> None:
    (tmp_path / "pets").mkdir()
    (tmp_path / "pets" / "cat.png").write_bytes(png_bytes())
    up = Upload(workspace, server_root=tmp_path, max_files=5)
    page = UploadPage(up)
    assert up.view.children[1].layout.display == "none"  # nothing shown until asked
    assert page.ok("server_folder")["root"] == str(tmp_path.resolve())
    picker = up._server
    assert picker.is_open and picker._chooser.sandbox_path == str(tmp_path.resolve())
    picker._picked(type("Chosen", (), {"selected_path": str(tmp_path / "pets")})())
    assert not picker.is_open
    assert [r.name for r in up.references] == ["pets/cat.png"]


def test_a_dropped_a1111_image_offers_remix_or_use_as_reference(
    workspace: Workspace,
) -> None:
    from nbbatch import Batch

    batch = Batch.create([], workspace=workspace, allow_empty=True)
    up = Upload(workspace, remix_into=batch)
    page = UploadPage(up)
    made = page.upload("lighthouse.png", a1111_png())
    page.upload("plain.png", png_bytes())
    items = {i["name"]: i for i in page.ok("list")["items"]}
    offer = items["lighthouse.png"]["embedded"]
    assert offer == {
        "source": "a1111",
        "label": "AUTOMATIC1111 / Forge",
        "prompt": "a lighthouse at dusk, oil painting",
        "remix": True,
    }
    assert "embedded" not in items["plain.png"]

    page.ok("remix", id=made["id"])
    (task,) = batch.tasks
    assert task.prompt == "a lighthouse at dusk, oil painting"
    p = task.params
    assert (p.negative_prompt, p.steps, p.sampler, p.cfg_scale, p.seed, p.size, p.model) == (
        "blurry, text", 24, "DPM++ 2M", 6.5, 1234, "64x48", "dreamy",
    )  # fmt: skip
    assert [r.name for r in up.references] == ["plain.png"]  # a result to redo, not an input
    assert "no generation parameters" in page.refused("remix", id=made["id"])


def test_use_as_reference_keeps_the_image_and_drops_the_offer(workspace: Workspace) -> None:
    up = Upload(workspace)  # alone: no batch to remix into, so Remix is not offered
    page = UploadPage(up)
    made = page.upload("lighthouse.png", a1111_png())
    assert page.ok("list")["items"][0]["embedded"]["remix"] is False
    assert "needs a batch" in page.refused("remix", id=made["id"])
    page.ok("keep", id=made["id"])
    assert "embedded" not in page.ok("list")["items"][0]
    assert [r.name for r in up.references] == ["lighthouse.png"]
