"""``StudioSession``: what a studio shows and runs, in plain Python (no widget, no comm).

One session holds the batch shown, the provider "Run all" runs on (and whether it was
given in code, which wins over the settings), the concurrency, the retries and the LLM
of the prompt panel. It runs (run all, pause, resume, stop, retry), switches batches
(open, and History's open / resume / retry failed), applies saved settings, and owns
the providers it builds from saved configurations (closed when their run ends).

The panels of a ``BatchStudio`` are views over it: they call its methods and follow it
through :meth:`StudioSession.subscribe`, which tells them what changed::

    "batch"      another batch is shown (value: the Batch)
    "renamed"    the batch shown got a new name
    "provider"   another provider runs (value: the provider)
    "concurrency"  value: the new number
    "run"        a run started (value: the Runner)
    "run_ended"  a watched run ended (value: its exception, or None)
    "held"       how many tasks of the batch shown another kernel's run holds (0: none)
    "refreshed"  the batch was re-read from the journal (value: the tasks that changed)
    "held_ended" that other run ended (value: the error that stopped following, or None)
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from nbbatch.core._model import Task, TaskStatus
from nbbatch.engine import Batch, ProviderConfig, Workspace, load_settings
from nbbatch.engine._batchapi import BatchApiRunner
from nbbatch.engine._ledger import BATCH_RATE, price_of
from nbbatch.engine._pace import parse_when, studio_priority, wall_clock
from nbbatch.errors import ConfigError, HeldElsewhereError, NbbatchError
from nbbatch.planning import LLMConfig
from nbbatch.providers import (
    GeminiProvider,
    OpenAIProvider,
    Provider,
    available_providers,
    provider_info,
)
from nbbatch.providers._batchapis import batch_api_of
from nbbatch.providers._builtin import BUILTINS

from . import _rows
from ._words import UserFacingError

__all__ = ["MAX_CONCURRENCY", "StudioSession", "provider_choices", "provider_label"]

log = logging.getLogger("nbbatch")

#: the studio's concurrency range (the engine's default cap)
MAX_CONCURRENCY = 10
DEFAULT_CONCURRENCY = 3
#: seconds between reads of the journal while another kernel runs the batch shown
FOLLOW_INTERVAL = 1.0

Listener = Callable[[str, Any], None]


class StudioSession:
    """The state and the actions of one studio, testable without a comm.

    ``provider`` is a registered name, the name of a saved configuration, a
    ``ProviderConfig`` or a ``Provider``; None: the one the batch ran on, else ``"demo"``
    (and the saved settings may choose another). ``concurrency`` / ``retries`` / ``llm``
    given here win over the saved settings too.
    """

    def __init__(
        self,
        batch: Batch | None = None,
        *,
        provider: Any = None,
        concurrency: int | None = None,
        retries: int | None = None,
        llm: LLMConfig | None = None,
        workspace: Workspace | str | os.PathLike[str] | None = None,
    ) -> None:
        if batch is None:
            batch = Batch.create([], workspace=workspace, allow_empty=True)
        elif not isinstance(batch, Batch):
            raise TypeError(f"a studio needs an nbbatch.Batch, got {type(batch).__name__}")
        self._batch = batch
        self.provider_given = provider is not None
        self.concurrency_given = concurrency is not None
        self.llm_given = llm is not None
        self._concurrency = _check_concurrency(
            DEFAULT_CONCURRENCY if concurrency is None else concurrency
        )
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
            raise TypeError("retries must be a whole number from 0 to 10")
        #: retries per task for a run (None: the engine's default policy)
        self.retries: int | None = retries
        #: the planner's LLM (the prompt panel's "Split with LLM" and "Enhance")
        self.llm: LLMConfig | None = llm
        self._provider: Any = provider if provider is not None else batch.provider or "demo"
        # an object given (a Provider with its options, a saved configuration) is what its
        # name in the picker runs, also after picking another name and back
        self._provider_obj: Any = None if isinstance(self._provider, str) else self._provider
        self._offered = _provider_names(self.provider_name)
        #: batches shown, by id (opening one again reuses its object)
        self._batches: weakref.WeakValueDictionary[str, Batch] = weakref.WeakValueDictionary()
        self._batches[batch.id] = batch
        self._listeners: list[Listener] = []
        self._jobs: set[asyncio.Future[Any]] = set()
        self._following: asyncio.Future[Any] | None = None
        self._held = 0
        #: Run all's budget (money; None: none) and deadline ("07:00"; None: none)
        self.budget: float | None = None
        self.deadline: str | None = None
        # "Run all" through the provider's batch API; a studio shown while such a run is
        # live shows that run's mode, not "now"
        self._batch_api = isinstance(self.live_runner, BatchApiRunner)
        self.follow_elsewhere()

    def __repr__(self) -> str:
        return (
            f"<StudioSession batch {self._batch.name!r} · {len(self._batch.tasks)} tasks · "
            f"{self.provider_name} · concurrency {self._concurrency}>"
        )

    # ----------------------------------------------------------- following
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(what, value)`` on every change (see the module docstring)."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _tell(self, what: str, value: Any = None) -> None:
        for listener in list(self._listeners):
            try:
                listener(what, value)
            except Exception:  # one broken view must not stop the others or the run
                log.exception("nbbatch studio: a view failed to follow %r", what)

    # ----------------------------------------------------------- state
    @property
    def batch(self) -> Batch:
        return self._batch

    @property
    def live_runner(self) -> Any:
        """The live run of the batch shown (``nbbatch.Runner``), or None."""
        runner = self._batch.runner
        return runner if runner is not None and not runner.done else None

    @property
    def run_state(self) -> str:
        """The live run's state, else how the last run ended ("idle" before any run)."""
        runner = self._batch.runner
        return str(runner.state) if runner is not None else "idle"

    @property
    def provider(self) -> Any:
        """What a run runs on: a name, a ``ProviderConfig`` (built per run) or a Provider."""
        return self._provider

    @property
    def provider_name(self) -> str:
        p = self._provider
        return p if isinstance(p, str) else str(p.name)

    @property
    def providers(self) -> list[str]:
        """The names the toolbar's picker offers (registered and saved configurations)."""
        return list(self._offered)

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def provider_limit(self) -> int | None:
        """The provider's own limit on requests at once, when it has one: a Provider's
        ``max_concurrency``, a saved configuration's "Requests at once", else the
        catalogue's default for that provider (the WebUI's 1)."""
        p = self._provider
        if isinstance(p, str):
            try:
                settings = load_settings()
            except NbbatchError:
                settings = None
            if settings is None or p not in settings.providers or p in available_providers():
                return _catalogue_limit(p)
            p = settings.get(p)
        if isinstance(p, ProviderConfig):
            return _whole_limit(p.concurrency) or _catalogue_limit(p.provider)
        return _whole_limit(getattr(p, "max_concurrency", None))

    # ----------------------------------------------------------- choosing
    def use_provider(self, provider: Any) -> None:
        """Run on ``provider`` from the next run; the picker offers it from now on."""
        name = provider if isinstance(provider, str) else str(provider.name)
        self._provider = provider
        self._provider_obj = None if isinstance(provider, str) else provider
        self._offered = list(dict.fromkeys([name, *_provider_names(name)]))
        self._tell("provider", provider)

    def choose_provider(self, name: str) -> None:
        """The toolbar's picker: one of :attr:`providers` (an object given keeps its options)."""
        if not isinstance(name, str) or name not in self._offered:
            raise UserFacingError("bad_request", type="set_provider")
        if name == self.provider_name:
            return
        obj = self._provider_obj
        self._provider = obj if obj is not None and name == str(obj.name) else name
        self._tell("provider", self._provider)

    def set_concurrency(self, value: int) -> int:
        """How many tasks run at once, for the live run too; clamped to 1..10."""
        value = max(1, min(MAX_CONCURRENCY, int(value)))
        runner = self.live_runner
        if runner is not None:
            runner.set_concurrency(value)
        self._concurrency = value
        self._tell("concurrency", value)
        return value

    def apply_settings(
        self,
        *,
        provider: Any = None,
        concurrency: int | None = None,
        retries: int | None = None,
        llm: LLMConfig | None = None,
    ) -> None:
        """What the settings say, except what was given in code (that wins)."""
        if llm is not None and not self.llm_given:
            self.llm = llm
        if retries is not None:
            self.retries = retries
        if concurrency is not None and not self.concurrency_given:
            self.set_concurrency(concurrency)
        if provider is not None and not self.provider_given:
            self.use_provider(provider)

    # ----------------------------------------------------------- run mode
    @property
    def batch_api(self) -> bool:
        """Whether "Run all" goes through the provider's batch API (half price, within
        24 h); only ever True while the provider has one."""
        return self._batch_api and self.has_batch_api()

    def has_batch_api(self) -> bool:
        """Whether the provider chosen has a batch API (OpenAI, Gemini, or one's own)."""
        return _has_batch_api(self._config_or_provider())

    def set_batch_api(self, on: bool) -> bool:
        """The toolbar's run mode: "now" (False) or "batch API" (True, when there is one)."""
        self._batch_api = bool(on) and self.has_batch_api()
        self._tell("run_mode", self._batch_api)
        return self._batch_api

    def run_mode_prices(self) -> dict[str, float | None] | None:
        """The price of one image run now and through the batch API (the saved prices,
        ``Settings.prices``; None: unknown), or None when the provider has no batch API."""
        p = self._config_or_provider()
        if not _has_batch_api(p):
            return None
        if isinstance(p, ProviderConfig):
            name, model = p.provider, p.model
        elif isinstance(p, str):
            name, model = p, None
        else:
            name, model = str(p.name), getattr(p, "model", None)
        try:
            prices = load_settings().prices
        except NbbatchError:
            prices = {}
        now = price_of(prices, name, model if isinstance(model, str) else None)
        return {"now": now, "batch": None if now is None else now * BATCH_RATE}

    def _config_or_provider(self) -> Any:
        """The provider chosen: a saved configuration's name becomes its configuration."""
        p = self._provider
        if isinstance(p, str) and p not in available_providers():
            try:
                settings = load_settings()
            except NbbatchError:
                return p
            if p in settings.providers:
                return settings.get(p)
        return p

    # ----------------------------------------------------------- running
    def start(self, tasks: Sequence[Task] | None = None) -> Any:
        """Run ``tasks`` (default: every runnable one) in the background; the live run
        when one runs already."""
        runner = self.live_runner
        if runner is not None:
            return runner
        return self._start(list(tasks) if tasks is not None else None)

    def set_budget(self, text: object) -> float | None:
        """The budget field ("20", "$20.50"; empty: none), for the next Run all and for
        the live run (a run paused on its budget goes on when the new one allows more)."""
        budget = parse_budget(text)
        runner = self.live_runner
        if runner is not None:
            runner.set_budget(budget)
        self.budget = budget
        return budget

    def set_deadline(self, text: object) -> str | None:
        """The deadline field ("07:00", an ISO date and time; empty: none), for the next
        Run all and for the live run."""
        deadline = parse_deadline(text)
        runner = self.live_runner
        if runner is not None:
            runner.pace.set_deadline(deadline)
        self.deadline = deadline
        return deadline

    def run_all(self, *, budget: object = None, deadline: object = None) -> Any:
        """ "Run all": resume a paused run, else start one of every runnable task.

        ``budget`` / ``deadline`` (the fields' text) are for the run it starts: a live run
        keeps its own (given in Python, say) unless the fields are changed."""
        runner = self.live_runner
        if runner is None:
            self.budget = parse_budget(budget) if budget is not None else self.budget
            self.deadline = parse_deadline(deadline) if deadline is not None else self.deadline
        if runner is not None:
            if str(runner.state) == "paused":
                runner.resume()
                return runner
            raise UserFacingError("already_running")
        return self._start(None)

    def pause(self) -> None:
        runner = self.live_runner
        if runner is not None:
            runner.pause()

    def resume(self) -> None:
        runner = self.live_runner
        if runner is not None:
            runner.resume()

    def stop(self) -> None:
        runner = self.live_runner
        if runner is not None:
            runner.stop()

    def cancel(self, task: Task) -> None:
        runner = self.live_runner
        if runner is not None:
            runner.cancel(task.id)

    def run_next(self, tasks: Sequence[Task]) -> None:
        for t in tasks:  # the run serves its "next" list first come, first served
            if t.status.value == "queued":
                self._batch.run_next(t)

    def retry(self, tasks: Sequence[Task]) -> list[Task]:
        """Run failed / cancelled / interrupted ``tasks`` again: they join the live run,
        or a run of them starts."""
        chosen = [t for t in tasks if t.status.value in _rows.RETRYABLE]
        if not chosen:
            raise UserFacingError("nothing_failed")
        if self.live_runner is not None:
            for t in chosen:
                self._batch.retry(t)
        else:
            self._start(chosen)
        return chosen

    def retry_failed(self) -> list[Task]:
        failed = [t for t in self._batch.tasks if t.status.value == "failed"]
        if not failed:
            raise UserFacingError("nothing_failed")
        return self.retry(failed)

    def _start(self, tasks: list[Task] | None) -> Any:
        if self._following is not None:
            raise UserFacingError("held_elsewhere_busy", n=self._held)
        if tasks is None and not self._batch.runnable():
            raise UserFacingError("nothing_to_run")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UserFacingError("needs_loop") from None
        provider, owned = self._build_provider()
        try:
            runner = self._batch.start(
                provider,
                concurrency=self._concurrency,
                retry=self.retries,
                tasks=tasks,
                budget=self.budget,
                deadline=self.deadline,
                # a few tasks tried from the studio go before a big background run
                priority=studio_priority(
                    len(tasks) if tasks is not None else len(self._batch.runnable())
                ),
                # "Run all" in the run mode "batch API" (tasks tried one by one run now)
                batch_api=tasks is None and self.batch_api,
            )
        except HeldElsewhereError:
            # another kernel started it meanwhile: follow that run instead of running
            self._close_later(owned)
            if self.follow_elsewhere():
                raise UserFacingError("held_elsewhere_busy", n=self._held) from None
            raise
        except BaseException:
            self._close_later(owned)
            raise
        self.watch(runner, owned)
        return runner

    def watch(self, runner: Any, owned: Sequence[Any] = ()) -> None:
        """Follow ``runner`` to its end: close ``owned`` providers, tell the views."""
        self._tell("run", runner)
        job = asyncio.ensure_future(runner.wait())
        self._jobs.add(job)

        def done(f: asyncio.Future[Any]) -> None:
            self._jobs.discard(f)
            self._close_later(owned)
            exc = None if f.cancelled() else f.exception()
            if exc is not None:
                log.error("nbbatch studio: the run ended with an error", exc_info=exc)
            self._tell("run_ended", exc)

        job.add_done_callback(done)

    def _close_later(self, owned: Sequence[Any]) -> None:
        for p in owned:  # providers built from saved settings for this run
            closing = asyncio.ensure_future(p.aclose())
            self._jobs.add(closing)
            closing.add_done_callback(self._jobs.discard)

    def _build_provider(self) -> tuple[Any, list[Any]]:
        """A saved configuration is built here (and closed after the run); names go as is."""
        p = self._provider
        if isinstance(p, ProviderConfig):  # from the settings panel: its key included
            built = p.build()
            return built, [built]
        if not isinstance(p, str):
            return p, []
        try:
            settings = load_settings()
        except NbbatchError:
            return p, []
        if p in settings.providers and p not in available_providers():
            built = settings.get(p).build()
            return built, [built]
        return p, []

    # ----------------------------------------------------------- another kernel's run
    @property
    def held_elsewhere(self) -> int:
        """How many tasks of the batch shown another kernel's run holds (0: none)."""
        return self._held

    @property
    def following(self) -> asyncio.Future[Any] | None:
        """While another kernel runs the batch shown: the job following it, else None."""
        return self._following

    def follow_elsewhere(self) -> int:
        """When another kernel (another process) runs the batch shown, follow its run
        from the journal until it ends: the views redraw its tasks as they change and
        Run waits. Returns how many tasks that run holds (0: none, nothing followed)."""
        if self._following is not None:
            return self._held
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return 0  # followed when a run is asked for (a loop runs by then)
        batch = self._batch
        try:
            holders = batch.held_elsewhere()
        except NbbatchError as exc:
            log.warning("nbbatch studio: cannot tell whether another kernel runs it: %s", exc)
            return 0
        held = {i for h in holders for i in h.task_ids}
        if not held:
            return 0
        self._set_held(len(held))

        def changed(tasks: list[Task]) -> None:
            if batch is not self._batch:
                return
            self._tell("refreshed", tasks)
            busy = (TaskStatus.QUEUED, TaskStatus.RUNNING)
            self._set_held(sum(1 for t in batch.tasks if t.status in busy))

        job = asyncio.ensure_future(batch.afollow(FOLLOW_INTERVAL, on_change=changed))
        self._following = job
        self._jobs.add(job)

        def done(f: asyncio.Future[Any]) -> None:
            self._jobs.discard(f)
            if self._following is f:
                self._following = None
            if f.cancelled() or batch is not self._batch:
                return  # another batch is shown now
            exc = f.exception()
            if exc is not None:
                log.error("nbbatch studio: following another kernel's run failed", exc_info=exc)
            self._set_held(0)
            self._tell("held_ended", exc)

        job.add_done_callback(done)
        return self._held

    def _set_held(self, n: int) -> None:
        if n != self._held:
            self._held = n
            self._tell("held", n)

    def _stop_following(self) -> None:
        job, self._following = self._following, None
        if job is not None:
            job.cancel()
        self._set_held(0)

    # ----------------------------------------------------------- batches
    def known_batch(self, batch_id: str) -> Batch | None:
        return self._batches.get(batch_id)

    def forget_batch(self, batch_id: str) -> None:
        self._batches.pop(batch_id, None)

    def renamed(self) -> None:
        """The batch shown got a new name (History's Rename): the views show it."""
        self._tell("renamed", self._batch)

    def open_batch(self, batch: Batch | str) -> Batch:
        """Show another batch of the workspace (an id, a unique id prefix, or a Batch).

        Refused while a run of the batch shown is live (pause is not enough: stop it, or
        wait for it to end).
        """
        if self.live_runner is not None:
            raise ConfigError(
                f"batch {self._batch.id} is running; stop it or let it finish before "
                "opening another batch"
            )
        if not isinstance(batch, Batch):
            batch = self.known_batch(batch) or Batch.load(batch, self._batch.workspace)
        elif batch.workspace.path.resolve() != self._batch.workspace.path.resolve():
            raise ConfigError(
                f"batch {batch.id} is in workspace {str(batch.workspace.path)!r}; this "
                f"studio shows {str(self._batch.workspace.path)!r} (make a BatchStudio for it)"
            )
        self._show(batch)
        return batch

    def _show(self, batch: Batch) -> None:
        if batch is self._batch:
            return
        self._batches[batch.id] = batch
        recorded = batch.provider
        if recorded and recorded in self._offered and recorded != self.provider_name:
            # Resume goes on with what the batch ran on, when this studio offers it (as
            # the provider picker would choose it).
            self.choose_provider(recorded)
        self._stop_following()
        self._batch = batch
        self._tell("batch", batch)
        self.follow_elsewhere()

    def open_from_history(
        self, batch_id: str, what: str, done: Callable[[BaseException | None], None]
    ) -> None:
        """History's Open / Resume / Retry failed: load off the loop, then switch and run.

        ``what`` is ``open``, ``resume`` or ``retry_failed``; ``done(error or None)``.
        """
        if self.live_runner is not None and batch_id != self._batch.id:
            done(UserFacingError("hist_busy"))
            return

        def switch(batch: Batch) -> None:
            try:
                if self.live_runner is not None and batch is not self._batch:
                    raise UserFacingError("hist_busy")
                self._show(batch)
                if what == "resume":
                    if self.live_runner is None:
                        self._start(None)
                elif what == "retry_failed":
                    self.retry_failed()
            except Exception as exc:
                done(exc)
                return
            done(None)

        known = self.known_batch(batch_id)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if known is not None or loop is None:
            try:
                batch = known or Batch.load(batch_id, self._batch.workspace)
            except Exception as exc:
                done(exc)
                return
            switch(batch)
            return
        # Reading a large batch takes a while: off the loop, so runs elsewhere go on.
        future = loop.run_in_executor(None, Batch.load, batch_id, self._batch.workspace)

        def loaded(f: asyncio.Future[Batch]) -> None:
            self._jobs.discard(f)
            try:
                batch = f.result()
            except Exception as exc:
                done(exc)
                return
            switch(self.known_batch(batch_id) or batch)

        self._jobs.add(future)
        future.add_done_callback(loaded)


