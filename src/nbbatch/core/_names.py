"""Old public names kept working for a while, each with a ``DeprecationWarning``.

The naming rule (README, "Names"): a function that blocks has the plain name and its
coroutine twin the same name with ``_async`` (``plan`` / ``plan_async``,
``postprocess`` / ``postprocess_async``). A module lists its renamed names in a
mapping and answers them from its ``__getattr__`` through :func:`renamed`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["renamed", "warn_renamed"]


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that the attribute or method ``old`` is now ``new`` (``DeprecationWarning``).

    The default ``stacklevel`` points at the line that used ``old`` when this is called
    from the property or method that answers it.
    """
    warnings.warn(
        f"{old} is deprecated: use {new} (see 'Names' in the README)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed(module: str, name: str, old_names: Mapping[str, tuple[str, Callable[[], Any]]]) -> Any:
    """The object an old ``name`` of ``module`` now has, warning with the new name.

    ``old_names`` maps an old name to (new name, a function giving the object); any
    other name is an ``AttributeError``, as for a module without ``__getattr__``.
    """
    try:
        new, get = old_names[name]
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None
    warnings.warn(
        f"{module}.{name} is deprecated: use {new} (see 'Names' in the README)",
        DeprecationWarning,
        stacklevel=3,
    )
    return get()
