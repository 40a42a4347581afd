"""The fault matrix: one or more tests per row, named ``test_b8_rowNN_...``.

Provider rows run the real OpenAI adapter against the loopback ``FakeOpenAI`` over real
HTTP; waits are injected (a millisecond backoff policy, server-asked waits of at most
0.15 s), so no test sleeps for real longer than 0.2 s at a time. Rows 19, 20 and 24 are
about the studio widget and are covered with it.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import io
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

import nbbatch
from nbbatch import Batch, Params, RetryPolicy, Task, TaskStatus, Workspace
from nbbatch.core._events import TaskRetrying
from nbbatch.engine import _journal, _store
from nbbatch.engine._settings import load_secrets, save_secret
from nbbatch.errors import (
    ImageRejectedError,
    PlannerError,
    PlannerNoJSONError,
    PlannerShapeError,
    PlannerTooManyTasksError,
    ProviderError,
    StoreBusyError,
)
from nbbatch.images._decode import DEFAULT_LIMITS, inspect_image
from nbbatch.images._export import SAFE_NAME, _is_reserved, safe_name
from nbbatch.providers import GenerationRequest, OpenAIProvider, Timeouts
from nbbatch.testing import FakeChat, FakeOpenAI, Fault
from tests.support import ControlledProvider

KEY = "test-key-matrix-0001"
FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.002)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY, render="fast") as s:
        yield s


@pytest.fixture
def server(shared_server: FakeOpenAI) -> FakeOpenAI:
    shared_server.clear_faults()
    shared_server.requests.clear()
    shared_server.api_key, shared_server.response, shared_server.latency = KEY, "b64", 0.0
    return shared_server


@pytest.fixture
async def provider(server: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url)
    yield p
    await p.aclose()


def generations(server: FakeOpenAI) -> int:
    return len(server.calls("/v1/images/generations", "POST"))


async def run_one(
    workspace: Workspace, provider: Any, prompt: str = "a fox", **options: Any
) -> tuple[Batch, Task, list[Any]]:
    events: list[Any] = []
    batch = Batch.create([Task(prompt, params=Params(size="64x64"))], workspace=workspace)
    batch.subscribe(events.append)
    options.setdefault("retry", FAST)
    await batch.run(provider, **options)
    return batch, batch.tasks[0], events


class FlakyTransport(httpx.AsyncBaseTransport):
    """Real HTTP to the fake, after ``failures`` connection errors; counts in-flight."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.real = httpx.AsyncHTTPTransport()
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise httpx.ConnectError("fault: name or service not known", request=request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self.real.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.real.aclose()


def _b64_png(data: bytes) -> dict[str, Any]:
    return {"created": 1, "data": [{"b64_json": base64.b64encode(data).decode()}]}


def open_requests(provider: object) -> int:
    """Requests still held by the provider's connection pools (every shard of them)."""
    transport = provider._http._client._transport  # type: ignore[attr-defined]
    shards = getattr(transport, "_shards", [transport])
    return sum(len(shard._pool._requests) for shard in shards)


# ------------------------------------------------------------------ row 1: connect errors


async def test_b8_row01_connect_error_is_retried_then_succeeds(
    server: FakeOpenAI, workspace: Workspace
) -> None:
    transport = FlakyTransport(failures=2)
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url, transport=transport)
    _, task, _ = await run_one(workspace, p)
    await p.aclose()
    assert task.status is TaskStatus.SUCCEEDED
    assert task.attempts == 3 and transport.calls == 3 and generations(server) == 1


