"""Loopback fake servers: real HTTP (and WebSocket) on 127.0.0.1, scripted faults.

Each fake of a real service subclasses :class:`FakeServer`, builds a Starlette app that
speaks that service's wire protocol, and shapes error bodies the way that service does
(:meth:`FakeServer.error_response`). The base runs the app with uvicorn in a daemon
thread on a free port, records every request, and applies the faults a test scripts::

    with FakeOpenAI() as server:                       # a subclass
        server.add_fault(Fault.status_code(429, headers={"retry-after": "0.05"}))
        server.add_fault(Fault.hang(), path="/v1/images/generations")
        ...  # point a provider at server.url

Faults are consumed in order, each for ``times`` matching requests. Latency applies to
every request. Everything is bounded: a hang lasts at most ``Fault.seconds``. A fake
listens on a free port unless ``port`` is set before :meth:`FakeServer.start` (to stand
in for a service at its usual address, e.g. Ollama's 11434).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakeServer", "Fault", "RecordedRequest"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Fault:
    """One scripted misbehaviour. Build with the class methods."""

    kind: str
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    times: int = 1
    path: str | None = None

    @classmethod
    def status_code(
        cls,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> Fault:
        """Answer ``status`` with ``body`` (default: the service's own error shape)."""
        return cls("status", status=status, body=body, headers=dict(headers or {}), times=times)

    @classmethod
    def hang(cls, seconds: float = 30.0, *, times: int = 1) -> Fault:
        """Accept the request and answer nothing for ``seconds`` (a hung server)."""
        return cls("hang", seconds=seconds, times=times)

    @classmethod
    def malformed(cls, body: bytes = b"{not json", *, times: int = 1) -> Fault:
        """Answer 200 with a body the client cannot read."""
        return cls("malformed", status=200, body=body, times=times)

    @classmethod
    def truncate(cls, *, times: int = 1) -> Fault:
        """Start a 200 with a Content-Length, send part of the body, drop the connection."""
        return cls("truncate", status=200, times=times)

    @classmethod
    def delay(cls, seconds: float, *, times: int = 1) -> Fault:
        """Answer normally, ``seconds`` late."""
        return cls("delay", seconds=seconds, times=times)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    time: float


class FakeServer:
    """Base class: run an ASGI app on loopback in a thread, with faults and a request log."""

    #: the service's name, for messages
    name = "fake"

    def __init__(self, *, latency: float = 0.0, host: str = "127.0.0.1") -> None:
        self.latency = latency
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app: ASGIApp | None = None

    # ---------------------------------------------------------------- subclass API
    def build_app(self) -> ASGIApp:
        """Return the ASGI app speaking the service's protocol."""
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> tuple[Any, str]:
        """(body, content-type) of an error in the service's own shape."""
        return {"error": {"message": message}}, "application/json"

    # ---------------------------------------------------------------- control
    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    def add_fault(self, fault: Fault, *, path: str | None = None) -> Fault:
        """Queue ``fault`` for the next request (whose path matches ``path``, a glob)."""
        if path is not None:
            fault.path = path
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def calls(self, path_glob: str = "*", method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path matches ``path_glob`` (and ``method``)."""
        return [
            r
            for r in self.requests
            if fnmatch.fnmatchcase(r.path, path_glob) and (method is None or r.method == method)
        ]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fnmatch.fnmatchcase(path, fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ---------------------------------------------------------------- ASGI wrapper
    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._app is not None
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        self.requests.append(
            RecordedRequest(
                scope["method"],
                path,
                scope.get("query_string", b"").decode(),
                headers,
                body,
                time.time(),
            )
        )
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._take_fault(path)
        if fault is not None and await self._apply(fault, send):
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # the client is still connected; nothing more to read
            return {"type": "http.disconnect"}

        await self._app(scope, replay, send)

    async def _apply(self, fault: Fault, send: Send) -> bool:
        """Perform ``fault``; True when it produced the whole response."""
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            return False
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            await self._send(send, 504, b"", "text/plain", {})
            return True
        if fault.kind == "status":
            body, ctype = fault.body, "application/json"
            if body is None:
                body, ctype = self.error_response(fault.status, f"fault {fault.status}")
            import json

            raw = (
                body
                if isinstance(body, bytes)
                else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
            )
            if isinstance(body, str):
                ctype = "text/plain"
            await self._send(send, fault.status, raw, ctype, fault.headers)
            return True
        if fault.kind == "malformed":
            await self._send(send, 200, fault.body, "application/json", {})
            return True
        if fault.kind == "truncate":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"image/png"), (b"content-length", b"100000")],
                }
            )
            await send(
                {"type": "http.response.body", "body": b"\x89PNG" + b"\0" * 996, "more_body": True}
            )
            raise ConnectionResetError("fault: connection dropped mid-body")
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, ctype: str, headers: dict[str, str]
    ) -> None:
        raw_headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FakeServer:
        import uvicorn

        if self._thread is not None:
            return self
        self._app = self.build_app()
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets
        # whose proto says TCP, and without it every keep-alive response whose headers
        # and body go out in two writes waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))  # 0 (the default): any free port
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._asgi,
            log_level="critical",
            lifespan="off",
            ws="websockets-sansio",
            timeout_graceful_shutdown=1,
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def main() -> None:
                task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
                while not self._server.started and not task.done():
                    await asyncio.sleep(0.005)
                ready.set()
                await task

            try:
                loop.run_until_complete(main())
            finally:
                ready.set()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self._server.started:
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port else "not started"
        return f"<{type(self).__name__} {where}>"
