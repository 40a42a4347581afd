"""Throughput benchmark: client CPU per task for realistic answers, against fair baselines.

A minimal asyncio HTTP/1.1 server in its own process (pinned to one core where the OS
allows) answers ``POST /images/generations`` like the OpenAI Images API after
``--latency`` seconds. Its payload is encoded once per size; each answer is made distinct
by a small PNG text chunk placed so that only its first 84 base64 characters change, so
the server spends next to no CPU per answer and cannot slow the measured client.

Per payload size (a 1024x1024 PNG of ~1.3 MB, and a 64x64 PNG) three clients send the
same requests, interleaved in every round so that drift hits them alike:

* **nbbatch** — ``Batch.create`` + ``await batch.run(OpenAIProvider(...))``: the real
  runner, journal, provider, guarded check, metadata, durable files;
* **hand-written** — ``asyncio.gather`` + ``Semaphore`` + one ``httpx.AsyncClient`` doing
  the same durable work with the same decoders: a journal row committed before the
  request, the JSON parsed and the base64 decoded, the image checked (magic bytes, header
  pixel cap, the PNG plug-in's ``verify()``), sha256, temp file + fsync + rename, and the
  image row committed with the status;
* **bare** — the same httpx loop that only parses and decodes (nothing stored).

The *physical limit* is measured in the same run: base64 decode, sha256, one
write + fsync + rename and one commit per image, in a plain loop without any HTTP.

CPU time is the whole client process's (``getrusage``: every thread, user + system);
the event-loop thread's own CPU is printed too. Loop lag is sampled by a 10 ms ticker
while the 1024² answers arrive (32 at a time by default), with every garbage
collection in that time, so a late tick can be told apart from a collection, and the
kernel's account of each late tick (the loop thread's CPU, its wait for a core, the
rest). RSS growth over the first nbbatch run of 1024² images is the allocator's
high-water mark for the answers in flight; what stays is the slope over later runs,
read after a collection and a ``malloc_trim`` (see :func:`rss_slope`).
Workspaces are removed only at the end, so one run's clean-up never slows the next.

    python benchmarks/bench_throughput.py                 # 3 rounds, 1,000 + 2,000 tasks
    python benchmarks/bench_throughput.py --rounds 1      # one round
    python benchmarks/bench_throughput.py --quick         # CI smoke run (not a measurement)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import gc
import hashlib
import io
import json
import multiprocessing
import os
import resource
import shutil
import socket
import sqlite3
import ssl
import statistics
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MODEL = "gpt-image-1"
KEY = "test-key-bench-not-a-real-key"
PNG_SIG = b"\x89PNG\r\n\x1a\n"
DIGITS = 16  # 8 + 25 (IHDR) + 14 + 16 = 63 bytes: a whole number of base64 groups


# ----------------------------------------------------------------- payloads
def make_png(side: int) -> bytes:
    """A picture that compresses like a real generation (~1.3 MB at 1024²)."""
    from PIL import Image, ImageFilter

    grad = Image.linear_gradient("L").resize((side, side))
    noise = Image.effect_noise((side, side), 32).filter(ImageFilter.GaussianBlur(0.8))
    red = Image.blend(grad, noise, 0.25)
    green = Image.blend(grad.rotate(90), noise.rotate(180), 0.25)
    blue = Image.blend(grad.rotate(45), noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.25)
    img = Image.merge("RGB", (red, green, blue))
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def text_chunk(n: int) -> bytes:
    payload = b"n\x00" + str(n).zfill(DIGITS).encode()
    crc = zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + b"tEXt" + payload + struct.pack(">I", crc)


@dataclass
class Payload:
    """One answer body, split so that only the first base64 group run changes."""

    head: bytes  # PNG signature + IHDR
    b64_rest: bytes  # base64 of everything after IHDR, encoded once

    @classmethod
    def of(cls, png: bytes) -> Payload:
        import base64

        assert png[12:16] == b"IHDR"
        head, rest = png[:33], png[33:]
        assert (len(head) + len(text_chunk(0))) % 3 == 0
        return cls(head, base64.b64encode(rest))

    def parts(self, n: int) -> list[bytes]:
        import base64

        first = base64.b64encode(self.head + text_chunk(n))
        return [b'{"created":1700000000,"data":[{"b64_json":"', first, self.b64_rest, b'"}]}']

    def png(self, n: int) -> bytes:
        import base64

        return base64.b64decode(self.b64(n))

    def b64(self, n: int) -> bytes:
        return b"".join(self.parts(n)[1:3])


# ----------------------------------------------------------------- the server
def _serve(conn: Any, latency: float, sides: list[int], cpu: int | None) -> None:
    """Child process: a keep-alive HTTP/1.1 server until the parent closes the pipe."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
    payloads = {s: Payload.of(make_png(s)) for s in sides}
    counter = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length)) if length else {}
                side = int(str(body.get("size", "64x64")).split("x")[0])
                payload = payloads.get(side) or payloads[min(payloads)]
                await asyncio.sleep(latency)
                counter[0] += 1
                parts = payload.parts(counter[0])
                size = sum(len(p) for p in parts)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n" % size
                )
                writer.writelines(parts)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        conn.send(f"http://127.0.0.1:{port}/v1")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _wait_for_parent, conn)
        server.close()

    asyncio.run(main())


