"""One sync/async naming rule; the old names still work, with a DeprecationWarning."""

from __future__ import annotations

import inspect

import pytest

import nbbatch
import nbbatch.engine
import nbbatch.planning
from nbbatch import Batch


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        (nbbatch, "aplan", "plan_async"),
        (nbbatch, "aenhance", "enhance_async"),
        (nbbatch, "test_connection", "check_connection"),
        (nbbatch.planning, "aplan", "plan_async"),
        (nbbatch.planning, "aenhance", "enhance_async"),
        (nbbatch.engine, "test_connection", "check_connection"),
    ],
)
def test_an_old_name_is_the_new_object_with_a_warning(module: object, old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        got = getattr(module, old)
    assert got is getattr(module, new)


def test_coroutine_twins_end_in_async_and_blocking_ones_have_the_plain_name() -> None:
    for name in ("plan", "enhance", "postprocess"):
        plain = getattr(nbbatch, name, None) or getattr(nbbatch.images, name)
        twin = getattr(nbbatch, f"{name}_async", None) or getattr(nbbatch.images, f"{name}_async")
        assert not inspect.iscoroutinefunction(plain), name
        assert inspect.iscoroutinefunction(twin), name
    assert inspect.iscoroutinefunction(Batch.run_async)
    assert not inspect.iscoroutinefunction(Batch.run_sync)


def test_no_public_name_uses_the_old_conventions() -> None:
    # no "a"-prefixed coroutines in the curated API, and nothing pytest would collect
    public = set(nbbatch.__all__) | set(nbbatch.planning.__all__) | set(nbbatch.engine.__all__)
    assert not {n for n in public if n in {"aplan", "aenhance"} or n.startswith("test")}


def test_check_connection_is_not_collected_as_a_test() -> None:
    assert not nbbatch.check_connection.__name__.startswith("test")
