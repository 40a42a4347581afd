"""One provider over several endpoints: how a batch scales past one machine.

``PoolProvider([a, b, c, d])`` hands each attempt to the least busy healthy endpoint
that can do what the task asks, never running more than an endpoint's own concurrency
on it. Endpoints are any providers (four ComfyUI or WebUI servers on different GPUs, or
a mix of services).

Health, as a small circuit breaker per endpoint:

* before first use every endpoint's ``check()`` runs once; one that fails is skipped
  for ``cooldown`` seconds;
* ``failure_threshold`` consecutive endpoint failures (connection, timeout, 5xx, rate
  limit, bad key) also take it out for ``cooldown`` seconds; after that one attempt
  is let through (half-open) and its outcome decides;
* an attempt that fails for an endpoint reason is retried at once on another endpoint
  (each endpoint at most once per attempt); failures that are about the *request*
  (refusal, bad request, malformed answer) are raised as they are, since another
  endpoint would say the same.

Slots by priority: pools of one event loop that use the same servers share them (two
studios that each built the saved pool count their requests on a server together, by its
endpoint key: base URL and key). When requests wait for a free endpoint, the free slot
goes to the waiting request of the run that holds no slot of these endpoints, then of the
highest priority (``batch.run(..., priority=...)``), then the one that has waited
longest, as an endpoint's gate does between runs (``core/_ratelimit.py``): a quick
experiment goes before a big background batch, and the background batch keeps at least
one slot while it has work. A request only yields to one that can use that endpoint.

When nothing is left to try, the last error is raised and the runner's retry policy
takes over as usual. Every image records the endpoint that produced it in
``ImageData.info["endpoint"]``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..core._errors import (
    AuthenticationError,
    ConfigError,
    NotSupportedError,
    ProviderConnectionError,
    ProviderError,
)
from ..core._ratelimit import priority_rank, sender
from ._base import Capabilities, GenerationRequest, ImageData, ProgressCallback, Provider
from ._catalog import provider_info
from ._endpoint import endpoint_key, generate_paced

__all__ = ["Endpoint", "PoolProvider"]

INFO = provider_info("pool")


@dataclass
class Endpoint:
    """One member of a pool: a provider and how many requests it may run at once."""

    provider: Provider
    max_concurrency: int | None = None
    name: str | None = None

    # runtime state (not configuration)
    in_flight: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)
    down_until: float = field(default=0.0, init=False)
    last_error: str | None = field(default=None, init=False)
    served: int = field(default=0, init=False)
    checked: bool = field(default=False, init=False)
    #: the server it is (``_endpoint.endpoint_key``): pools over one server share it
    key: str = field(default="", init=False)
    check_failed: bool = field(default=False, init=False)

    @property
    def cap(self) -> int:
        return self.max_concurrency or self.provider.max_concurrency or 1


@dataclass(eq=False)
class _Waiter:
    """A request waiting in :meth:`PoolProvider._acquire` for a free endpoint."""

    run: object | None  # the run it is sent for (``core._ratelimit.sender``)
    seq: int  # its place in the line: the order it first asked in
    keys: set[str]  # the endpoints it may take (capable, not tried yet), by key


class _Board:
    """What every pool of one event loop shares about the servers they use."""

    def __init__(self) -> None:
        #: requests in flight per endpoint key, whichever pool sent them
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.waiting: list[_Waiter] = []
        #: slots each run holds now, by id of the run (None: no run)
        self.held: collections.Counter[int] = collections.Counter()
        self.line = itertools.count()
        self.changed = asyncio.Event()

    def signal(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


_boards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Board] = weakref.WeakKeyDictionary()


def _board() -> _Board:
    """The board of the running loop (an asyncio.Event belongs to one loop)."""
    loop = asyncio.get_running_loop()
    board = _boards.get(loop)
    if board is None:
        board = _boards[loop] = _Board()
    return board


def _is_endpoint_failure(exc: ProviderError) -> bool:
    """True when the failure says something about the endpoint, not the request."""
    return exc.retryable or isinstance(exc, AuthenticationError)


def _combine(endpoints: Sequence[Endpoint]) -> Capabilities:
    caps = [e.provider.capabilities for e in endpoints]
    # Routing features are a union (a task goes to an endpoint that can do it); promises
    # about every attempt (progress events, cancel) hold only if all endpoints keep them.
    return Capabilities(
        txt2img=any(c.txt2img for c in caps),
        img2img=any(c.img2img for c in caps),
        max_references=max(c.max_references for c in caps),
        mask=any(c.mask for c in caps),
        max_n=max(c.max_n for c in caps),
        seed=any(c.seed for c in caps),
        negative_prompt=any(c.negative_prompt for c in caps),
        progress=all(c.progress for c in caps),
        cancel=all(c.cancel for c in caps),
    )


class PoolProvider(Provider):
    """Spread tasks over several endpoint providers (see the module docstring)."""

    name: ClassVar[str] = INFO.name
    label: ClassVar[str] = INFO.label

    def __init__(
        self,
        endpoints: Sequence[Provider | Endpoint],
        *,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        check_endpoints: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ConfigError("a pool needs at least one endpoint")
        if failure_threshold < 1:
            raise ConfigError("failure_threshold must be at least 1")
        if cooldown < 0:
            raise ConfigError("cooldown cannot be negative")
        self.endpoints: list[Endpoint] = []
        for i, e in enumerate(endpoints):
            ep = e if isinstance(e, Endpoint) else Endpoint(e)
            if isinstance(ep.provider, PoolProvider):
                raise ConfigError("a pool cannot contain another pool")
            if ep.max_concurrency is not None and ep.max_concurrency < 1:
                raise ConfigError("an endpoint's max_concurrency must be at least 1")
            if ep.name is None:
                ep.name = f"{ep.provider.name}-{i + 1}"
            ep.key = endpoint_key(ep.provider) or f"{ep.name}|object-{id(ep):x}|"
            self.endpoints.append(ep)
        names = [e.name for e in self.endpoints]
        if len(set(names)) != len(names):
            raise ConfigError(f"endpoint names must be unique, got {names}")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.check_endpoints = check_endpoints
        self._clock = clock
        # Per instance: what a pool can do depends on its endpoints.
        self.capabilities = _combine(self.endpoints)
        #: the runner's per-provider cap: every endpoint busy at once, no more
        self.max_concurrency = sum(e.cap for e in self.endpoints)
        self._check_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ health
    def _available(self, ep: Endpoint, now: float) -> bool:
        return ep.down_until <= now

    def _mark_failed(self, ep: Endpoint, exc: BaseException, *, at_once: bool = False) -> None:
        ep.failures += 1
        ep.last_error = str(exc)
        if at_once or ep.failures >= self.failure_threshold:
            ep.down_until = self._clock() + self.cooldown

    def _mark_ok(self, ep: Endpoint) -> None:
        ep.check_failed = False
        ep.failures = 0
        ep.down_until = 0.0
        ep.last_error = None

    async def _check_one(self, ep: Endpoint) -> None:
        try:
            await ep.provider.check()
        except Exception as exc:  # any failure, even a bug in a plug-in, means "skip it"
            self._mark_failed(ep, exc, at_once=True)
            ep.check_failed = True
        else:
            ep.check_failed = False
        finally:
            ep.checked = True

    async def _ensure_checked(self) -> None:
        if not self.check_endpoints:
            return
        if self._check_lock is None:
            self._check_lock = asyncio.Lock()
        async with self._check_lock:
            todo = [e for e in self.endpoints if not e.checked]
            if todo:
                await asyncio.gather(*(self._check_one(e) for e in todo))

    async def check(self) -> None:
        """Check every endpoint now; raise when none of them is usable."""
        self._bind_to_running_loop()
        for ep in self.endpoints:
            ep.checked = False
        await self._ensure_checked()
        if not any(self._available(e, self._clock()) for e in self.endpoints):
            raise ProviderConnectionError(
                "pool: no endpoint passed its health check: "
                + "; ".join(f"{e.name}: {e.last_error}" for e in self.endpoints),
                provider=self.name,
            )

    def status(self) -> list[dict[str, Any]]:
        """One row per endpoint: name, provider, cap, in flight, served, health."""
        now = self._clock()
        return [
            {
                "endpoint": e.name,
                "provider": e.provider.name,
                "max_concurrency": e.cap,
                "in_flight": e.in_flight,
                "served": e.served,
                "healthy": self._available(e, now),
                "failures": e.failures,
                "last_error": e.last_error,
            }
            for e in self.endpoints
        ]

    # ------------------------------------------------------------------ routing
    def validate(self, request: GenerationRequest) -> None:
        super().validate(request)
        if not self._capable(request):
            raise NotSupportedError(
                "no endpoint of this pool can do everything this task asks "
                "(check its input images, mask, n and negative prompt)",
                task_id=request.task_id,
            )

    def _capable(self, request: GenerationRequest) -> list[Endpoint]:
        out = []
        for ep in self.endpoints:
            try:
                ep.provider.validate(request)
            except NotSupportedError:
                continue
            out.append(ep)
        return out

    @staticmethod
    def _rank(board: _Board, waiter: _Waiter) -> tuple[bool, int, int]:
        """A waiting request's place (lowest first): its run holds no slot, the run's
        priority, how long it has waited."""
        return (board.held[id(waiter.run)] > 0, priority_rank(waiter.run), waiter.seq)

    def _yields(self, board: _Board, me: _Waiter, ep: Endpoint) -> bool:
        """True when a request before ``me`` waits for ``ep`` too."""
        mine = self._rank(board, me)
        return any(
            other is not me and ep.key in other.keys and self._rank(board, other) < mine
            for other in board.waiting
        )

    async def _acquire(
        self,
        candidates: list[Endpoint],
        tried: set[str],
        last: ProviderError | None,
        seq: int,
        board: _Board,
    ) -> Endpoint:
        me = _Waiter(sender.get(), seq, set())
        board.waiting.append(me)
        try:
            while True:
                now = self._clock()
                untried = [e for e in candidates if e.name not in tried]
                if not untried and last is not None:
                    raise last
                usable = [e for e in untried if self._available(e, now)]
                if not usable and all(e.check_failed for e in untried):
                    # nothing ever answered: fail now rather than wait out every cool-down
                    raise ProviderConnectionError(
                        "pool: no endpoint that can run this task is reachable ("
                        + "; ".join(f"{e.name}: {e.last_error}" for e in candidates)
                        + ")",
                        provider=self.name,
                    )
                me.keys = {e.key for e in usable}
                busy = board.in_flight
                free = [e for e in usable if busy[e.key] < e.cap and not self._yields(board, me, e)]
                if free:
                    # least loaded first; among equals, the one that served least
                    ep = min(free, key=lambda e: (busy[e.key] / e.cap, e.served))
                    ep.in_flight += 1
                    busy[ep.key] += 1
                    board.held[id(me.run)] += 1
                    return ep
                # every usable endpoint is busy (or promised to a request before this
                # one), or all are cooling down: wait for a change or for the first
                # cool-down to end (then it gets one trial request)
                wake = min(
                    (e.down_until - now for e in untried if e.down_until > now), default=None
                )
                event = board.changed
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), wake)
        finally:
            board.waiting.remove(me)
            if board.waiting:
                board.signal()  # the line changed: who is first may have changed too

    @staticmethod
    def _release(board: _Board, ep: Endpoint, run: object | None) -> None:
        # synchronous on purpose: it runs in `finally` of a possibly cancelled attempt
        ep.in_flight -= 1
        # a Counter's -= keeps only what stays above zero: nothing is left counted
        board.in_flight -= collections.Counter({ep.key: 1})
        board.held -= collections.Counter({id(run): 1})
        board.signal()

    def _bind_to_running_loop(self) -> None:
        # asyncio's Event and Lock belong to the first loop that waits on them; a pool
        # used again from another loop (a second run_sync) gets fresh ones
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._check_lock = None

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.validate(request)
        self._bind_to_running_loop()
        await self._ensure_checked()
        candidates = self._capable(request)
        tried: set[str] = set()
        last: ProviderError | None = None
        board = _board()
        seq = next(board.line)  # a fail-over keeps the request's place in the line
        run = sender.get()
        while True:
            ep = await self._acquire(candidates, tried, last, seq, board)
            assert ep.name is not None
            tried.add(ep.name)
            try:
                images = await generate_paced(ep.provider, request, on_progress)
            except ProviderError as exc:
                if not _is_endpoint_failure(exc):
                    self._mark_ok(ep)  # it answered; the request was the problem
                    raise
                self._mark_failed(ep, exc, at_once=isinstance(exc, AuthenticationError))
                last = exc
                continue
            finally:
                self._release(board, ep, run)
            self._mark_ok(ep)
            ep.served += 1
            return [dataclasses.replace(im, info={**im.info, "endpoint": ep.name}) for im in images]

    async def aclose(self) -> None:
        for ep in self.endpoints:
            await ep.provider.aclose()

    def __repr__(self) -> str:
        return f"<PoolProvider {len(self.endpoints)} endpoints: {[e.name for e in self.endpoints]}>"