def _wait_for_parent(conn: Any) -> None:
    with contextlib.suppress(EOFError):
        conn.recv()


class Server:
    def __init__(self, latency: float, sides: list[int], cpu: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, latency, sides, cpu), daemon=True)

    def __enter__(self) -> str:
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("the fake server process did not start")
        return str(self._conn.recv())

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()


# ----------------------------------------------------------------- measuring
@dataclass(frozen=True)
class LateTick:
    """Where one late tick's time went, from the kernel's per-thread accounting (ms).

    Over the tick's window (10 ms asleep + the lag) the loop thread was on a core
    (``cpu``), runnable but waiting for one (``queued``: another thread or process had
    it), or neither (``off``): asleep in the loop's select as it should be, or blocked,
    most likely on the GIL held by a worker thread. ``steal`` is the machine's steal
    time over the window (a hypervisor running something else; 10 ms resolution).
    """

    lag: float
    cpu: float
    queued: float
    steal: float

    @property
    def window(self) -> float:
        return self.lag + 10.0

    @property
    def off(self) -> float:
        return max(0.0, self.window - self.cpu - self.queued)


def sched_times() -> tuple[float, float, float] | None:
    """(loop-thread CPU, its run-queue wait, machine steal), in ms; None off Linux."""
    try:
        with open("/proc/thread-self/schedstat") as fh:
            cpu, queued = fh.read().split()[:2]
        with open("/proc/stat") as fh:
            steal = fh.readline().split()[8]
    except (OSError, IndexError, ValueError):
        return None
    return int(cpu) / 1e6, int(queued) / 1e6, int(steal) * 1000 / os.sysconf("SC_CLK_TCK")


def late_line(s: Sample) -> str:
    if not s.late:
        return "no tick late by more than 50 ms"

    def total(attr: str) -> str:
        return f"{sum(getattr(t, attr) for t in s.late):.0f}"

    return (
        f"{len(s.late)} ticks late > 50 ms, {total('window')} ms of windows: loop CPU "
        f"{total('cpu')}, waiting for a core {total('queued')}, off-core (asleep, GIL or "
        f"blocked) {total('off')}, machine steal {total('steal')}"
    )


def process_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def live_rss_mb() -> float:
    """RSS after a collection and after glibc hands its free heap pages back to the OS.

    Without the trim, RSS follows the allocator's high-water marks: each worker thread
    has its own malloc arena, and whether the 1-2 MB buffers of the answers in flight
    were freed back or kept varied the readings by 30-50 MB from one run to the next,
    far more than any leak the slope is there to find.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc only; elsewhere RSS as it is
    return rss_mb()


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@dataclass
class Sample:
    cpu_ms: float  # process CPU per task
    loop_ms: float  # event-loop thread CPU per task
    wall: float
    lag: list[float] = field(default_factory=list)
    rss_growth: float = 0.0
    busy: list[float] = field(default_factory=list)  # loop-thread CPU per loop pass (ms)
    gc_pauses: list[tuple[float, float, int]] = field(default_factory=list)  # see GcProbe
    lag_at: list[float] = field(default_factory=list)  # when each lag sample ended
    late: list[LateTick] = field(default_factory=list)  # ticks late by more than 50 ms

    def spikes_in_gc(self, over_ms: float = 50.0) -> tuple[int, int]:
        """(ticks late by more than ``over_ms``, how many of them a collection overlapped)."""
        late = [
            (end - lag / 1000, end)
            for lag, end in zip(self.lag, self.lag_at, strict=True)
            if lag > over_ms
        ]
        hit = sum(
            any(g0 < t1 and g0 + ms / 1000 > t0 for g0, ms, _ in self.gc_pauses) for t0, t1 in late
        )
        return len(late), hit


class GcProbe:
    """Every garbage collection while it is active: (start, wall ms, generation).

    A collection runs on whichever thread allocated past the threshold and holds the GIL
    throughout, so a long one stalls the event loop even when it runs on a worker
    thread. Recording them lets a lag spike be told apart from a slow callback.
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            now = time.perf_counter()
            self.pauses.append((self._t0, (now - self._t0) * 1000, info["generation"]))

    def __enter__(self) -> GcProbe:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


