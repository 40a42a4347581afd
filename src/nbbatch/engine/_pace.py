"""Spend and pace of one run: budget, deadline, start time, priority, notifications.

A :class:`Pace` sits between a :class:`~nbbatch.engine.Runner`'s dispatcher and its
providers. Before each request is handed out, :meth:`Pace.hold` says whether it may go:

* **start time** (``start_at``): nothing goes before it (the run waits, not paused);
* **deadline**: no request starts after it; in-flight ones finish and the run pauses
  with the reason (a timer pauses it too, so retries waiting for their turn hold);
* **budget**: the projected spend — spent so far on the batch (the ledger,
  ``engine/_ledger.py``), plus the price of every request in flight, plus this
  request's price — must stay within the budget, else the run pauses with the reason in
  words; raising it (:meth:`set_budget`) resumes. A task whose price is unknown is
  refused under a budget unless ``allow_unknown_prices``. The budget (and the prices
  and permission it was set with) is journaled per batch: a run started after a kernel
  restart keeps it; so are the deadline and the start time, while they are still ahead
  (one that has passed by the time the batch is run again is dropped: the person
  starting it again wants it to run);
* **endpoint slots by priority**: the endpoint's gate (``core/_ratelimit.py``) hands its
  slots to the run of highest priority first, a run holding none first of all; a pool
  (``providers/_pool.py``) hands its members' free slots out by the same rule.

It also posts the run's end, or a pause on budget or deadline, to the webhook
(:func:`set_webhook`; a secret like an API key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError, NbbatchError
from ..core._events import (
    Event,
    RunState,
    RunStateChanged,
    TaskCancelled,
    TaskFailed,
    TaskInterrupted,
    TaskQueued,
    TaskSucceeded,
)
from ..core._model import Task
from ..core._ratelimit import Gate, check_priority, forget_idle, load_rate_limits, sender
from ..core._secrets import Secret, scrub
from ..providers._base import Provider
from ..providers._endpoint import gate_of
from ._ledger import BATCH_RATE, TOKEN_PRICES, check_token_prices, price_of, task_cost

if TYPE_CHECKING:
    from ._control import RunControl
    from ._store import Workspace

__all__ = [
    "Pace",
    "PaceOptions",
    "journaled_budget",
    "masked_webhook",
    "parse_when",
    "save_budget",
    "set_webhook",
    "studio_priority",
    "webhook_source",
    "webhook_url",
]

log = logging.getLogger("nbbatch")

#: the environment variable a webhook URL may come from
WEBHOOK_ENV = "NBBATCH_WEBHOOK_URL"
#: the name the webhook URL is saved under in ``secrets.json``
WEBHOOK_SECRET = "webhook"
_TABLE = (
    "CREATE TABLE IF NOT EXISTS batch_budget ("
    "batch_id TEXT PRIMARY KEY REFERENCES batches(id) ON DELETE CASCADE, "
    "data TEXT NOT NULL)"
)


#: a studio run of at most this many tasks is a quick experiment: high priority
QUICK_RUN = 20


def studio_priority(tasks: int) -> str:
    """The studio's priority for a run of ``tasks`` tasks: "high" up to :data:`QUICK_RUN`,
    so what a person tries meanwhile goes before a big run on the same endpoint."""
    return "high" if tasks <= QUICK_RUN else "normal"


def wall_clock() -> float:
    """The time deadlines and start times are read against (tests put their own here)."""
    return time.time()


def _money(value: float) -> str:
    return f"${value:,.2f}"


def parse_when(
    value: object,
    *,
    now: float,
    what: str = "deadline",
    local: Callable[[], datetime] | None = None,
) -> float | None:
    """A moment as epoch seconds: a datetime, seconds from now, or ``"HH:MM"`` (the next
    such local time). ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()  # a naive datetime is local time
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{what} must be a number of seconds from now >= 0, got {value!r}")
        return now + float(value)
    if isinstance(value, str):
        try:
            clock = datetime.strptime(value.strip(), "%H:%M")
        except ValueError:
            clock = None
        if clock is not None:
            current = local() if local is not None else datetime.fromtimestamp(now)
            target = current.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
            if target.timestamp() <= now:
                target += timedelta(days=1)
            return target.timestamp()
        try:
            return datetime.fromisoformat(value.strip()).timestamp()
        except ValueError:
            pass
    raise ConfigError(
        f"{what} must be a datetime, seconds from now, or a time like '07:00', got {value!r}"
    )


