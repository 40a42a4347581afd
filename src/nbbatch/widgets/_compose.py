"""``BatchStudio(..., inputs=True)``: the upload and prompt panels above the studio.

Each is its own anywidget (each works alone); here they share the studio's batch,
workspace, language, LLM and provider, and sit in an ipywidgets grid that wraps to one
column on a narrow output area.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets  # type: ignore[import-untyped]  # (no stubs; only Box layout used)

from ._prompt import PromptPanel
from ._settings import SettingsPanel
from ._upload import Upload

if TYPE_CHECKING:
    from ._grid import BatchStudio

__all__ = ["StudioInputs", "attach_inputs"]


class StudioInputs:
    """What a studio with ``inputs=True`` holds: ``upload``, ``prompt``, ``settings``."""

    def __init__(self, studio: BatchStudio) -> None:
        self.upload = Upload(studio.batch.workspace, lang=studio.lang)
        self.settings = SettingsPanel(lang=studio.lang, on_change=self._settings_changed)
        self._own_llm = studio.llm is not None  # an llm given in code wins over settings
        self.prompt = PromptPanel(
            studio.batch,
            upload=self.upload,
            llm=studio.llm if self._own_llm else self.settings.llm_config(),
            provider=studio.provider,
            lang=studio.lang,
        )
        top = ipywidgets.GridBox(
            [self.upload, self.prompt],
            layout=ipywidgets.Layout(
                grid_template_columns="repeat(auto-fit, minmax(340px, 1fr))",
                align_items="flex-start",
                grid_gap="8px",
                width="100%",
            ),
        )
        self.layout = ipywidgets.VBox(
            [self.settings, top, studio], layout=ipywidgets.Layout(width="100%", grid_gap="8px")
        )
        self.layout.add_class("nbb-studio-inputs")

        def follow(change: Any) -> None:  # the prompt panel offers the params of what runs
            self.prompt.set_provider(studio.provider)

        studio.observe(follow, names=["provider_name"])

    def _settings_changed(self, settings: SettingsPanel) -> None:
        prompt = getattr(self, "prompt", None)
        if prompt is not None and not self._own_llm:
            prompt.llm = settings.llm_config()


def attach_inputs(studio: BatchStudio) -> StudioInputs:
    return StudioInputs(studio)
