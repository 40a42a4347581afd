"""``nbbatch run/resume --budget --price``: the CLI stops at the budget and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbbatch import Workspace
from nbbatch import _cli as cli


def test_a_budget_stops_the_cli_run_with_the_reason_and_resume_takes_a_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(tmp_path / "ws")
    args = ["-q", "-c", "1", "-o", "latency=0", "-w", ws]
    code = cli.main(["run", "a", "b", "c", "--budget", "0.02", "--price", "demo=0.01", *args])
    err = capsys.readouterr().err
    assert code == 1
    assert "budget of $0.02 reached: $0.02 spent, 1 tasks left, about $0.01 more" in err
    assert "nbbatch resume" in err
    with Workspace(ws) as w:
        (batch,) = w.batches()
        assert batch.counts == {"succeeded": 2, "idle": 1}
    assert cli.main(["resume", batch.id, "--budget", "0.03", *args]) == 0
    with Workspace(ws) as w:
        assert w.batches()[0].counts == {"succeeded": 3}


def test_a_price_that_is_not_a_number_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["run", "a", "--price", "demo=cheap", "-w", str(tmp_path / "ws")])
    assert code != 0
    assert "--price takes NAME=PRICE" in capsys.readouterr().err