async def test_b8_row01_connect_error_that_persists_fails_as_connection_after_3_attempts(
    workspace: Workspace,
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = OpenAIProvider(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")
    _, task, _ = await run_one(workspace, p)
    await p.aclose()
    assert task.status is TaskStatus.FAILED and task.error_kind == "connection"
    assert task.attempts == 1 + FAST.max_retries == 3


# ------------------------------------------------------------------ row 2: read timeout


async def test_b8_row02_hung_server_times_out_per_attempt_and_fails_as_timeout(
    server: FakeOpenAI, workspace: Workspace
) -> None:
    server.add_fault(Fault.hang(1.0, times=3), path="/v1/images/generations")
    p = OpenAIProvider(
        api_key=KEY, base_url=server.base_url, timeouts=Timeouts(read=0.1, connect=1.0)
    )
    started = time.monotonic()
    _, task, _ = await run_one(workspace, p)
    elapsed = time.monotonic() - started
    assert open_requests(p) == 0  # no request left open in the pool
    await p.aclose()
    # Each hang ends in a 504 after 1 s, which would fail the task as a server error:
    # "timeout" on all three attempts proves each read timeout fired first, with no
    # wall-clock upper bound (one that a loaded machine could break).
    assert task.status is TaskStatus.FAILED and task.error_kind == "timeout"
    assert task.attempts == 3 and generations(server) == 3
    assert elapsed >= 0.3  # three read timeouts of 0.1 s were waited out


# ------------------------------------------------------------------ row 3: 429 within cap


async def test_b8_row03_429_with_retry_after_waits_exactly_that_long_then_succeeds(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    server.add_fault(
        Fault.status_code(429, headers={"retry-after": "0.15"}), path="/v1/images/generations"
    )
    _, task, events = await run_one(workspace, provider)
    assert task.status is TaskStatus.SUCCEEDED and generations(server) == 2
    (retrying,) = [e for e in events if isinstance(e, TaskRetrying)]
    assert retrying.delay == 0.15  # the header's value, no jitter
    first, second = server.calls("/v1/images/generations")
    assert second.time - first.time >= 0.15 - 0.01  # the loop may wake a hair early


# ------------------------------------------------------------------ row 4: 429 beyond cap


async def test_b8_row04_429_asking_for_an_hour_fails_at_once_and_says_until_when(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    server.add_fault(
        Fault.status_code(429, headers={"retry-after": "3600"}), path="/v1/images/generations"
    )
    _, task, _ = await run_one(workspace, provider)
    assert generations(server) == 1
    assert task.status is TaskStatus.FAILED and task.error_kind == "rate_limited"
    assert re.search(r"wait 3600 s, until \d\d:\d\d:\d\d", task.error or "")


# ------------------------------------------------------------------ row 5: 5xx then 200


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("failures", [0, 1, 2])
async def test_b8_row05_server_errors_n_times_then_200_records_n_plus_1_attempts(
    server: FakeOpenAI,
    provider: OpenAIProvider,
    workspace: Workspace,
    status: int,
    failures: int,
) -> None:
    if failures:
        server.add_fault(Fault.status_code(status, times=failures), path="/v1/images/*")
    _, task, events = await run_one(workspace, provider)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.attempts == failures + 1 == generations(server)
    retries = [e for e in events if isinstance(e, TaskRetrying)]
    assert [e.attempt for e in retries] == list(range(2, failures + 2))
    assert workspace.task(task.id).attempts == failures + 1  # journaled too


# ------------------------------------------------------------------ row 6: terminal 4xx


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (401, "auth"),
        (403, "auth"),
        (404, "bad_request"),
        (422, "bad_request"),
    ],
)
async def test_b8_row06_client_errors_are_never_retried(
    server: FakeOpenAI,
    provider: OpenAIProvider,
    workspace: Workspace,
    status: int,
    kind: str,
) -> None:
    server.add_fault(Fault.status_code(status), path="/v1/images/generations")
    batch, task, _ = await run_one(workspace, provider)
    assert generations(server) == 1
    assert task.status is TaskStatus.FAILED and task.error_kind == kind
    assert batch.runnable() == []  # no auto-resume: only retry_failed=True runs it again


async def test_b8_row06_content_policy_refusal_is_terminal_with_its_reason(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    batch, task, _ = await run_one(workspace, provider, prompt="a forbidden thing")
    assert generations(server) == 1
    assert task.status is TaskStatus.FAILED and task.error_kind == "refused"
    assert (task.error and "safety" in task.error.lower()) or "polic" in (task.error or "").lower()
    assert batch.runnable() == []


# ------------------------------------------------------------------ row 7: bad 200 bodies


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"created": 1, "data": [{}]}).encode(),
        json.dumps({"created": 1, "data": [{"b64_json": "%%%not base64%%%"}]}).encode(),
    ],
    ids=["malformed-json", "missing-image", "bad-base64"],
)
async def test_b8_row07_unreadable_200_is_bad_response_and_not_retried(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace, body: bytes
) -> None:
    server.add_fault(Fault.malformed(body), path="/v1/images/generations")
    _, task, _ = await run_one(workspace, provider)
    assert generations(server) == 1
    assert task.status is TaskStatus.FAILED
    assert task.error_kind in ("bad_response", "bad_image")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_bodies = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "b64_json": st.text(max_size=40)
                | st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
                "url": st.text(max_size=20),
                "revised_prompt": _json,
            },
        ),
        max_size=3,
    ).map(lambda items: json.dumps({"created": 1, "data": items}).encode()),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies)
