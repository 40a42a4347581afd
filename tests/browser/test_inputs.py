"""The studio's inputs in a real JupyterLab, used as a new user would: drop images and a
folder, reorder, remove; write a prompt, pick a preset, plan with an LLM (the bundled
fake chat server, no key), templates, one prompt per image, a prompts file.

Screenshots of each step go to test-artifacts/screenshots (gitignored) to be looked at.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from PIL import Image
from playwright.sync_api import Locator, Page, expect

# the preview's button is named as it reads ("Add 3 tasks to the batch")
ADD_TASKS = re.compile(r"^Add \d+ tasks? to the batch$")


def png(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    out = io.BytesIO()
    img = Image.new("RGB", size, colour)
    for x in range(0, size[0], 16):  # some structure, so thumbnails are not flat
        for y in range(size[1] // 3, size[1] // 3 + 12):
            img.putpixel((x, y), (255, 255, 255))
    img.save(out, "PNG")
    return out.getvalue()


DROP_FILES = """
async ([selector, files]) => {
  const zone = document.querySelector(selector);
  const dt = new DataTransfer();
  for (const [name, type, b64] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], name, {type}));
  }
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
  }
}
"""


def drop(page: Page, files: dict[str, bytes]) -> None:
    """Drop files on the zone as the OS would (a real drag cannot be simulated)."""
    payload = [[name, "image/png", base64.b64encode(data).decode()] for name, data in files.items()]
    # the zone must be on the page first: a drop dispatched before it renders is lost
    expect(page.locator(".nbb-up-zone").first).to_be_visible()
    page.evaluate(DROP_FILES, [".nbb-up-zone", payload])


def names(lab, page: Page, expr: str = "up.references") -> list[str]:
    return json.loads(
        lab.execute(page, f"import json; print(json.dumps([r.name for r in {expr}]))")
    )


def tiles(scope: Locator) -> Locator:
    return scope.locator(".nbb-up-tile[data-id]")


def upload_cell(lang: str | None = None) -> str:
    return f"""
import nbbatch, tempfile
from nbbatch.widgets import Upload
ws = nbbatch.Workspace(tempfile.mkdtemp())
up = Upload(ws, lang={lang!r})
up
"""


def test_drop_images_and_a_folder_reorder_remove_and_reload(lab, tmp_path: Path) -> None:
    page = lab.open_notebook([upload_cell()])
    up = page.locator(".nbb-up").first
    expect(up.get_by_role("button", name="Drop images or a folder here")).to_be_visible()
    lab.screenshot(page, "1-empty")

    drop(
        page,
        {
            "red.png": png((200, 40, 40)),
            "green.png": png((40, 160, 60)),
            "blue.png": png((40, 70, 200)),
        },
    )
    expect(tiles(up)).to_have_count(3)

    folder = tmp_path / "pets"
    folder.mkdir()
    (folder / "cat.png").write_bytes(png((230, 180, 60)))
    (folder / "notes.png").write_bytes(b"%PDF-1.4 this is a document, not a picture")
    with page.expect_file_chooser() as chooser:
        up.get_by_role("button", name="Add folder").click()
    chooser.value.set_files(str(folder))
    expect(tiles(up)).to_have_count(4)
    refused = up.locator(".nbb-up-refused")
    expect(refused).to_contain_text("pets/notes.png")
    expect(refused).to_contain_text("not an accepted image: it is PDF")
    # the browser's own rendering is replaced by the kernel's thumbnail
    expect(up.locator('.nbb-up-tile[data-id] img[data-source="kernel"]')).to_have_count(4)
    assert names(lab, page) == ["red.png", "green.png", "blue.png", "pets/cat.png"]
    lab.screenshot(page, "2-dropped")

    # keyboard: Alt+→ moves the focused image one place on
    tiles(up).nth(0).focus()
    page.keyboard.press("Alt+ArrowRight")
    expect(tiles(up).nth(1)).to_have_attribute("aria-label", "Image 2 of 4: red.png")
    # drag: blue onto the first place
    tiles(up).nth(2).drag_to(tiles(up).nth(0))
    expect(tiles(up).nth(0)).to_have_attribute("aria-label", "Image 1 of 4: blue.png")
    assert names(lab, page) == ["blue.png", "green.png", "red.png", "pets/cat.png"]

    tiles(up).nth(1).hover()
    up.get_by_role("button", name="Remove green.png").click()
    expect(tiles(up)).to_have_count(3)
    assert names(lab, page) == ["blue.png", "red.png", "pets/cat.png"]

    lab.reload(page)
    up = page.locator(".nbb-up").first
    expect(tiles(up)).to_have_count(3)
    expect(up.locator(".nbb-up-refused")).to_contain_text("pets/notes.png")
    lab.screenshot(page, "3-after-reload")

    up.get_by_role("button", name="Clear").click()
    expect(tiles(up)).to_have_count(0)
    assert names(lab, page) == []


def studio_cell(lang: str | None = None) -> str:
    return f"""
