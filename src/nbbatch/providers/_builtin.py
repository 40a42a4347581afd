"""Registers the providers that ship with nbbatch (imported lazily by the registry)."""

from __future__ import annotations

from ._demo import DemoProvider
from ._registry import register_provider

register_provider("demo", DemoProvider)
