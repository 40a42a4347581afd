"""``BatchStudio(..., inputs=True)``: the upload and prompt panels above the studio.

Each is its own anywidget (each works alone); here they share the studio's batch,
workspace, language, LLM and provider, and sit in an ipywidgets grid that wraps to one
column on a narrow output area.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets  # type: ignore[import-untyped]  # (no stubs; only Box layout used)

from nbbatch.errors import NbbatchError

from ._prompt import PromptPanel
from ._settings import SettingsPanel
from ._upload import Upload

if TYPE_CHECKING:
    from ._grid import BatchStudio

__all__ = ["StudioInputs", "attach_inputs"]


class StudioInputs:
    """What a studio with ``inputs=True`` holds: ``upload``, ``prompt``, ``settings``.

    The settings drive the studio: what was saved (loaded now, and again on every Save
    or key change) becomes the provider, concurrency and retries of "Run all" and the
    prompt panel's LLM, default parameters and offered parameters — except what the
    studio was given in code, which wins.
    """

    def __init__(self, studio: BatchStudio, *, config_dir: Any = None) -> None:
        self.studio = studio
        # a dropped image with embedded parameters can become a task of this batch
        self.upload = Upload(studio.batch.workspace, remix_into=studio.batch, lang=studio.lang)
        self.settings = SettingsPanel(
            config_dir=config_dir, lang=studio.lang, on_change=self._settings_changed
        )
        self._own_llm = studio.llm is not None  # an llm given in code wins over settings
        self.prompt = PromptPanel(
            studio.batch,
            upload=self.upload,
            llm=studio.llm if self._own_llm else self.settings.llm_config(),
            provider=studio.provider,
            lang=studio.lang,
        )
        top = ipywidgets.GridBox(
            [self.upload.view, self.prompt],
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
            self._offer(studio.provider)

        studio.observe(follow, names=["provider_name"])
        self._apply(self.settings)

    def _offer(self, provider: Any) -> None:
        saved = self.settings.provider_config()
        from_settings = isinstance(provider, type(saved)) and provider.name == saved.name
        self.prompt.set_provider(provider, defaults=saved.params if from_settings else {})

    def _apply(self, settings: SettingsPanel) -> None:
        studio = self.studio
        if not studio.provider_given:
            try:
                studio.use_provider(settings.provider_config())
            except NbbatchError as exc:  # a saved value the engine refuses: say so
                studio.notify(exc.message)
        if not studio.concurrency_given:
            studio.concurrency = int(settings.values["concurrency"])
            runner = studio.run
            if runner is not None:
                runner.set_concurrency(studio.concurrency)
        studio.retries = int(settings.values["retries"])
        self._offer(studio.provider)

    def _settings_changed(self, settings: SettingsPanel) -> None:
        prompt = getattr(self, "prompt", None)
        if prompt is None:
            return
        if not self._own_llm:
            prompt.llm = settings.llm_config()
        self._apply(settings)


def attach_inputs(studio: BatchStudio, *, config_dir: Any = None) -> StudioInputs:
    return StudioInputs(studio, config_dir=config_dir)