class BusyProbe:
    """The event-loop thread's own CPU time per pass of the loop (ms).

    The ticker's lag is wall time: on a shared machine it includes the time the thread
    waited for a core. CPU time per pass is what the loop's own callbacks cost, the
    part of the lag the code under test decides (a pass runs every ready callback
    before any timer, so a long pass delays every timer behind it).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.samples: list[float] = []
        self._loop: Any = loop
        self._orig = loop._run_once  # type: ignore[attr-defined]

    def __enter__(self) -> BusyProbe:
        orig, samples, clock = self._orig, self.samples, time.thread_time

        def run_once() -> None:
            t0 = clock()
            orig()
            samples.append((clock() - t0) * 1000)

        self._loop._run_once = run_once
        return self

    def __exit__(self, *exc: object) -> None:
        del self._loop._run_once  # back to the class's method


async def measured(work: Callable[[], Awaitable[None]], tasks: int, *, lag: bool = False) -> Sample:
    gc.collect()
    samples: list[float] = []
    ends: list[float] = []
    stop = asyncio.Event()

    late: list[LateTick] = []

    async def ticker() -> None:
        while not stop.is_set():
            t0, before = time.perf_counter(), sched_times()
            await asyncio.sleep(0.01)
            ends.append(time.perf_counter())
            samples.append((ends[-1] - t0 - 0.01) * 1000)
            after = sched_times() if samples[-1] > 50 else None
            if before is not None and after is not None:
                cpu, queued, steal = (b - a for a, b in zip(before, after, strict=True))
                late.append(LateTick(samples[-1], cpu, queued, steal))

    tick = asyncio.ensure_future(ticker()) if lag else None
    probe = BusyProbe(asyncio.get_running_loop())
    rss0, cpu0, loop0, wall0 = rss_mb(), process_cpu(), time.thread_time(), time.perf_counter()
    gcs = GcProbe()
    if lag:
        with probe, gcs:
            await work()
    else:
        await work()
    wall = time.perf_counter() - wall0
    cpu, loop_cpu = process_cpu() - cpu0, time.thread_time() - loop0
    stop.set()
    if tick is not None:
        await tick
    gc.collect()
    return Sample(
        cpu * 1000 / tasks,
        loop_cpu * 1000 / tasks,
        wall,
        samples,
        rss_mb() - rss0,
        probe.samples,
        gcs.pauses,
        ends,
        late,
    )


def gc_line(s: Sample) -> str:
    late, in_gc = s.spikes_in_gc()
    worst = max(s.gc_pauses, key=lambda p: p[1], default=(0.0, 0.0, 0))
    return (
        f"{len(s.gc_pauses)} collections (longest {worst[1]:.0f} ms, generation {worst[2]}), "
        f"{late} ticks late > 50 ms of which {in_gc} overlapped a collection"
    )


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ----------------------------------------------------------------- the clients
def decoders() -> tuple[Callable[[str], bytes], Callable[[bytes], Any]]:
    """The decoders nbbatch uses, so the baselines pay the same for the same work."""
    from nbbatch.providers._codec import b64decode, loads

    return b64decode, loads


def prompts(n: int, tag: str) -> list[str]:
    return [f"benchmark {tag} image {i}: a lighthouse at dusk" for i in range(n)]


def check_png(data: bytes, max_pixels: int = 40_000_000) -> None:
    """The cheap check: magic bytes, header pixel cap, the PNG plug-in's verify()."""
    from PIL import Image

    if not data.startswith(PNG_SIG) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    w, h = struct.unpack(">II", data[16:24])
    if w * h > max_pixels:
        raise ValueError("too many pixels")
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        im.verify()


