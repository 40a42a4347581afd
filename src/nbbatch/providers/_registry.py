"""Providers by name: built-ins plus the ``nbbatch.providers`` entry-point group."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from ..core._errors import ConfigError, UnknownProviderError
from ._base import Provider
from ._builtin import BUILTINS

__all__ = ["available_providers", "get_provider", "register_provider"]

ProviderFactory = Callable[..., Provider]

_REGISTRY: dict[str, ProviderFactory] = dict(BUILTINS)
_entry_points_loaded = False


def register_provider(name: str, factory: ProviderFactory, *, replace: bool = False) -> None:
    """Make ``factory(**options)`` available as ``get_provider(name, **options)``."""
    key = name.strip().lower()
    if not key:
        raise ValueError("a provider name cannot be empty")
    if key in _REGISTRY and not replace and _REGISTRY[key] is not factory:
        raise ValueError(f"a provider named {key!r} is already registered (pass replace=True)")
    _REGISTRY[key] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="nbbatch.providers"):
        if ep.name.lower() in _REGISTRY:
            continue
        try:
            factory = ep.load()
        except Exception:  # a broken third-party plug-in must not break the built-ins
            import logging

            logging.getLogger("nbbatch").warning(
                "could not load provider plug-in %r from %s", ep.name, ep.value, exc_info=True
            )
            continue
        _REGISTRY[ep.name.lower()] = factory


def available_providers() -> list[str]:
    """Names accepted by :func:`get_provider`, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_provider(name: str | Provider, **options: Any) -> Provider:
    """Build the provider registered as ``name`` (a Provider instance passes through)."""
    if isinstance(name, Provider):
        if options:
            raise TypeError("options cannot be given with a provider instance")
        return name
    names = available_providers()
    key = str(name).strip().lower()
    factory = _REGISTRY.get(key)
    if factory is None:
        raise UnknownProviderError(
            f"unknown provider {name!r}; available: {', '.join(names) or 'none'}"
        )
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        try:
            accepted = [p for p in inspect.signature(factory).parameters if not p.startswith("_")]
        except (TypeError, ValueError):
            accepted = []
        raise ConfigError(
            f"provider {key!r} does not accept these options ({exc}); "
            f"it accepts: {', '.join(accepted) or 'none'}"
        ) from None
    except ValueError:  # no signature available (a C callable): let the call decide
        pass
    return factory(**options)
