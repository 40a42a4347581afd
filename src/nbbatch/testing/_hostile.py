"""A loopback HTTP server that answers every request with one hostile body.

For the body caps of the HTTP layer (``providers._http.BodyLimits``): a gzip bomb (a
small compressed body that inflates to ``inflated`` bytes), an endless chunked body
(bytes keep flowing, so no read timeout ever fires; it stops only after ``endless_stop``
bytes, so code without a cap ends too and a test can measure it), and an error status
with an oversized (gzip) body. Plain asyncio, one answer per request, keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from typing import Literal

__all__ = ["HostileServer", "gzip_bomb"]

Mode = Literal["bomb", "endless", "error"]

_CHUNK = 64 * 1024


@functools.cache
def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of ``inflated`` zero bytes (about a thousandth of that in size)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(min(inflated, 1024 * 1024))
    parts = []
    left = inflated
    while left:
        step = min(left, len(block))
        parts.append(deflate.compress(block[:step] if step < len(block) else block))
        left -= step
    parts.append(deflate.flush())
    return b"".join(parts)


class HostileServer:
    """``async with HostileServer("bomb") as server:`` then send anything to ``server.url``.

    ``mode``: ``"bomb"`` (200, JSON, gzip of ``inflated`` zero bytes), ``"endless"``
    (200, JSON, chunked spaces until the client goes or ``endless_stop`` bytes were sent),
    ``"error"`` (``status``, JSON, gzip of ``inflated`` zero bytes). ``requests`` counts
    the requests answered, ``sent`` the body bytes written.
    """

    def __init__(
        self,
        mode: Mode,
        *,
        inflated: int = 256 * 1024 * 1024,
        endless_stop: int = 1024 * 1024 * 1024,
        status: int = 500,
    ) -> None:
        self.mode = mode
        self.inflated = inflated
        self.endless_stop = endless_stop
        self.status = status
        self.requests = 0
        self.sent = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def __aenter__(self) -> HostileServer:
        if self.mode != "endless":
            gzip_bomb(self.inflated)  # made before any client waits on it
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._conns.values()):
            writer.close()  # the connection's task then ends on its own (EOF, reset)
        for task in list(self._conns):
            with contextlib.suppress(ConnectionError):
                await task
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request, answer it; False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif headers.get("content-length", "0").isdigit():
            await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests += 1
        if self.mode == "endless":
            await self._endless(writer)
            return False
        body = gzip_bomb(self.inflated)
        status = 200 if self.mode == "bomb" else self.status
        writer.write(
            (
                f"HTTP/1.1 {status} Hostile\r\nContent-Type: application/json\r\n"
                f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        for start in range(0, len(body), _CHUNK):
            writer.write(body[start : start + _CHUNK])
            self.sent += min(_CHUNK, len(body) - start)
            await writer.drain()
        return True

    async def _endless(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = f"{_CHUNK:x}\r\n".encode() + b" " * _CHUNK + b"\r\n"
        while self.sent < self.endless_stop:
            writer.write(chunk)
            self.sent += _CHUNK
            await writer.drain()
        writer.write(b"1\r\n0\r\n0\r\n\r\n")  # a body that ends: "   ...   0"
        await writer.drain()
