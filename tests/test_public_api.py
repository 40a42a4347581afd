"""The curated public API: one screen of names at the top, the rest in namespaces."""

from __future__ import annotations

import importlib
import inspect
import types
import typing

import pytest

import nbbatch

NAMESPACES = ("errors", "events", "images", "planning", "providers", "testing", "engine")


def test_all_is_sorted_unique_and_complete() -> None:
    public = {
        name
        for name, value in vars(nbbatch).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(set(nbbatch.__all__)) == sorted(nbbatch.__all__)
    lazy = {"BatchStudio"}  # loaded on first use (it imports ipywidgets)
    assert public | {"__version__"} | lazy == set(nbbatch.__all__)


def test_the_top_level_fits_on_one_screen() -> None:
    assert len(nbbatch.__all__) <= 45, f"{len(nbbatch.__all__)} names at the top level"


def test_every_error_derives_from_one_root() -> None:
    errors = [getattr(nbbatch.errors, n) for n in nbbatch.errors.__all__]
    assert errors and all(issubclass(e, nbbatch.NbbatchError) for e in errors)


def test_names_that_left_the_top_level_live_in_a_namespace() -> None:
    assert (
        nbbatch.errors.ImageRejectedError
        is nbbatch.images.decode_image.__globals__["ImageRejectedError"]
    )
    assert nbbatch.images.Resize and nbbatch.images.ThumbnailCache
    assert nbbatch.planning.parse_prompt_line and nbbatch.planning.Skipped
    assert nbbatch.engine.ConnectionResult and nbbatch.engine.RecoveryReport


def _public_classes() -> list[type]:
    seen: dict[int, type] = {}
    for ns in (nbbatch, *(importlib.import_module(f"nbbatch.{n}") for n in NAMESPACES)):
        for name in ns.__all__:
            obj = getattr(ns, name)
            if inspect.isclass(obj):
                seen[id(obj)] = obj
    return sorted(seen.values(), key=lambda c: (c.__module__, c.__qualname__))


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__qualname__)
def test_type_hints_resolve_on_every_public_class(cls: type) -> None:
    typing.get_type_hints(cls)
    for name, member in vars(cls).items():
        if inspect.isfunction(member) and not name.startswith("__"):
            try:
                typing.get_type_hints(member)
            except NameError as exc:  # optional dependencies are named for type checkers only
                assert exc.name in OPTIONAL, f"{cls.__qualname__}.{name}: {exc}"


OPTIONAL = {"pandas"}