import nbbatch, tempfile
from nbbatch.testing import FakeChat, Fault
from nbbatch.widgets import BatchStudio
chat = FakeChat().start()  # the bundled loopback LLM: no key, no network
ws = nbbatch.Workspace(tempfile.mkdtemp())
studio = BatchStudio(
    workspace=ws,
    provider="demo",
    llm=dict(base_url=chat.base_url, model="fake-planner-1"),
    lang={lang!r},
)
studio
"""


def prompts_of(lab, page: Page) -> list[dict]:
    out = lab.execute(
        page,
        "import json; print(json.dumps([{'p': t.prompt, 'refs': [r.name for r in t.references]}"
        " for t in studio.batch]))",
    )
    return json.loads(out)


def create(panel: Locator) -> None:
    """Create tasks, look at what will be created, add it to the batch."""
    panel.get_by_role("button", name="Create tasks").click()
    panel.get_by_role("button", name=ADD_TASKS).click()
    expect(panel.get_by_role("alert")).to_contain_text("tasks added to the batch")


def test_from_dropped_images_to_tasks_in_the_grid_in_every_mode(lab, tmp_path: Path) -> None:
    page = lab.open_notebook([studio_cell()])
    up = page.locator(".nbb-up").first
    panel = page.locator(".nbb-pp").first
    grid = page.locator(".nbb-root").first
    expect(panel.get_by_role("textbox", name="Master prompt")).to_be_visible()
    expect(grid.get_by_role("grid", name="Tasks")).to_be_visible()
    drop(
        page,
        {
            "mug.png": png((200, 60, 40)),
            "cup.png": png((40, 140, 90)),
            "jar.png": png((60, 80, 200)),
        },
    )
    expect(tiles(up)).to_have_count(3)
    expect(panel.locator(".nbb-pp-count")).to_have_text(
        "The LLM sees the names of 3 reference images"
    )

    # master prompt + a preset, then the LLM splits it and assigns the references
    prompt = panel.get_by_role("textbox", name="Master prompt")
    prompt.fill("a mug on marble; a cup in a cafe; a jar outdoors")
    panel.get_by_role("combobox", name="Presets").select_option(index=1)
    panel.get_by_role("button", name="Insert", exact=True).click()
    expect(prompt).not_to_have_value("a mug on marble; a cup in a cafe; a jar outdoors")
    assert prompt.input_value().startswith("a mug on marble; a cup in a cafe; a jar outdoors, ")
    prompt.fill("a mug on marble; a cup in a cafe; a jar outdoors")
    panel.get_by_role("button", name="Create tasks").click()
    proposal = panel.get_by_role("region", name="Tasks to create")
    expect(proposal).to_contain_text("3 tasks will be created")
    expect(proposal.locator(".nbb-pp-ref")).to_have_count(3)
    lab.screenshot(page, "1-llm-proposal")
    panel.get_by_role("button", name=ADD_TASKS).click()
    expect(grid.locator(".nbb-row[data-task-id]")).to_have_count(3)
    tasks = prompts_of(lab, page)
    assert [t["refs"] for t in tasks] == [["mug.png"], ["cup.png"], ["jar.png"]]
    expect(grid.locator(".nbb-row[data-task-id] img").first).to_be_visible()  # ref thumbs
    lab.screenshot(page, "2-llm-tasks-in-grid")

    # Template: the count follows the typing
    panel.get_by_role("radio", name="Template").check()
    prompt.fill("a {red|blue} car")
    expect(panel.locator(".nbb-pp-count")).to_have_text("2 prompts")
    prompt.press_sequentially(" at {dawn|noon|dusk}")
    expect(panel.locator(".nbb-pp-count")).to_have_text("6 prompts")
    create(panel)
    expect(grid.locator(".nbb-row[data-task-id]")).to_have_count(9)

    # Same prompt for every image: one task per uploaded image
    panel.get_by_role("radio", name="Same prompt for every image").check()
    expect(panel.locator(".nbb-pp-count")).to_have_text("3 tasks: one per image")
    prompt.fill("the same object as a watercolour")
    create(panel)
    tasks = prompts_of(lab, page)
    assert [t["refs"] for t in tasks[-3:]] == [["mug.png"], ["cup.png"], ["jar.png"]]

    # a prompts file, its broken line listed with the reason
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a koi pond\n--seed=oops a broken line\na ramen bowl\n")
    panel.get_by_role("radio", name="From file").check()
    with page.expect_file_chooser() as chooser:
        panel.get_by_role("button", name="Choose prompts file").click()
    chooser.value.set_files(str(prompts))
    expect(panel.locator(".nbb-pp-file-name")).to_contain_text(
        "prompts.txt · 2 prompts · 1 lines skipped"
    )
    panel.get_by_role("button", name="Create tasks").click()
    expect(panel.get_by_role("region", name="Tasks to create")).to_contain_text("line 2")
    panel.get_by_role("button", name=ADD_TASKS).click()
    expect(grid.locator(".nbb-row[data-task-id]")).to_have_count(14)
    assert [t["p"] for t in prompts_of(lab, page)[-2:]] == ["a koi pond", "a ramen bowl"]

    # an LLM failure is shown in the panel, with the next step
    lab.execute(page, "chat.add_fault(Fault.status_code(401, times=3))")
    panel.get_by_role("radio", name="Split with LLM").check()
    prompt.fill("three more mugs")
    panel.get_by_role("button", name="Create tasks").click()
    expect(panel.get_by_role("alert")).to_contain_text("Next: check the LLM key")
    lab.screenshot(page, "3-llm-failure")
    assert len(prompts_of(lab, page)) == 14

    # the inputs survive a reload
    lab.reload(page)
    panel = page.locator(".nbb-pp").first
    expect(panel.get_by_role("textbox", name="Master prompt")).to_have_value("three more mugs")
    expect(tiles(page.locator(".nbb-up").first)).to_have_count(3)


SENTINEL = "test-key-SENTINEL-93c1e7d2"

SECRET_CELL = f"""
import logging, os, tempfile, nbbatch
from nbbatch.testing import FakeChat
from nbbatch.widgets import BatchStudio
config = tempfile.mkdtemp()
os.environ["NBBATCH_CONFIG_DIR"] = config
os.environ.pop("OPENAI_API_KEY", None)
debug_log = tempfile.mktemp(suffix=".log")
handler = logging.FileHandler(debug_log)
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.DEBUG)
# in two halves: the notebook file must not hold the whole key, even in its source
chat = FakeChat(api_key={SENTINEL[:12]!r} + {SENTINEL[12:]!r}).start()  # 401 without it
ws = nbbatch.Workspace(tempfile.mkdtemp())
provider = nbbatch.get_provider("demo", fail_prompts=["FAILME"])
studio = BatchStudio(workspace=ws, provider=provider)
studio
"""

FIND_SENTINEL = f"""
import json, pathlib, ipywidgets
places = {{
    "widget state": json.dumps(ipywidgets.Widget.get_manager_state(), default=str),
    "debug log": pathlib.Path(debug_log).read_text(errors="replace"),
}}
for root in (pathlib.Path(ws.path), pathlib.Path(config)):
    for f in root.rglob("*"):
        if f.is_file() and f.name != "secrets.json":
            places[str(f)] = f.read_bytes().decode("latin-1")
