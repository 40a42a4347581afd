"""The kernel <-> page messages are declared once (widgets/_protocol.py): the front end's
JSDoc types are generated from them and the status sets travel in hello."""

from __future__ import annotations

import typing
from pathlib import Path

from nbbatch import Batch, TaskStatus, Workspace
from nbbatch.widgets import TaskGrid
from nbbatch.widgets._protocol import (
    STATUSES,
    GridHello,
    Row,
    Summary,
    js_typedefs,
    status_sets,
)
from tests.widgets.page import Page

TYPES_JS = Path(__file__).resolve().parents[2] / "js" / "src" / "types.js"


def test_the_committed_js_types_are_generated_from_the_python_ones() -> None:
    assert TYPES_JS.read_text(encoding="utf-8") == js_typedefs(), (
        "js/src/types.js is out of date: python -m nbbatch.widgets._protocol > js/src/types.js"
    )


def test_the_wire_statuses_are_the_task_statuses() -> None:
    assert set(STATUSES) == {s.value for s in TaskStatus}


def test_hello_sends_the_status_sets_the_page_uses(workspace: Workspace) -> None:
    batch = Batch.create(["a cat", "a dog"], workspace=workspace)
    hello = Page(TaskGrid(batch)).ok("hello")
    assert hello["statuses"] == status_sets()
    assert set(hello["statuses"]["retryable"]) <= set(hello["statuses"]["editable"])
    assert set(GridHello.__required_keys__) <= set(hello)
    assert set(hello["summary"]) == set(Summary.__required_keys__)


def test_rows_have_the_declared_keys(workspace: Workspace) -> None:
    batch = Batch.create(["a cat", "a dog"], workspace=workspace)
    (row, _) = Page(TaskGrid(batch)).rows()
    declared = set(typing.get_type_hints(Row))
    assert set(Row.__required_keys__) <= set(row) <= declared
