"""A studio on a batch another kernel is running (issue 26, item 5), with two processes.

Process A runs the batch (its requests wait until the test writes a line to its stdin);
this process shows the same batch in a studio. The studio must not say "Finished" or
start a run: it says how many tasks another kernel runs, follows them from the journal,
and when that run ends says so and lets the person run here again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from nbbatch import Batch, Params, Workspace
from nbbatch.widgets import BatchStudio, _session
from tests.engine.test_two_kernels import RUNNER
from tests.widgets.page import Page

pytestmark = pytest.mark.slow  # a second Python process (a few seconds to start)


async def test_a_second_studio_follows_another_kernels_run_then_lets_you_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_session, "FOLLOW_INTERVAL", 0.02)
    path = tmp_path / "ws"
    with Workspace(path) as ws:
        batch = Batch.create(
            ["a red fox", "a blue car", "a green tree"], workspace=ws, params=Params(size="64x64")
        )
        kernel_a = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(path), batch.id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert kernel_a.stdin is not None and kernel_a.stdout is not None
        studio = None
        try:
            started = await asyncio.to_thread(kernel_a.stdout.readline)
            assert started.startswith("RUNNING ")  # A holds all three now

            studio = BatchStudio(batch, provider="demo", panels=["grid"])
            grid = studio.grid
            page = Page(grid)
            assert grid.held_elsewhere == 3  # the toolbar: "3 task(s) are being run by ..."
            following = studio.session.following
            assert following is not None
            refusal = page.refused("run_all")
            assert "3 task(s) of this batch are being run by another kernel" in refusal
            assert batch.runner is None  # nothing started here, nothing "Finished"

            kernel_a.stdin.write("go\n")
            kernel_a.stdin.flush()
            await asyncio.wait_for(asyncio.shield(following), 60)
            await asyncio.sleep(0)

            assert grid.held_elsewhere == 0 and studio.session.following is None
            notice = page.of_type("notice")[-1]
            assert notice["level"] == "info" and "run of this batch has ended" in notice["text"]
            # followed from the journal: the rows and the counts say what A made
            grid._coalescer.flush_now()
            summary = page.of_type("patch")[-1]["summary"]
            assert summary["counts"]["succeeded"] == 3 and summary["images"] == 3
            assert [r["st"] for r in page.rows()] == ["succeeded"] * 3
            # running here is allowed again (and, with every task done, there is nothing to)
            assert "Nothing to run" in page.refused("run_all")
        finally:
            if studio is not None:
                studio.close()
            if kernel_a.poll() is None:
                kernel_a.kill()
            kernel_a.communicate(timeout=60)
