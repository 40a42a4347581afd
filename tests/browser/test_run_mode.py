"""The studio's run mode in a real JupyterLab: "Run all" through OpenAI's Batch API.

A saved OpenAI configuration points at the loopback ``FakeOpenAI`` started in the
kernel. A person picks it in the toolbar's Provider list, chooses the run mode "Batch
API" (with both prices shown) and presses Run all; the rows then say where the job is
at OpenAI as it moves, and end with their images, seen in the gallery.

Deterministic: the fake's jobs run on a ``BatchClock`` that only this test moves, and
after each move ``studio.runner.poll_now()`` has the run ask at once instead of at its
next (backed-off) poll. Nothing waits for time to pass. Screenshots (light, dark,
Chinese) go to test-artifacts/screenshots.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

KEY = "test-key-runmode-browser-01"
SAVED = "OpenAI (loopback fake)"

SETUP = f"""
import nbbatch, os, tempfile
os.environ["NBBATCH_CONFIG_DIR"] = tempfile.mkdtemp()  # nothing saved but what is below
from nbbatch.engine import load_settings, save_secret, save_settings
from nbbatch.testing import BatchClock, FakeOpenAI
from nbbatch.widgets import BatchStudio
job_clock = BatchClock()  # the fake's jobs move only when the test says so
fake = FakeOpenAI(api_key={KEY!r}, render="fast", max_side=64, batch_clock=job_clock,
                  batch_timing=(10, 100, 10)).start()
settings = load_settings()
settings.add(nbbatch.ProviderConfig(provider="openai", name={SAVED!r}, base_url=fake.base_url))
settings.prices["openai"] = 0.04
save_settings(settings)
save_secret({SAVED!r}, {KEY!r})  # as Settings keeps a key typed there
batch = nbbatch.Batch.create(
    ["a red fox in snow", "a koi pond, ukiyo-e"], workspace=nbbatch.Workspace(tempfile.mkdtemp()),
    name="Half price", params=nbbatch.Params(size="64x64"),
)
studio = BatchStudio(batch, provider="demo", panels=["grid", "gallery"])
studio
"""


def labels(studio: Locator) -> Locator:
    """Where each row says its task is (shown only while at a batch API)."""
    return studio.locator(".nbb-row[data-task-id] .nbb-where")


def move_job(lab, page: Page, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """The job at the fake OpenAI moves on ``seconds``; the run asks about it at once."""
    lab.execute(page, f"job_clock.advance({seconds}); studio.runner.poll_now()")


@pytest.mark.timeout(600)
def test_run_all_through_the_openai_batch_api_and_watch_the_rows_follow_the_job(lab) -> None:  # type: ignore[no-untyped-def]
    page = lab.open_notebook([SETUP])
    page.set_viewport_size({"width": 1400, "height": 1000})
    studio = page.locator(".nbb-root").first
    expect(studio.locator(".nbb-row[data-task-id]")).to_have_count(2)
    run_mode = studio.get_by_role("combobox", name="Run mode")
    expect(run_mode).to_be_hidden()  # demo has no batch API

    studio.get_by_role("combobox", name="Provider").select_option(label=SAVED)
    expect(run_mode).to_be_visible()
    expect(run_mode).to_have_value("now")
    prices = "Now $0.04 an image · batch API $0.02 an image"
    expect(studio.locator(".nbb-runprice")).to_have_text(prices)
    run_mode.select_option(label="Batch API: half price, within 24 h")
    expect(run_mode).to_have_value("batch")
    studio.get_by_role("button", name="Run all", exact=True).click()

    # submitted: the job is validating at OpenAI
    expect(labels(studio)).to_have_text(["submitted to the batch API: queued at OpenAI"] * 2)
    expect(studio.locator(".nbb-badge")).to_have_text(["waiting for the server"] * 2)
    expect(run_mode).to_be_disabled()  # a live run keeps its mode
    lab.screenshot(page, "1-queued-at-openai")
    move_job(lab, page, 20)
    expect(labels(studio)).to_have_text(["submitted to the batch API: in progress at OpenAI"] * 2)
    # in its own cell, under the badge: never under the row's buttons
    where = labels(studio).first.bounding_box()
    actions = studio.locator(".nbb-row[data-task-id] .nbb-c-actions").first.bounding_box()
    status = studio.locator(".nbb-row[data-task-id] .nbb-c-status").first.bounding_box()
    assert where and actions and status
    assert where["x"] + where["width"] <= status["x"] + status["width"] <= actions["x"]
    lab.set_theme(page, "dark")
    lab.screenshot(page, "2-in-progress-dark")
    lab.set_theme(page, "light")
    # a Chinese grid on the same batch says it in Chinese, and follows the job too
    lab.add_cell(page, 'BatchStudio(batch, lang="zh", panels=["grid"])')
    zh = page.locator(".nbb-root").nth(1)
    expect(labels(zh)).to_have_text(["已提交到批量 API：OpenAI 处理中"] * 2)
    move_job(lab, page, 95)
    expect(labels(studio)).to_have_text(["submitted to the batch API: finishing at OpenAI"] * 2)
    expect(labels(zh)).to_have_text(["已提交到批量 API：OpenAI 即将完成"] * 2)
    zh.scroll_into_view_if_needed()
    lab.screenshot(page, "3-finishing-zh")
    # still the same run, polled rather than sent again: one job, no request sent now
    created = (
        "print(len(fake.batch_api.created), len(fake.calls('/v1/images/generations', 'POST')))"
    )
    assert lab.execute(page, created).split() == ["1", "0"]

    move_job(lab, page, 10)  # completed: the results are downloaded and saved
    expect(studio.locator(".nbb-badge")).to_have_text(["done"] * 2)
    expect(studio.get_by_role("status")).to_have_text("Finished")
    expect(labels(studio)).to_have_text(["", ""])
    thumb = studio.locator(".nbb-row[data-task-id] .nbb-c-results img").first
    expect(thumb).to_have_js_property("complete", True)
    lab.screenshot(page, "4-done")
    thumb.click()
    dialog = page.get_by_role("dialog", name="Gallery")
    expect(dialog.locator(".nbb-g-prompt")).to_have_text("a red fox in snow")
    image = dialog.locator("img.nbb-g-img")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth === 64", arg=image.element_handle()
    )
    lab.screenshot(page, "5-gallery")
    page.keyboard.press("Escape")
    assert not [c for c in lab.console if "pageerror" in c]
