"""Jupyter widgets of nbbatch: ``BatchStudio`` (every panel over one ``StudioSession``),
and the panels it composes, each usable alone: ``SettingsPanel``, ``Upload``,
``PromptPanel``, ``TaskGrid``, ``Gallery`` (the lightbox of the results) and ``History``
(past batches and stats); ``CompareView`` shows a comparison (``nbbatch.compare``).

    >>> from nbbatch.widgets import BatchStudio
    >>> BatchStudio()                            # last expression of a cell shows it

Python holds the truth: the page asks for the rows and thumbnails it shows, every action
goes through the batch's public API, and updates are coalesced (≤ 5 patches a second).
"""

from ._compare import ComparePanel, CompareView
from ._gallery import Gallery
from ._grid import TaskGrid
from ._history import History
from ._prompt import PromptPanel
from ._session import StudioSession
from ._settings import SettingsPanel
from ._studio import BatchStudio
from ._upload import Upload

__all__ = [
    "BatchStudio",
    "ComparePanel",
    "CompareView",
    "Gallery",
    "History",
    "PromptPanel",
    "SettingsPanel",
    "StudioSession",
    "TaskGrid",
    "Upload",
]