class Durable:
    """The journal and image folder of the hand-written loop (same pragmas as nbbatch)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.db = sqlite3.connect(
            folder / "db.sqlite3", isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE tasks(id INTEGER PRIMARY KEY, prompt TEXT, status TEXT, attempts INT)"
        )
        self.db.execute("CREATE TABLE images(task INTEGER, sha TEXT, w INT, h INT)")
        self.made: set[str] = set()

    def write(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        sub = self.folder / sha[:2]
        if sha[:2] not in self.made:
            sub.mkdir(exist_ok=True)
            self.made.add(sha[:2])
        tmp = sub / f".tmp-{sha}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, sub / f"{sha}.png")
        return sha

    def commit(self, sql: str, *rows: tuple[Any, ...]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        for row in rows:
            self.db.execute(sql, row)
        self.db.execute("COMMIT")


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for every baseline client, as nbbatch shares one (loading the CA
    bundle costs 30-130 ms here, which each run would otherwise pay inside its timing)."""
    return httpx.create_ssl_context()


def client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {KEY}", "Accept": "application/json"},
        limits=limits,
        timeout=120,
        verify=tls(),
    )


async def run_handwritten(base_url: str, n: int, side: int, concurrency: int, folder: Path) -> None:
    b64decode, loads = decoders()
    store = Durable(folder)
    names = prompts(n, folder.name)
    store.commit("INSERT INTO tasks VALUES (?,?,'idle',0)", *enumerate(names))
    sem = asyncio.Semaphore(concurrency)
    size = f"{side}x{side}"

    def save(i: int, data: bytes) -> str:
        check_png(data)
        return store.write(data)

    async with client(base_url, concurrency) as http:

        async def one(i: int, prompt: str) -> None:
            async with sem:
                store.commit("UPDATE tasks SET status='running', attempts=1 WHERE id=?", (i,))
                r = await http.post(
                    "/images/generations",
                    json={"model": MODEL, "prompt": prompt, "n": 1, "size": size},
                )
                r.raise_for_status()
                data = b64decode(loads(r.content)["data"][0]["b64_json"])
            sha = await asyncio.to_thread(save, i, data)
            store.db.execute("BEGIN IMMEDIATE")
            store.db.execute("INSERT INTO images VALUES (?,?,?,?)", (i, sha, side, side))
            store.db.execute("UPDATE tasks SET status='succeeded' WHERE id=?", (i,))
            store.db.execute("COMMIT")

        await asyncio.gather(*(one(i, p) for i, p in enumerate(names)))
    store.db.close()


async def run_bare(base_url: str, n: int, side: int, concurrency: int, tag: str) -> None:
    b64decode, loads = decoders()
    sem = asyncio.Semaphore(concurrency)
    size = f"{side}x{side}"
    async with client(base_url, concurrency) as http:

        async def one(prompt: str) -> int:
            async with sem:
                r = await http.post(
                    "/images/generations",
                    json={"model": MODEL, "prompt": prompt, "n": 1, "size": size},
                )
                r.raise_for_status()
                return len(b64decode(loads(r.content)["data"][0]["b64_json"]))

        sizes = await asyncio.gather(*(one(p) for p in prompts(n, tag)))
    assert all(sizes)