# ---------------------------------------------------------------- journaled budget
def _ensure_table(ws: Workspace) -> None:
    with ws._tx() as conn:
        conn.execute(_TABLE)


def save_budget(ws: Workspace, batch_id: str, data: Mapping[str, Any] | None) -> None:
    """Journal the budget of a batch (``None``: remove it)."""
    _ensure_table(ws)
    with ws._tx() as conn:
        if data is None:
            conn.execute("DELETE FROM batch_budget WHERE batch_id = ?", (batch_id,))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO batch_budget (batch_id, data) VALUES (?, ?)",
                (batch_id, json.dumps(dict(data))),
            )


def journaled_budget(ws: Workspace, batch_id: str) -> dict[str, Any] | None:
    """The budget journaled for a batch, or None."""
    try:
        rows = ws._query("SELECT data FROM batch_budget WHERE batch_id = ?", (batch_id,))
    except NbbatchError:
        return None  # no such table yet: no budget was ever set here
    if not rows:
        return None
    data = json.loads(rows[0][0])
    return data if isinstance(data, dict) else None


def batch_images(ws: Workspace, batch_id: str) -> dict[str, list[dict[str, Any]]]:
    """The ``params`` of every stored image of a batch, by task id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for task_id, raw in ws._query(
        "SELECT i.task_id, i.params FROM images i JOIN tasks t ON t.id = i.task_id "
        "WHERE t.batch_id = ? ORDER BY i.task_id, i.idx",
        (batch_id,),
    ):
        try:
            params = json.loads(raw)
        except ValueError:
            params = {}
        out.setdefault(task_id, []).append(params if isinstance(params, dict) else {})
    return out


# ---------------------------------------------------------------- webhook
_webhook: Secret | None = None


def set_webhook(url: str | None, *, remember: bool = False) -> None:
    """Post a JSON note to ``url`` when a run ends, fails or pauses on budget or deadline.

    The URL is a secret (it often carries a token): held in this process only, masked in
    every repr and log; ``remember=True`` keeps it in the 0600 secrets file (like a key),
    never in the settings or the workspace. ``None`` turns it off (and forgets it).
    """
    global _webhook
    from ._settings import delete_secret, save_secret

    if url is None or not url.strip():
        _webhook = None
        if remember:
            delete_secret(WEBHOOK_SECRET)
        return
    if not url.strip().startswith(("http://", "https://")):
        raise ConfigError("the webhook must be an http:// or https:// URL")
    _webhook = Secret(url.strip())
    if remember:
        save_secret(WEBHOOK_SECRET, _webhook)


def webhook_url() -> Secret | None:
    """The webhook: set in this process, else ``$NBBATCH_WEBHOOK_URL``, else saved."""
    if _webhook is not None:
        return _webhook
    env = os.environ.get(WEBHOOK_ENV, "").strip()
    if env:
        return Secret(env)
    from ._settings import load_secrets

    try:
        return load_secrets().get(WEBHOOK_SECRET)
    except NbbatchError:
        return None


def webhook_source(secrets_path: os.PathLike[str] | str | None = None) -> str | None:
    """Where :func:`webhook_url` takes the webhook from: ``"session"`` (set in this
    process), ``"env"`` (``$NBBATCH_WEBHOOK_URL``), ``"saved"`` (the secrets file), or
    ``None`` (no webhook)."""
    if _webhook is not None:
        return "session"
    if os.environ.get(WEBHOOK_ENV, "").strip():
        return "env"
    from ._settings import load_secrets

    try:
        saved = load_secrets(secrets_path).get(WEBHOOK_SECRET)
    except NbbatchError:
        return None
    return "saved" if saved is not None else None


def masked_webhook(url: Secret | str) -> str:
    """What may be shown of a webhook URL: its scheme and host, ``https://ntfy.sh/…``.
    Its path and query often are the token (Slack's, Discord's, ntfy topics), and a
    user name or password is one: neither is shown."""
    import urllib.parse

    text = url.reveal() if isinstance(url, Secret) else url
    try:
        parts = urllib.parse.urlsplit(text.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    if not parts.scheme or not host:
        return "…"
    return f"{parts.scheme}://{host}{port}/…"


async def _post(url: Secret, payload: dict[str, Any]) -> None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            response = await client.post(url.reveal(), json=payload)
        if response.status_code >= 400:
            log.warning("nbbatch: the webhook answered HTTP %s", response.status_code)
    except httpx.HTTPError as exc:
        log.warning("nbbatch: the webhook could not be reached: %s", scrub(str(exc)))


_posting: set[asyncio.Task[None]] = set()


# ---------------------------------------------------------------- options
class PaceOptions:
    """What ``Batch.start`` takes for spend and pace (all optional)."""

    def __init__(
        self,
        *,
        budget: float | None = None,
        prices: Mapping[str, float] | None = None,
        allow_unknown_prices: bool = False,
        deadline: object = None,
        start_at: object = None,
        priority: str = "normal",
        batch_name: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        from ._settings import _check_prices

        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, float)):
                raise ConfigError(f"budget must be an amount of money, got {budget!r}")
            if not 0 <= float(budget) < math.inf:
                raise ConfigError(f"budget must be zero or more, got {budget!r}")
        self.budget = None if budget is None else float(budget)
        self.prices = None if prices is None else _check_prices(prices)
        self.allow_unknown_prices = bool(allow_unknown_prices)
        if clock is None:
            clock = wall_clock
        now = clock()
        self.deadline = parse_when(deadline, now=now)
        self.start_at = parse_when(start_at, now=now, what="start_at")
        self.priority = check_priority(priority)
        self.batch_name = batch_name
        self.clock = clock


class Pace:
    """The spend and pace of one run (see the module docstring)."""

    def __init__(self, runner: RunControl, options: PaceOptions | None = None) -> None:
        self.runner = runner
        opts = options or PaceOptions()
        self.options = opts
        self._clock = opts.clock
        self.budget = opts.budget
        self.allow_unknown_prices = opts.allow_unknown_prices
        self.deadline = opts.deadline
        self.start_at = opts.start_at
        self.priority = opts.priority
        self.prices, self.token_prices = self._tables(opts.prices)
        self.spent = 0.0
        self._counted = False  # the batch's earlier images are in ``spent``
        self._dropped = False  # a journaled deadline or start time had passed
        #: the prices journaled with the batch (given to a run of it)
        self._prices_kept: dict[str, float] = dict(opts.prices or {})
        self._reserved: dict[str, float] = {}
        self._gated: dict[str, Gate] = {}  # task id -> the gate whose slot it holds
        self._gates: dict[int, Gate] = {}
        #: why the run paused itself on budget or deadline (None otherwise)
        self.reason: str | None = None
        self._kind: str | None = None  # "budget" | "deadline"
        self._timers: list[asyncio.TimerHandle] = []
        self._unsubscribe: Callable[[], None] | None = None

    # ------------------------------------------------------------ tables
    @staticmethod
    def _tables(
        prices: Mapping[str, float] | None,
    ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        from ._settings import load_settings

        saved_prices: dict[str, float] = {}
        tokens: dict[str, dict[str, Any]] = dict(TOKEN_PRICES)
        try:
            settings = load_settings()
        except NbbatchError as exc:
            log.warning("nbbatch: the saved prices cannot be read (%s)", exc)
        else:
            saved_prices = dict(settings.prices)
            tokens.update(check_token_prices(getattr(settings, "token_prices", {}) or {}))
            load_rate_limits(getattr(settings, "rate_limits", {}) or {})
        if prices is not None:
            saved_prices.update(prices)  # the call's prices win
        return saved_prices, tokens

    def price(self, task: Task, provider: Provider) -> float | None:
        """The projected price of one request of ``task`` (images x price per image)."""
        model = task.params.model or getattr(provider, "model", None)
        each = price_of(self.prices, provider.name, model if isinstance(model, str) else None)
        if each is None:
            return None
        # a run through the provider's batch API (engine/_batchapi.py) is billed at its rate
        rate = BATCH_RATE if getattr(self.runner, "api", None) is not None else 1.0
        return each * max(1, task.params.n) * rate

    # ------------------------------------------------------------ life
    def check(self, tasks: list[Task]) -> None:
        """Take the batch's journaled budget and prices; refuse a start whose prices are
        unknown under a budget (nothing is sent); journal what this run was given."""
        self._load_journal()
        if self.budget is not None and not self.allow_unknown_prices:
            self._check_prices(tasks)
        opts = self.options
        if self.runner.batch_id is not None and (
            opts.budget is not None
            or opts.prices
            or opts.deadline is not None
            or opts.start_at is not None
            or self._dropped
        ):
            self._journal()

    def _check_prices(self, tasks: list[Task]) -> None:
        for t in tasks:
            provider = self.runner._provider_for(t)
            if self.price(t, provider) is None:
                model = t.params.model or getattr(provider, "model", None)
                name = f"{provider.name}/{model}" if isinstance(model, str) else provider.name
                raise ConfigError(
                    f"the price of {name} is unknown, so a budget cannot hold it: give "
                    f"prices={{{name!r}: <price per image>}} (or save it in Settings.prices), "
                    "or pass allow_unknown_prices=True to run it anyway"
                )

    def _load_journal(self) -> None:
        runner = self.runner
        ws, bid = runner.workspace, runner.batch_id
        if bid is not None:
            saved = journaled_budget(ws, bid) or {}
            given = self.options.prices or {}
            if isinstance(saved.get("prices"), dict):
                # the batch's own prices: over the saved table, under this call's
                self._prices_kept = {**saved["prices"], **given}
                self.prices.update({k: v for k, v in saved["prices"].items() if k not in given})
            else:
                self._prices_kept = dict(given)
            if self.budget is None and saved.get("budget") is not None:
                self.budget = float(saved["budget"])
                self.allow_unknown_prices = bool(saved.get("allow_unknown_prices"))
            self.deadline = self._restored("deadline", self.deadline, saved)
            self.start_at = self._restored("start_at", self.start_at, saved)
        if self.budget is not None:
            self._count_spent()

    def _restored(self, name: str, given: float | None, saved: Mapping[str, Any]) -> float | None:
        """A moment this run was given, else the one journaled while it is still ahead
        (a journaled one already passed is dropped, and the journal rewritten)."""
        kept = saved.get(name)
        if given is not None or not isinstance(kept, (int, float)) or isinstance(kept, bool):
            return given
        if kept <= self._clock():
            self._dropped = True
            return None
        return float(kept)

    def _count_spent(self) -> None:
        """What the batch's stored images cost (once: later successes are added)."""
        if not self._counted:
            self._counted = True
            self.spent = self._spent_so_far()  # the journal holds every success so far

    def start(self) -> None:
        runner = self.runner
        for provider in {id(p): p for p in (runner.provider, *runner._providers.values())}.values():
            gate = gate_of(provider)
            if gate is not None and id(gate) not in self._gates:
                self._gates[id(gate)] = gate
                gate.attach(self, priority=self.priority)
        self._unsubscribe = runner.subscribe(self._on_event)
        loop = asyncio.get_running_loop()
        now = self._clock()
        if self.start_at is not None and self.start_at > now:
            self._timers.append(loop.call_later(self.start_at - now, runner._poke))
        if self.deadline is not None:
            self._timers.append(
                loop.call_later(max(0.0, self.deadline - now), self._deadline_timer)
            )

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for gate in self._gates.values():
            gate.detach(self)
            forget_idle(gate)
        self._gated.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def wait(self) -> None:
        """Wait for the run to end, as ``run.wait()``; but when it pauses itself (its
        budget or deadline), stop it once the requests in flight are settled: whoever
        awaits this (``await batch.run(...)``, ``run_sync``) cannot press Resume. The
        reason stays in :attr:`reason`; the budget is journaled, so the next run of the
        batch goes on from there."""
        runner = self.runner
        done = asyncio.ensure_future(runner.wait())
        try:
            while not done.done():
                if (
                    self._kind is not None
                    and runner.state is RunState.PAUSED
                    and runner.active == 0
                ):
                    runner.stop()
                await asyncio.wait([done], timeout=0.05)
        finally:
            if not done.done():
                done.cancel()
        await done

    async def finish(self) -> None:
        """The run has ended: let go of the gates, deliver the last notification."""
        self.close()
        if _posting:
            await asyncio.wait(list(_posting), timeout=15.0)

    # what the endpoint gates ask of a run (core/_ratelimit.py, Member)
    def gate_concurrency(self) -> int:
        return self.runner.concurrency

    def gate_poke(self) -> None:
        self.runner._poke()

    def gate_wants(self) -> bool:
        r = self.runner
        return (
            not r._paused and not r._stopping and r._has_pending() and len(r._slots) < r.concurrency
        )

    def _journal(self) -> None:
        bid = self.runner.batch_id
        if bid is None:
            return
        data = None
        if (
            self.budget is not None
            or self._prices_kept
            or self.deadline is not None
            or self.start_at is not None
        ):
            data = {
                "budget": self.budget,
                "allow_unknown_prices": self.allow_unknown_prices,
                "prices": self._prices_kept,
                "deadline": self.deadline,
                "start_at": self.start_at,
            }
        try:
            save_budget(self.runner.workspace, bid, data)
        except NbbatchError as exc:
            log.warning("nbbatch: the budget and deadline could not be journaled: %s", exc)

    def _spent_so_far(self) -> float:
        runner = self.runner
        if runner.batch_id is None:
            return 0.0
        total = 0.0
        for images in batch_images(runner.workspace, runner.batch_id).values():
            cost = task_cost(images, self.prices, self.token_prices, provider=runner.provider.name)
            total += cost.amount or 0.0
        return total

    # ------------------------------------------------------------ the dispatcher's hook
    def hold(self, task: Task, provider: Provider) -> bool:
        """True when ``task`` must not be sent now (the run waits, or pauses with why)."""
        now = self._clock()
        if self.start_at is not None and now < self.start_at:
            return True  # a timer pokes the dispatcher at start_at
        if self.deadline is not None and now >= self.deadline:
            self._pause("deadline", self._deadline_words())
            return True
        price = self.price(task, provider)
        if self.budget is not None:
            if price is None and not self.allow_unknown_prices:
                model = task.params.model or getattr(provider, "model", None)
                name = f"{provider.name}/{model}" if isinstance(model, str) else provider.name
                self._pause(
                    "budget",
                    f"the price of {name} is unknown: a budget cannot hold it. Set its price "
                    "(prices=...) or allow unknown prices, then resume",
                )
                return True
            projected = self.spent + sum(self._reserved.values()) + (price or 0.0)
            if projected > self.budget + 1e-9:
                self._pause("budget", self._budget_words())
                return True
        gate = self._gate(provider)
        if gate is not None and not gate.try_acquire(self):
            return True  # the gate pokes this run when a slot is its turn
        if gate is not None:
            self._gated[task.id] = gate
        self._reserved[task.id] = price or 0.0
        # the request task is made next, in this (the dispatcher's) context: a pool it is
        # sent to sees which run, of which priority, waits for its free slots
        sender.set(self)
        return False

    def released(self, task_id: str) -> None:
        """The request slot of ``task_id`` is free again (its provider call ended)."""
        gate = self._gated.pop(task_id, None)
        if gate is not None:
            gate.release(self)

    def _gate(self, provider: Provider) -> Gate | None:
        gate = gate_of(provider)
        if gate is None:
            return None
        if id(gate) not in self._gates:
            self._gates[id(gate)] = gate
            gate.attach(self, priority=self.priority)
        return gate

    # ------------------------------------------------------------ controls
    def set_budget(self, budget: float | None) -> None:
        """A new budget (``None``: none); journaled. Resumes a run paused on its budget."""
        PaceOptions(budget=budget)  # checks it
        self.budget = None if budget is None else float(budget)
        if self.budget is not None:
            self._count_spent()
        self._journal()
        if self._kind == "budget" and self.runner.state is RunState.PAUSED:
            self.runner.resume()

    def set_deadline(self, deadline: object) -> None:
        """A new deadline (``None``: none); journaled. Resumes a run paused on its
        deadline."""
        self.deadline = parse_when(deadline, now=self._clock())
        self._journal()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self.deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self.deadline - self._clock())
            self._timers.append(loop.call_later(delay, self._deadline_timer))
        if self._kind == "deadline" and self.runner.state is RunState.PAUSED:
            self.runner.resume()

    def set_priority(self, priority: str) -> None:
        self.priority = check_priority(priority)
        for gate in self._gates.values():
            gate.set_priority(self, self.priority)

    # ------------------------------------------------------------ words
    @property
    def remaining_price(self) -> float | None:
        """What the tasks not started yet would cost at the price table (None: unknown)."""
        from ..core._model import TaskStatus

        total = 0.0
        for t in self.runner._tasks:
            if t.status is TaskStatus.QUEUED and t.id not in self._reserved:
                p = self.price(t, self.runner._provider_for(t))
                if p is None:
                    return None
                total += p
        return total

    def _budget_words(self) -> str:
        from ..core._model import TaskStatus

        assert self.budget is not None
        left = sum(
            1
            for t in self.runner._tasks
            if t.status is TaskStatus.QUEUED and t.id not in self._reserved
        )
        more = self.remaining_price
        # what requests still running will cost counts as spent: they have been sent
        committed = self.spent + sum(self._reserved.values())
        tail = f", about {_money(more)} more" if more is not None else ""
        return (
            f"budget of {_money(self.budget)} reached: {_money(committed)} spent, "
            f"{left} tasks left{tail}. Raise the budget (run.set_budget(...)) to go on"
        )

    def _deadline_words(self) -> str:
        from ..core._model import TaskStatus

        assert self.deadline is not None
        left = sum(
            1
            for t in self.runner._tasks
            if t.status is TaskStatus.QUEUED and t.id not in self._reserved
        )
        when = datetime.fromtimestamp(self.deadline).strftime("%Y-%m-%d %H:%M")
        return (
            f"deadline {when} reached: {left} tasks not started. Resume to go on, or set a "
            "later deadline (run.set_deadline(...))"
        )

    def describe(self, *, deadline: bool = True) -> str | None:
        """In words, what holds the run back now (None: nothing). ``deadline=False``
        leaves out a deadline still ahead (the studio shows it in a place of its own)."""
        if self.reason is not None and self.runner.state is RunState.PAUSED:
            return self.reason
        if self.start_at is not None and self._clock() < self.start_at:
            when = datetime.fromtimestamp(self.start_at).strftime("%Y-%m-%d %H:%M")
            return f"waits to start at {when}"
        for gate in self._gates.values():
            said = gate.describe()
            if said is not None:
                return said
        if deadline and self.deadline is not None and self.runner.state is RunState.RUNNING:
            when = datetime.fromtimestamp(self.deadline).strftime("%Y-%m-%d %H:%M")
            return f"no request starts after {when}"
        return None

    @property
    def slowed_to(self) -> int | None:
        """The concurrency rate limits hold this run to (None: not slowed)."""
        lows = [g.slowed_to for g in self._gates.values() if g.slowed_to is not None]
        if not lows:
            return None
        low = min(x for x in lows if x is not None)
        return low if low < self.runner.concurrency else None

    # ------------------------------------------------------------ internals
    def _pause(self, kind: str, reason: str) -> None:
        runner = self.runner
        if runner.state is not RunState.RUNNING:
            return
        self._kind, self.reason = kind, reason
        log.warning("nbbatch: %s", reason)
        runner.pause(reason=reason)

    def _deadline_timer(self) -> None:
        if self.deadline is not None and self._clock() >= self.deadline:
            self._pause("deadline", self._deadline_words())
        elif self.deadline is not None:  # the clock is behind the loop's: look again
            loop = asyncio.get_running_loop()
            delay = max(0.05, self.deadline - self._clock())
            self._timers.append(loop.call_later(delay, self._deadline_timer))

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TaskSucceeded):
            reserved = self._reserved.pop(event.task.id, 0.0)
            if not self._counted:
                return  # no budget: what was spent is read from the journal when asked
            cost = task_cost(
                [im.params for im in event.images],
                self.prices,
                self.token_prices,
                provider=self.runner._provider_for(event.task).name,
                model=getattr(self.runner._provider_for(event.task), "model", None),
            )
            if cost.amount is not None:
                self.spent += cost.amount
            else:
                self.spent += reserved  # no price known now: what it was projected at
        elif isinstance(event, (TaskFailed, TaskCancelled, TaskInterrupted, TaskQueued)):
            self._reserved.pop(event.task.id, None)
        elif isinstance(event, RunStateChanged):
            if event.state is RunState.RUNNING:
                if self._kind == "deadline":
                    self.deadline = None  # resumed after its deadline: the person goes on
                    self._journal()
                self._kind = self.reason = None
            elif event.state is RunState.PAUSED and self._kind is not None:
                self._notify("paused", self.reason)
            elif event.state in (RunState.FINISHED, RunState.STOPPED):
                p = self.runner.progress()
                failed = event.state is RunState.FINISHED and p.failed and not p.succeeded
                self._notify("failed" if failed else event.state.value, None)

    def _notify(self, what: str, reason: str | None) -> None:
        url = webhook_url()
        if url is None:
            return
        self._count_spent()
        p = self.runner.progress()
        name = self.options.batch_name or self.runner.batch_id or ""
        text = f"nbbatch: batch {name!r} {what}: {p.succeeded} done, {p.failed} failed"
        if p.queued:
            text += f", {p.queued} not started"
        if reason:
            text += f" ({reason})"
        payload = {
            "event": what,
            "batch_id": self.runner.batch_id,
            "batch_name": name,
            "reason": reason,
            "counts": {
                "total": p.total,
                "succeeded": p.succeeded,
                "failed": p.failed,
                "cancelled": p.cancelled,
                "queued": p.queued,
                "running": p.running,
            },
            "spent": round(self.spent, 6),
            "budget": self.budget,
            "text": text,  # Slack-compatible receivers show "text"
            "content": text,  # Discord-compatible ones "content"
        }
        with contextlib.suppress(RuntimeError):
            job = asyncio.get_running_loop().create_task(_post(url, payload))
            _posting.add(job)
            job.add_done_callback(_posting.discard)
