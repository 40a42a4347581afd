"""The fast paths keep the guarantees: cheap image checks, fast codecs, pool shards, store."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import sqlite3
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nbbatch import Batch, Params, TaskStatus, Workspace
from nbbatch.errors import ImageRejectedError
from nbbatch.images._decode import ImageLimits, inspect_image, verify_image
from nbbatch.images._thumbs import ThumbnailCache
from nbbatch.providers import ImageData, _codec
from nbbatch.providers._http import HttpClient, _ShardedTransport, _WholeReads, _WholeReadsBackend
from tests.support import FAST, ControlledProvider


def encode(fmt: str, size: tuple[int, int] = (96, 64)) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(out, format=fmt)
    return out.getvalue()


def damaged_idat(png: bytes) -> bytes:
    """Flip one byte inside the first IDAT payload (its CRC no longer matches)."""
    at = png.index(b"IDAT") + 4 + 10
    return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1 :]


# ----------------------------------------------------------------- verify_image
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_verify_agrees_with_the_full_decode_on_good_files(fmt: str) -> None:
    data = encode(fmt)
    assert verify_image(data) == inspect_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_verify_refuses_truncated_files(fmt: str) -> None:
    data = encode(fmt)
    with pytest.raises(ImageRejectedError) as err:
        verify_image(data[: len(data) // 2])
    assert err.value.reason == "corrupt"


def test_verify_refuses_a_png_damaged_in_transit() -> None:
    with pytest.raises(ImageRejectedError) as err:
        verify_image(damaged_idat(encode("PNG")))
    assert err.value.reason == "corrupt"


def test_verify_keeps_the_caps_and_the_allow_list() -> None:
    png = encode("PNG")
    with pytest.raises(ImageRejectedError) as err:
        verify_image(png, ImageLimits(max_pixels=100))
    assert err.value.reason == "too_many_pixels"
    with pytest.raises(ImageRejectedError) as err:
        verify_image(png, ImageLimits(formats=("JPEG",)))
    assert err.value.reason == "format"
    with pytest.raises(ImageRejectedError) as err:
        verify_image(png, ImageLimits(max_bytes=10))
    assert err.value.reason == "too_many_bytes"
    # a header that claims a bomb is refused before any plug-in runs
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr
    bomb = b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(chunk[4:]))
    with pytest.raises(ImageRejectedError) as err:
        verify_image(bomb)
    assert err.value.reason == "too_many_pixels"


async def test_runner_never_stores_a_damaged_answer(workspace: Workspace) -> None:
    bad = damaged_idat(encode("PNG"))

    class Damaged(ControlledProvider):
        async def generate(self, request, on_progress=None):  # type: ignore[no-untyped-def]
            return [ImageData(bad)]

    batch = Batch.create(workspace=workspace, tasks=["x"])
    await batch.run(Damaged(), retry=FAST)
    task = batch.tasks[0]
    assert task.status is TaskStatus.FAILED and task.error_kind == "bad_image"
    assert task.images == []
    assert [p for p in workspace.images_dir.rglob("*") if p.is_file()] == []


# ----------------------------------------------------------------- codecs
@pytest.fixture(params=["fast", "stdlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(_codec, "_pybase64", None)
        monkeypatch.setattr(_codec, "_orjson", None)
    return str(request.param)


@pytest.mark.parametrize("text", ["abc", "ab!c", "YQ=", "YQ==YQ==", " YQ==", "YQ==\n"])
def test_base64_is_strict_either_way(codec: str, text: str) -> None:
    with pytest.raises(binascii.Error):
        _codec.b64decode(text)


def test_base64_round_trips_either_way(codec: str) -> None:
    data = bytes(range(256)) * 50
    assert _codec.b64decode(base64.b64encode(data).decode()) == data
    assert _codec.b64decode(base64.b64encode(data)) == data


def test_json_accepts_what_the_standard_parser_accepts(codec: str) -> None:
    assert _codec.loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    big = 2**70
    assert _codec.loads(f'{{"n": {big}}}'.encode()) == {"n": big}
    assert _codec.loads('{"x": NaN}')["x"] != 0  # NaN: only the standard parser takes it
    with pytest.raises(ValueError):
        _codec.loads(b"<html>")


# ----------------------------------------------------------------- HTTP pool
@pytest.mark.parametrize("total", [1, 3, 4, 5, 16, 64])
def test_shards_add_up_to_the_pool_size(total: int) -> None:
    transport = _ShardedTransport(total)
    assert sum(transport._free) == total
    assert max(transport._free) <= 4


def test_building_providers_loads_the_ca_bundle_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each "Run all" of a saved configuration builds a provider on the kernel's loop
    from nbbatch.providers import _http

    _http.default_tls.cache_clear()
    loads: list[int] = []
    real = httpx.create_ssl_context
    monkeypatch.setattr(httpx, "create_ssl_context", lambda: loads.append(1) or real())
    first = _ShardedTransport(8)
    for _ in range(5):
        _ShardedTransport(32)
    assert len(loads) == 1
    assert first._shards[0]._pool._ssl_context is _http.default_tls()


async def test_shard_slots_come_back_when_responses_close() -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient("test", f"http://127.0.0.1:{port}", max_connections=8)
    try:
        transport = client._new_client()._transport
        assert isinstance(transport, _ShardedTransport)
        answers = await asyncio.gather(*(client.json("GET", "/") for _ in range(20)))
        assert answers == [{"ok": True}] * 20
        assert transport._free == [4, 4]
        with pytest.raises(Exception):  # noqa: B017 - any provider error
            await client.json("GET", "/broken")
        assert transport._free == [4, 4]
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"/broken" in head.split(b"\r\n")[0]:
                body, status = b"nope", b"500 Internal Server Error"
            else:
                body, status = b'{"ok": true}', b"200 OK"
            writer.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class _Recorded:
    """A connection that records how much each read asked for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.asked.append(max_bytes)
        return b"x"