async def run_nbbatch(
    base_url: str, n: int, side: int, concurrency: int, folder: Path, *, thumbs: bool = False
) -> None:
    """One nbbatch run; with ``thumbs``, also a 256 px thumbnail per finished image.

    The thumbnails are asked for the way the studio asks for them: from an event
    subscriber on the loop, through ``ThumbnailCache.aget`` (rendered on its small
    pool), while the run goes on; the run counts as done when they are all made.
    """
    from nbbatch import Batch, Params, TaskStatus, Workspace
    from nbbatch.events import TaskSucceeded
    from nbbatch.images import ThumbnailCache
    from nbbatch.providers import OpenAIProvider

    ws = Workspace(folder)
    provider = OpenAIProvider(api_key=KEY, base_url=base_url, model=MODEL)
    made: list[asyncio.Future[Path]] = []
    try:
        batch = Batch.create(
            prompts(n, folder.name), workspace=ws, params=Params(size=f"{side}x{side}")
        )
        if thumbs:
            cache = ThumbnailCache(ws)

            def on_event(event: object) -> None:
                if isinstance(event, TaskSucceeded):
                    made.extend(asyncio.ensure_future(cache.aget(im, 256)) for im in event.images)

            batch.subscribe(on_event)
        await batch.run(provider, concurrency=concurrency, concurrency_cap=max(10, concurrency))
        bad = [t for t in batch.tasks if t.status is not TaskStatus.SUCCEEDED]
        if bad:
            raise RuntimeError(f"{len(bad)} tasks did not succeed, e.g. {bad[0].error}")
        if thumbs:
            paths = await asyncio.gather(*made)
            if len(paths) != n or not all(p.stat().st_size > 0 for p in paths):
                raise RuntimeError(f"{len(paths)} thumbnails made for {n} images")
    finally:
        await provider.aclose()
        ws.close()


def physical_limit(payload: Payload, n: int, folder: Path) -> float:
    """CPU per image of the unavoidable work, no HTTP: decode, hash, durable file, commit."""
    b64decode, _ = decoders()
    texts = [payload.b64(i).decode() for i in range(n)]
    store = Durable(folder)
    cpu0 = process_cpu()
    for i, text in enumerate(texts):
        data = b64decode(text)
        sha = store.write(data)
        store.commit("INSERT INTO images VALUES (?,?,?,?)", (i, sha, 0, 0))
    cpu = process_cpu() - cpu0
    store.db.close()
    return cpu * 1000 / n