print(json.dumps(sorted(k for k, v in places.items() if {SENTINEL!r} in v)))
print(json.dumps(len(places)))
"""


def test_a_key_typed_into_settings_is_used_and_never_written_anywhere(lab) -> None:
    page = lab.open_notebook([SECRET_CELL])
    settings = page.locator(".nbb-set").first
    settings.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog).to_be_visible()
    base_url = lab.execute(page, "print(chat.base_url)").strip()
    dialog.get_by_role("textbox", name="LLM base URL").fill(base_url)
    dialog.get_by_role("textbox", name="LLM model").fill("fake-planner-1")
    key = dialog.get_by_role("textbox", name="LLM key", exact=True)
    key.fill(SENTINEL)
    key.press("Enter")
    expect(dialog.get_by_role("status")).to_contain_text("held by the kernel")
    expect(dialog.get_by_role("textbox", name="LLM key", exact=True)).to_have_value(
        ""
    )  # the field cleared itself
    lab.screenshot(page, "1-settings")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.get_by_role("status")).to_contain_text("Saved to")
    dialog.get_by_role("button", name="Close").last.click()
    assert lab.execute(page, "print(studio.settings.llm_key_set)").strip() == "True"

    # the key works: the fake LLM refuses any request without it
    panel = page.locator(".nbb-pp").first
    # a studio made without an LLM starts in Template mode: the user picks the LLM split
    panel.get_by_role("radio", name="Split with LLM").check()
    panel.get_by_role("textbox", name="Master prompt").fill("a red fox; FAILME a storm")
    panel.get_by_role("button", name="Create tasks").click()
    panel.get_by_role("button", name=ADD_TASKS).click()
    grid = page.locator(".nbb-root").first
    expect(grid.locator(".nbb-row[data-task-id]")).to_have_count(2)
    grid.get_by_role("button", name="Run all").click()
    expect(grid.locator(".nbb-badge", has_text="done")).to_have_count(1)
    expect(grid.locator(".nbb-badge", has_text="failed")).to_have_count(1)

    lab.command(page, "docmanager:save")
    saved = (lab.server().root_dir / lab._path(page)).read_text()
    assert SENTINEL not in saved
    found, searched = lab.execute(page, FIND_SENTINEL).strip().splitlines()
    assert json.loads(found) == []
    assert json.loads(searched) > 5  # widget state, log, journal, images, config files
    assert SENTINEL not in lab.server().log_path.read_text(errors="replace")


HOOK_TOKEN = "test-webhook-SENTINEL-4e0a"

SPEND_CELL = """
import json, os, pathlib, tempfile
from nbbatch.widgets import SettingsPanel
config = tempfile.mkdtemp()
os.environ["NBBATCH_CONFIG_DIR"] = config
os.environ.pop("NBBATCH_WEBHOOK_URL", None)
panel = SettingsPanel()
panel
"""


def test_settings_take_the_webhook_rate_limits_and_token_prices_and_say_the_balance(
    lab,
) -> None:
    page = lab.open_notebook([SPEND_CELL])
    page.locator(".nbb-set").first.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog).to_be_visible()

    hook = dialog.get_by_role("textbox", name="Notification webhook", exact=True)
    hook.fill(f"https://hooks.example.com/services/{HOOK_TOKEN}")
    hook.press("Enter")
    expect(dialog.locator(".nbb-set-hook-status")).to_contain_text("only its host is shown")
    expect(dialog.get_by_text("set: https://hooks.example.com/…").first).to_be_visible()
    expect(dialog.get_by_role("textbox", name="Notification webhook", exact=True)).to_have_value("")

    dialog.get_by_text("Rate limits", exact=True).click()
    dialog.get_by_role("button", name="Add a limit").click()
    dialog.get_by_role("textbox", name="Provider or base URL").fill("openai")
    dialog.get_by_role("spinbutton", name="Requests/min").fill("0")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.locator(".nbb-set-result")).to_have_text(
        "Rate limit of openai: requests per minute must be a number above 0 (or empty for no "
        'limit), not "0".'
    )
    dialog.get_by_role("spinbutton", name="Requests/min").fill("60")

    dialog.get_by_text("Token prices", exact=True).click()
    gpt = dialog.get_by_role("textbox", name="Date read: openai/gpt-image-1", exact=True)
    expect(gpt).to_have_value("2025-04-23")
    dialog.get_by_role("spinbutton", name="Image out: openai/gpt-image-1", exact=True).fill("32")
    gpt.fill("")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.locator(".nbb-set-result")).to_contain_text(
        "Token price of openai/gpt-image-1: give the date the price was read"
    )
    gpt.fill("2026-12-01")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.locator(".nbb-set-result")).to_contain_text("Saved to")
    lab.screenshot(page, "settings-spend")

    dialog.get_by_role("button", name="Refresh").click()
    expect(dialog.locator(".nbb-set-balance")).to_have_text(
        "Demo (offline, no key) has no API for the account balance: see it on the provider's "
        "own website."
    )
    saved = lab.execute(
        page, "print(json.dumps(json.loads(pathlib.Path(config, 'config.json').read_text())))"
    )
    settings = json.loads(saved)
    assert settings["rate_limits"] == {"openai": {"requests_per_minute": 60.0}}
    assert settings["token_prices"]["openai/gpt-image-1"]["output_image"] == 32.0
    lab.command(page, "docmanager:save")
    assert HOOK_TOKEN not in (lab.server().root_dir / lab._path(page)).read_text()
    assert HOOK_TOKEN not in saved


def noise_png(path: Path, target_bytes: int, seed: int) -> None:
    """A PNG of about ``target_bytes`` (noise does not compress)."""
    import random

    side = int((target_bytes / 3) ** 0.5)
    rng = random.Random(seed)
    Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(
        path, "PNG", compress_level=0
    )


TICKER_CELL = """
import asyncio, time
lags = []
async def ticker():  # how late the kernel's loop wakes a 10 ms sleep while files arrive
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - t - 0.01)
tick = asyncio.ensure_future(ticker())
"""

LAG_P99 = """
import json, statistics

