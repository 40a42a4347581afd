"""Rate limits per endpoint, shared by every run in the process, that adapt to 429s.

One :class:`Gate` per endpoint and key (``endpoint_key`` in ``providers/_endpoint.py``:
the base URL and a fingerprint of the credential, so two keys on one service are two
gates, and a pool member and a direct run on the same server share one). Every request
to that endpoint passes its gate, whatever run or pool sends it:

* **limits** (:class:`RateLimit`, from ``Settings.rate_limits`` or :func:`set_rate_limit`):
  at most ``requests_per_minute`` requests and ``images_per_minute`` images in any 60
  seconds (a sliding window: a bucket that a server counting per rolling minute never
  overflows). None by default.
* **back-off on 429**: the endpoint's concurrency is halved (multiplicative decrease, once
  per burst of 429s), the whole endpoint waits out the server's ``Retry-After`` (not only
  the task that got it), and OpenAI's ``x-ratelimit-limit-requests`` /
  ``-remaining-requests`` / ``-reset-requests`` headers set the request limit and hold
  sends until the reset when nothing remains. Without such headers, the number of
  requests the server accepted in the minute before its first 429 becomes the learned
  requests-per-minute limit. After sustained success the concurrency grows back by one
  per ``limit`` successes, never above the configured one; the learned limit grows by
  one per quiet minute.
* **slots by priority** between runs: :meth:`Gate.try_acquire` hands the endpoint's slots
  (its configured concurrency, else the highest concurrency of the runs using it) to the
  run of highest priority first; a run holding no slot comes before every run holding
  one, so a background run keeps at least one slot while it has work and is not paused.
  A pool (``providers/_pool.py``) hands its members' free slots out by the same rule, to
  the requests waiting in it: :data:`sender` names the run a request is sent for.

All timing goes through the running loop's clock (a benchmark may run on virtual time).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._errors import ConfigError
from ._secrets import split_url_credentials

__all__ = [
    "PRIORITIES",
    "Gate",
    "RateLimit",
    "check_priority",
    "check_rate_limits",
    "gate_for",
    "gates",
    "priority_rank",
    "rate_limit_for",
    "sender",
    "set_rate_limit",
]

#: priorities between runs, best first
PRIORITIES = ("high", "normal", "low")
_WINDOW = 60.0
#: the hold a 429 without Retry-After puts on a pressed endpoint
_NO_RETRY_AFTER_HOLD = 1.0
#: the longest server-requested hold honoured for the whole endpoint
_MAX_RETRY_AFTER = 120.0
#: answers looked at, and how many of them must be 429s, before the endpoint adapts
_RECENT = 20
_PRESSED_AT = 4


def check_priority(value: object) -> str:
    if value not in PRIORITIES:
        raise ConfigError(f"priority must be 'high', 'normal' or 'low', got {value!r}")
    return str(value)


#: the run a request is sent for (its ``Pace``, which has a ``priority``): set by the run
#: in the context its request task is made from, read by a pool that hands a free endpoint
#: to one of the requests waiting for one. ``None``: a call outside any run.
sender: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "nbbatch_sender", default=None
)


def priority_rank(run: object) -> int:
    """The place of a run's ``priority`` in :data:`PRIORITIES` (0 first); "normal" for
    anything without one."""
    priority = getattr(run, "priority", "normal")
    return PRIORITIES.index(priority) if priority in PRIORITIES else 1


#: seconds of wait too small to sleep (rounding of the window's arithmetic)
_NEGLIGIBLE_WAIT = 1e-3


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


@dataclass(frozen=True)
class RateLimit:
    """Limits for one endpoint: requests and images per minute, endpoint concurrency."""

    requests_per_minute: float | None = None
    images_per_minute: float | None = None
    #: slots of the endpoint shared by every run (None: the highest run concurrency)
    concurrency: int | None = None
    #: False: 429s do not slow the endpoint (each task waits out its own Retry-After)
    adaptive: bool = True

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "images_per_minute"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not 0 < float(value) < math.inf:
                raise ConfigError(f"{name} must be more than 0, got {value!r}")
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ConfigError(f"the endpoint concurrency must be a whole number >= 1, got {c!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("requests_per_minute", self.requests_per_minute),
                ("images_per_minute", self.images_per_minute),
                ("concurrency", self.concurrency),
                ("adaptive", None if self.adaptive else False),
            )
            if v is not None
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RateLimit:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a rate limit must be an object, got {data!r}")
        unknown = set(data) - {
            "requests_per_minute",
            "images_per_minute",
            "concurrency",
            "adaptive",
        }
        if unknown:
            raise ConfigError(
                f"unknown rate limit setting(s) {sorted(unknown)}; known: requests_per_minute, "
                "images_per_minute, concurrency, adaptive"
            )
        return cls(**dict(data))


def check_rate_limits(table: object) -> dict[str, RateLimit]:
    """``{"<provider or base URL>": {...}}`` as given, checked."""
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"'rate_limits' must map a provider or base URL to limits, got {type(table).__name__}"
        )
    out: dict[str, RateLimit] = {}
    for key, value in table.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"a rate limit needs a provider name or base URL, got {key!r}")
        out[_endpoint_name(key)] = (
            value if isinstance(value, RateLimit) else RateLimit.from_dict(value)
        )
    return out


def _endpoint_name(endpoint: str) -> str:
    """A provider name or base URL as limits are kept: without a trailing slash, and a
    URL without its ``user:password@`` (the endpoint gates know a server by its URL
    without them, as the HTTP client keeps it; and the table is saved in config.json)."""
    return split_url_credentials(endpoint.strip())[0].rstrip("/")


class Member(Protocol):
    """A run as a gate sees it (held weakly: a run dropped with its loop is collected)."""

    def gate_concurrency(self) -> int: ...
    def gate_wants(self) -> bool: ...
    def gate_poke(self) -> None: ...


@dataclass
class _Run:
    priority: int
    held: int = 0


_HEADER_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def _header_seconds(text: str) -> float | None:
    """OpenAI's reset durations: ``"1s"``, ``"6m0s"``, ``"12ms"``."""
    total, found = 0.0, False
    for number, unit in _HEADER_DURATION.findall(text.strip()):
        found = True
        total += float(number) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    if not found:
        try:
            return float(text)
        except ValueError:
            return None
    return total