# ----------------------------------------------------------------- main
async def main(args: argparse.Namespace) -> int:
    from nbbatch.providers import _codec

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[-1] if len(cpus) > 1 else None
    if server_cpu is not None:
        # The client keeps the other cores; the server has its own.
        os.sched_setaffinity(0, set(cpus) - {server_cpu})
    sizes = {1024: args.tasks_1024, 64: args.tasks_64}
    print(
        f"rounds={args.rounds} tasks={sizes} concurrency={args.concurrency} "
        f"latency={args.latency}s server_cpu={server_cpu} python={sys.version.split()[0]} "
        f"fast_base64={_codec.FAST_BASE64} fast_json={_codec.FAST_JSON}"
    )
    root = Path(tempfile.mkdtemp(prefix="nbbatch-throughput-", dir=args.workdir))
    results: dict[tuple[str, int], list[Sample]] = {}
    limits: list[float] = []
    try:
        with Server(args.latency, list(sizes), server_cpu) as base_url:
            payload = Payload.of(make_png(1024))
            print(f"1024² payload: {len(payload.png(0)) / 1e6:.2f} MB PNG")
            # warm-up: imports, connections, page cache
            await run_nbbatch(base_url, 8, 64, 4, root / "warm-n")
            await run_handwritten(base_url, 8, 64, 4, root / "warm-h")
            for r in range(args.rounds):
                limits.append(physical_limit(payload, args.limit_tasks, root / f"limit-{r}"))
                print(f"round {r + 1}: physical limit 1024²: {limits[-1]:.2f} ms CPU per image")
                for side, per_size in sizes.items():
                    modes = ["nbbatch", "handwritten", "bare"]
                    if side == 1024 and args.tasks_thumbs:
                        modes.append("thumbs")
                    modes = modes[r % len(modes) :] + modes[: r % len(modes)]
                    for mode in modes:
                        tag = f"{mode}-{side}-{r}"
                        job: Callable[[], Awaitable[None]]
                        n = args.tasks_thumbs if mode == "thumbs" else per_size
                        if mode in ("nbbatch", "thumbs"):

                            def job(
                                tag: str = tag, side: int = side, n: int = n, mode: str = mode
                            ) -> Any:
                                return run_nbbatch(
                                    base_url,
                                    n,
                                    side,
                                    args.concurrency,
                                    root / tag,
                                    thumbs=mode == "thumbs",
                                )
                        elif mode == "handwritten":

                            def job(tag: str = tag, side: int = side, n: int = n) -> Any:
                                return run_handwritten(
                                    base_url, n, side, args.concurrency, root / tag
                                )
                        else:

                            def job(tag: str = tag, side: int = side, n: int = n) -> Any:
                                return run_bare(base_url, n, side, args.concurrency, tag)

                        s = await measured(job, n, lag=side == 1024)
                        results.setdefault((mode, side), []).append(s)
                        extra = (
                            f", lag p50/p99/max {pct(s.lag, 0.5):.0f}/{pct(s.lag, 0.99):.0f}/"
                            f"{max(s.lag, default=0):.0f} ms, loop CPU per pass p99/max "
                            f"{pct(s.busy, 0.99):.1f}/{max(s.busy, default=0):.1f} ms, "
                            f"{gc_line(s)}; {late_line(s)}"
                            if s.lag
                            else ""
                        )
                        print(
                            f"round {r + 1}: {mode:11} {side:4}px  {s.cpu_ms:6.2f} ms CPU/task "
                            f"(loop thread {s.loop_ms:5.2f}), wall {s.wall:6.2f} s{extra}"
                        )
            rss = await rss_slope(base_url, args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(mode: str, side: int, attr: str = "cpu_ms") -> float:
        return float(statistics.median(getattr(s, attr) for s in results[(mode, side)]))

    def ratios(side: int) -> list[float]:
        return [
            a.cpu_ms / b.cpu_ms
            for a, b in zip(results[("nbbatch", side)], results[("handwritten", side)], strict=True)
        ]

    limit = statistics.median(limits)
    for side in sizes:
        for mode in ("nbbatch", "handwritten", "bare", "thumbs"):
            if (mode, side) not in results:
                continue
            cpus_ = [s.cpu_ms for s in results[(mode, side)]]
            print(
                f"{mode:11} {side:4}px: CPU/task median {med(mode, side):.2f} ms "
                f"(range {min(cpus_):.2f}-{max(cpus_):.2f}), loop thread "
                f"{med(mode, side, 'loop_ms'):.2f} ms, wall {med(mode, side, 'wall'):.2f} s"
            )
        rs = ratios(side)
        print(f"ratio nbbatch/hand-written {side}px per round: {', '.join(f'{x:.2f}' for x in rs)}")
    nb_lag = [x for s in results[("nbbatch", 1024)] for x in s.lag]
    for mode in ("handwritten", "bare", "thumbs"):
        if (mode, 1024) not in results:
            continue
        lag = [x for s in results[(mode, 1024)] for x in s.lag]
        busy = [x for s in results[(mode, 1024)] for x in s.busy]
        print(
            f"loop lag {mode} 1024²: p50 {pct(lag, 0.5):.1f} ms, p99 {pct(lag, 0.99):.1f} ms, "
            f"max {max(lag, default=0):.1f} ms; loop CPU per pass p99 {pct(busy, 0.99):.1f} "
            f"ms, max {max(busy, default=0):.1f} ms"
        )
    for mode in ("nbbatch", "handwritten", "bare", "thumbs"):
        if (mode, 1024) in results:
            every = Sample(0, 0, 0, late=[t for s in results[(mode, 1024)] for t in s.late])
            print(f"late ticks {mode} 1024²: {late_line(every)}")
    nb_busy = [x for s in results[("nbbatch", 1024)] for x in s.busy]
    # The first run grows RSS to the allocator's high-water mark for the answers in
    # flight; what stays per image is the slope measured after a warm-up (rss_slope).
    first_growth = results[("nbbatch", 1024)][0].rss_growth
    print(f"RESULT cpu_ms_per_task_1024 {med('nbbatch', 1024):.3f}")
    print(f"RESULT loop_cpu_ms_per_task_1024 {med('nbbatch', 1024, 'loop_ms'):.3f}")
    print(f"RESULT handwritten_cpu_ms_per_task_1024 {med('handwritten', 1024):.3f}")
    print(f"RESULT bare_cpu_ms_per_task_1024 {med('bare', 1024):.3f}")
    print(f"RESULT limit_cpu_ms_per_task_1024 {limit:.3f}")
    print(f"RESULT ratio_vs_handwritten_1024 {statistics.median(ratios(1024)):.3f}")
    print(f"RESULT ratio_vs_limit_1024 {med('nbbatch', 1024) / limit:.3f}")
    print(f"RESULT cpu_ms_per_task_64 {med('nbbatch', 64):.3f}")
    print(f"RESULT handwritten_cpu_ms_per_task_64 {med('handwritten', 64):.3f}")
    print(f"RESULT ratio_vs_handwritten_64 {statistics.median(ratios(64)):.3f}")
    print(f"RESULT loop_lag_p50_ms {pct(nb_lag, 0.5):.1f}")
    print(f"RESULT loop_lag_p99_ms {pct(nb_lag, 0.99):.1f}")
    print(f"RESULT loop_lag_max_ms {max(nb_lag, default=0):.1f}")
    print(f"RESULT loop_pass_cpu_p99_ms {pct(nb_busy, 0.99):.1f}")
    print(f"RESULT loop_pass_cpu_max_ms {max(nb_busy, default=0):.1f}")
    if ("thumbs", 1024) in results:
        th_lag = [x for s in results[("thumbs", 1024)] for x in s.lag]
        th_busy = [x for s in results[("thumbs", 1024)] for x in s.busy]
        print(f"RESULT cpu_ms_per_task_1024_thumbs {med('thumbs', 1024):.3f}")
        print(f"RESULT loop_lag_p99_ms_thumbs {pct(th_lag, 0.99):.1f}")
        print(f"RESULT loop_lag_max_ms_thumbs {max(th_lag, default=0):.1f}")
        print(f"RESULT loop_pass_cpu_max_ms_thumbs {max(th_busy, default=0):.1f}")
    print(f"RESULT rss_mb_first_run_1024 {first_growth:.1f}")
    print(f"RESULT rss_mb_per_1000_images {rss:.1f}")
    return 0


async def rss_slope(base_url: str, args: argparse.Namespace, root: Path) -> float:
    """RSS growth per 1,000 1024² images, after a warm-up run, as a least-squares slope.

    The warm-up brings the allocator to its high-water mark for the answers in flight;
    then ``--rss-runs`` runs of nbbatch (fresh workspaces, kept to the end like every
    other run) add ``--rss-images`` images in all, RSS is read after each (see
    :func:`live_rss_mb`) and the slope over the images made is what stays per image.
    """
    await run_nbbatch(base_url, args.rss_warmup, 1024, args.concurrency, root / "rss-warm")
    per_run = max(1, args.rss_images // args.rss_runs)
    points = [(0, live_rss_mb())]
    for i in range(args.rss_runs):
        await run_nbbatch(base_url, per_run, 1024, args.concurrency, root / f"rss-{i}")
        points.append(((i + 1) * per_run, live_rss_mb()))
    xs, ys = [float(x) for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    print(
        f"RSS after a {args.rss_warmup}-image warm-up, then every {per_run} images: "
        + ", ".join(f"{y:.0f}" for y in ys)
        + f" MB -> {slope * 1000:.1f} MB per 1,000 images"
    )
    return slope * 1000


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks-1024", type=int, default=1000)
    ap.add_argument("--tasks-64", type=int, default=2000)
    ap.add_argument("--limit-tasks", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.1, help="server latency per request (s)")
    ap.add_argument("--workdir", default=None, help="where the temporary workspaces go")
    ap.add_argument(
        "--tasks-thumbs",
        type=int,
        default=300,
        help="1024² tasks of the run that also makes a thumbnail per image (0: skip it)",
    )
    ap.add_argument("--rss-warmup", type=int, default=200, help="images before RSS is read")
    ap.add_argument("--rss-images", type=int, default=1000, help="images the RSS slope spans")
    ap.add_argument("--rss-runs", type=int, default=4, help="RSS readings after the warm-up")
    ap.add_argument("--quick", action="store_true", help="tiny CI smoke run (not a measurement)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.tasks_1024, args.tasks_64, args.limit_tasks = 1, 32, 64, 8
        args.rss_warmup, args.rss_images, args.rss_runs, args.tasks_thumbs = 16, 32, 2, 32
        args.latency = 0.02
    counts = (args.rounds, args.tasks_1024, args.tasks_64, args.limit_tasks, args.concurrency)
    if min(*counts, args.rss_warmup, args.rss_images, args.rss_runs) < 1:
        ap.error("counts must be >= 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
