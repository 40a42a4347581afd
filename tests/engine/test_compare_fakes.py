"""12 tasks x 4 configurations over the fakes, two with scripted faults and their own
latencies: the cells, times and costs are right, the DataFrame and the export agree
with the journal, and a failed cell is retried alone."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import nbbatch
from nbbatch import Params, TaskStatus, Workspace
from nbbatch.testing import FakeA1111, FakeOpenAI, Fault

KEY = "sk-compare-fakes-0001"
PROMPTS = [f"scene {i}, a lighthouse" for i in range(11)] + ["a castle at night"]
PRICES = {"openai/gpt-image-1": 0.04, "a1111": 0.0}


@pytest.mark.slow
async def test_twelve_tasks_on_four_configurations(workspace: Workspace, tmp_path: Path) -> None:
    with FakeOpenAI(api_key=KEY, render="fast", latency=0.01) as openai, FakeA1111() as webui:
        openai.add_fault(Fault.status_code(500, times=1), path="/v1/images/generations")
        cmp = nbbatch.compare(
            PROMPTS,
            [
                ("demo", {"label": "demo"}),
                ("demo", {"label": "faulty demo", "latency": 0.02, "fail_prompts": ["castle"]}),
                ("openai", {"base_url": openai.base_url, "api_key": KEY, "model": "gpt-image-1"}),
                ("a1111", {"base_url": webui.url, "sampler": "Euler a", "steps": 4}),
            ],
            workspace=workspace,
            params=Params(size="64x64"),
            retry=0,
            concurrency=2,
        )
        await cmp.run()
        frame = cmp.to_dataframe(prices=PRICES)

        # the cells: one failure each where the faults were scripted
        failed = frame[frame.status == "failed"]
        assert sorted(failed.configuration) == ["faulty demo", "openai"]
        assert failed[failed.configuration == "faulty demo"].row.tolist() == [11]
        assert len(frame[frame.status == "succeeded"]) == 46
        # OpenAI takes no seed; the others got one seed per row
        assert frame[frame.configuration == "openai"].seed.isna().all()
        for row in range(12):
            seeds = set(frame[(frame.row == row) & (frame.provider != "openai")].seed)
            assert len(seeds) == 1
        # A1111 got its sampler, OpenAI its model
        sent = json.loads(webui.requests[-1].body)
        assert sent["sampler_name"] == "Euler a"
        assert set(frame[frame.configuration == "openai"].model) == {"gpt-image-1"}

        # the DataFrame agrees with the journal
        journal = {
            r[0]: r[1:]
            for r in workspace._query(
                "SELECT id, status, started_at, finished_at FROM tasks WHERE batch_id=?",
                (cmp.id,),
            )
        }
        for rec in frame.to_dict("records"):
            status, started, finished = journal[rec["task_id"]]
            assert rec["status"] == status
            if status == "succeeded":
                assert rec["seconds"] == pytest.approx(finished - started)
        openai_ok = frame[(frame.configuration == "openai") & (frame.status == "succeeded")]
        assert openai_ok.cost.tolist() == [pytest.approx(0.04)] * 11
        summary = cmp.summary(prices=PRICES)
        assert summary.loc["openai"].success_rate == pytest.approx(11 / 12)
        assert summary.loc["openai"].cost == pytest.approx(0.44)
        assert summary.loc["openai"].cost_per_image == pytest.approx(0.04)

        # the export agrees with the journal
        out = cmp.export_zip(tmp_path / "cmp.zip", prices=PRICES)
        with zipfile.ZipFile(out) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        cells = {c["task_id"]: c for c in manifest["comparison"]["cells"]}
        assert len(cells) == 48
        for task_id, (status, started, finished) in journal.items():
            assert cells[task_id]["status"] == status
            if status == "succeeded":
                assert cells[task_id]["seconds"] == pytest.approx(finished - started)
        assert KEY not in json.dumps(manifest)

        # a failed cell is retried alone: one more request, to that service only
        row = int(failed[failed.configuration == "openai"].row.iloc[0])
        before = len(openai.calls("/v1/images/generations", "POST"))
        a1111_before = len(webui.requests)
        cmp.retry(row, "openai")
        runner = cmp.start()
        assert [t.id for t in runner.tasks] == [cmp.cell(row, "openai").task.id]
        await runner.wait()
        assert cmp.cell(row, "openai").status is TaskStatus.SUCCEEDED
        assert len(openai.calls("/v1/images/generations", "POST")) == before + 1
        assert len(webui.requests) == a1111_before
