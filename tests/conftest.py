"""Shared fixtures: a temp workspace and no keys from the host.

Helpers that tests import (``png_bytes``, ``ControlledProvider``) live in ``tests/support.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbbatch import Workspace
from nbbatch.providers import provider_catalog

#: every provider's key variables (the catalogue's) plus nbbatch's own settings
KEY_VARS = (
    *(var for info in provider_catalog() for var in info.key_env),
    "NBBATCH_WORKSPACE",
    "NBBATCH_MAX_CONCURRENCY",
)


@pytest.fixture(autouse=True)
def _no_host_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A developer's real keys must never reach a test (or a fake server's log), and
    # their saved provider settings must not change what a test does.
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBBATCH_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(tmp_path / "ws")
    yield ws
    ws.close()