def test_b8_row07_any_200_body_gives_a_typed_error_or_images(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    async def go() -> None:
        p = OpenAIProvider(
            api_key=KEY, base_url="http://fake.invalid/v1", transport=httpx.MockTransport(handler)
        )
        try:
            images = await p.generate(GenerationRequest("a fox"))
        except ProviderError as exc:
            assert str(exc) and not isinstance(exc, type(None))
        else:
            assert images and all(isinstance(im.data, bytes) for im in images)
        finally:
            await p.aclose()

    asyncio.run(go())


# ------------------------------------------------------------------ row 8: truncated bodies


async def test_b8_row08_download_cut_mid_body_is_retried_and_leaves_no_partial_file(
    server: FakeOpenAI, workspace: Workspace
) -> None:
    server.response = "url"  # DALL-E style: the image is downloaded from a URL
    server.add_fault(Fault.truncate(), path="/v1/files/*")
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url, model="dall-e-2")
    _, task, _ = await run_one(workspace, p)
    await p.aclose()
    assert task.status is TaskStatus.SUCCEEDED
    assert len(server.calls("/v1/files/*")) == 2  # the cut download was fetched again
    assert not list(workspace.images_dir.rglob(".tmp-*"))


async def test_b8_row08_download_that_keeps_breaking_fails_as_network(
    server: FakeOpenAI, workspace: Workspace
) -> None:
    server.response = "url"
    server.add_fault(Fault.truncate(times=100), path="/v1/files/*")
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url, model="dall-e-2")
    _, task, _ = await run_one(workspace, p)
    await p.aclose()
    assert task.status is TaskStatus.FAILED and task.error_kind == "connection"
    assert not [f for f in workspace.images_dir.rglob("*") if f.is_file()]  # nothing half-written


# ------------------------------------------------------------------ row 9: concurrency limit


async def test_b8_row09_never_more_than_k_requests_in_flight(
    server: FakeOpenAI, workspace: Workspace
) -> None:
    k = 4
    server.latency = 0.02
    transport = FlakyTransport()
    p = OpenAIProvider(api_key=KEY, base_url=server.base_url, transport=transport)
    batch = Batch.create(
        [Task(f"fox {i}", params=Params(size="64x64")) for i in range(10 * k)],
        workspace=workspace,
    )
    await batch.run(p, concurrency=k, retry=FAST)
    await p.aclose()
    assert batch.status == "succeeded"
    assert transport.max_in_flight == k
    assert batch.runner is not None and batch.runner.max_in_flight == k


# ------------------------------------------------------------------ row 10: pause


async def test_b8_row10_pause_starts_nothing_new_and_resume_completes_the_batch(
    workspace: Workspace,
) -> None:
    gate = asyncio.Event()
    p = ControlledProvider(gate=gate)
    batch = Batch.create([f"t{i}" for i in range(8)], workspace=workspace)
    run = batch.start(p, concurrency=2, retry=FAST)
    while len(p.started) < 2:
        await asyncio.sleep(0)
    run.pause()
    gate.set()  # the two in flight finish...
    while run.active:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)
    assert len(p.started) == 2, "0 starts after pause"
    assert sum(t.status is TaskStatus.SUCCEEDED for t in batch.tasks) == 2
    run.resume()
    await run.wait()
    assert batch.status == "succeeded" and len(p.started) == 8


# ------------------------------------------------------------------ row 11: cancel


