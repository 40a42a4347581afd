"""The CLI reads the one Settings: its run defaults stand in for options not given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nbbatch import Settings
from nbbatch.engine import RunDefaults


def test_the_cli_uses_the_saved_run_concurrency(tmp_path: Path) -> None:
    # 50 is above the runner's cap of 10: the saved value, not the built-in 3, is checked
    Settings(run=RunDefaults(concurrency=50, retries=1)).save()
    proc = subprocess.run(
        [sys.executable, "-m", "nbbatch", "run", "x", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "concurrency must be" in proc.stderr and "50" in proc.stderr
    # an explicit option wins over the saved default
    proc = subprocess.run(
        [sys.executable, "-m", "nbbatch", "run", "x", "-c", "1", "-q", "-w", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 succeeded" in proc.stderr
