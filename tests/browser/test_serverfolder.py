"""The "Choose folder on server" picker in a real browser, under folders named with markup.

A folder name is whatever someone put into a cloned repository or an unzipped data set.
ipyfilechooser shows its title and the chosen path in HTML labels (set as innerHTML), so
a folder named ``<img src=x onerror=...>`` used to run script in the page: when the
picker opened, and again on every reload of the saved notebook while the kernel lived.
Here the names (markup, and TeX as a bonus) must show as typed, in JupyterLab and in
Notebook 7, before and after a reload, and the script in them must never run.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_inputs import png, tiles
from tests.browser.test_inputs_flow import upload_of

# no "/" in a file name, so the handlers mark the page instead of calling anything
ROOT_NAME = "<img src=x onerror=\"document.body.dataset.nbbInjected='root'\"> $\\alpha$"
FOLDER_NAME = "<img src=x onerror=\"document.body.dataset.nbbInjected='folder'\"> <b>pets $\\alpha$"

CELL = """
import nbbatch, pathlib, tempfile
from nbbatch.widgets import Upload
root = pathlib.Path(tempfile.mkdtemp()) / ROOT_NAME
(root / FOLDER_NAME).mkdir(parents=True)
(root / FOLDER_NAME / "cat.png").write_bytes(CAT)
up = Upload(nbbatch.Workspace(tempfile.mkdtemp()), server_root=root)
up
"""


def injected(page: Page) -> None:
    """No element made from a name, and no handler in one has run."""
    expect(page.locator("img[src='x']")).to_have_count(0)
    expect(page.locator(".nbb-server-folder b")).to_have_count(0)
    assert page.evaluate("() => document.body.dataset.nbbInjected") is None


@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_folder_names_with_markup_show_as_text_and_run_nothing(lab, app: str) -> None:
    cell = f"ROOT_NAME = {ROOT_NAME!r}\nFOLDER_NAME = {FOLDER_NAME!r}\n"
    cell += f"CAT = {png((230, 180, 60))!r}\n" + CELL
    page = lab.open_notebook([cell], app=app)
    up = upload_of(page)
    up.get_by_role("button", name="Choose folder on server").click()
    chooser = page.locator(".nbb-server-folder")
    # the title names the root folder, markup and all, as text
    expect(chooser).to_contain_text("Folders next to the kernel (under /")
    expect(chooser).to_contain_text(ROOT_NAME)
    injected(page)
    lab.screenshot(page, f"{app}-open")
    chooser.locator("select[multiple], select[size]").last.select_option(label=FOLDER_NAME + "/")
    chooser.get_by_role("button", name="Add its images").click()
    expect(tiles(up)).to_have_count(1)
    # the chosen path is in the (now hidden) label, as text
    expect(chooser).to_contain_text("/" + FOLDER_NAME)
    injected(page)

    # a reload of the saved notebook draws the live widgets again
    lab.reload(page)
    up = upload_of(page)
    expect(tiles(up)).to_have_count(1)
    expect(page.locator(".nbb-server-folder")).to_contain_text("/" + FOLDER_NAME)
    injected(page)
    # and opening the picker again after the reload still shows only text
    up.get_by_role("button", name="Choose folder on server").click()
    chooser = page.locator(".nbb-server-folder")
    expect(chooser).to_be_visible()
    expect(chooser.get_by_role("listbox")).to_contain_text(FOLDER_NAME + "/")
    expect(chooser).to_contain_text(ROOT_NAME)
    injected(page)
    lab.screenshot(page, f"{app}-reloaded")
