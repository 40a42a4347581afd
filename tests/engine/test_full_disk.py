"""A full disk mid-run pauses the run once and reports only what the journal holds.

Issue 26 (item 3): on a 3 MB tmpfs, 300 tasks ended in 1 s with the batch object saying
221 failed while the journal said 218 queued and 3 running; 221 "Task exception was
never retrieved" tracebacks; the CLI printed "223 failed". Here the disk fills by an
injected ``StorageError`` on every journal and image write, at a moment the test picks.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nbbatch import Batch
from nbbatch.core._events import RunState, RunStateChanged, TaskFailed
from nbbatch.engine import Workspace
from nbbatch.errors import StorageError
from tests.support import ControlledProvider, until

WRITES = ("save_status_row", "save_status", "save_statuses", "record_success", "write_blob")
DISK_FULL = (
    "could not write the workspace database: database or disk is full. Free disk space "
    "or check permissions; nothing was marked done."
)


class Disk:
    """Makes every journal and image write of ``ws`` fail while ``full`` is set."""

    def __init__(self, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        for name in WRITES:
            monkeypatch.setattr(ws, name, self._guard(getattr(ws, name)))

    def _guard(self, write: Any) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.full:
                raise StorageError(DISK_FULL)
            return write(*args, **kwargs)

        return guarded


def journal_counts(ws: Workspace, batch_id: str) -> Counter[str]:
    """What the journal on disk says, read through a connection of its own."""
    db = sqlite3.connect(f"file:{ws.path / 'nbbatch.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT status, COUNT(*) FROM tasks WHERE batch_id=? GROUP BY status", (batch_id,)
        ).fetchall()
    finally:
        db.close()
    return Counter(dict(rows))


@pytest.fixture
async def loop_errors() -> Any:
    """Everything the loop's exception handler is told ("never retrieved" among them)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(None)


async def test_a_disk_filling_mid_run_pauses_once_and_fails_nothing_the_journal_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]]
) -> None:
    batch = Batch.create([f"prompt {i}" for i in range(30)], workspace=tmp_path / "ws")
    ws = batch.workspace
    disk = Disk(ws, monkeypatch)
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    events: list[object] = []
    batch.subscribe(events.append)
    try:
        runner = batch.start(provider, concurrency=3, retry=0)
        await until(lambda: provider.in_flight == 3)  # three requests out, journaled
        disk.full = True
        gate.set()  # their answers arrive on a full disk
        await until(lambda: runner.state is RunState.PAUSED and runner.active == 0)

        pauses = [e for e in events if isinstance(e, RunStateChanged) and e.reason]
        assert len(pauses) == 1, pauses
        assert re.fullmatch(
            r"disk full: run paused, \d+ tasks not started; free space and Resume",
            str(pauses[0].reason),
        )
        queued = runner.progress().queued
        assert runner.paused_reason == (
            f"disk full: run paused, {queued} tasks not started; free space and Resume"
        )
        # nothing is reported failed: the journal could not take a failure
        assert not [e for e in events if isinstance(e, TaskFailed)]
        assert batch.counts.get("failed", 0) == journal_counts(ws, batch.id)["failed"] == 0
        assert queued == journal_counts(ws, batch.id)["queued"] == 27
        assert batch.counts["interrupted"] == 3  # paid for, not saved: never re-sent
        assert len(provider.calls) == 3  # nothing else was sent after the disk filled

        disk.full = False  # space freed
        runner.resume()
        await runner.wait()
    finally:
        ws.close()
    assert loop_errors == []
    assert dict(journal_counts(ws, batch.id)) == {"succeeded": 27, "interrupted": 3}
    assert batch.counts == {"succeeded": 27, "interrupted": 3}
    assert len(provider.calls) == 30


async def test_a_disk_full_before_any_request_keeps_every_task_queued_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]]
) -> None:
    batch = Batch.create([f"prompt {i}" for i in range(12)], workspace=tmp_path / "ws")
    ws = batch.workspace
    disk = Disk(ws, monkeypatch)
    provider = ControlledProvider()
    events: list[object] = []
    batch.subscribe(events.append)
    try:
        runner = batch.start(provider, concurrency=3)
        disk.full = True  # the claim went in; the first "running" write meets a full disk
        await until(lambda: runner.state is RunState.PAUSED and runner.active == 0)
        assert [e.reason for e in events if isinstance(e, RunStateChanged) and e.reason] == [
            "disk full: run paused, 12 tasks not started; free space and Resume"
        ]
        assert provider.calls == []
        assert batch.counts == {"queued": 12}
        assert dict(journal_counts(ws, batch.id)) == {"queued": 12}

        runner.resume()  # still full: it pauses again, once, on the next write
        await until(lambda: runner.state is RunState.PAUSED and runner.active == 0)
        assert len([e for e in events if isinstance(e, RunStateChanged) and e.reason]) == 2

        disk.full = False
        runner.resume()
        await runner.wait()
    finally:
        ws.close()
    assert loop_errors == []
    assert batch.counts == {"succeeded": 12}
    assert dict(journal_counts(ws, batch.id)) == {"succeeded": 12}


async def test_the_cli_says_disk_full_and_counts_what_the_journal_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbbatch._cli import EXIT_FAILED, _drive_with

    batch = Batch.create([f"prompt {i}" for i in range(20)], workspace=tmp_path / "ws")
    ws = batch.workspace
    disk = Disk(ws, monkeypatch)
    gate = asyncio.Event()
    provider = ControlledProvider(gate=gate)
    args = argparse.Namespace(concurrency=2, retries=0, quiet=True)
    try:
        driving = asyncio.ensure_future(_drive_with(batch, provider, args, False))
        await until(lambda: provider.in_flight == 2)
        disk.full = True
        gate.set()
        assert await driving == EXIT_FAILED
        err = capsys.readouterr().err
        journal = journal_counts(ws, batch.id)
    finally:
        ws.close()
    assert "disk full: run paused, 18 tasks not started; free space and Resume" in err
    assert f"nbbatch resume {batch.id}" in err
    summary = ", ".join(f"{v} {k}" for k, v in sorted(journal.items()))
    assert f"batch {batch.id}: {summary}" in err
    assert "failed" not in summary
