"""The studio's session in plain Python: what runs, on what, and which batch is shown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from anywidget import AnyWidget

import nbbatch
from nbbatch import Batch, Params, ProviderConfig, TaskStatus, Workspace
from nbbatch.errors import ConfigError
from nbbatch.widgets import StudioSession, TaskGrid


@pytest.fixture
def batch(workspace: Workspace) -> Batch:
    return nbbatch.Batch.create(
        workspace=workspace,
        tasks=["a red fox in snow", "a koi pond", "FAILME a storm"],
        params=Params(size="64x64", seed=7),
    )


def quick_demo() -> nbbatch.Provider:
    return nbbatch.get_provider("demo", latency=0.0, fail_prompts=["FAILME"])


class Heard:
    """What a view following the session is told."""

    def __init__(self, session: StudioSession) -> None:
        self.said: list[tuple[str, Any]] = []
        session.subscribe(lambda what, value: self.said.append((what, value)))

    def kinds(self) -> list[str]:
        return [w for w, _ in self.said]


def ask(widget: Any, type: str, **body: Any) -> dict[str, Any]:
    """Send ``type`` as the page would and return the widget's reply."""
    sent: list[dict[str, Any]] = []
    widget.send = lambda content, buffers=None: sent.append(content)
    widget._on_msg(widget, {"type": type, "uuid": "u1", **body}, [])
    (reply,) = [c for c in sent if c.get("uuid") == "u1"]
    return reply


def test_what_code_gave_wins_over_the_settings(batch: Batch) -> None:
    session = StudioSession(batch, provider="demo", concurrency=4)
    heard = Heard(session)
    session.apply_settings(provider=ProviderConfig(provider="openai"), concurrency=2, retries=5)
    assert (session.provider, session.concurrency, session.retries) == ("demo", 4, 5)
    assert heard.kinds() == []


def test_settings_choose_what_code_left_open(batch: Batch) -> None:
    session = StudioSession(batch)
    assert session.provider == "demo" and session.concurrency == 3
    heard = Heard(session)
    session.apply_settings(provider=ProviderConfig(provider="openai"), concurrency=2)
    assert session.provider_name == "openai" and session.concurrency == 2
    assert heard.kinds() == ["concurrency", "provider"]


def test_the_picker_keeps_the_provider_object_given_in_code(batch: Batch) -> None:
    given = quick_demo()
    session = StudioSession(batch, provider=given)
    session.choose_provider("openai")
    assert session.provider == "openai"
    session.choose_provider("demo")
    assert session.provider is given
    with pytest.raises(Exception, match="incomplete request"):
        session.choose_provider("no-such-provider")


def test_concurrency_is_checked_when_given_and_clamped_when_set(batch: Batch) -> None:
    with pytest.raises(ConfigError, match="from 1 to 10"):
        StudioSession(batch, concurrency=50)
    with pytest.raises(TypeError):
        StudioSession(batch, concurrency=2.5)  # type: ignore[arg-type]
    session = StudioSession(batch)
    assert session.set_concurrency(99) == 10 and session.set_concurrency(0) == 1


async def test_run_all_pause_resume_stop_and_retry_failed(batch: Batch) -> None:
    session = StudioSession(batch, provider=nbbatch.get_provider("demo", latency=0.05))
    heard = Heard(session)
    run = session.run_all()
    assert session.live_runner is run and heard.kinds() == ["run"]
    session.pause()
    assert session.run_state == "paused"
    assert session.run_all() is run  # "Run all" on a paused run resumes it
    assert session.run_state == "running"
    session.stop()
    await run.wait()
    await asyncio.sleep(0)
    assert session.live_runner is None and heard.kinds()[-1] == "run_ended"

    failing = StudioSession(batch, provider=quick_demo())
    await failing.run_all().wait()
    storm = batch.tasks[2]
    assert storm.status is TaskStatus.FAILED
    attempts = storm.attempts
    failing.retry_failed()
    await failing.live_runner.wait()
    assert storm.attempts > attempts


def test_run_all_outside_a_loop_says_what_to_do(batch: Batch) -> None:
    with pytest.raises(Exception, match="event loop"):
        StudioSession(batch).run_all()


