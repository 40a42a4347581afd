"""The curated public API: exactly what __all__ says, shown as nbbatch.X."""

from __future__ import annotations

import types

import nbbatch


def test_all_is_sorted_unique_and_complete() -> None:
    public = {
        name
        for name, value in vars(nbbatch).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(set(nbbatch.__all__)) == sorted(nbbatch.__all__)
    assert public | {"__version__"} == set(nbbatch.__all__)


def test_public_objects_say_they_are_from_nbbatch() -> None:
    for name in nbbatch.__all__:
        obj = getattr(nbbatch, name)
        module = getattr(obj, "__module__", None)
        if isinstance(obj, type) or callable(obj):
            assert module is None or not module.startswith("nbbatch._"), name


def test_every_error_derives_from_one_root() -> None:
    errors = [getattr(nbbatch, n) for n in nbbatch.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, nbbatch.NbbatchError) for e in errors)