async def test_b8_row11_cancel_one_running_task_ends_it_cancelled_quickly_and_closes_http(
    server: FakeOpenAI, provider: OpenAIProvider, workspace: Workspace
) -> None:
    server.add_fault(Fault.hang(30.0), path="/v1/images/generations")
    batch = Batch.create([Task("hangs", params=Params(size="64x64"))], workspace=workspace)
    run = batch.start(provider, retry=FAST)
    while generations(server) < 1:
        await asyncio.sleep(0.005)
    task = batch.tasks[0]
    run.cancel(task.id)
    # The server hangs for 30 s, so a cancel that waited for the answer would take 30 s;
    # one that interrupts the request takes milliseconds. 10 s only guards against a hang.
    await asyncio.wait_for(run.wait(), 10)
    assert task.status is TaskStatus.CANCELLED and generations(server) == 1  # not retried
    assert open_requests(provider) == 0
    assert workspace.task(task.id).status is TaskStatus.CANCELLED


async def test_b8_row11_cancel_all_leaves_no_asyncio_task_behind(workspace: Workspace) -> None:
    before = asyncio.all_tasks()
    gate = asyncio.Event()
    p = ControlledProvider(gate=gate)
    batch = Batch.create([f"t{i}" for i in range(6)], workspace=workspace)
    run = batch.start(p, concurrency=2)
    while len(p.started) < 2:
        await asyncio.sleep(0)
    run.cancel_pending()
    for t in [t for t in batch.tasks if t.status is TaskStatus.RUNNING]:
        run.cancel(t.id)
    await run.wait()
    assert {t.status for t in batch.tasks} == {TaskStatus.CANCELLED}
    assert p.calls == ["t0", "t1"] and sorted(p.cancelled) == sorted(p.started)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


# ------------------------------------------------------------------ row 12: SIGKILL


@pytest.mark.kill
def test_b8_row12_sigkill_at_random_moments_loses_nothing_and_resends_nothing(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import soak_kill
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    figures = soak_kill.soak(tmp_path, kills=10, tasks=80, seed=7, holder=True)
    assert figures.pop("killed_mid_run") >= 5, "the kills should mostly land mid-run"
    assert figures == {
        "acknowledged_lost": 0,
        "integrity_failures": 0,
        "resent_without_resume": 0,
        "orphan_files": 0,
        "left_running_or_queued": 0,
    }


# ------------------------------------------------------------------ row 13: crash mid-save

CRASH_BEFORE_COMMIT = textwrap.dedent(
    """
    import os, signal, sys
    from nbbatch import Batch, Workspace
    from nbbatch.engine._store import Workspace as W

    def die(self, task, stored, **_):  # the image file is durable, its row never commits
        os.kill(os.getpid(), signal.SIGKILL)

    W.record_success = die
    ws = Workspace(sys.argv[1])
    Batch.load(sys.argv[2], ws).run_sync("demo")
    """
)


def test_b8_row13_crash_between_image_write_and_commit_is_reconciled_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        batch_id = Batch.create(["a fox"], workspace=ws, params=Params(size="64x64")).id
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_BEFORE_COMMIT, str(path), batch_id], timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    assert [p for p in (path / "images").rglob("*.png")], "the orphan file was written"
    with Workspace(path) as ws:
        assert ws.recovery.orphan_files_removed == 1
        task = Batch.load(batch_id, ws).tasks[0]
        assert task.status is TaskStatus.INTERRUPTED and task.images == []
        assert not [p for p in ws.images_dir.rglob("*") if p.is_file()]