async def test_a_provider_built_from_a_saved_configuration_is_closed_after_its_run(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    built: list[Any] = []
    real_build = ProviderConfig.build

    def build(self: ProviderConfig) -> Any:
        provider = real_build(self)
        built.append(provider)
        real_close = provider.aclose

        async def aclose() -> None:
            closed.append(provider.name)
            await real_close()

        provider.aclose = aclose
        return provider

    monkeypatch.setattr(ProviderConfig, "build", build)
    session = StudioSession(batch, provider=ProviderConfig(provider="demo"))
    await session.run_all().wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(built) == 1 and closed == ["demo"]


def test_open_batch_switches_every_follower_and_refuses_another_workspace(
    batch: Batch, tmp_path: Any
) -> None:
    session = StudioSession(batch)
    heard = Heard(session)
    other = Batch.create(["a whale"], workspace=batch.workspace)
    assert session.open_batch(other.id) is not None
    assert session.batch.id == other.id and heard.kinds() == ["batch"]
    with Workspace(tmp_path / "elsewhere") as ws:
        stranger = Batch.create(["x"], workspace=ws)
        with pytest.raises(ConfigError, match="make a BatchStudio for it"):
            session.open_batch(stranger)


async def test_a_lone_grids_retry_runs_the_failed_row_again(batch: Batch) -> None:
    # A TaskGrid shown on its own answered "Nothing to run: every task has finished".
    await batch.run(quick_demo())
    storm = batch.tasks[2]
    attempts = storm.attempts
    grid = TaskGrid(batch)
    reply = ask(grid, "retry", ids=[storm.id])
    assert reply["ok"], reply
    run = batch.runner
    assert run is not None
    await run.wait()
    # on what the batch ran on ("demo", recorded by its first run), without its failures
    assert storm.attempts > attempts and storm.status is TaskStatus.SUCCEEDED


# -- the panels' common face (issue 24: a Panel base for every widget) -----------------------


def test_a_misspelt_keyword_is_refused_with_the_close_match(batch: Batch) -> None:
    # BatchStudio(b, provder="openai", concurency=5) used to run the demo at 3, silently
    from nbbatch.widgets import BatchStudio, Gallery

    with pytest.raises(TypeError) as caught:
        BatchStudio(batch, provder="openai", concurency=5)
    text = str(caught.value)
    assert "'provder' (did you mean 'provider'?)" in text
    assert "'concurency' (did you mean 'concurrency'?)" in text
    with pytest.raises(TypeError, match="did you mean 'zip_limit'"):
        Gallery(batch, zip_limt=10)
    with pytest.raises(TypeError, match="did you mean 'lang'"):
        TaskGrid(batch, lagn="zh")


def test_plumbing_stays_off_the_public_surface(batch: Batch) -> None:
    from nbbatch.widgets import BatchStudio

    studio = BatchStudio(batch)
    public = {n for n in dir(studio) if not n.startswith("_")}
    # "run" is the deprecated name of "runner"
    assert public == {
        "batch", "close", "concurrency", "gallery", "grid", "history", "lang", "open_batch",
        "panels", "prompt", "provider", "results", "run", "runner", "selected", "session",
        "settings", "start", "tasks", "upload", "use_provider", "view",
    }  # fmt: skip
    grid_extra = {n for n in dir(studio.grid) if not n.startswith("_")} - set(dir(AnyWidget))
    assert not {n for n in grid_extra if n.startswith(("hub_", "gallery_hooks", "sent_"))}
    assert repr(studio).startswith("<BatchStudio batch ") and len(repr(studio)) < 200
    assert repr(studio.grid).startswith("<TaskGrid batch ") and len(repr(studio.grid)) < 200


def test_show_opens_the_dialogs_and_widget_open_keeps_its_meaning(batch: Batch) -> None:
    # History.open() and Gallery.open() overrode ipywidgets' Widget.open (opens the comm)
    from nbbatch.widgets import BatchStudio, Gallery, History

    assert Gallery.open is History.open is TaskGrid.open  # ipywidgets' own
    studio = BatchStudio(batch)
    before = studio.history.opened
    studio.history.show()
    assert studio.history.opened == before + 1


async def test_the_gallery_hears_the_batch_through_the_hub(batch: Batch) -> None:
    # It subscribed to the batch beside the hub and matched events by class-name string.
    from nbbatch.widgets import Gallery

    TaskGrid(batch)  # the hub subscribes once
    subscribed = len(batch._subscriptions)
    gallery = Gallery(batch)
    assert len(batch._subscriptions) == subscribed
    sent: list[dict[str, Any]] = []
    gallery.send = lambda content, buffers=None: sent.append(content)
    await batch.run(quick_demo())
    await asyncio.sleep(0)
    fox = batch.tasks[0]
    sent.clear()
    batch.star(fox.images[0])
    await asyncio.sleep(0)
    assert sent == [{"type": "changed", "ids": [fox.id]}]
    child = batch.derive(fox.images[0], "the same fox at night")
    await asyncio.sleep(0)
    assert sent[-1] == {"type": "changed", "ids": sorted([child.id, fox.id])}
    assert child.parent_id == fox.id
