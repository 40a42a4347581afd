"""One workspace per folder per process, closed at interpreter exit (issue 25).

``Batch.create`` / ``Batch.load`` without ``workspace=`` used to open a new SQLite
connection and lock file each time and never close them (a ResourceWarning at exit, and
a docstring promising a close at exit that nothing did).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbbatch import Batch, Workspace
from nbbatch.engine import _store


def test_batches_made_without_a_workspace_share_one_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBBATCH_WORKSPACE", str(tmp_path / "ws"))
    first = Batch.create(["a red fox"])
    try:
        second = Batch.create(["a blue car"])
        again = Batch.load(first.id)
        assert first.workspace is second.workspace is again.workspace
        assert _store._OPEN[str((tmp_path / "ws").resolve())] == 1  # one connection, one lock
        assert Workspace.shared(tmp_path / "ws") is first.workspace
        first.workspace.close()
        # a closed shared workspace is replaced, not handed out again
        third = Batch.create(["a green tree"])
        assert third.workspace is not first.workspace and not third.workspace.closed
        third.workspace.close()
    finally:
        first.workspace.close()


def test_a_workspace_left_open_is_closed_at_interpreter_exit(tmp_path: Path) -> None:
    # atexit runs handlers last-registered first: this one, registered before nbbatch is
    # imported, runs after nbbatch's and sees what it left.
    script = textwrap.dedent(
        """
        import atexit
        seen = {}
        atexit.register(lambda: print("closed at exit:", seen["ws"].closed, flush=True))
        import nbbatch
        a = nbbatch.Batch.create(["a red fox"])
        b = nbbatch.Batch.create(["a blue car"])
        kept = nbbatch.Workspace("other")   # opened by hand and never closed
        seen["ws"] = a.workspace
        print("same:", a.workspace is b.workspace, flush=True)
        """
    )
    env = {**os.environ, "NBBATCH_WORKSPACE": str(tmp_path / "ws")}
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["same: True", "closed at exit: True"]
    assert "ResourceWarning" not in done.stderr, done.stderr
