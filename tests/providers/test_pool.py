"""The pool provider: load spreading, per-endpoint caps, health, fail-over."""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from nbbatch import (
    Batch,
    Params,
    RetryPolicy,
    TaskStatus,
    Workspace,
)
from nbbatch.errors import (
    ConfigError,
    ContentRefusedError,
    NotSupportedError,
    ProviderConnectionError,
    ServerError,
)
from nbbatch.providers import (
    Capabilities,
    DemoProvider,
    Endpoint,
    GenerationRequest,
    ImageData,
    InputImage,
    OpenAIProvider,
    PoolProvider,
    ProgressCallback,
    Provider,
    _pool,
)
from nbbatch.providers._huggingface import HuggingFaceProvider
from nbbatch.providers._replicate import ReplicateProvider
from nbbatch.providers._stability import StabilityProvider
from nbbatch.testing import FakeOpenAI, FakeReplicate, FakeStability, Fault
from tests.support import FAST, png_bytes, until

KEY = "test-key-pool-SENTINEL-key-123456"


class CountingDemo(DemoProvider):
    """The demo provider, measuring how many attempts run on it at once."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.now = 0
        self.peak = 0
        self.starts = 0
        self.healthy = True

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.now += 1
        self.starts += 1
        self.peak = max(self.peak, self.now)
        try:
            return await super().generate(request, on_progress)
        finally:
            self.now -= 1

    async def check(self) -> None:
        if not self.healthy:
            raise ProviderConnectionError("demo endpoint is down", provider=self.name)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace(tmp_path) as workspace:
        yield workspace


@pytest.fixture(scope="module")
def stab_a() -> Iterator[FakeStability]:
    with FakeStability(api_key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def stab_b() -> Iterator[FakeStability]:
    with FakeStability(api_key=KEY) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(stab_a: FakeStability, stab_b: FakeStability) -> None:
    for s in (stab_a, stab_b):
        s.clear_faults()
        s.requests.clear()


def dead_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def stability(url: str) -> StabilityProvider:
    return StabilityProvider(api_key=KEY, base_url=url)


async def test_spreads_load_and_respects_each_endpoint_cap(ws: Workspace) -> None:
    demos = [CountingDemo(latency=0.01) for _ in range(3)]
    pool = PoolProvider([Endpoint(demos[0], 1), Endpoint(demos[1], 2), Endpoint(demos[2], 3)])
    assert pool.max_concurrency == 6
    batch = Batch.create(
        [f"task {i}" for i in range(36)], workspace=ws, params=Params(size="32x32")
    )
    await batch.run(pool, concurrency=10, retry=FAST)
    assert all(t.status is TaskStatus.SUCCEEDED for t in batch.tasks)
    assert [d.peak for d in demos] == [1, 2, 3]  # each endpoint filled, never beyond its cap
    assert sum(d.starts for d in demos) == 36
    assert all(d.starts >= 4 for d in demos)
    served = collections.Counter(im.params["info"]["endpoint"] for im in batch.images)
    assert set(served) == {"demo-1", "demo-2", "demo-3"}
    assert batch.runner is not None and batch.runner.max_in_flight == 6


async def test_skips_endpoint_that_fails_health(ws: Workspace, stab_a: FakeStability) -> None:
    pool = PoolProvider(
        [
            Endpoint(stability(dead_url()), 2, "gpu-dead"),
            Endpoint(stability(stab_a.url), 2, "gpu-ok"),
        ]
    )
    batch = Batch.create([f"p{i}" for i in range(6)], workspace=ws)
    await batch.run(pool, concurrency=4, retry=FAST)
    await pool.aclose()
    assert all(t.status is TaskStatus.SUCCEEDED for t in batch.tasks)
    assert {im.params["info"]["endpoint"] for im in batch.images} == {"gpu-ok"}
    assert len(stab_a.calls("/v2beta/*")) == 6
    assert all(t.attempts == 1 for t in batch.tasks)
    rows = {r["endpoint"]: r for r in pool.status()}
    assert (
        rows["gpu-dead"]["healthy"] is False
        and "could not connect" in rows["gpu-dead"]["last_error"]
    )


async def test_retries_failed_attempt_on_another_endpoint(
    ws: Workspace, stab_a: FakeStability, stab_b: FakeStability
) -> None:
    stab_a.add_fault(Fault.status_code(500, times=100), path="/v2beta/*")
    pool = PoolProvider(
        [Endpoint(stability(stab_a.url), 1, "a"), Endpoint(stability(stab_b.url), 1, "b")],
        failure_threshold=2,
        cooldown=60,
    )
    batch = Batch.create([f"p{i}" for i in range(6)], workspace=ws)
    await batch.run(pool, concurrency=2, retry=RetryPolicy(max_retries=0))
    await pool.aclose()
    # no runner retries allowed: every task still succeeded, on b, within one attempt
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in batch.tasks)
    assert {im.params["info"]["endpoint"] for im in batch.images} == {"b"}
    # a got requests until its breaker opened after 2 consecutive failures
    assert len(stab_a.calls("/v2beta/*")) == 2
    assert len(stab_b.calls("/v2beta/*")) == 6


async def test_refusal_is_not_tried_elsewhere(stab_a: FakeStability, stab_b: FakeStability) -> None:
    pool = PoolProvider([Endpoint(stability(stab_a.url)), Endpoint(stability(stab_b.url))])
    with pytest.raises(ContentRefusedError):
        await pool.generate(GenerationRequest("forbidden picture"))
    await pool.aclose()
    assert len(stab_a.calls("/v2beta/*")) + len(stab_b.calls("/v2beta/*")) == 1
    assert all(r["healthy"] and r["failures"] == 0 for r in pool.status())


async def test_all_endpoints_failing_raises_the_last_error(
    stab_a: FakeStability, stab_b: FakeStability
) -> None:
    stab_a.add_fault(Fault.status_code(502), path="/v2beta/*")
    stab_b.add_fault(Fault.status_code(503), path="/v2beta/*")
    pool = PoolProvider([Endpoint(stability(stab_a.url)), Endpoint(stability(stab_b.url))])
    with pytest.raises(ServerError) as info:
        await pool.generate(GenerationRequest("x"))
    await pool.aclose()
    assert info.value.status_code in (502, 503) and info.value.retryable


async def test_nothing_reachable_fails_fast() -> None:
    pool = PoolProvider([stability(dead_url()), stability(dead_url())])
    with pytest.raises(ProviderConnectionError, match="no endpoint passed its health check"):
        await pool.check()
    with pytest.raises(ProviderConnectionError, match="reachable"):
        await asyncio.wait_for(pool.generate(GenerationRequest("x")), 5)
    await pool.aclose()


async def test_breaker_cools_down_then_lets_one_trial_through() -> None:
    now = [0.0]
    flaky = CountingDemo(failure_rate=1.0, rng_seed=1)
    pool = PoolProvider(
        [Endpoint(flaky, 1, "flaky")], failure_threshold=2, cooldown=10, clock=lambda: now[0]
    )
    for _ in range(2):
        with pytest.raises(ServerError):
            await pool.generate(GenerationRequest("x"))
    assert pool.status()[0]["healthy"] is False
    # it answered before, so the attempt waits out the cool-down instead of failing
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(pool.generate(GenerationRequest("x")), 0.05)
    assert flaky.starts == 2
    now[0] = 11.0  # the cool-down is over: a trial request goes through and succeeds
    flaky.failure_rate = 0.0
    images = await pool.generate(GenerationRequest("x", Params(size="16x16")))
    assert images[0].info["endpoint"] == "flaky"
    row = pool.status()[0]
    assert (row["healthy"], row["failures"], row["served"], flaky.starts) == (True, 0, 1, 3)


async def test_capabilities_and_routing_by_capability() -> None:
    text_only = HuggingFaceProvider(api_key=KEY, base_url=dead_url())
    demo = CountingDemo()
    pool = PoolProvider(
        [Endpoint(text_only, 1, "hf"), Endpoint(demo, 1, "demo")], check_endpoints=False
    )
    caps = pool.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.img2img and caps.max_references == 1 and caps.max_n == 8  # union
    assert not caps.progress and not caps.cancel  # HF has neither: intersection
    request = GenerationRequest("x", Params(size="16x16"), images=[InputImage("in.png", _png())])
    images = await pool.generate(request)  # only the demo endpoint can take an input image
    assert images[0].info["endpoint"] == "demo" and demo.starts == 1
    with pytest.raises(NotSupportedError):
        await pool.generate(GenerationRequest("x", mask=InputImage("m.png", _png())))
    await pool.aclose()


async def test_cancel_passes_through_and_frees_the_slot() -> None:
    with FakeReplicate(api_key=KEY, run_seconds=30) as server:
        rep = ReplicateProvider(api_key=KEY, base_url=server.url, wait=0, poll_interval=0.01)
        pool = PoolProvider([Endpoint(rep, 1, "rep")], check_endpoints=False)
        job = asyncio.create_task(pool.generate(GenerationRequest("slow")))
        while not server.calls("/v1/predictions/*", "GET"):
            await asyncio.sleep(0.01)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await pool.aclose()
        assert len(server.cancels) == 1
        assert pool.status()[0]["in_flight"] == 0


def test_bad_pool_configs() -> None:
    with pytest.raises(ConfigError):
        PoolProvider([])
    with pytest.raises(ConfigError, match="unique"):
        PoolProvider([Endpoint(DemoProvider(), name="x"), Endpoint(DemoProvider(), name="x")])
    with pytest.raises(ConfigError, match="another pool"):
        PoolProvider([PoolProvider([DemoProvider()])])


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    return buf.getvalue()


# -- a pool on several event loops (defect 2 of the provider review) ----------------


def test_a_pool_works_on_a_second_event_loop() -> None:
    with FakeOpenAI(latency=0.05) as server:
        member = OpenAIProvider(api_key="test-key-pool", base_url=server.base_url)
        pool = PoolProvider([Endpoint(member, 1)])
        request = GenerationRequest("a pooled fox")

        async def two_at_once() -> list[list[ImageData]]:
            # the second waits for the only slot: that ties the pool's Event to this loop
            return list(await asyncio.gather(pool.generate(request), pool.generate(request)))

        first, second = asyncio.run(two_at_once()), asyncio.run(two_at_once())
        # each of the four requests came back with its image (on the second loop too)
        assert [len(images) for images in (*first, *second)] == [1, 1, 1, 1]
        assert all(images[0].data.startswith(b"\x89PNG") for images in (*first, *second))
        assert [r.path for r in server.requests].count("/v1/images/generations") == 4
        asyncio.run(pool.aclose())


class Server:
    """What the endpoint key of a provider reads: its client's base URL and headers."""

    def __init__(self, url: str) -> None:
        self.base_url, self.headers = url, {"Authorization": "Key test-key-held"}


