"""Load with faults: 10,000 tasks, 5 % HTTP 500 and 2 % HTTP 429 (Retry-After), concurrency 32.

The OpenAI adapter runs against ``FakeOpenAI`` over real loopback HTTP, the fake in its
own process (so its work does not count as event-loop lag here). Which attempt fails is
decided by a hash of (seed, prompt, attempt number), so the outcome the retry budget
predicts -- 2 retries: a task fails when its first three attempts all fail -- is known
exactly in advance and compared with what the journal holds.

Figures, as ``RESULT <name> <value>``: tasks, final-state tasks, succeeded, failed,
predicted failures, attempts (and predicted), requests the server saw, wall time, RSS at
start and end (MB), peak RSS, event-loop lag p50/p99/max (ms; goal p99 < 50 ms) and, for
reference, the p99 lag of the same probe on an idle loop just before (the machine's own
scheduling delay).

Run::

    python benchmarks/load_faults.py             # 10,000 tasks
    python benchmarks/load_faults.py --quick     # 400 tasks (smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nbbatch import Batch, Params, RetryPolicy, Task, Workspace
from nbbatch.providers import OpenAIProvider
from nbbatch.testing import FakeOpenAI, Fault

P_500 = 0.05
P_429 = 0.02
RETRY_AFTER = 0.05  # seconds the 429s ask for
KEY = "test-key-load-0001"


def fate(seed: int, prompt: str, attempt: int) -> int:
    """HTTP status the fake answers for ``prompt``'s ``attempt``-th request."""
    digest = hashlib.sha256(f"{seed}:{prompt}:{attempt}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < P_500:
        return 500
    if u < P_500 + P_429:
        return 429
    return 200


def predict(seed: int, prompts: list[str], max_retries: int) -> tuple[set[str], int]:
    """(prompts that must fail, total attempts) under the retry budget."""
    failed: set[str] = set()
    attempts = 0
    for prompt in prompts:
        for attempt in range(1, max_retries + 2):
            attempts += 1
            if fate(seed, prompt, attempt) == 200:
                break
        else:
            failed.add(prompt)
    return failed, attempts


def serve(seed: int) -> None:
    """Child process: a FakeOpenAI whose answers follow :func:`fate`."""

    class FaultyOpenAI(FakeOpenAI):
        def __init__(self) -> None:
            super().__init__(api_key=KEY, render="fast")
            self.seen: dict[str, int] = {}

        def _take_fault(self, path: str) -> Fault | None:
            if path != "/v1/images/generations":
                return None
            # The base class has just logged this request, with nothing awaited since.
            prompt = str(json.loads(self.requests[-1].body).get("prompt", ""))
            self.requests.clear()  # keep memory flat over 10,000+ requests
            self.seen[prompt] = attempt = self.seen.get(prompt, 0) + 1
            status = fate(seed, prompt, attempt)
            if status == 500:
                return Fault.status_code(500)
            if status == 429:
                return Fault.status_code(429, headers={"retry-after": f"{RETRY_AFTER}"})
            return None

    with FaultyOpenAI() as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent is done
        print(sum(server.seen.values()), flush=True)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - not Linux


async def _lag_probe(samples: list[float], stop: asyncio.Event, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        planned = loop.time() + interval
        await asyncio.sleep(interval)
        samples.append(max(0.0, loop.time() - planned))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def _run(base_url: str, prompts: list[str], concurrency: int, ws_dir: Path) -> dict[str, Any]:
    policy = RetryPolicy()  # the default budget: 2 retries, 0.5 s doubling backoff
    # The same probe on an idle loop first: on a shared machine the scheduler alone
    # delays a 10 ms sleep; this is the floor the figure under load compares with.
    idle: list[float] = []
    idle_stop = asyncio.Event()
    idle_probe = asyncio.ensure_future(_lag_probe(idle, idle_stop))
    await asyncio.sleep(2.0)
    idle_stop.set()
    await idle_probe
    with Workspace(ws_dir) as ws:
        batch = Batch.create([Task(p, params=Params(size="64x64")) for p in prompts], workspace=ws)
        provider = OpenAIProvider(api_key=KEY, base_url=base_url)
        samples: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.ensure_future(_lag_probe(samples, stop))
        started = time.monotonic()
        try:
            await batch.run(
                provider, concurrency=concurrency, concurrency_cap=concurrency, retry=policy
            )
        finally:
            wall = time.monotonic() - started
            stop.set()
            await probe
            await provider.aclose()
        reloaded = Batch.load(batch.id, ws)  # what the journal holds, not memory
        return {
            "wall": wall,
            "lag": samples,
            "idle_lag": idle,
            "max_retries": policy.max_retries,
            "tasks": {t.prompt: (t.status.value, t.attempts) for t in reloaded.tasks},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--quick", action="store_true", help="400 tasks (a smoke run)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.seed)
        return
    count = 400 if args.quick else args.tasks
    prompts = [f"load test image {i}" for i in range(count)]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--seed", str(args.seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        base_url = server.stdout.readline().strip()
        rss_start = _rss_mb()
        with tempfile.TemporaryDirectory(prefix="nbbatch-load-") as tmp:
            result = asyncio.run(_run(base_url, prompts, args.concurrency, Path(tmp) / "ws"))
        rss_end = _rss_mb()
        server.stdin.close()
        requests = int(server.stdout.readline().strip() or -1)
    finally:
        if server.poll() is None:
            server.wait(30)
        server.stdout.close()

    predicted_failed, predicted_attempts = predict(args.seed, prompts, result["max_retries"])
    statuses = result["tasks"]
    final = {"succeeded", "failed", "cancelled", "interrupted"}
    failed = {p for p, (s, _) in statuses.items() if s == "failed"}
    attempts = sum(a for _, a in statuses.values())
    lag_ms = [x * 1000 for x in result["lag"]]
    idle_ms = [x * 1000 for x in result["idle_lag"]]
    figures: dict[str, Any] = {
        "load_tasks": count,
        "load_final_state_tasks": sum(s in final for s, _ in statuses.values()),
        "load_succeeded": sum(s == "succeeded" for s, _ in statuses.values()),
        "load_failed": len(failed),
        "load_failed_predicted": len(predicted_failed),
        "load_failed_as_predicted": int(failed == predicted_failed),
        "load_attempts": attempts,
        "load_attempts_predicted": predicted_attempts,
        "load_server_requests": requests,
        "load_wall_seconds": f"{result['wall']:.1f}",
        "load_rss_start_mb": f"{rss_start:.0f}",
        "load_rss_end_mb": f"{rss_end:.0f}",
        "load_rss_peak_mb": f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
        "load_loop_lag_p50_ms": f"{statistics.median(lag_ms) if lag_ms else 0.0:.1f}",
        "load_loop_lag_p99_ms": f"{_percentile(lag_ms, 0.99):.1f}",
        "load_loop_lag_max_ms": f"{max(lag_ms, default=0.0):.1f}",
        "load_idle_loop_lag_p99_ms": f"{_percentile(idle_ms, 0.99):.1f}",
    }
    for name, value in figures.items():
        print(f"RESULT {name} {value}")
    ok = (
        figures["load_final_state_tasks"] == count
        and failed == predicted_failed
        and attempts == predicted_attempts == requests
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
