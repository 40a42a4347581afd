"""``Choose folder on server``: pick a folder next to the kernel, read its images safely.

The picker is ipyfilechooser's ``FileChooser`` (folders only, confined to a root folder
with its ``sandbox_path``). ipyfilechooser is unmaintained, so it is used here and
nowhere else: if it breaks or goes away, only this module changes.

Nothing a path holds is ever markup on the page. ipyfilechooser shows its title and the
chosen path in ``ipywidgets.HTML`` labels, which the page sets as ``innerHTML``: a folder
named ``<img src=x onerror=...>`` (easy to plant in a cloned repository or an unzipped data
set) would run script in the page, which holds the Jupyter API and kernel sockets, when
the picker opens and on every reload of the saved notebook. So the chooser used here
(:func:`_safe_chooser`) has both labels replaced by :class:`PlainText`, which escapes
whatever is written to it, and its label template is the bare path.

Reading is the same guarded path as a prompts folder (``planning._sources``): every file
is opened without blocking and checked with ``fstat`` on the open descriptor (a FIFO,
device or socket is refused, not waited on), read up to the byte cap and no further,
then decoded and stored by ``Workspace.add_reference`` (type by content, pixel bombs
refused, deduplicated by sha256). Symbolic links are not followed: a link may point
anywhere on the machine, outside the folder the person chose.
"""

from __future__ import annotations

import functools
import html
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets  # type: ignore[import-untyped]  # (no stubs)
import traitlets

from nbbatch.core._model import Reference
from nbbatch.engine import Workspace
from nbbatch.errors import ImageRejectedError
from nbbatch.images import ImageLimits

# the guarded reader the folder source and the workspace use: one place reads files safely
from nbbatch.images._files import NotAFileError, read_capped
from nbbatch.planning._sources import IMAGE_EXTENSIONS

from ._i18n import tr

__all__ = ["FolderRead", "PlainText", "ServerFolderPicker", "read_image_folder"]

_MAX_ENTRIES = 10_000  # a folder listing larger than this is not walked


