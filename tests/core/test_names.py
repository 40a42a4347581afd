"""One sync/async naming rule; the old names still work, with a DeprecationWarning."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import nbbatch
import nbbatch.engine
import nbbatch.planning
from nbbatch import Batch, Runner, Workspace
from tests.support import ControlledProvider


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


# -- the live run: one name, ``runner`` (the class is Runner; ``run`` is the action) -----


async def test_the_run_of_a_batch_is_its_runner_and_live_run_warns(workspace: Workspace) -> None:
    gate = asyncio.Event()
    batch = Batch.create(["a fox", "a boat"], workspace=workspace)
    assert batch.runner is None
    runner = batch.start(ControlledProvider(gate=gate))
    assert batch.runner is runner and isinstance(runner, Runner)
    with pytest.warns(DeprecationWarning, match=r"Batch\.runner") as caught:
        assert batch.live_run is runner  # the old name, the same run while it takes changes
    assert caught[0].filename == __file__
    gate.set()
    await runner.wait()
    assert batch.runner is runner and runner.done  # the last run stays readable
    with pytest.warns(DeprecationWarning, match=r"Batch\.runner"):
        assert batch.live_run is None  # the old name keeps its old answer


async def test_a_studio_names_its_run_runner_and_run_warns(workspace: Workspace) -> None:
    from nbbatch.widgets import BatchStudio

    gate = asyncio.Event()
    batch = Batch.create(["a fox"], workspace=workspace)
    studio = BatchStudio(batch, provider=ControlledProvider(gate=gate))
    assert studio.runner is None
    runner = batch.start(ControlledProvider(gate=gate))
    assert studio.runner is runner
    with pytest.warns(DeprecationWarning, match=r"BatchStudio\.runner") as caught:
        assert studio.run is runner
    assert caught[0].filename == __file__
    gate.set()
    await runner.wait()
    assert studio.runner is runner and runner.done
    with pytest.warns(DeprecationWarning, match=r"BatchStudio\.runner"):
        assert studio.run is None  # the old name gave None once the run had ended
    studio.close()
