"""Fixtures of the provider tests (helpers to import are in ``tests/support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbbatch import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A workspace in the test's own folder, closed after the test."""
    with Workspace(tmp_path) as workspace:
        yield workspace