@dataclass
class FolderRead:
    """What reading a folder gave: stored images (with their sizes) and refusals."""

    images: list[tuple[Reference, int]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def read_image_folder(
    folder: Path, workspace: Workspace, limits: ImageLimits, room: int, lang: str
) -> FolderRead:
    """The images directly in ``folder`` (name order), at most ``room`` of them.

    Blocking (listing, reading, decoding, fsync): call it in a worker thread.
    """
    out = FolderRead()
    label = folder.name or str(folder)
    try:
        entries = sorted(
            (e for e in os.scandir(folder) if not e.name.startswith(".")),
            key=lambda e: e.name.lower(),
        )[:_MAX_ENTRIES]
    except OSError as exc:
        out.refused.append((label, tr(lang, "folder_unreadable", reason=exc.strerror or exc)))
        return out
    for entry in entries:
        name = f"{label}/{entry.name}"
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as exc:
            out.refused.append((name, tr(lang, "folder_unreadable", reason=exc.strerror or exc)))
            continue
        if stat.S_ISLNK(mode):
            out.refused.append((name, tr(lang, "folder_symlink")))
            continue
        if stat.S_ISDIR(mode):
            out.refused.append((name, tr(lang, "folder_subfolder")))
            continue
        if Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
            out.refused.append((name, tr(lang, "folder_not_image")))
            continue
        if len(out.images) >= room:
            out.refused.append((name, tr(lang, "too_many_files", name=name, n=room)))
            continue
        try:
            data = read_capped(Path(entry.path), limits.max_bytes)
            ref = workspace.add_reference(data, name, limits=limits)
        except ImageRejectedError as exc:
            out.refused.append((name, exc.message.removeprefix(f"{name}: ")))
            continue
        except NotAFileError as exc:
            out.refused.append((name, str(exc)))
            continue
        except OSError as exc:
            out.refused.append((name, tr(lang, "folder_unreadable", reason=exc.strerror or exc)))
            continue
        out.images.append((ref, len(data)))
    return out


class PlainText(ipywidgets.HTML):  # type: ignore[misc]  # (ipywidgets has no stubs)
    """An HTML label that can only ever show text: every value written is escaped.

    The escaping happens in the trait's validator, so it holds for every writer (ours and
    ipyfilechooser's, which sets ``.value`` itself) before anything is synced to the page
    or saved into the notebook. The text sits in a span marked for MathJax to skip, so
    that where a front end typesets widget labels, ``$...$`` in a name stays as typed.
    """

    @traitlets.validate("value")
    def _as_text(self, proposal: dict[str, Any]) -> str:
        # No "already escaped" shortcut: a hostile name can look exactly like our output.
        return f"{_PLAIN_OPEN}{html.escape(str(proposal['value']))}{_PLAIN_CLOSE}"


_PLAIN_OPEN = '<span class="tex2jax_ignore mathjax_ignore">'
_PLAIN_CLOSE = "</span>"


@functools.cache
def _safe_chooser() -> type[Any]:
    """ipyfilechooser's ``FileChooser`` with its two HTML labels made :class:`PlainText`."""
    from ipyfilechooser import FileChooser  # type: ignore[import-untyped]

    class SafeFileChooser(FileChooser):  # type: ignore[misc]
        # the chosen path alone, no markup around it: PlainText shows it as text
        _LBL_TEMPLATE = "{0}"
        _title: Any
        _label: Any
        children: Any

        def __init__(self, *args: Any, title: str = "", **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # its own title label stays empty
            old_title: Any = self._title
            old_label: Any = self._label
            self._title = PlainText(value=title)
            self._title.layout.display = "none" if title == "" else None
            self._label = PlainText(
                value=self._LBL_NOFILE, layout=ipywidgets.Layout(margin="0 0 0 1em")
            )
            children: list[Any] = list(self.children)
            children[children.index(old_title)] = self._title
            self.children = children
            for box in _containers(self):
                if old_label in box.children:
                    box.children = [self._label if c is old_label else c for c in box.children]
            old_title.close()
            old_label.close()

    return SafeFileChooser


class ServerFolderPicker:
    """An ipyfilechooser for folders under ``root``, shown in ``box`` when opened.

    ``on_pick(path)`` is called with the folder the person selected; the picker hides
    itself afterwards (and on Cancel).
    """

    def __init__(self, root: Path, on_pick: Callable[[Path], None], lang: str) -> None:
        self.root = root
        self.lang = lang
        self._on_pick = on_pick
        self._chooser: Any = None
        self.box = ipywidgets.VBox([], layout=ipywidgets.Layout(display="none"))
        self.box.add_class("nbb-server-folder")

    @property
    def is_open(self) -> bool:
        return bool(self.box.layout.display != "none")

    def open(self) -> None:
        if self._chooser is None:
            self._chooser = _safe_chooser()(
                str(self.root),
                title=tr(self.lang, "folder_pick_title", root=self.root),
                select_desc=tr(self.lang, "folder_use"),
                change_desc=tr(self.lang, "folder_other"),
                show_only_dirs=True,
                # "pets/" rather than its emoji icon, which many fonts lack
                dir_icon="/",
                dir_icon_append=True,
                sandbox_path=str(self.root),
                layout=ipywidgets.Layout(width="100%"),
            )
            self._chooser.register_callback(self._picked)
            for button in _buttons(self._chooser):
                button.layout.width = "auto"  # its fixed widths cut "Add its images"
                if button.description == "Cancel":
                    button.description = tr(self.lang, "cancel")
                    button.on_click(lambda _b: self.close())
            self.box.children = [self._chooser]
        else:
            self._chooser.reset(path=str(self.root))
        # open on the folder list at once, not on a second "Select" press (its own
        # button does the same; the method is the package's, without a public name)
        show = getattr(self._chooser, "_show_dialog", None)
        if callable(show):
            show()
        self.box.layout.display = "flex"

    def close(self) -> None:
        self.box.layout.display = "none"

    def _picked(self, chooser: Any) -> None:
        path = chooser.selected_path
        if path:
            self.close()
            self._on_pick(Path(path))


def _containers(widget: Any) -> list[Any]:
    """``widget`` and every box inside it."""
    found = [widget] if hasattr(widget, "children") else []
    for child in getattr(widget, "children", ()):
        found.extend(_containers(child))
    return found


def _buttons(widget: Any) -> list[Any]:
    """Every button inside ``widget`` (the chooser's are not public attributes)."""
    if isinstance(widget, ipywidgets.Button):
        return [widget]
    found = []
    for child in getattr(widget, "children", ()):
        found.extend(_buttons(child))
    return found
