"""``BatchStudio(..., inputs=True)``: the upload and prompt panels above the studio.

Each is its own anywidget (each works alone); here they share the studio's batch,
workspace, language, LLM and provider, and sit in an ipywidgets grid that wraps to one
column on a narrow output area.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets

from ._prompt import PromptPanel
from ._upload import Upload

if TYPE_CHECKING:
    from ._grid import BatchStudio

__all__ = ["StudioInputs", "attach_inputs"]


class StudioInputs:
    """What a studio with ``inputs=True`` holds: ``upload``, ``prompt`` and the layout."""

    def __init__(self, studio: BatchStudio) -> None:
        self.upload = Upload(studio.batch.workspace, lang=studio.lang)
        self.prompt = PromptPanel(
            studio.batch,
            upload=self.upload,
            llm=studio.llm,
            provider=studio.provider,
            lang=studio.lang,
        )
        top = ipywidgets.GridBox(
            [self.upload, self.prompt],
            layout=ipywidgets.Layout(
                grid_template_columns="repeat(auto-fit, minmax(340px, 1fr))",
                align_items="start",
                grid_gap="8px",
                width="100%",
            ),
        )
        self.layout = ipywidgets.VBox(
            [top, studio], layout=ipywidgets.Layout(width="100%", grid_gap="8px")
        )
        self.layout.add_class("nbb-studio-inputs")

        def follow(change: Any) -> None:  # the prompt panel offers the params of what runs
            self.prompt.set_provider(studio.provider)

        studio.observe(follow, names=["provider_name"])


def attach_inputs(studio: BatchStudio) -> StudioInputs:
    return StudioInputs(studio)
