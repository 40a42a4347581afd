"""The engine: the workspace journal, the runner and the batch façade, plus settings.

Flow: ``_store`` (the ``Workspace`` façade over ``_journal`` — SQLite schema,
connection, transactions —, ``_recovery`` — run leases, reconcile, dead runs —,
``_blobs`` — content-addressed files, ``derived/`` —, ``_tasks`` — task and batch rows —
and ``_history``; returns plain records) ← ``_runner``
(asyncio, N at a time, retries) ← ``_batch`` (the object a notebook holds: edit, run,
subscribe) ← ``_compare`` (the same tasks on several configurations, as one batch).
``_settings`` is the one settings home (providers, the planner LLM, run
defaults, prices) and tests connections. The engine
uses ``core``, ``images`` and ``providers``; it never imports ``planning``, ``widgets`` or
the CLI.
"""

from ..core._ratelimit import RateLimit, set_rate_limit
from ._batch import Batch
from ._compare import Cell, Comparison, Winner, compare
from ._pace import set_webhook
from ._runner import Runner
from ._settings import (
    ConnectionResult,
    LLMSettings,
    ProviderConfig,
    RunDefaults,
    Settings,
    check_connection,
    load_settings,
    save_secret,
    save_settings,
)
from ._store import BatchSummary, RecoveryReport, Workspace

__all__ = [
    "Batch",
    "BatchSummary",
    "Cell",
    "Comparison",
    "ConnectionResult",
    "LLMSettings",
    "ProviderConfig",
    "RateLimit",
    "RecoveryReport",
    "RunDefaults",
    "Runner",
    "Settings",
    "Winner",
    "Workspace",
    "check_connection",
    "compare",
    "load_settings",
    "save_secret",
    "save_settings",
    "set_rate_limit",
    "set_webhook",
]


def __getattr__(name: str) -> object:
    from ..core._names import renamed
    from ._settings import check_connection

    return renamed(
        __name__, name, {"test_connection": ("check_connection", lambda: check_connection)}
    )