def test_b8_row13_row_whose_file_vanished_is_repaired_to_a_retryable_failure(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        batch = Batch.create(["a fox"], workspace=ws, params=Params(size="64x64"))
        batch.run_sync("demo")
        batch.images[0].path.unlink()
    with Workspace(path) as ws:
        assert ws.recovery.missing_files == 1
        task = Batch.load(batch.id, ws).tasks[0]
        assert task.status is TaskStatus.FAILED and task.error_kind == "storage"
        assert task.images == []  # 0 rows pointing at missing files


# ------------------------------------------------------------------ row 14: busy database


def test_b8_row14_database_held_by_another_connection_gives_store_busy_in_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ws"
    with Workspace(path, busy_timeout=0.1) as ws:
        batch = Batch.create(["x"], workspace=ws)
        other = sqlite3.connect(path / "nbbatch.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a second notebook mid-write
        try:
            task = batch.tasks[0]
            # "in time" is SQLite's busy handler honouring the workspace's 0.1 s (not
            # the 5 s default): pinned on the connection, not by a wall-clock bound.
            (busy_ms,) = ws._journal.conn.execute("PRAGMA busy_timeout").fetchone()
            assert busy_ms == 100
            with pytest.raises(StoreBusyError, match=r"busy.*more than 0\.1 s"):
                ws.save_task(task)
        finally:
            other.execute("ROLLBACK")
            other.close()
        ws.save_task(task)  # and it works again once the other lets go


# ------------------------------------------------------------------ row 15: NFS


def test_b8_row15_network_file_system_falls_back_to_rollback_journal_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_journal, "_filesystem_type", lambda path: "nfs4")  # the connection
    with pytest.warns(RuntimeWarning, match="network file system") as caught:
        ws = Workspace(tmp_path / "ws")
    try:
        assert len(caught) == 1 and ws.journal_mode == "delete"
        batch = Batch.create(["a fox"], workspace=ws, params=Params(size="64x64"))
        batch.run_sync("demo")
        assert batch.status == "succeeded"
    finally:
        ws.close()


# ------------------------------------------------------------------ row 16: disk full


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
async def test_b8_row16_failed_image_write_fails_the_task_as_storage_never_succeeded(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_store.os, "fsync", refuse)  # the image file's write
    _, task, _ = await run_one(workspace, ControlledProvider())
    assert task.status is TaskStatus.FAILED and task.error_kind == "storage"
    assert workspace.task(task.id).status is TaskStatus.FAILED
    assert not [p for p in workspace.images_dir.rglob("*") if p.is_file()]


# ------------------------------------------------------------------ row 17: bombs


def _bomb(side: int = 20_000) -> bytes:
    img = Image.new("1", (side, side))
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _bomb()


@pytest.fixture
def pixel_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every pixel decode Pillow starts (``ImageFile.load``), by format: "rejected before
    decoding" as a fact, not a wall-clock bound (the speed is benchmarked elsewhere)."""
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> Any:
        loads.append(str(self.format))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return loads


async def test_b8_row17_decompression_bomb_from_a_provider_is_rejected_before_decoding(
    server: FakeOpenAI,
    provider: OpenAIProvider,
    workspace: Workspace,
    bomb: bytes,
    pixel_decodes: list[str],
) -> None:
    assert len(bomb) < 100_000
    server.add_fault(Fault.status_code(200, _b64_png(bomb)), path="/v1/images/generations")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, task, _ = await run_one(workspace, provider)
    assert pixel_decodes == []  # refused from its header, not one pixel decoded
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kb < 100 * 1024
    assert task.status is TaskStatus.FAILED and task.error_kind == "bad_image"
    assert "pixels" in (task.error or "")


def test_b8_row17_decompression_bomb_upload_is_rejected_as_too_large(
    workspace: Workspace, bomb: bytes, pixel_decodes: list[str]
) -> None:
    with pytest.raises(ImageRejectedError) as info:
        workspace.add_reference(bomb, "bomb.png")
    assert pixel_decodes == []
    assert info.value.reason in ("too_large", "too_many_pixels")


# ------------------------------------------------------------------ row 18: wrong formats


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "reasons"),
    [
        (_encoded("TIFF"), {"format"}),
        (_encoded("BMP"), {"format"}),
        (b"SIMPLE  =                    T" + b" " * 2850, {"format"}),
        (b"%PDF-1.4 not an image", {"format"}),
        (_encoded("JPEG")[:40], {"corrupt", "truncated", "format"}),
        # polyglot: GIF magic with a PNG behind it; read as the GIF it claims to be
        (b"GIF89a" + _encoded("PNG"), {"corrupt", "truncated", "format", "too_many_pixels"}),
    ],
    ids=["tiff", "bmp", "fits", "pdf", "truncated-jpeg", "polyglot"],
)
def test_b8_row18_wrong_or_unsupported_formats_are_rejected_by_magic_and_allow_list(
    data: bytes, reasons: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    real_open = Image.open

    def spy(fp: Any, mode: str = "r", formats: Any = None) -> Any:
        seen.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", spy)
    with pytest.raises(ImageRejectedError) as info:
        inspect_image(data, DEFAULT_LIMITS)
    assert info.value.reason in reasons
    allowed = {"PNG", "JPEG", "WEBP", "GIF"}
    assert all(f is not None and set(f) <= allowed for f in seen)  # 0 other decoders


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b))
def test_b8_row18_random_bytes_never_crash_the_guard(data: bytes) -> None:
    try:
        info = inspect_image(data, DEFAULT_LIMITS)
    except ImageRejectedError as exc:
        assert exc.reason and str(exc)
    else:
        assert info.width > 0 and info.height > 0


