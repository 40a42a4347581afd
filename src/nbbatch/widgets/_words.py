"""Errors as words a person can act on, never a traceback in the cell output.

nbbatch's own errors already say what happened and what to do (``NbbatchError.message``),
so they are shown as they are. Anything else is a bug or an environment problem: the
person gets one sentence naming the action and the exception type, and the traceback goes
to the ``nbbatch`` logger where a developer can find it.
"""

from __future__ import annotations

import logging

from nbbatch.errors import NbbatchError

from ._i18n import tr

__all__ = ["UserFacingError", "describe"]

log = logging.getLogger("nbbatch")

#: Longest error text sent to the page (a provider may answer a whole HTML page).
MAX_ERROR_CHARS = 2000


class UserFacingError(Exception):
    """A refusal the widget itself decided on (nothing to run, no selection...).

    The page shows it in the widget's language; raised in code, it reads in English.
    """

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(tr("en", key, **values))
        self.key = key
        self.values = values


def describe(exc: BaseException, lang: str, action: str = "doing_request") -> str:
    """What to show for ``exc`` raised while doing ``action`` (a catalogue key)."""
    if isinstance(exc, UserFacingError):
        return tr(lang, exc.key, **exc.values)
    if isinstance(exc, NbbatchError):
        return clip(exc.message)
    if isinstance(exc, KeyError):
        # batch[task_id] of a task that was deleted meanwhile (another view, or Python).
        return tr(lang, "task_gone")
    log.error("nbbatch widget: unexpected error while %s", action, exc_info=exc)
    return tr(lang, "internal", action=tr(lang, action), kind=type(exc).__name__)


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
