"""SIGKILL a batch API run at random moments: no job twice, no result lost or taken twice.

Each round starts a child that runs the same batch with ``batch_api=True`` against a
``FakeOpenAI`` living in this process (so the fake's record of every job created
survives the kills), lets it get going, and kills it with SIGKILL after a random delay:
while it writes the input file, uploads, creates a job, polls, downloads or saves the
results. The jobs are small (10 requests) so that a batch of 40 tasks goes through
every step four times. Rounds go on until 20 kills have landed inside a run (a child
that found nothing left to do adds 20 tasks for the next one: a kill always has work to
interrupt, however fast the machine); then one last child runs to the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.testing import FakeOpenAI

KEY = "test-key-crash-batchapi-01"
TASKS = 40
KILLS = 20
#: tasks added when a child found nothing left to do, and the most rounds
MORE = 20
MAX_ROUNDS = 60


def _run(ws_path: str, batch_id: str, base_url: str, started: Any) -> None:
    """The child: run the batch through the batch API (killed at any moment)."""
    from nbbatch.providers import OpenAIProvider
    from nbbatch.providers._openai_batch import OpenAIBatchApi

    OpenAIBatchApi.max_requests = 10
    ws = Workspace(ws_path)
    batch = Batch.load(batch_id, ws)
    started.set()
    batch.run_sync(OpenAIProvider(api_key=KEY, base_url=base_url), batch_api={"poll_steps": [0.02]})
    ws.close()


def _context() -> Any:
    # Children are forked from a server that has imported nbbatch once: a fresh
    # interpreter per round spent seconds importing on a loaded machine.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["nbbatch", "nbbatch.providers", "nbbatch.engine._batchapi"])
    return ctx


def _child(ctx: Any, ws: Path, batch_id: str, server: FakeOpenAI) -> tuple[Any, Any]:
    started = ctx.Event()
    proc = ctx.Process(target=_run, args=(str(ws), batch_id, server.base_url, started))
    proc.start()
    return proc, started


def _submitted(server: FakeOpenAI) -> list[str]:
    """The custom ids of every request of every job ever created (duplicates kept)."""
    ids: list[str] = []
    for body in server.batch_api.created:
        f = server.batch_api.files[body["input_file_id"]]
        for line in f.path.read_text().splitlines():
            ids.append(json.loads(line)["custom_id"])
    return ids


@pytest.mark.kill
def test_sigkill_anywhere_in_a_batch_api_run_never_submits_or_ingests_twice(
    tmp_path: Path,
) -> None:
    rng = random.Random(2028)
    ws_path = tmp_path / "ws"
    with Workspace(ws_path) as ws:
        prompts = [f"crash test bird {i}" for i in range(TASKS)]
        batch_id = Batch.create(prompts, workspace=ws, params=Params(size="64x64")).id
    with FakeOpenAI(
        api_key=KEY, render="fast", max_side=64, batch_timing=(0.02, 0.15, 0.02)
    ) as server:
        killed_mid_run = rounds = 0
        total = TASKS
        ctx = _context()
        # a kill counts when it lands inside a run; a child that found nothing left to
        # do gets more tasks for the next round, so every kill has work to interrupt
        while killed_mid_run < KILLS and rounds < MAX_ROUNDS:
            rounds += 1
            proc, started = _child(ctx, ws_path, batch_id, server)
            try:
                assert started.wait(60)
                proc.join(rng.uniform(0.0, 0.8))
                if proc.is_alive():
                    killed_mid_run += 1
                    os.kill(proc.pid, signal.SIGKILL)
                proc.join()
                finished = proc.exitcode == 0
            finally:
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                proc.close()
            submitted = _submitted(server)
            assert len(submitted) == len(set(submitted)), "a task was submitted twice"
            if finished:
                with Workspace(ws_path) as ws:
                    more = [f"crash test bird {total + i}" for i in range(MORE)]
                    Batch.load(batch_id, ws).add(more, params=Params(size="64x64"))
                total += MORE
        # the last run goes to the end
        proc, _ = _child(ctx, ws_path, batch_id, server)
        proc.join(120)
        assert proc.exitcode == 0
        proc.close()
        submitted = _submitted(server)
    assert killed_mid_run == KILLS
    assert len(submitted) == len(set(submitted)) == total
    with Workspace(ws_path) as ws:
        tasks = Batch.load(batch_id, ws).tasks
        assert {t.status for t in tasks} == {TaskStatus.SUCCEEDED}, [
            (t.status, t.error) for t in tasks if t.status is not TaskStatus.SUCCEEDED
        ]
        # each task's result was ingested exactly once: one image row, one file
        assert all(len(t.images) == 1 for t in tasks)
        files = {p.name for p in ws.images_dir.rglob("*") if p.is_file()}
        assert files == {t.images[0].path.name for t in tasks}
    assert not [p for p in (ws_path / "tmp").glob("*") if p.is_file() and os.path.getsize(p)]
