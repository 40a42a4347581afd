"""Adaptive rate limits against a hard 60-requests-per-minute limit, vs fixed concurrency.

The provider (``nbbatch.testing.RateLimitedProvider``) accepts at most 60 requests in
any 60 seconds and answers every other request at once with a 429 whose ``Retry-After``
is the time until its oldest accepted request leaves the window; accepted requests take
2 s. Both runs use concurrency 10 and the default 2 retries, through the real runner and
journal:

* **adaptive** — nbbatch as shipped: the endpoint's gate learns the limit from the 429s,
  holds the endpoint for the Retry-After and halves its concurrency;
* **fixed** — the same with ``adaptive=False`` (``set_rate_limit``): fixed concurrency,
  each task waiting out its own Retry-After, as before this change.

``ratelimit_efficiency`` = achieved successes per second / achievable, where achievable
is a client that knows the limit (a greedy simulation: send whenever one of the 10 slots
is free and the rolling minute has room); ``ratelimit_429_share`` = 429s / requests.
Everything runs on a virtual clock (an event loop whose time jumps to its next timer
when nothing else is ready), so minutes of pacing take seconds.

    python benchmarks/bench_ratelimit.py            # 300 tasks
    python benchmarks/bench_ratelimit.py --quick    # 120 tasks (CI smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import shutil
import tempfile
from pathlib import Path

from nbbatch import Batch, Workspace
from nbbatch.core._ratelimit import set_rate_limit
from nbbatch.providers._endpoint import endpoint_key
from nbbatch.testing import RateLimitedProvider, VirtualTimeLoop

RPM = 60
LATENCY = 2.0
CONCURRENCY = 10


def ideal_seconds(tasks: int) -> float:
    """A client that knows the limit: greedy sends into free slots and window room."""
    window: collections.deque[float] = collections.deque()
    slots = [0.0] * CONCURRENCY  # when each slot is free again
    heapq.heapify(slots)
    end = 0.0
    for _ in range(tasks):
        t = heapq.heappop(slots)
        while window and window[0] <= t - 60.0:
            window.popleft()
        if len(window) >= RPM:
            t = max(t, window[0] + 60.0)
            window.popleft()
        window.append(t)
        heapq.heappush(slots, t + LATENCY)
        end = max(end, t + LATENCY)
    return end


async def one_run(tasks: int, adaptive: bool, root: Path) -> dict[str, float]:
    provider = RateLimitedProvider(RPM, latency=LATENCY)
    key = endpoint_key(provider)
    assert key is not None
    set_rate_limit(key, adaptive=adaptive)
    ws = Workspace(root / ("adaptive" if adaptive else "fixed"))
    try:
        batch = Batch.create([f"prompt {i}" for i in range(tasks)], workspace=ws)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batch.run_async(provider, concurrency=CONCURRENCY, retry=2)
        elapsed = loop.time() - start
        succeeded = len(batch.succeeded)
    finally:
        ws.close()
        set_rate_limit(key)
    requests = provider.accepted + provider.refused
    ideal = ideal_seconds(tasks)
    return {
        "efficiency": (succeeded / elapsed) / (tasks / ideal),
        "share_429": provider.refused / requests if requests else 0.0,
        "succeeded": succeeded,
        "refused": provider.refused,
        "requests": requests,
        "seconds": elapsed,
        "ideal": ideal,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized smoke run")
    parser.add_argument("--tasks", type=int, default=None)
    args = parser.parse_args()
    tasks = args.tasks or (120 if args.quick else 300)
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
    try:
        loop = VirtualTimeLoop()
        try:
            adaptive = loop.run_until_complete(one_run(tasks, True, root))
            fixed = loop.run_until_complete(one_run(tasks, False, root))
        finally:
            loop.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"tasks {tasks}, limit {RPM}/min, latency {LATENCY:g} s, concurrency {CONCURRENCY}")
    for name, r in (("adaptive", adaptive), ("fixed", fixed)):
        print(
            f"{name}: {r['succeeded']:.0f} succeeded in {r['seconds']:.1f} virtual s "
            f"(ideal {r['ideal']:.1f} s), {r['refused']:.0f} of {r['requests']:.0f} requests "
            "answered 429"
        )
    print(f"RESULT ratelimit_efficiency {adaptive['efficiency']:.3f}")
    print(f"RESULT ratelimit_429_share {adaptive['share_429']:.3f}")
    print(f"RESULT ratelimit_efficiency_fixed {fixed['efficiency']:.3f}")
    print(f"RESULT ratelimit_429_share_fixed {fixed['share_429']:.3f}")


if __name__ == "__main__":
    main()
