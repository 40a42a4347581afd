"""The Compare view in a real JupyterLab, used as a person would, on the demo provider.

A comparison of 12 tasks x 4 configurations (two with scripted failures and their own
latencies) is shown with ``CompareView``; Run starts it from the table, the column
headers count the cells as they finish, the failed cells say so, a click on a cell opens
its image in the gallery (where the arrows move across configurations and tasks), the
star picks the row's winner (seen from Python), the table
scrolls to its last row, Retry failed re-runs the failures once they are fixed, and
scores show in the cells; "New comparison" makes and runs another.
Screenshots (light, dark, Chinese) go to test-artifacts.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

SETUP = """
import nbbatch
from nbbatch.widgets import CompareView
ws = nbbatch.Workspace({path!r})
cmp = nbbatch.compare(
    [f"scene {{i}}: a lighthouse" for i in range(10)] + ["a castle at night", "a storm at sea"],
    [
        ("demo", {{"label": "fast"}}),
        ("demo", {{"label": "slow", "latency": 0.05}}),
        ("demo", {{"label": "no castles", "latency": 0.02, "fail_prompts": ["castle"]}}),
        ("demo", {{"label": "no storms", "steps": 8, "fail_prompts": ["storm"]}}),
    ],
    workspace=ws, params=nbbatch.Params(size="128x128"), retry=0,
)
view = CompareView(cmp)
view
"""


def test_a_comparison_runs_and_is_read_in_the_compare_view(lab, tmp_path: Path) -> None:
    page = lab.open_notebook([SETUP.format(path=str(tmp_path / "ws"))])
    table = page.locator(".nbb-cmp").first
    expect(table.locator(".nbb-k-head [role=columnheader]")).to_have_count(5)
    table.get_by_role("button", name="Run", exact=True).click()
    expect(table.locator(".nbb-k-status")).to_have_text("48 of 48 cells finished", timeout=60_000)
    headers = table.locator(".nbb-k-head .nbb-k-totals")
    expect(headers.nth(2)).to_contain_text("11/12 done · 1 failed")
    expect(headers.nth(0)).to_contain_text("12/12 done · 0 failed")
    done = table.locator('.nbb-k-cell[data-row="0"][data-column="1"]')
    expect(done.locator("img[src^='blob:']")).to_be_visible()
    expect(done.locator(".nbb-k-meta")).to_contain_text(" s · –")  # time; no price known
    lab.screenshot(page, "1-light")

    # a cell opens its image in the gallery
    done.click()
    dialog = page.get_by_role("dialog", name="Gallery")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".nbb-g-prompt")).to_have_text("scene 0: a lighthouse")
    caption = dialog.locator(".nbb-g-taskpos")
    expect(caption).to_have_text("slow · configuration 2 of 4 · task 1 of 12")
    # ←/→ the task's other configurations, ↑/↓ the same configuration of other tasks
    page.keyboard.press("ArrowRight")
    expect(caption).to_have_text("no castles · configuration 3 of 4 · task 1 of 12")
    expect(dialog.locator(".nbb-g-prompt")).to_have_text("scene 0: a lighthouse")
    page.keyboard.press("ArrowDown")
    expect(caption).to_have_text("no castles · configuration 3 of 4 · task 2 of 12")
    expect(dialog.locator(".nbb-g-prompt")).to_have_text("scene 1: a lighthouse")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(caption).to_have_text("fast · configuration 1 of 4 · task 2 of 12")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # the star picks the row's winner
    done.get_by_role("button", name="Pick as the row's winner").click()
    expect(done.locator(".nbb-k-star.on")).to_be_visible()
    assert "(0, 'slow')" in lab.execute(
        page, "print([(w.row, w.configuration) for w in cmp.winners()])"
    )

    # virtualised: the last rows are drawn once scrolled to
    scroller = table.locator(".nbb-k-scroll")
    scroller.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(table.locator('.nbb-k-cell[data-row="11"][data-column="3"]')).to_contain_text("failed")
    expect(table.locator('.nbb-k-cell[data-row="10"][data-column="2"]')).to_contain_text("failed")
    expect(table.locator('.nbb-k-cell[data-row="10"][data-column="3"] img')).to_be_visible()
    assert table.locator(".nbb-k-row").count() < 12
    expect(table.locator('.nbb-k-row[aria-rowindex="2"]')).to_have_count(0)  # row 0: not drawn

    lab.set_theme(page, "dark")
    lab.screenshot(page, "2-dark")
    lab.set_theme(page, "light")

    # fixed meanwhile: Retry failed runs the two failed cells alone
    lab.execute(page, "for c in cmp.configurations: c.options.pop('fail_prompts', None)")
    table.get_by_role("button", name="Retry failed").click()
    expect(headers.nth(3)).to_contain_text("12/12 done · 0 failed", timeout=60_000)
    expect(headers.nth(2)).to_contain_text("12/12 done · 0 failed")
    assert "{'succeeded': 48}" in lab.execute(page, "print(cmp.counts)")

    # scored (a technical measure), then the same comparison in Chinese
    lab.execute(page, "cmp.score(nbbatch.images.sharpness)")
    lab.add_cell(page, "CompareView(cmp, lang='zh')")
    zh = page.locator(".nbb-cmp").nth(1)
    expect(zh.get_by_role("button", name="重试失败项")).to_be_visible()
    expect(zh.locator(".nbb-k-status")).to_have_text("已完成 48 / 48 格")
    expect(zh.locator('.nbb-k-cell[data-row="0"][data-column="0"] .nbb-k-meta')).to_contain_text(
        "评分 "
    )
    zh.scroll_into_view_if_needed()
    lab.screenshot(page, "3-zh")

    # a new comparison from the form, on the saved configurations (here: the offline demo)
    table.get_by_role("button", name="New comparison").click()
    table.get_by_role("textbox", name="Tasks, one prompt a line").fill("a red fox\na paper boat")
    table.get_by_role("checkbox", name="demo", exact=True).check()
    table.get_by_role("button", name="Create").click()
    expect(table.locator(".nbb-k-status")).to_have_text("0 of 2 cells finished")
    expect(table.locator(".nbb-k-head [role=columnheader]")).to_have_count(2)
    table.get_by_role("button", name="Run", exact=True).click()
    expect(table.locator(".nbb-k-status")).to_have_text("2 of 2 cells finished")
    assert "2 tasks x 1" in lab.execute(page, "print(view.table.comparison)")