@dataclass
class Gate:
    """The pace of one endpoint (see the module docstring)."""

    key: str
    limit: RateLimit = field(default_factory=RateLimit)
    clock: Callable[[], float] = _now
    #: current concurrency after 429s (None: not slowed)
    adaptive: int | None = None
    #: requests per minute learned from 429s or from x-ratelimit-limit-requests
    learned_rpm: float | None = None
    hold_until: float = 0.0
    in_flight: int = 0
    sent: int = 0
    limited: int = 0
    _sends: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    _runs: weakref.WeakKeyDictionary[Member, _Run] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    _ok_streak: int = 0
    _last_decrease: float = -math.inf
    _last_limited: float = -math.inf
    #: the last answers, True for a 429: a rate limit shows as several in a row, a
    #: passing 429 now and then (an overloaded moment) changes nothing
    _recent: collections.deque[bool] = field(
        default_factory=lambda: collections.deque(maxlen=_RECENT)
    )
    #: True once 429s came in earnest: the endpoint-wide hold, the halving and the
    #: learned limit apply from then on
    pressed: bool = False

    # ------------------------------------------------------------ slots (runs)
    def attach(self, run: Member, *, priority: str = "normal") -> None:
        self._runs[run] = _Run(PRIORITIES.index(check_priority(priority)))

    def detach(self, run: Member) -> None:
        if self._runs.pop(run, None) is not None:
            self._poke_all()

    def set_priority(self, run: Member, priority: str) -> None:
        entry = self._runs.get(run)
        if entry is not None:
            entry.priority = PRIORITIES.index(check_priority(priority))
            self._poke_all()

    @property
    def capacity(self) -> int:
        """The endpoint's slots: configured, else the highest concurrency of its runs."""
        if self.limit.concurrency is not None:
            return self.limit.concurrency
        return max((run.gate_concurrency() for run in list(self._runs)), default=1)

    @property
    def slots(self) -> int:
        """Slots usable now: the capacity, lowered by 429s."""
        cap = self.capacity
        return cap if self.adaptive is None else max(1, min(cap, self.adaptive))

    @property
    def slowed_to(self) -> int | None:
        """The concurrency 429s have lowered this endpoint to (None: not slowed)."""
        if self.adaptive is None or self.adaptive >= self.capacity:
            return None
        return self.adaptive

    def held(self, run: Member) -> int:
        entry = self._runs.get(run)
        return entry.held if entry is not None else 0

    def try_acquire(self, run: Member) -> bool:
        """Take one slot for ``run`` if one is free and no run before it wants it."""
        me = self._runs.get(run)
        if me is None:
            return True
        used = sum(r.held for r in self._runs.values())
        free = self.slots - used
        if free <= 0:
            return False
        mine = (me.held > 0, me.priority)
        before = [
            other
            for other, r in list(self._runs.items())
            if other is not run and (r.held > 0, r.priority) < mine and other.gate_wants()
        ]
        if len(before) >= free:
            for other in before:
                other.gate_poke()
            return False
        me.held += 1
        return True

    def release(self, run: Member) -> None:
        entry = self._runs.get(run)
        if entry is not None and entry.held > 0:
            entry.held -= 1
        self._poke_all()

    def _poke_all(self) -> None:
        for run in list(self._runs):
            run.gate_poke()

    # ------------------------------------------------------------ pace (requests)
    def _trim(self, now: float) -> None:
        while self._sends and self._sends[0][0] <= now - _WINDOW:
            self._sends.popleft()

    def _rpm(self) -> float | None:
        values = [v for v in (self.limit.requests_per_minute, self.learned_rpm) if v is not None]
        return min(values) if values else None

    def wait_time(self, images: int = 1) -> float:
        """Seconds until a request of ``images`` images may be sent (0: now)."""
        now = self.clock()
        self._trim(now)
        wait = max(0.0, self.hold_until - now)
        rpm = self._rpm()
        if rpm is not None and len(self._sends) >= int(rpm):
            # the oldest sends leave the window one by one
            idx = len(self._sends) - int(rpm)
            wait = max(wait, self._sends[idx][0] + _WINDOW - now)
        ipm = self.limit.images_per_minute
        if ipm is not None:
            total = sum(n for _, n in self._sends)
            if total + images > ipm:
                excess = total + images - ipm
                for stamp, n in self._sends:
                    excess -= n
                    if excess <= 0:
                        wait = max(wait, stamp + _WINDOW - now)
                        break
        return wait

    async def throttle(self, images: int = 1) -> float:
        """Wait until a request may go out, then count it as sent; returns its stamp."""
        while True:
            wait = self.wait_time(images)
            # A wait of a few microseconds is rounding, not a limit: after sleeping it the
            # clock can read a hair short of the stamp it aimed at, and a loop whose clock
            # cannot add so small a step (a virtual clock at 60.0 + 1e-15) woke forever.
            if wait <= _NEGLIGIBLE_WAIT:
                break
            await asyncio.sleep(wait)
        stamp = self.clock()
        self._sends.append((stamp, images))
        self.in_flight += 1
        self.sent += 1
        return stamp

    def succeeded(self, stamp: float) -> None:
        self.in_flight -= 1
        self._recent.append(False)
        self._ok_streak += 1
        now = self.clock()
        if self.adaptive is not None and self._ok_streak >= max(self.adaptive, 1):
            self._ok_streak = 0
            self.adaptive += 1
            if self.adaptive >= self.capacity:
                self.adaptive = None  # back to the configured concurrency
            self._poke_all()
        if self.learned_rpm is not None and self.pressed and now - self._last_limited >= _WINDOW:
            self.learned_rpm += max(1.0, self.learned_rpm * 0.05)
            self._last_limited = now  # one step per quiet minute

    def failed(self, stamp: float) -> None:
        """A request ended without a 429 (it was sent: it counts against the window)."""
        self.in_flight -= 1
        self._recent.append(False)

    def rate_limited(self, stamp: float, retry_after: float | None) -> None:
        """A request sent at ``stamp`` was answered 429."""
        self.in_flight -= 1
        self.limited += 1
        self._recent.append(True)
        now = self.clock()
        self._ok_streak = 0
        self._last_limited = now
        # the server did not count the refused request
        for i, (s, _) in enumerate(self._sends):
            if s == stamp:
                del self._sends[i]
                break
        self._trim(now)
        if not self.limit.adaptive:
            return
        if not self.pressed:
            if sum(self._recent) < _PRESSED_AT:
                return  # one 429 now and then: the task waits out its own Retry-After
            self.pressed = True
        if self.limit.requests_per_minute is None:
            accepted = float(max(1, len(self._sends)))
            self.learned_rpm = (
                accepted if self.learned_rpm is None else min(self.learned_rpm, accepted)
            )
        if stamp >= self._last_decrease:
            # once per burst: the 429s of requests sent before this decrease are its echo
            self._last_decrease = now
            current = self.adaptive if self.adaptive is not None else self.capacity
            self.adaptive = max(1, min(current, self.in_flight + 1) // 2)
        if retry_after is not None and math.isfinite(retry_after):
            if retry_after <= _MAX_RETRY_AFTER:  # a longer wait fails the task instead
                self.hold_until = max(self.hold_until, now + max(retry_after, 0.0))
        else:
            self.hold_until = max(self.hold_until, now + _NO_RETRY_AFTER_HOLD)

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """OpenAI's ``x-ratelimit-*-requests`` headers of any answer from this endpoint."""
        low = {k.lower(): v for k, v in headers.items()}
        raw_limit = low.get("x-ratelimit-limit-requests")
        if raw_limit is not None:
            try:
                value = float(raw_limit)
            except ValueError:
                value = 0.0
            if value > 0:
                self.learned_rpm = value
        remaining = low.get("x-ratelimit-remaining-requests")
        reset = low.get("x-ratelimit-reset-requests")
        if remaining is not None and reset is not None:
            try:
                left = float(remaining)
            except ValueError:
                return
            wait = _header_seconds(reset)
            if left <= 0 and wait is not None and self.limit.adaptive:
                self.hold_until = max(self.hold_until, self.clock() + min(wait, _MAX_RETRY_AFTER))

    def describe(self) -> str | None:
        """``"slowed to 4 by rate limits"`` while 429s hold the endpoint back."""
        slowed = self.slowed_to
        if slowed is not None:
            return f"slowed to {slowed} by rate limits"
        if self.hold_until > self.clock():
            return "waiting for the service's rate limit"
        return None


# ---------------------------------------------------------------- the registry
_gates: dict[str, Gate] = {}
_limits: dict[str, RateLimit] = {}
_lock = threading.Lock()


def gates() -> dict[str, Gate]:
    """Every endpoint gate of this process, by endpoint key (a snapshot)."""
    with _lock:
        return dict(_gates)


def rate_limit_for(key: str, *names: str) -> RateLimit:
    """The limits set for an endpoint: by its key, then by each of ``names`` (base URL,
    provider name) as :func:`set_rate_limit` or ``Settings.rate_limits`` gave them."""
    with _lock:
        for name in (key, *names):
            if name and name.rstrip("/") in _limits:
                return _limits[name.rstrip("/")]
    return RateLimit()


def set_rate_limit(
    endpoint: str,
    *,
    requests_per_minute: float | None = None,
    images_per_minute: float | None = None,
    concurrency: int | None = None,
    adaptive: bool = True,
) -> RateLimit:
    """Limit an endpoint for every run of this process: ``endpoint`` is a provider name
    (``"openai"``), a base URL or an endpoint key. ``adaptive=False`` keeps 429s from
    slowing it. All defaults remove the limits."""
    limit = RateLimit(requests_per_minute, images_per_minute, concurrency, adaptive)
    name = _endpoint_name(endpoint)
    with _lock:
        if limit == RateLimit():
            _limits.pop(name, None)
        else:
            _limits[name] = limit
        for gate in _gates.values():
            if name == gate.key or name in gate.key.split("|"):
                gate.limit = limit
    return limit


def load_rate_limits(table: Mapping[str, RateLimit]) -> None:
    """Take the saved limits (``Settings.rate_limits``); ones set in Python stay."""
    with _lock:
        for name, limit in table.items():
            _limits.setdefault(name, limit)


def forget_idle(gate: Gate) -> None:
    """Drop the gate of a provider object (no server: the demo, a test's provider) once
    no run uses it, so that a later object given the same id starts afresh."""
    with _lock:
        idle = not len(gate._runs) and gate.in_flight == 0
        if "|object-" in gate.key and idle and _gates.get(gate.key) is gate:
            del _gates[gate.key]


def gate_for(key: str, *names: str) -> Gate:
    """The gate of an endpoint (made on first use, then shared)."""
    with _lock:
        gate = _gates.get(key)
        if gate is not None:
            return gate
    limit = rate_limit_for(key, *names)
    with _lock:
        return _gates.setdefault(key, Gate(key, limit))