class Held(Provider):
    """A pool member whose requests end when the test says so, by prompt."""

    name: ClassVar[str] = "held"
    capabilities: Capabilities = Capabilities(txt2img=True)

    def __init__(self, started: list[str], book: dict[str, asyncio.Future[None]], url: str) -> None:
        self.started, self.book = started, book
        self._http = Server(url)  # two objects on one URL are one server
        self.down = False

    async def check(self) -> None:
        if self.down:
            raise ProviderConnectionError("this GPU is off", provider=self.name)

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> list[ImageData]:
        self.started.append(request.prompt)
        self.book[request.prompt] = asyncio.get_running_loop().create_future()
        await self.book[request.prompt]
        return [ImageData(png_bytes(), seed=1)]


@pytest.mark.parametrize("pools", [1, 2], ids=["one-pool", "a-pool-each-on-the-same-servers"])
async def test_a_high_priority_run_gets_a_shared_pool_s_free_slots_first(
    ws: Workspace, pools: int
) -> None:
    started: list[str] = []
    book: dict[str, asyncio.Future[None]] = {}

    def pool_of_three() -> PoolProvider:
        members = [Held(started, book, f"http://gpu{i}.test") for i in range(3)]
        members[2].down = True  # two GPUs of three: requests wait for a free one
        return PoolProvider(members, clock=lambda: 0.0)

    # one pool object, or one per run as two studios build the saved pool each
    first = pool_of_three()
    second = first if pools == 1 else pool_of_three()
    board = _pool._board()

    def finish(prompt: str) -> Awaitable[None]:
        count = len(started)
        book[prompt].set_result(None)
        return until(lambda: len(started) == count + 1, f"a start after {prompt} ended")

    low = Batch.create([f"l{i}" for i in range(5)], workspace=ws)
    high = Batch.create([f"h{i}" for i in range(3)], workspace=ws)
    background = low.start(first, concurrency=3, priority="low")
    await until(lambda: len(started) == 2 and len(board.waiting) == 1)
    quick = high.start(second, concurrency=3, priority="high")
    await until(lambda: len(board.waiting) == 4, "the quick run's requests wait in the pool")
    assert sorted(started) == ["l0", "l1"]
    await finish("l0")
    assert started[2] == "h0", "the high-priority run goes before l2, which waited longer"
    await finish("l1")
    assert started[3] == "l2", "the background run keeps one slot"
    await finish("h0")
    assert started[4] == "h1"
    # Each request that is left must be in line before the next slot frees: a run's
    # worker gets to the pool only after it has journaled its last task, and a slot freed
    # before then went to whoever was already waiting (this once made the order vary).
    await until(lambda: len(board.waiting) == 3, "l3, l4 and h2 wait")
    await finish("l2")
    assert started[5] == "l3", "the background run, holding no slot now, goes first"
    await until(lambda: len(board.waiting) == 2, "l4 and h2 wait")
    await finish("h1")
    assert started[6] == "h2", "then the quick run, holding none either, before l4"
    await until(lambda: len(board.waiting) == 1, "l4 waits")
    await finish("l3")
    assert started[7] == "l4"
    for prompt in started:
        if not book[prompt].done():
            book[prompt].set_result(None)
    await asyncio.gather(background.wait(), quick.wait())
    assert sorted(started) == sorted([f"l{i}" for i in range(5)] + [f"h{i}" for i in range(3)])
    assert len(low.succeeded) == 5 and len(high.succeeded) == 3
    assert board.waiting == [] and not board.held and not board.in_flight, "nothing is left"