done = sorted(lags)
p99 = done[int(0.99 * (len(done) - 1))] if done else None
print(json.dumps({"samples": len(done), "p99_ms": p99 and round(p99 * 1000, 1),
                  "max_ms": done and round(done[-1] * 1000, 1)}))
lags.clear()
"""


def test_big_uploads_land_whole_while_the_kernel_keeps_ticking(lab, tmp_path: Path) -> None:
    import time

    one = tmp_path / "one"
    many = tmp_path / "many"
    one.mkdir()
    many.mkdir()
    noise_png(one / "big.png", 9_000_000, seed=1)
    for i in range(30):
        noise_png(many / f"img{i:02d}.png", 40_000_000 // 30, seed=100 + i)
    page = lab.open_notebook(
        [upload_cell().replace("Upload(ws", "Upload(ws, max_bytes=12_000_000"), TICKER_CELL]
    )
    up = page.locator(".nbb-up").first
    expect(up.get_by_role("button", name="Add images")).to_be_visible()
    results = {}
    for label, files, count in (
        ("9 MB image", [str(one / "big.png")], 1),
        ("30 files / 40 MB", sorted(str(p) for p in many.iterdir()), 31),
    ):
        lab.execute(page, "lags.clear()")
        with page.expect_file_chooser() as chooser:
            up.get_by_role("button", name="Add images").click()
        start = time.perf_counter()
        chooser.value.set_files(files)
        expect(tiles(up)).to_have_count(count, timeout=240_000)
        seconds = time.perf_counter() - start
        lag = json.loads(lab.execute(page, LAG_P99))
        size = sum(Path(f).stat().st_size for f in files)
        results[label] = {"seconds": round(seconds, 2), "MB": round(size / 1e6, 1), **lag}
        print(
            f"RESULT upload {label}: {seconds:.2f} s, loop lag p99 {lag['p99_ms']} ms, "
            f"max {lag['max_ms']} ms ({lag['samples']} ticks)"
        )
    out = Path(lab.server().log_path).parent / "upload-bench.json"
    out.write_text(json.dumps(results, indent=2))
    assert names(lab, page)[0] == "big.png"
    # The kernel kept ticking through both uploads (the figures are RESULT lines for
    # benchmarks/README.md: a test asserts no time, which a loaded machine decides).
    for r in results.values():
        assert r["samples"] > 0, results


def test_the_inputs_follow_the_dark_theme_and_speak_chinese(lab) -> None:
    page = lab.open_notebook([studio_cell(lang="zh")])
    up = page.locator(".nbb-up").first
    panel = page.locator(".nbb-pp").first
    expect(panel.get_by_role("radio", name="用 LLM 拆分")).to_be_checked()
    expect(up.get_by_role("button", name="添加文件夹")).to_be_visible()
    drop(page, {"杯子.png": png((200, 60, 40)), "罐子.png": png((60, 80, 200))})
    expect(tiles(up)).to_have_count(2)
    panel.get_by_role("textbox", name="主提示词").fill("杯子在大理石上; 罐子在咖啡馆里")
    panel.get_by_role("button", name="创建任务").click()
    expect(panel.get_by_role("region", name="将创建的任务")).to_contain_text("将创建 2 个任务")
    lab.screenshot(page, "1-zh-light")
    lab.set_theme(page, "dark")
    bg = up.evaluate("(el) => getComputedStyle(el).backgroundColor")
    assert bg not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), bg
    lab.screenshot(page, "2-zh-dark")
    page.locator(".nbb-set").first.get_by_role("button", name="设置").click()
    expect(page.get_by_role("dialog", name="设置")).to_be_visible()
    lab.screenshot(page, "3-zh-dark-settings")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="设置")).to_be_hidden()
