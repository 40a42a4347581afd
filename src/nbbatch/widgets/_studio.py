"""``BatchStudio``: the panels of a studio composed over one ``StudioSession``.

Every panel is its own anywidget and works alone; here they share one session (the
batch shown, the provider, concurrency, retries and LLM), follow it when it changes, and
sit in one ipywidgets box: the settings, upload and prompt panels above the task grid,
the gallery and History dialogs beside it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable
from typing import Any, TypeVar

import ipywidgets  # type: ignore[import-untyped]  # (no stubs; only Box layout used)

from nbbatch.core._model import GeneratedImage, Task
from nbbatch.core._names import warn_renamed
from nbbatch.engine import Batch, Workspace
from nbbatch.errors import ConfigError, NbbatchError

from ._gallery import Gallery
from ._grid import TaskGrid
from ._history import History
from ._i18n import resolve_lang, tr
from ._panel import check_keywords
from ._prompt import PromptPanel
from ._session import StudioSession
from ._settings import SettingsPanel
from ._upload import Upload

__all__ = ["PANELS", "BatchStudio"]

#: every panel a studio can show, in the order they sit
PANELS = ("settings", "upload", "prompt", "grid", "gallery", "history")
_WITHOUT_INPUTS = ("grid", "gallery", "history")  # what ``inputs=False`` used to show
_P = TypeVar("_P")


class BatchStudio:
    """The batch studio: settings, upload, prompt, the task grid with its run toolbar,
    the gallery and History — each panel a widget of its own, all over one session.

    ``BatchStudio()`` starts a new batch in ``workspace`` with every panel;
    ``BatchStudio(batch)`` shows a batch made in Python (re-displaying it or reloading
    the page re-attaches to the same live state). ``provider`` is a registered name, the
    name of a saved configuration (``nbbatch.save_settings``) or a ``Provider``;
    ``provider``, ``concurrency``, ``retries`` and ``llm`` given here win over the saved
    settings. ``panels`` chooses the panels (default: all of :data:`PANELS`).
    """

    def __init__(
        self,
        batch: Batch | None = None,
        *,
        provider: Any = None,
        llm: Any = None,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        concurrency: int | None = None,
        retries: int | None = None,
        lang: str | None = None,
        panels: Iterable[str] | None = None,
        config_dir: str | os.PathLike[str] | None = None,
        inputs: bool | None = None,
        **unknown: Any,
    ) -> None:
        # a misspelt keyword (provder=, concurency=) must not run the defaults silently
        check_keywords("BatchStudio", unknown, _KEYWORDS)
        chosen = _choose_panels(panels, inputs)
        self._lang = resolve_lang(lang)
        if batch is None:  # a new batch to fill, named in the studio's language
            when = time.strftime("%Y-%m-%d %H:%M:%S")
            name = tr(self._lang, "default_batch_name", when=when)
            batch = Batch.create([], workspace=workspace, allow_empty=True, name=name)
        self._session = StudioSession(
            batch,
            provider=provider,
            concurrency=concurrency,
            retries=retries,
            llm=llm,
            workspace=workspace,
        )
        session = self._session
        batch = session.batch
        lang = self._lang
        self._panels = chosen
        self._settings = (
            SettingsPanel(config_dir=config_dir, lang=lang, on_change=self._apply)
            if "settings" in chosen
            else None
        )
        self._upload = (
            # a dropped image with embedded parameters can become a task of this batch
            Upload(batch.workspace, remix_into=batch, lang=lang) if "upload" in chosen else None
        )
        self._prompt = (
            PromptPanel(
                batch, upload=self._upload, llm=session.llm, provider=session.provider, lang=lang
            )
            if "prompt" in chosen
            else None
        )
        self._grid = TaskGrid(session=session, lang=lang) if "grid" in chosen else None
        self._gallery = self._new_gallery(batch) if "gallery" in chosen else None
        self._history = History(session=session, lang=lang) if "history" in chosen else None
        if self._grid is not None and self._prompt is not None:
            self._grid._empty_key = "empty_with_prompt"
        if self._grid is not None and self._history is not None:
            self._grid._history_hook = self._history.show
        self._view: Any = None
        self._unfollow = session.subscribe(self._follow)
        if self._settings is not None:
            self._apply(self._settings)

    # ----------------------------------------------------------- the panels
    @property
    def session(self) -> StudioSession:
        """The studio's state and actions, in plain Python."""
        return self._session

    @property
    def panels(self) -> tuple[str, ...]:
        """The panels this studio shows, in the order they sit."""
        return self._panels

    @property
    def grid(self) -> TaskGrid:
        """The grid panel (a ConfigError when ``panels`` left it out)."""
        return _shown(self._grid, "grid")

    @property
    def gallery(self) -> Gallery:
        """The lightbox of the results (``studio.gallery.show(task, image=0)``)."""
        return _shown(self._gallery, "gallery")

    @property
    def history(self) -> History:
        """The History dialog of past batches (``studio.history.show()``)."""
        return _shown(self._history, "history")

    @property
    def settings(self) -> SettingsPanel:
        """The settings panel (a ConfigError when ``panels`` left it out)."""
        return _shown(self._settings, "settings")

    @property
    def upload(self) -> Upload:
        """The upload panel (a ConfigError when ``panels`` left it out)."""
        return _shown(self._upload, "upload")

    @property
    def prompt(self) -> PromptPanel:
        """The prompt panel (a ConfigError when ``panels`` left it out)."""
        return _shown(self._prompt, "prompt")

    @property
    def lang(self) -> str:
        return self._lang

    @property
    def view(self) -> Any:
        """The ipywidgets box holding the panels (to place the studio inside a layout)."""
        if self._view is None:
            self._view = self._compose()
        return self._view

    # ----------------------------------------------------------- the session's face
    @property
    def batch(self) -> Batch:
        return self._session.batch

    @property
    def tasks(self) -> list[Task]:
        return list(self._session.batch.tasks)

    @property
    def results(self) -> list[GeneratedImage]:
        return list(self._session.batch.images)

    @property
    def selected(self) -> list[Task]:
        """The tasks selected in the grid, in batch order."""
        return self._grid.selected if self._grid is not None else []

    @property
    def runner(self) -> Any:
        """The run of the batch shown (``nbbatch.Runner``, as ``studio.batch.runner``):
        the live one, or the last one that ended (``runner.done``); None before any."""
        return self._session.batch.runner

    @property
    def run(self) -> Any:
        """Deprecated: ``studio.runner`` (this gave None once the run had ended)."""
        warn_renamed("BatchStudio.run", "BatchStudio.runner (and runner.done)")
        return self._session.live_runner

    @property
    def provider(self) -> Any:
        """What "Run all" runs on: a provider name, a configuration name, a
        ``ProviderConfig`` (built for each run) or a Provider."""
        return self._session.provider

    @property
    def concurrency(self) -> int:
        return self._session.concurrency

    def use_provider(self, provider: Any) -> None:
        """Run on ``provider`` from the next "Run all"; the picker offers it from now on."""
        self._session.use_provider(provider)

    def start(self) -> Any:
        """Run every runnable task in the background, as "Run all" does; returns the run."""
        return self._session.start()

    def open_batch(self, batch: Batch | str) -> Batch:
        """Show another batch of the workspace (an id, a unique id prefix, or a Batch).

        The grid, progress, gallery and prompt panel all switch to it; refused while a run
        of the batch shown is live (pause is not enough: stop it, or wait for it to end).
        """
        return self._session.open_batch(batch)

    def close(self) -> None:
        """Close every panel (their comms); the batch and its results stay."""
        self._unfollow()
        for panel in (
            self._settings,
            self._upload,
            self._prompt,
            self._grid,
            self._gallery,
            self._history,
        ):
            if panel is not None:
                panel.close()
        if self._view is not None:
            self._view.close()

    def __repr__(self) -> str:
        batch = self._session.batch
        return (
            f"<BatchStudio batch {batch.name!r} · {len(batch.tasks)} tasks · "
            f"{self._session.provider_name} · panels {', '.join(self._panels)}>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    # ----------------------------------------------------------- wiring
    def _compose(self) -> Any:
        rows: list[Any] = []
        # The Settings button sits under the reference images (the shorter column: no
        # lone bar on top, no blank area under the images), so the grid starts higher.
        column = self._upload_view() if self._settings is None else self._upload
        if self._settings is not None:
            if column is None:
                rows.append(self._settings)  # no upload panel: a bar of its own
            else:
                # the upload panel grows to the prompt panel's height, Settings under it
                # (one flex column: the drop zone takes what the column has to spare)
                upload = self._upload
                assert upload is not None
                upload.add_class("nbb-fill")
                upload.layout.flex = "1 1 auto"
                column = ipywidgets.VBox(
                    [upload, upload._server.box, self._settings],
                    layout=ipywidgets.Layout(grid_gap="8px", width="100%"),
                )
        inputs = [w for w in (column, self._prompt) if w is not None]
        if inputs:
            rows.append(
                ipywidgets.GridBox(
                    inputs,
                    layout=ipywidgets.Layout(
                        grid_template_columns="repeat(auto-fit, minmax(340px, 1fr))",
                        align_items="stretch",
                        grid_gap="8px",
                        width="100%",
                    ),
                )
            )
        rows.extend(w for w in (self._grid, self._gallery, self._history) if w is not None)
        box = ipywidgets.VBox(rows, layout=ipywidgets.Layout(width="100%", grid_gap="8px"))
        box.add_class("nbb-studio-box")
        return box

    def _upload_view(self) -> Any:
        return self._upload.view if self._upload is not None else None

    def _new_gallery(self, batch: Batch) -> Gallery:
        gallery = Gallery(batch, lang=self._lang)
        if self._grid is not None:
            gallery.connect(self._grid)
        return gallery

    def _follow(self, what: str, value: Any) -> None:
        if what == "batch":
            self._switched(value)
        elif what == "provider":
            self._offer()
        elif what == "run_ended" and self._history is not None:
            self._history.changed()

    def _switched(self, batch: Batch) -> None:
        if self._prompt is not None:
            self._prompt.batch = batch
        if self._upload is not None:
            self._upload.remix_into = batch  # a remixed drop lands in the batch shown
        if self._history is not None:
            self._history.current = batch.id
        old = self._gallery
        if old is not None:
            if self._grid is not None and old.show in self._grid._gallery_hooks:
                self._grid._gallery_hooks.remove(old.show)
            self._gallery = self._new_gallery(batch)
            if self._view is not None:
                self._view.children = [
                    self._gallery if child is old else child for child in self._view.children
                ]
            old.close()

    def _offer(self) -> None:
        """The prompt panel offers the params of what runs (with the saved defaults)."""
        prompt = self._prompt
        if prompt is None:
            return
        provider = self._session.provider
        defaults: dict[str, Any] = {}
        if self._settings is not None:
            try:
                saved = self._settings.provider_config()
            except NbbatchError:
                saved = None
            same = saved is not None and isinstance(provider, type(saved))
            if same and saved is not None and provider.name == saved.name:
                defaults = saved.params
        prompt.set_provider(provider, defaults=defaults)

    def _apply(self, settings: SettingsPanel) -> None:
        """The saved settings drive the session, except what was given in code."""
        session = self._session
        try:
            provider = settings.provider_config()
        except NbbatchError as exc:  # a saved value the engine refuses: say so
            provider = None
            if self._grid is not None:
                self._grid.notify(exc.message)
        session.apply_settings(
            provider=provider,
            concurrency=int(settings.values["concurrency"]),
            retries=int(settings.values["retries"]),
            llm=settings.llm_config(),
        )
        if self._prompt is not None:
            ready = session.llm_given or settings.llm_ready()
            self._prompt.set_llm(session.llm, ready=ready)
        self._offer()


_KEYWORDS = (
    "batch",
    "provider",
    "llm",
    "workspace",
    "concurrency",
    "retries",
    "lang",
    "panels",
    "config_dir",
    "inputs",
)


def _shown(panel: _P | None, name: str) -> _P:
    if panel is None:
        raise ConfigError(
            f"this studio shows no {name} panel: make it with BatchStudio(..., panels=[...]) "
            f"naming {name!r} (or leave panels out for all of them)"
        )
    return panel


def _choose_panels(panels: Iterable[str] | None, inputs: bool | None) -> tuple[str, ...]:
    if inputs is not None:
        warnings.warn(
            "BatchStudio(inputs=...) is deprecated: BatchStudio() shows every panel, "
            f"panels=(...) chooses among {', '.join(PANELS)}",
            DeprecationWarning,
            stacklevel=3,
        )
        if panels is None:
            panels = PANELS if inputs else _WITHOUT_INPUTS
    if panels is None:
        return PANELS
    if isinstance(panels, str):
        panels = (panels,)
    wanted = list(panels)
    unknown = [p for p in wanted if p not in PANELS]
    if unknown:
        raise ValueError(f"unknown panel {unknown[0]!r}: BatchStudio shows {', '.join(PANELS)}")
    return tuple(p for p in PANELS if p in wanted)
