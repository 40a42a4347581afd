"""The webhook: a plain JSON POST when a run ends or pauses on its budget; a secret URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbbatch import Batch, Settings, Workspace
from nbbatch.engine import _pace
from nbbatch.engine._pace import set_webhook, webhook_url
from nbbatch.engine._settings import config_dir
from nbbatch.events import RunState
from tests.support import ControlledProvider, until

TOKEN = "hook-token-SENTINEL-41c9"


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(size)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    set_webhook(None)
    r.close()


async def test_a_finished_run_posts_its_batch_name_and_counts(
    workspace: Workspace, receiver: Receiver
) -> None:
    set_webhook(receiver.url)
    batch = Batch.create(["a", "b"], workspace=workspace, name="foxes")
    await batch.run_async(ControlledProvider())
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["event"] == "finished" and body["batch_name"] == "foxes"
    assert body["counts"] == {
        "total": 2,
        "succeeded": 2,
        "failed": 0,
        "cancelled": 0,
        "queued": 0,
        "running": 0,
    }
    assert body["text"] == body["content"] == "nbbatch: batch 'foxes' finished: 2 done, 0 failed"


async def test_a_pause_on_the_budget_posts_the_reason(
    workspace: Workspace, receiver: Receiver
) -> None:
    set_webhook(receiver.url)
    batch = Batch.create(["a", "b", "c"], workspace=workspace)
    run = batch.start(ControlledProvider(), concurrency=1, budget=1.0, prices={"controlled": 1})
    await until(lambda: run.state is RunState.PAUSED and len(receiver.bodies) == 1)
    body = receiver.bodies[0]
    assert body["event"] == "paused"
    assert str(body["reason"]).startswith("budget of $1.00 reached: $1.00 spent, 2 tasks left")
    run.stop()
    await run.wait()
    assert [b["event"] for b in receiver.bodies] == ["paused", "stopped"]


def test_the_webhook_url_is_a_secret_kept_out_of_settings_and_reprs() -> None:
    url = f"https://ntfy.example/{TOKEN}"
    set_webhook(url, remember=True)
    try:
        assert TOKEN not in repr(webhook_url())
        Settings().save()
        assert TOKEN not in (config_dir() / "config.json").read_text()
        _pace._webhook = None  # a new kernel: the secrets file (0600) still has it
        found = webhook_url()
        assert found is not None and found.reveal() == url
        assert (config_dir() / "secrets.json").stat().st_mode & 0o077 == 0
    finally:
        set_webhook(None, remember=True)
    assert webhook_url() is None


async def test_an_unreachable_webhook_is_logged_without_its_url(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    gone = Receiver()
    url = gone.url
    gone.close()
    set_webhook(url)
    try:
        await Batch.create(["a"], workspace=workspace).run_async(ControlledProvider())
    finally:
        set_webhook(None)
    assert any("webhook could not be reached" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text