async def test_a_read_asks_for_whatever_has_arrived_not_for_64_kb() -> None:
    inner = _Recorded()
    stream = _WholeReads(inner)  # type: ignore[arg-type]
    await stream.read(65536)
    await stream.read(4 << 20)
    assert inner.asked == [1 << 20, 4 << 20]


def test_every_shard_reads_through_the_whole_reads_backend() -> None:
    # httpx has no setting for this: the pin notices an httpx that builds its pool otherwise
    transport = _ShardedTransport(10)
    assert all(isinstance(s._pool._network_backend, _WholeReadsBackend) for s in transport._shards)


async def test_a_body_of_several_megabytes_arrives_whole_over_loopback() -> None:
    body = b'{"data": [{"b64_json": "' + base64.b64encode(bytes(range(256)) * 12_000) + b'"}]}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient("test", f"http://127.0.0.1:{port}")
    try:
        got = await client.json("GET", "/")
        assert base64.b64decode(got["data"][0]["b64_json"]) == bytes(range(256)) * 12_000
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


def test_a_proxy_keeps_the_httpx_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = HttpClient("test", "https://example.invalid")
    assert not isinstance(client._new_client()._transport, _ShardedTransport)
    assert isinstance(client._new_client()._transport, httpx.AsyncHTTPTransport)


# ----------------------------------------------------------------- store
def test_unused_indexes_are_dropped_from_older_workspaces(tmp_path: Path) -> None:
    Workspace(tmp_path).close()
    db = sqlite3.connect(tmp_path / "nbbatch.sqlite3")
    db.execute("CREATE INDEX tasks_status ON tasks(status)")
    db.execute("CREATE INDEX images_sha ON images(sha256)")
    db.commit()
    db.close()
    with Workspace(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "nbbatch.sqlite3")
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    db.close()
    assert "tasks_status" not in names and "images_sha" not in names
    assert "tasks_batch" in names


def test_reopened_tasks_keep_their_own_params(tmp_path: Path) -> None:
    with Workspace(tmp_path) as ws:
        batch = Batch.create(["a", "b"], workspace=ws, params=Params(size="512x512"))
        batch.add(["c"], params=Params(size="256x256", seed=3))
        bid = batch.id
    with Workspace(tmp_path) as ws:
        again = Batch.load(bid, workspace=ws)
        assert [t.params for t in again.tasks] == [
            Params(size="512x512"),
            Params(size="512x512"),
            Params(size="256x256", seed=3),
        ]


# ----------------------------------------------------------------- thumbnails
async def test_thumbnails_from_the_loop_render_once(workspace: Workspace) -> None:
    batch = Batch.create(workspace=workspace, tasks=["x"])
    await batch.run(ControlledProvider())
    image = batch.images[0]
    cache = ThumbnailCache(workspace)
    paths = await asyncio.gather(*(cache.aget(image, 128) for _ in range(4)))
    assert len(set(paths)) == 1 and paths[0].exists()
    assert cache.rendered == 1
    assert await cache.aget(image, 128) == paths[0]
    assert cache.rendered == 1
