"""What a person sees in a notebook: batches, tasks, images, runs, errors and history."""

from __future__ import annotations

import asyncio
import base64
import io
import pickle
import re
import traceback
from datetime import datetime
from pathlib import Path

import pytest
from IPython.core.formatters import DisplayFormatter
from PIL import Image

import nbbatch
from nbbatch import Batch, GeneratedImage, Params, Task, Workspace
from nbbatch.engine._html import STRIP_IMAGES, THUMB_PX
from nbbatch.errors import ConfigError, NotFoundError, ServerError
from tests.support import ControlledProvider, until

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_NAME = '<script>alert("name")</script>'


def shown(obj: object) -> dict[str, object]:
    """The mime bundle IPython would put in the notebook for ``obj``."""
    data, _ = DisplayFormatter().format(obj)
    return data


def data_uris(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/[a-z]+;base64,([^\"]+)", html)]


@pytest.fixture
def ran(workspace: Workspace) -> Batch:
    provider = ControlledProvider()
    provider.script["a broken <b>fox</b>"] = [ServerError("the <server> said no")]
    batch = Batch.create(
        [f"image {i}" for i in range(5)] + ["a broken <b>fox</b>", "never run"],
        workspace=workspace,
        name=HOSTILE_NAME,
        params=Params(n=2),
    )
    batch.run_sync(provider, retry=0, tasks=batch.tasks[:6])
    return batch


def test_a_batch_shows_its_name_counts_and_a_strip_of_small_thumbnails(ran: Batch) -> None:
    html = ran._repr_html_()
    assert "<script" not in html and "&lt;script&gt;" in html  # the name, escaped
    assert "5 succeeded" in html and "1 failed" in html and "1 idle" in html
    assert "7 tasks" in html and "10 images" in html
    assert 'title="succeeded: 5"' in html  # one bar segment per status
    thumbs = data_uris(html)
    assert len(thumbs) == STRIP_IMAGES and f"+{10 - STRIP_IMAGES} more" in html
    for data in thumbs:
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "WEBP" and max(im.size) <= THUMB_PX
    full = {base64.b64encode(im.read_bytes()).decode() for im in ran.images}
    assert not any(b64 in html for b64 in full)  # no full image is inlined
    assert "text/html" in shown(ran)


def test_an_empty_batch_says_so(workspace: Workspace) -> None:
    batch = Batch.create([], workspace=workspace, allow_empty=True)
    html = batch._repr_html_()
    assert "no tasks yet" in html and "data:image" not in html


def test_a_task_shows_its_status_prompt_error_and_thumbnails_escaped(ran: Batch) -> None:
    ok, broken, idle = ran[0], ran[5], ran[6]
    html = ok._repr_html_()
    assert "succeeded" in html and "image 0" in html and "2 images" in html
    assert len(data_uris(html)) == 2
    html = broken._repr_html_()
    assert "a broken &lt;b&gt;fox&lt;/b&gt;" in html and "<b>fox" not in html
    assert "the &lt;server&gt; said no" in html and "server: " in html
    assert "idle" in idle._repr_html_() and "data:image" not in idle._repr_html_()
    loose = Task("a <i>loose</i> task")
    assert "&lt;i&gt;loose" in loose._repr_html_() and "not in a batch" in loose._repr_html_()


def test_a_displayed_png_or_jpeg_is_stored_once(ran: Batch, tmp_path: Path) -> None:
    # before: _repr_png_ and a base64 <img> in _repr_html_, so a saved .ipynb held both
    image = ran.images[0]
    bundle = shown(image)
    assert set(bundle) == {"image/png", "text/plain"}
    assert bundle["image/png"] == image.read_bytes()
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (16, 16), "navy").save(jpeg, "JPEG")
    as_jpeg = GeneratedImage("t", 0, jpeg, "0" * 64, 16, 16, "JPEG")
    assert set(shown(as_jpeg)) == {"image/jpeg", "text/plain"}
    webp = tmp_path / "photo.webp"
    Image.new("RGB", (16, 16), "navy").save(webp, "WEBP")
    as_webp = GeneratedImage("t", 0, webp, "0" * 64, 16, 16, "WEBP")
    bundle = shown(as_webp)
    assert set(bundle) == {"text/html", "text/plain"}  # no image/webp mime type: one <img>
    assert len(data_uris(str(bundle["text/html"]))) == 1


async def test_a_run_shows_its_state_and_counts(workspace: Workspace) -> None:
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    batch = Batch.create([f"p{i}" for i in range(4)], workspace=workspace)
    run = batch.start(provider, concurrency=2)
    await until(lambda: len(provider.started) == 2)
    text = repr(run)
    assert text.startswith(f"<Runner of batch {batch.id}: running, 0 of 4 done")
    assert "2 running, 2 queued, concurrency 2" in text
    run.pause()
    assert ": paused," in repr(run)
    run.resume()
    gate.set()
    await run.wait()
    assert repr(run) == (
        f"<Runner of batch {batch.id}: finished, 4 of 4 done (4 succeeded, 0 failed), "
        "0 running, 0 queued, concurrency 2>"
    )


def test_an_unknown_task_id_is_a_key_error_with_a_sentence(ran: Batch) -> None:
    with pytest.raises(KeyError) as info:
        ran["zzz"]
    message = info.value.args[0]
    assert message.startswith(f"batch {ran.id} has no task 'zzz'")
    assert "batch.tasks" in message and "0-6" in message
    empty = Batch.create([], workspace=ran.workspace, allow_empty=True)
    with pytest.raises(KeyError, match="it has no tasks yet"):
        empty["zzz"]


def test_history_gives_datetimes_and_json_gives_epoch_seconds(ran: Batch) -> None:
    for summary in (ran.workspace.batches()[0], ran.workspace.history()[0]):
        assert isinstance(summary.created_at, datetime)
        assert summary.created_at.tzinfo is not None  # local time, aware
        assert abs(summary.created_at.timestamp() - ran.created_at) < 1e-3
        assert summary.to_dict()["created_at"] == summary.created_at.timestamp()


def test_tracebacks_name_the_public_errors_module() -> None:
    try:
        raise ConfigError("bad setting")
    except ConfigError as exc:
        shown_line = traceback.format_exception_only(type(exc), exc)[-1]
    assert shown_line == "nbbatch.errors.ConfigError: bad setting\n"
    for name in nbbatch.errors.__all__:
        assert getattr(nbbatch.errors, name).__module__ == "nbbatch.errors", name
    again = pickle.loads(pickle.dumps(NotFoundError("no such batch")))
    assert type(again) is NotFoundError and str(again) == "no such batch"


def test_the_gc_freeze_during_runs_is_told_where_people_look() -> None:
    for doc in (Batch.start.__doc__, Batch.run_async.__doc__):
        assert doc is not None and "gc.freeze()" in doc
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "gc.freeze()" in readme and "gc.unfreeze()" in readme
