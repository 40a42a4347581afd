"""The server-folder picker never sends markup from a path to the page (issue 26).

ipyfilechooser's title and chosen-path labels are ``ipywidgets.HTML`` (set as innerHTML
by the page); a folder named ``<img src=x onerror=...>`` ran script in the page. Here every
HTML value the picker's widget tree syncs must be escaped text, whatever the names hold
(the browser test ``tests/browser/test_serverfolder.py`` checks the page itself).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets
import pytest

from nbbatch.widgets._serverfolder import PlainText, ServerFolderPicker

MARKUP = '<img src=x onerror="alert(1)"> <b>pets'


def html_values(widget: Any) -> Iterator[str]:
    if isinstance(widget, ipywidgets.HTML):
        yield widget.value
    for child in getattr(widget, "children", ()):
        yield from html_values(child)


def close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def assert_no_markup(widget: Any, *names: str) -> None:
    values = list(html_values(widget))
    assert values, "the picker shows no labels"
    for value in values:
        assert "<img" not in value and "<b>" not in value, value
    text = " ".join(values)
    for name in names:
        assert html.escape(name) in text


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / MARKUP
    (root / MARKUP).mkdir(parents=True)
    return root


def test_a_root_and_a_folder_named_with_markup_are_shown_as_text(root: Path) -> None:
    picked: list[Path] = []
    picker = ServerFolderPicker(root, picked.append, "en")
    picker.open()
    try:
        assert_no_markup(picker.box, str(root))
        chooser = picker._chooser
        # what the person does: the folder in the list, then the chooser's own button
        chooser._dircontent.value = MARKUP + "/"
        chooser._select.click()
        assert picked == [root / MARKUP]
        assert_no_markup(picker.box, os.sep + MARKUP)
        picker.open()  # reopened: reset to its root
        assert_no_markup(picker.box, str(root))
    finally:
        close_tree(picker.box)


def test_plain_text_escapes_whatever_is_written_to_it() -> None:
    label = PlainText(value=MARKUP)
    try:
        assert "<img" not in label.value and html.escape(MARKUP) in label.value
        # even a value that looks like what PlainText itself produces is escaped again
        label.value = f'<span class="tex2jax_ignore mathjax_ignore">{MARKUP}</span>'
        assert "<img" not in label.value and "&lt;span class=&quot;" in label.value
    finally:
        label.close()
