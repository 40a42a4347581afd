"""What the page may write into a widget's synced state, and what it may not."""

from __future__ import annotations

from typing import Any

from nbbatch import Batch, Workspace
from nbbatch.widgets import BatchStudio, Gallery


def test_the_page_cannot_set_the_kernels_state(workspace: Workspace) -> None:
    # A page (or anything speaking the widget protocol) could set concurrency=1,000,000,
    # a 200,000-id selection, count=1e9 or leave busy="plan" stuck.
    batch = Batch.create(["a fox", "a koi"], workspace=workspace)
    studio = BatchStudio(batch)
    grid, prompt = studio.grid, studio.prompt
    echoed: list[Any] = []
    grid.send_state = lambda key=None: echoed.append(key)
    grid.set_state(
        {
            "concurrency": 1_000_000,
            "selection": [f"id{i}" for i in range(200_000)],
            "count": 10**9,
            "run_state": "running",
        }
    )
    assert (grid.concurrency, grid.selection, grid.count, grid.run_state) == (3, [], 2, "idle")
    assert studio.session.concurrency == 3
    assert sorted(echoed) == ["concurrency", "count", "run_state", "selection"]
    prompt.send_state = lambda key=None: None
    prompt.set_state({"busy": "plan"})
    assert prompt.busy == ""


def test_the_gallery_page_moves_through_the_lightbox_within_bounds(workspace: Workspace) -> None:
    batch = Batch.create(["a fox"], workspace=workspace)
    gallery = Gallery(batch)
    gallery.send_state = lambda key=None: None
    gallery.set_state({"shown": True, "image_index": 2, "task_id": batch.tasks[0].id})
    assert (gallery.shown, gallery.image_index) == (True, 2)
    gallery.set_state({"image_index": 10**9, "task_id": "x" * 10_000, "opened": 99})
    assert (gallery.image_index, gallery.task_id, gallery.opened) == (2, batch.tasks[0].id, 0)


def test_a_base_url_with_a_password_is_refused_in_words_and_never_echoed(
    tmp_path: Any,
) -> None:
    from nbbatch.engine import ProviderConfig, Settings, save_settings
    from nbbatch.widgets import SettingsPanel

    secret = "hunter2-never-on-the-page"
    panel = SettingsPanel(config_dir=tmp_path)
    sent: list[dict[str, Any]] = []
    panel.send = lambda content, buffers=None: sent.append(content)
    url = f"http://admin:{secret}@127.0.0.1:7860"
    panel._on_msg(panel, {"type": "save", "uuid": "s", "values": {"base_url": url}}, [])
    (reply,) = sent
    assert not reply["ok"] and "user:password@" in reply["error"] and "Set key" in reply["error"]
    assert secret not in str(sent) and not (tmp_path / "config.json").exists()
    # one saved from code never reaches the page with its password
    settings = Settings()
    settings.add(ProviderConfig(provider="a1111", base_url=url))
    settings.default = "a1111"
    save_settings(settings, tmp_path / "config.json")
    shown = SettingsPanel(config_dir=tmp_path)
    shown.send = lambda content, buffers=None: sent.append(content)
    shown._on_msg(shown, {"type": "hello", "uuid": "h"}, [])
    assert sent[-1]["values"]["base_url"].endswith("127.0.0.1:7860")
    assert secret not in str(sent[-1])