def _has_batch_api(p: Any) -> bool:
    """Whether a provider (name, configuration or object) has a batch API."""
    if isinstance(p, ProviderConfig):
        p = p.provider
    if isinstance(p, str):
        cls = BUILTINS.get(p)
        return isinstance(cls, type) and (
            issubclass(cls, (OpenAIProvider, GeminiProvider)) or hasattr(cls, "batch_api")
        )
    return isinstance(p, Provider) and batch_api_of(p) is not None


def _whole_limit(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _catalogue_limit(name: str) -> int | None:
    """The default of the catalogue's "Requests at once" for provider ``name``."""
    try:
        fields = provider_info(name).settings
    except NbbatchError:
        return None
    return next((_whole_limit(f.default) for f in fields if f.name == "concurrency"), None)


def provider_label(name: str) -> str:
    """What a person reads for a provider name: the catalogue's label, else the name."""
    try:
        return provider_info(name).label
    except NbbatchError:
        return name


def provider_choices(current: str | None = None) -> list[str]:
    """The registered providers, each once (an alias such as "forge" is left out unless it
    is ``current``), in registry order."""
    names = []
    for name in available_providers():
        try:
            canonical = provider_info(name).name
        except NbbatchError:
            canonical = name
        if canonical == name or name == current:
            names.append(name)
    return names


def _provider_names(current: str) -> list[str]:
    names = provider_choices(current)
    try:
        names.extend(c.name for c in load_settings())
    except NbbatchError as exc:
        log.warning("nbbatch studio: saved provider settings unreadable: %s", exc)
    if current not in names:
        names.insert(0, current)
    return list(dict.fromkeys(names))


def parse_budget(text: object) -> float | None:
    """The budget field's text as money (None: empty); refused in words otherwise."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        raw = str(text)
    elif isinstance(text, str):
        raw = text.strip().lstrip("$").strip().replace(",", "")
    else:
        raise UserFacingError("bad_budget", value=str(text)[:40])
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UserFacingError("bad_budget", value=str(text)[:40]) from None
    if not 0 <= value < float("inf"):
        raise UserFacingError("bad_budget", value=str(text)[:40])
    return value


def parse_deadline(text: object) -> str | None:
    """The deadline field's text, checked (None: empty); refused in words otherwise."""
    if text is None:
        return None
    raw = str(text).strip()
    if not raw:
        return None
    try:
        parse_when(raw, now=wall_clock())
    except ConfigError:
        raise UserFacingError("bad_deadline", value=raw[:40]) from None
    return raw


def _check_concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}")
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError(f"concurrency must be from 1 to {MAX_CONCURRENCY}, got {value}")
    return value
