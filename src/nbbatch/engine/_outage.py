"""A run that waits for its server: pause on :class:`ServerUnavailableError`, probe, resume.

A server the person runs (ComfyUI, AUTOMATIC1111) that stops answering would make every
queued task fail the same way, one after another, each spending its attempts. Instead,
the first task that meets :class:`~nbbatch.errors.ServerUnavailableError` goes back to
the queue without counting that attempt, the run pauses with a message in words
("ComfyUI at http://127.0.0.1:8188 is not answering; waiting for it — 5 tasks left"),
and the provider's cheapest health call (:meth:`Provider.check`) is tried again with
backoff through the one retry loop (:func:`~nbbatch.core._retry.retrying`). When the
server answers, the run resumes by itself. Meanwhile the person can still Resume (the
tasks try again at once), Stop or cancel tasks; a pause the person made is never lifted
by the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core._errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ServerUnavailableError,
)
from ..core._events import Event, RunState, RunStateChanged, TaskQueued
from ..core._model import Task, TaskStatus
from ..core._retry import RetryPolicy, retrying
from ..core._secrets import scrub

if TYPE_CHECKING:
    from ..providers._base import Provider
    from ._control import RunControl

__all__ = ["PROBE_RETRY", "ServerWait"]

log = logging.getLogger("nbbatch")

#: probes of a server that does not answer: 1 s, 2 s, 4 s ... then every 30 s, for as
#: long as the run stays paused for it (Stop ends the wait)
PROBE_RETRY = RetryPolicy(
    name="server-probe", max_retries=10**9, base_delay=1.0, max_delay=30.0, jitter=(1.0, 1.0)
)


@dataclass
class _Outage:
    provider: Provider
    error: ServerUnavailableError
    probe: asyncio.Task[None] | None = None
    probes: int = 0


class ServerWait:
    """The runner's part that waits for unreachable servers (one per run)."""

    def __init__(self, runner: RunControl) -> None:
        self._runner = runner
        #: how the probes are spaced (tests make it fast)
        self.policy = PROBE_RETRY
        #: the wait between probes (``asyncio.sleep``); a test injects its own
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        self._outages: dict[str, _Outage] = {}
        #: the run was paused by this (not by the person, nor by a full disk)
        self._paused_here = False
        #: what the person can do meanwhile, ending the reason (the CLI says Ctrl-C)
        self.hint = "Resume to try now, Stop to give up"
        #: how many times the run paused for a server, and resumed by itself
        self.pauses = 0
        self.resumes = 0
        runner.subscribe(self._on_event)

    # ----------------------------------------------------------- what the runner asks
    @property
    def waiting(self) -> bool:
        """True while a server of this run is not answering."""
        return bool(self._outages)

    @property
    def reason(self) -> str | None:
        """What the run waits for, in words; ``None`` when every server answers."""
        if not self._outages:
            return None
        progress = self._runner.progress()
        left = progress.queued + progress.running
        names = "; ".join(self._who(o.provider) for o in self._outages.values())
        verb = "is" if len(self._outages) == 1 else "are"
        return (
            f"{names} {verb} not answering; waiting for it — {left} task"
            f"{'' if left == 1 else 's'} left ({self.hint})"
        )

    def stop_retrying(self, error: ProviderError) -> None:
        """Raise ``error`` when it is an unreachable server: the run waits for it instead
        of spending the task's next attempts (called before each retry of a task)."""
        if isinstance(error, ServerUnavailableError) and not self._runner._stopping:
            raise error

    async def take_back(self, task: Task, provider: Provider, error: ProviderError) -> bool:
        """Put ``task`` back in the queue when ``error`` says its server is unreachable,
        without counting the attempt, and pause the run until the server answers.

        False (the task fails as usual) for any other error, or when the run is stopping.
        """
        runner = self._runner
        if not isinstance(error, ServerUnavailableError) or runner._stopping:
            return False
        if task.status is not TaskStatus.RUNNING:
            return False
        attempts = task.attempts
        task.attempts = max(0, attempts - 1)  # the server was not there: not an attempt
        row = (TaskStatus.QUEUED.value, task.attempts, None, None, None, None, task.id)
        try:
            await runner._journal(runner.workspace.save_status_row, row)
        except BaseException:
            task.attempts = attempts
            raise
        # undo "running": back to the front of the queue, as it was before it started
        task.status = TaskStatus.QUEUED
        task.started_at = None
        task.progress = None
        task.error = task.error_kind = None
        runner._count(TaskStatus.RUNNING, TaskStatus.QUEUED)
        runner._queue_for(task).appendleft(task)
        runner._emit(TaskQueued(task, batch_id=runner.batch_id))
        self._wait_for(provider, error)
        return True

    # ----------------------------------------------------------- internals
    @staticmethod
    def _who(provider: Provider) -> str:
        label = provider.label or provider.name
        where = getattr(provider, "base_url", None)
        return scrub(f"{label} at {where}") if isinstance(where, str) and where else label

    def _wait_for(self, provider: Provider, error: ServerUnavailableError) -> None:
        runner = self._runner
        outage = self._outages.get(provider.name)
        if outage is None:
            outage = self._outages[provider.name] = _Outage(provider, error)
            log.warning("nbbatch: %s (%s)", self.reason, scrub(str(error)))
        if runner._stopping:
            return
        if outage.probe is None or outage.probe.done():
            outage.probe = asyncio.get_running_loop().create_task(
                self._probe(outage), name=f"nbbatch-probe-{provider.name}"
            )
        if runner.state is RunState.RUNNING:
            self._paused_here = True
            self.pauses += 1
            runner.pause(reason=self.reason)

    async def _probe(self, outage: _Outage) -> None:
        provider = outage.provider

        async def check() -> None:
            outage.probes += 1
            try:
                await provider.check()
            except (ProviderConnectionError, ProviderTimeoutError):
                raise  # still away: tried again after the policy's wait
            except ProviderError:
                pass  # it answers (an error page, a key problem): it is there

        started = time.monotonic()
        try:
            await retrying(check, self.policy, sleep=self.sleep)
        except ProviderError as exc:  # only after 10**9 probes: leave the run paused
            log.warning("nbbatch: gave up probing %s: %s", self._who(provider), scrub(str(exc)))
            return
        log.warning(
            "nbbatch: %s answers again after %.0f s; the run goes on",
            self._who(provider),
            time.monotonic() - started,
        )
        if self._outages.get(provider.name) is outage:
            del self._outages[provider.name]
        runner = self._runner
        if not self._outages and self._paused_here and runner.state is RunState.PAUSED:
            self._paused_here = False
            self.resumes += 1
            runner.resume()

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, RunStateChanged):
            return
        if event.state is RunState.RUNNING:
            # Resumed (by the person, or by a probe): tasks try again; one that still
            # meets no server pauses the run again
            self._paused_here = False
            self._forget()
        elif event.state in (RunState.STOPPING, RunState.STOPPED, RunState.FINISHED):
            self._paused_here = False
            self._forget()
        elif event.state is RunState.PAUSED and event.reason is None:
            self._paused_here = False  # the person paused: only they resume

    def _forget(self) -> None:
        outages, self._outages = self._outages, {}
        current = asyncio.current_task() if _loop_running() else None
        for outage in outages.values():
            if outage.probe is not None and outage.probe is not current:
                outage.probe.cancel()


def _loop_running() -> bool:
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        return True
    return False