# ------------------------------------------------------------------ row 21: key file mode


def test_b8_row21_secrets_file_is_created_0600_and_a_readable_one_warns(tmp_path: Path) -> None:
    target = tmp_path / "secrets.json"
    save_secret("mine", "test-key-row21-0001", target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        load_secrets(target)


# ------------------------------------------------------------------ row 22: export names

HOSTILE_NAMES = [
    "../../x",
    "/etc/passwd",
    "CON.png",
    "con",
    "a\\b",
    "nul\x00byte",
    "🦊" * 300,
    "dup",
    "dup",
    "DUP",
    "...",
    " trailing. ",
    "LPT1",
    "COM9.txt",
]
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def test_b8_row22_export_names_from_hostile_prompts_are_safe_unique_and_round_trip(
    tmp_path: Path, workspace: Workspace
) -> None:
    tasks = [
        Task(p if p.strip("\x00").strip() else "x", params=Params(size="32x32"))
        for p in HOSTILE_NAMES
    ]
    batch = Batch.create(tasks, workspace=workspace)
    batch.run_sync("demo")
    out = batch.export_zip(tmp_path / "out.zip")
    with zipfile.ZipFile(out) as zf:
        names = [n for n in zf.namelist() if n != "manifest.json"]
        manifest = json.loads(zf.read("manifest.json"))
        assert len(names) == len(HOSTILE_NAMES) == len({n.lower() for n in names})
        for name in names:
            assert NAME_RE.match(name) and not _is_reserved(name), name
        target = tmp_path / "extract"
        zf.extractall(target)
    for p in target.rglob("*"):
        assert p.resolve().is_relative_to(target.resolve())
    assert {im["prompt"] for im in manifest["images"]} >= {"../../x", "/etc/passwd", "a\\b"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=5), st.text(max_size=10))
def test_b8_row22_safe_name_always_matches_the_allowed_pattern(stems: list[str], ext: str) -> None:
    used: set[str] = set()
    names = [safe_name(stem, ext, used) for stem in stems]
    assert len(set(n.lower() for n in names)) == len(names)
    for name in names:
        assert SAFE_NAME.match(name) and NAME_RE.match(name) and not _is_reserved(name)


# ------------------------------------------------------------------ row 23: planner output


@pytest.fixture(scope="module")
def chat() -> Iterator[FakeChat]:
    with FakeChat("openai") as s:
        yield s


def _plan(chat: FakeChat, reply: str, **kw: Any) -> Any:
    chat.reply = reply
    llm = {"base_url": chat.base_url, "model": "m", "retry": FAST}
    return nbbatch.plan("a fox; an owl", llm=llm, **kw)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("I would rather write a poem.", PlannerNoJSONError),
        ('{"images": ["a fox"]}', PlannerShapeError),
        ('{"tasks": [{"prompt": 5}]}', PlannerShapeError),
        (
            json.dumps({"tasks": [{"prompt": f"p{i}"} for i in range(600)]}),
            PlannerTooManyTasksError,
        ),
    ],
    ids=["non-json", "wrong-schema", "bad-field", "huge-list"],
)
def test_b8_row23_invalid_planner_output_creates_no_task(
    chat: FakeChat, tmp_path: Path, reply: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        _plan(chat, reply)
    assert str(info.value)
    if isinstance(info.value, PlannerTooManyTasksError):
        assert info.value.limit <= 500


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    reply=st.one_of(
        st.text(max_size=200),
        _json.map(json.dumps),
        st.lists(_json, max_size=4).map(lambda items: json.dumps({"tasks": items})),
    )
)
def test_b8_row23_any_planner_reply_is_tasks_or_a_typed_planner_error(
    chat: FakeChat, reply: str
) -> None:
    try:
        plan = _plan(chat, reply)
    except PlannerError as exc:
        assert str(exc) and len(str(exc)) < 5_000
    else:
        assert 1 <= len(plan.tasks) <= 50
        assert all(t.prompt.strip() for t in plan.tasks)
