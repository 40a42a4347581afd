"""The browser harness itself: a tiny anywidget, clicked in real JupyterLab and Notebook 7."""

from __future__ import annotations

import sys

import pytest
from playwright.sync_api import expect

# The label is computed in Python from the clicked count, so seeing it change proves the
# click went browser → kernel → browser. The root's colours come from the theme's
# variables, so a theme switch shows in its computed style.
COUNTER_CELL = '''
import anywidget
import traitlets


class Counter(anywidget.AnyWidget):
    _esm = """
    export default {
      render({ model, el }) {
        el.classList.add("harness-counter");
        const button = document.createElement("button");
        button.textContent = "Add one 加一";
        button.addEventListener("click", () => {
          model.set("count", model.get("count") + 1);
          model.save_changes();
        });
        const label = document.createElement("span");
        label.className = "harness-label";
        const show = () => { label.textContent = model.get("label"); };
        model.on("change:label", show);
        show();
        el.append(button, label);
      },
    };
    """
    _css = """
    .harness-counter {
      background: var(--jp-layout-color0);
      color: var(--jp-ui-font-color1);
      padding: 8px;
    }
    .harness-label { margin-left: 1em; }
    """
    count = traitlets.Int(0).tag(sync=True)
    label = traitlets.Unicode("计数 0 (not clicked yet)").tag(sync=True)

    @traitlets.observe("count")
    def _relabel(self, change):
        self.label = f"计数 {change['new']} (counted in Python)"


counter = Counter()
counter
'''


@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_a_click_reaches_python_and_survives_theme_and_reload(lab, app) -> None:
    page = lab.open_notebook(["import nbbatch", COUNTER_CELL], app=app)
    widget = page.locator(".harness-counter")
    expect(widget.get_by_text("计数 0 (not clicked yet)")).to_be_visible()

    # the kernel is this venv's Python, where nbbatch is importable (compared by prefix:
    # the kernel may be started as .venv/bin/python3 when the tests run as .venv/bin/python)
    assert lab.execute(page, "import sys; print(sys.prefix)").strip() == sys.prefix

    widget.get_by_role("button", name="Add one").click()
    widget.get_by_role("button", name="Add one").click()
    expect(widget.get_by_text("计数 2 (counted in Python)")).to_be_visible()
    assert lab.execute(page, "counter.count") == "2\n"
    lab.screenshot(page, "light")

    light = widget.evaluate("el => getComputedStyle(el).backgroundColor")
    lab.set_theme(page, "dark")
    dark = widget.evaluate("el => getComputedStyle(el).backgroundColor")
    assert dark != light
    lab.screenshot(page, "dark")

    lab.reload(page)
    # the view is rebuilt from the kernel's live model (the file holds no widget state)
    widget = page.locator(".harness-counter")
    expect(widget.get_by_text("计数 2 (counted in Python)")).to_be_visible()
    lab.add_cell(page, "counter.count += 1")  # Python → browser, after the reload
    expect(widget.get_by_text("计数 3 (counted in Python)")).to_be_visible()
    lab.screenshot(page, "reloaded")


def test_a_cell_that_raises_fails_with_its_traceback(lab) -> None:
    page = lab.open_notebook(["y = 41", "1 / 0"], run=False)
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        lab.run_all(page)
    # the kernel lives on: code run after the failure fails alone, with its own error
    with pytest.raises(AssertionError, match="NameError"):
        lab.execute(page, "undefined_name")
    assert lab.execute(page, "print(y + 1)") == "42\n"
