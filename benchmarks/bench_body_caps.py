"""Hostile answers against the HTTP layer's body caps: memory and event-loop stall.

Each case runs in a fresh subprocess (so the RSS peak is its own): a loopback server
answers one ``HttpClient.json()`` call with a gzip bomb, an endless chunked body, or a
503 whose body is a gzip bomb. Printed per case: the error, RSS before and at the peak
(``ru_maxrss``), the longest event-loop stall seen by a 1 ms ticker (and, for comparison,
the longest in the second before the request, with nothing else running: the machine's
own noise), the wall time, and the bytes the server got to send.

    python benchmarks/bench_body_caps.py            # bombs of 512 MiB and 1 GiB inflated
    python benchmarks/bench_body_caps.py --quick    # 256 MiB (still twice the JSON cap)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time

MIB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


async def _case(mode: str, inflated: int) -> dict[str, object]:
    from nbbatch.providers._http import HttpClient
    from nbbatch.testing._hostile import HostileServer, gzip_bomb

    if mode != "endless":
        gzip_bomb(inflated)  # made before measuring
    stall = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal stall
        while not stop.is_set():
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            stall = max(stall, time.perf_counter() - began - 0.001)

    async with (
        HostileServer(
            mode,  # type: ignore[arg-type]
            inflated=inflated,
            endless_stop=inflated,
            status=503,
        ) as server,
        HostileServer("bomb", inflated=16) as warm,
    ):
        client = HttpClient("bench", server.url)
        # a first request pays for imports and the connection pool: not the body's cost
        with contextlib.suppress(Exception):
            await client.json("POST", warm.url + "/warm-up", json={})
        tick = asyncio.create_task(ticker())
        # the machine's own noise: the ticker alone, for as long as a case takes
        await asyncio.sleep(1.0)
        idle_stall, stall = stall, 0.0
        before = _rss()
        began = time.perf_counter()
        try:
            await client.json("POST", "/answer", json={})
            error = "accepted"
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:160]}"
        wall = time.perf_counter() - began
        stop.set()
        await tick
        await client.aclose()
        sent = server.sent
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "mode": mode,
        "inflated_mib": inflated // MIB,
        "rss_before_mib": round(before / MIB, 1),
        "rss_growth_mib": round((peak - before) / MIB, 1),
        "stall_ms": round(stall * 1000, 1),
        "idle_stall_ms": round(idle_stall * 1000, 1),
        "wall_s": round(wall, 2),
        "sent_mib": round(sent / MIB, 1),
        "error": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", nargs=2, metavar=("MODE", "INFLATED"))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(asyncio.run(_case(args.case[0], int(args.case[1])))))
        return
    sizes = [256 * MIB] if args.quick else [512 * MIB, 1024 * MIB]
    for size in sizes:
        for mode in ("bomb", "endless", "error"):
            out = subprocess.run(
                [sys.executable, __file__, "--case", mode, str(size)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            name = f"{mode}_{result['inflated_mib']}MiB"
            for key in ("rss_growth_mib", "stall_ms", "idle_stall_ms", "wall_s", "sent_mib"):
                print(f"RESULT {name}_{key} {result[key]}")
            print(f"  {name}: {result['error']}")


if __name__ == "__main__":
    main()
