"""The HTTP layer every provider shares: timeouts, errors, downloads, no leaked keys.

:class:`HttpClient` wraps one ``httpx.AsyncClient`` (connection reuse) per provider
instance. Every non-2xx response and every transport failure becomes one of the
:mod:`nbbatch.core._errors` provider errors, classified for retries (the runner's
:class:`~nbbatch.core._retry.RetryPolicy` then decides how long to wait):

=========================  =========================  =========
what happened              error                      retried
=========================  =========================  =========
connect / read failure     ProviderConnectionError    yes
timeout, HTTP 408          ProviderTimeoutError       yes
HTTP 409                   ServerError (conflict)     yes
HTTP 429                   RateLimitedError           yes
HTTP >= 500                ServerError                yes
HTTP 401 / 403             AuthenticationError        no
HTTP 400 / 404 / 422 ...   BadRequestError            no
unreadable body            MalformedResponseError     no
=========================  =========================  =========

Every retried status keeps the server's ``Retry-After`` / ``retry-after-ms`` in the
error's ``retry_after`` (a 503 asking for 2 s gets 2 s, as a 429 does). A server's
``x-should-retry: true|false`` header overrides the decision. Providers whose
service signals refusals or rate limits differently pass ``classify`` to refine it.
Messages quote the server's own error text (trimmed) and never contain the key: known
secrets are scrubbed from everything that goes into an error.

Credentials are secrets wherever they come from: the value of every header that carries
one (``Authorization``, ``x-goog-api-key``, ``x-api-key``, any ``*token*`` / ``*key*`` /
``*auth*`` header) and a password inside the base URL (``http://user:KEY@host``) are
registered with :func:`~nbbatch.core._secrets.scrub`. The URL's credentials are moved
into HTTP Basic auth, so the URL httpx logs and puts into errors carries none.

Every body is read through :func:`_read_body`, under the caps of :class:`BodyLimits`
(decided once, in :data:`BODY_LIMITS`): counted as it arrives and again as it is
inflated, a step of at most :data:`_INFLATE_STEP` bytes at a time, so neither a gzip bomb
nor an endless chunked body (whose bytes keep the read timeout from ever firing) can
hold more than its cap in memory. A 2xx answer over its cap is refused with
:class:`~nbbatch.core._errors.ResponseTooLargeError`; an error body is cut at its cap and
the status still decides (a 503 stays retryable).

The ``httpx.AsyncClient`` is made per event loop, on first use: an httpx client's
connections belong to the loop that opened them, and a provider object may outlive its
loop (two ``run_sync`` calls with one provider each run their own loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import ssl
import threading
import urllib.parse
import urllib.request
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpcore
import httpx

from ..core._aio import pass_turn
from ..core._errors import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
)
from ..core._retry import parse_retry_after
from ..core._secrets import Secret, scrub, split_url_credentials
from ..images._decode import DEFAULT_LIMITS, format_bytes
from ._codec import FAST_JSON, loads
from ._endpoint import observe_response

__all__ = [
    "BODY_LIMITS",
    "BodyLimits",
    "HttpClient",
    "Timeouts",
    "error_from_exception",
    "error_from_response",
    "redact_headers",
    "server_message",
]

_EXCERPT = 300
#: an error body is parsed as JSON up to this size, and its start read as text
_ERROR_JSON_BYTES = 256 * 1024
_ERROR_TEXT_BYTES = 16 * _EXCERPT
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: JSON bodies above this size are parsed in a worker thread when only the standard
#: library's parser is there: a 1024x1024 PNG in base64 is ~1.8 MB and ~1.2 ms to parse
_OFFLOAD_JSON_BYTES = 256 * 1024


_MIB = 1024 * 1024


@dataclass(frozen=True)
class BodyLimits:
    """The most nbbatch reads of one HTTP answer, in bytes (all caps of the HTTP layer).

    Each cap holds twice: for the bytes as they arrive (compressed or not) and for the
    body once inflated. ``json``: a JSON answer (its images in base64: a 50 MiB image is
    67 MiB of text). ``error``: the body of a non-2xx answer; only its first 300
    characters are shown, so it is cut here, not refused. ``image``: an image download
    (a provider's ``max_download_bytes`` defaults to it; it is the guarded decoder's
    own byte cap). ``total``: the most any one answer may be, whatever it is: the cap of
    a body of no known kind, and the ceiling of every other cap, a provider's own
    ``max_download_bytes`` included.
    """

    json: int = 128 * _MIB
    error: int = 1 * _MIB
    image: int = DEFAULT_LIMITS.max_bytes
    total: int = 128 * _MIB

    def __post_init__(self) -> None:
        for name in ("json", "error", "image", "total"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BodyLimits.{name} must be a whole number >= 1, got {value!r}")

    def cap(self, wanted: int) -> int:
        """``wanted``, held to :attr:`total`."""
        return max(1, min(wanted, self.total))


#: the caps every HttpClient uses unless it is given its own
BODY_LIMITS = BodyLimits()

#: the most one step of inflating produces before the event loop takes a turn (a few
#: ms of zlib on a busy machine; 1 MiB steps held the loop 10-25 ms each there)
_INFLATE_STEP = 256 * 1024
#: the content codings nbbatch asks for, and so the only ones it inflates
_ACCEPT_ENCODING = "gzip, deflate"


class _BodyTooLarge(Exception):
    """The body went over its cap (raised by :func:`_read_body`, turned into words)."""


class _Inflater:
    """One content coding, inflated at most :data:`_INFLATE_STEP` bytes per step."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._head = b""
        self._inflate: Any = None
        if coding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The inflated pieces of ``data``, made one step at a time as they are taken."""
        if self._inflate is None:
            # deflate: zlib-wrapped as the standard says, or raw as some servers send it;
            # the first two bytes tell (a first piece of one byte waits for the next)
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        while data and not self._inflate.eof:
            try:
                piece = self._inflate.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise httpx.DecodingError(f"the {self._coding} body is corrupt ({exc})") from None
            rest = self._inflate.unconsumed_tail
            if not piece and len(rest) == len(data):
                return  # no progress (cannot happen with zlib; never spin)
            data = rest
            if piece:
                yield piece

    def flush(self) -> bytes:
        try:
            if self._inflate is None:
                if not self._head:
                    return b""
                # a one-byte deflate body: whatever it is, raw deflate says so
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                return bytes(self._inflate.decompress(self._head) + self._inflate.flush())
            return bytes(self._inflate.flush())
        except zlib.error as exc:
            raise httpx.DecodingError(f"the {self._coding} body is corrupt ({exc})") from None


async def _read_body(response: httpx.Response, cap: int, *, cut: bool = False) -> bytes:
    """The body of a streamed ``response``, holding at most ``cap`` bytes at any time.

    Counts the bytes as they arrive and as they come out of each content coding; raises
    :class:`_BodyTooLarge` past ``cap`` on either count, or with ``cut`` returns the
    first ``cap`` bytes instead. A coding nbbatch did not ask for is refused.
    """
    if response.is_stream_consumed:
        # a transport that made the response already read (httpx.MockTransport): the
        # body is in memory already; the cap still decides whether it is used
        if len(response.content) > cap and not cut:
            raise _BodyTooLarge
        return response.content[:cap]
    codings = [
        c.strip().lower()
        for c in response.headers.get("content-encoding", "").split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise httpx.DecodingError(
                f"the answer is in the content coding {coding[:40]!r}, which nbbatch did not "
                "ask for",
                request=response.request,
            )
    # Content-Encoding lists codings in the order they were applied: undo the last first
    inflaters = [_Inflater(c) for c in reversed(codings)]
    declared = response.headers.get("content-length", "")
    if not cut and declared.isdigit() and int(declared) > cap:
        raise _BodyTooLarge
    pieces: list[bytes] = []
    arrived = size = 0

    def through(data: Iterable[bytes], stage: int) -> Iterator[bytes]:
        """``data`` inflated by the codings from ``stage`` on, lazily: a piece at a time."""
        if stage == len(inflaters):
            yield from data
            return
        for piece in data:
            yield from through(inflaters[stage].feed(piece), stage + 1)

    async def take(data: Iterable[bytes]) -> bool:
        """Keep ``data``; False once the cap is reached (``cut``)."""
        nonlocal size
        for piece in data:
            if size + len(piece) > cap:
                if not cut:
                    raise _BodyTooLarge
                pieces.append(piece[: cap - size])
                size = cap
                return False
            size += len(piece)
            pieces.append(piece)
            if inflaters:
                # each step of inflating is a few ms of inline work: let every other
                # task have a turn between two steps, so a bomb held off at the cap
                # costs the loop no more than one step at a time
                await asyncio.sleep(0)
            else:
                await pass_turn(len(piece))  # a big piece waits its turn in a busy pass
        return True

    async for raw in response.aiter_raw():
        arrived += len(raw)
        if arrived > cap and not cut:
            raise _BodyTooLarge
        if not await take(through([raw], 0)):
            break
        if arrived > cap:  # cut: the wire alone has given enough
            break
    else:
        for stage, inflater in enumerate(inflaters):
            await take(through([inflater.flush()], stage + 1))
        if (
            declared.isdigit()
            and arrived < int(declared)
            and response.request.method != "HEAD"
            and response.status_code not in (204, 304)
        ):
            # a dropped connection some transports do not notice: nothing partial is kept
            raise httpx.RemoteProtocolError(
                f"the body was cut short ({arrived:,} of {int(declared):,} bytes)",
                request=response.request,
            )
    return b"".join(pieces)


def _rebuilt(response: httpx.Response, body: bytes) -> httpx.Response:
    """A read copy of ``response`` holding ``body`` (inflated: no coding headers left).

    A new response rather than httpx's own read of this one: httpx would inflate the
    whole body in one call, the very thing the caps are there to stop.
    """
    dropped = ("content-encoding", "content-length", "transfer-encoding")
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in dropped]
    extensions = {k: v for k, v in response.extensions.items() if k != "network_stream"}
    made = httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions=extensions,
    )
    made.history = list(response.history)
    return made


def _parse_json(response: httpx.Response) -> Any:
    """The body as JSON, read from the raw bytes (no text decode and copy first)."""
    try:
        return loads(response.content)
    except ValueError:
        # Not UTF-8 (a charset the server declared), or not JSON at all: httpx knows
        # the declared encoding; its error is the one the caller reports.
        return response.json()


@dataclass(frozen=True)
class Timeouts:
    """Per-phase timeouts in seconds. ``read`` is long: image generation is slow."""

    connect: float = 10.0
    read: float = 300.0
    write: float = 60.0
    pool: float = 30.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def server_message(response: httpx.Response) -> str:
    """The human part of an error body, from the shapes services use; trimmed."""
    text = ""
    body: Any = None
    if len(response.content) <= _ERROR_JSON_BYTES:  # a larger one is no error message
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = response.json()
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            text = str(err.get("message") or err.get("code") or err.get("status") or "")
        elif isinstance(err, str):
            text = err
        for key in ("detail", "message", "title", "name"):
            if text:
                break
            value = body.get(key)
            if isinstance(value, str):
                text = value
            elif value:
                text = json.dumps(value)[:_EXCERPT]
        if not text and isinstance(body.get("errors"), list) and body["errors"]:
            text = "; ".join(str(e) for e in body["errors"][:3])
    if not text:
        head = response.content[:_ERROR_TEXT_BYTES]
        try:
            text = head.decode(response.encoding or "utf-8", "replace").strip()
        except LookupError:  # a charset Python does not know
            text = head.decode("utf-8", "replace").strip()
        # binary garbage (a body of NUL bytes) says nothing, and as escapes it would
        # make a 300-character excerpt four times as long
        text = _CONTROL.sub("", text)
        if not text and response.content.strip():
            text = f"(a {format_bytes(len(response.content))} body that is not text)"
    text = " ".join(text.split())
    if len(text) > _EXCERPT:
        text = text[: _EXCERPT - 3] + "..."
    return scrub(text)


def error_from_response(
    response: httpx.Response, provider: str, *, task_id: str | None = None
) -> ProviderError:
    """Map a non-2xx response to a provider error (see the module table)."""
    status = response.status_code
    detail = server_message(response)
    where = f"{provider}: HTTP {status}"
    message = f"{where}: {detail}" if detail else where
    err: ProviderError
    if status in (401, 403):
        # the words a person looks for first, then the server's own reason
        denied = f"{provider}: authentication failed (HTTP {status})"
        err = AuthenticationError(
            f"{denied}: {detail}. Check the API key (and that it may use this model)."
            if detail
            else f"{denied}. Check the API key (and that it may use this model).",
            provider=provider,
            status_code=status,
            task_id=task_id,
        )
    elif status == 429:
        err = RateLimitedError(
            f"{message}. The service is rate limiting requests.",
            provider=provider,
            status_code=status,
            task_id=task_id,
        )
    elif 300 <= status < 400:
        err = BadRequestError(
            f"{where}: {_redirect_words(response)}",
            provider=provider,
            status_code=status,
            task_id=task_id,
        )
    elif status == 408:
        err = ProviderTimeoutError(message, provider=provider, status_code=status, task_id=task_id)
    elif status == 409 or status >= 500:
        err = ServerError(message, provider=provider, status_code=status, task_id=task_id)
    else:
        err = BadRequestError(message, provider=provider, status_code=status, task_id=task_id)
    # any status may say how long to wait (503 + Retry-After is common during overload)
    err.retry_after = parse_retry_after(response.headers)
    override = response.headers.get("x-should-retry", "").strip().lower()
    if override in ("true", "false"):
        err.retryable = override == "true"
    return err


def _redirect_words(response: httpx.Response) -> str:
    """What a redirect that was not followed says: where to, and what to do."""
    location = response.headers.get("location", "").strip()
    if not location:
        return "the server redirects without saying where to; check the base URL"
    try:
        target = response.request.url.join(location)
    except (httpx.InvalidURL, RuntimeError):
        return "the server redirects to an address that is not a URL; check the base URL"
    # scheme, host and path only: a query may carry a signed token, userinfo a password
    shown = urllib.parse.urlunsplit(
        (
            target.scheme,
            target.netloc.decode("ascii", "replace").rpartition("@")[2],
            target.path,
            "",
            "",
        )
    )
    shown = scrub(shown.encode("ascii", "backslashreplace").decode()[:200])
    return (
        f"the server redirects to {shown}; nbbatch does not follow redirects with an API "
        "key (it could go to another host). If that is the service's address, set the base "
        "URL to it"
    )


def error_from_exception(
    exc: httpx.HTTPError, provider: str, *, task_id: str | None = None
) -> ProviderError:
    """Map an httpx transport error (never an HTTP status) to a provider error."""
    host = ""
    with contextlib.suppress(RuntimeError, AttributeError):
        host = exc.request.url.host
    where = f"{provider} ({host})" if host else provider
    if isinstance(exc, httpx.ConnectTimeout):
        return ProviderTimeoutError(
            f"{where}: timed out connecting; is the server up and reachable?",
            provider=provider,
            task_id=task_id,
        )
    if isinstance(exc, httpx.TimeoutException):
        phase = type(exc).__name__.replace("Timeout", "").lower() or "request"
        return ProviderTimeoutError(
            f"{where}: timed out ({phase}); the service took too long to answer",
            provider=provider,
            task_id=task_id,
        )
    if isinstance(exc, httpx.ConnectError):
        return ProviderConnectionError(
            f"{where}: could not connect ({scrub(str(exc)) or 'connection refused'}); "
            "check the base URL and that the server is running",
            provider=provider,
            task_id=task_id,
        )
    if isinstance(exc, httpx.DecodingError):
        return MalformedResponseError(
            f"{where}: the response could not be decoded: {scrub(str(exc))}",
            provider=provider,
            task_id=task_id,
        )
    if isinstance(exc, (httpx.TransportError, httpx.StreamError)):
        return ProviderConnectionError(
            f"{where}: the connection failed mid-request ({type(exc).__name__}: "
            f"{scrub(str(exc)) or 'closed by the server'})",
            provider=provider,
            task_id=task_id,
        )
    return ProviderConnectionError(
        f"{where}: {type(exc).__name__}: {scrub(str(exc))}", provider=provider, task_id=task_id
    )


Classifier = Callable[[httpx.Response, ProviderError], ProviderError]


class _LoopClient:
    """One loop's ``httpx.AsyncClient``, closed when that loop shuts down.

    A provider is usually not closed by whoever ends the loop (``asyncio.run`` in
    ``run_sync``), so its sockets would leak with the dead loop. An async generator
    started on the loop is finalised by the loop's ``shutdown_asyncgens()`` (which
    ``asyncio.run`` and ``asyncio.Runner`` call): its ``finally`` closes the client
    there, on the right loop, while it still runs.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._guard = self._close_at_shutdown()
        # the first __anext__ registers the generator with the running loop; the task
        # runs it to its yield so that finalising it executes the finally block
        self._started = asyncio.ensure_future(self._guard.__anext__())

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.client.aclose()

    async def aclose(self) -> None:
        if not self._started.done():
            await self._started
        await self._guard.aclose()


_KEY_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "password", "credential")
_REDACTED = "***"


def _carries_key(header: str) -> bool:
    name = header.lower()
    return any(word in name for word in _KEY_HEADER_WORDS)


def _register_header_secrets(headers: Mapping[str, str]) -> None:
    """Make :func:`scrub` mask the credential headers' values (and a scheme's token)."""
    for name, value in headers.items():
        if not _carries_key(name) or not isinstance(value, str) or not value.strip():
            continue
        Secret(value)
        scheme, _, token = value.strip().partition(" ")
        if token.strip() and scheme.isalpha():  # "Bearer <token>", "Key <token>"
            Secret(token)


def redact_headers(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    """``headers`` as a dict safe to log: every credential header's value is ``***``.

    httpx's own ``Headers`` repr masks only ``Authorization`` and
    ``Proxy-Authorization``; ``x-goog-api-key`` or ``x-api-key`` would print in clear.
    """
    return {k: (_REDACTED if _carries_key(k) else scrub(v)) for k, v in headers.items()}


#: connections per shard of a provider's pool (see _ShardedTransport)
_SHARD_CONNECTIONS = 4


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The process's one TLS context (certificate checks on, the system's CA bundle).

    Loading the CA bundle takes 20 ms on a quiet machine and has taken over a second on a
    busy one; a provider is built on the kernel's event loop (each "Run all" of a saved
    configuration builds one), so it is loaded once and shared: an ``SSLContext`` may
    serve any number of connections, threads and loops.
    """
    return httpx.create_ssl_context()


class _CountedStream(httpx.AsyncByteStream):
    """A response body that tells its shard when it is closed (the connection is free)."""

    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


#: what one read of a response asks its connection for (httpcore asks for 64 KB)
_READ_BYTES = 1024 * 1024


class _WholeReads(httpcore.AsyncNetworkStream):
    """A connection whose reads take whatever has arrived, up to :data:`_READ_BYTES`.

    httpcore reads a body 64 KB at a time. The asyncio transport under it receives up
    to 256 KB per socket read and queues it; each 64 KB read then cut the queued piece
    (copying the rest) and went once round the event loop. A 1024x1024 PNG in JSON
    (1.8 MB) took ~56 reads for ~7 socket reads. Asked for more, each read takes a
    queued piece whole: profiled over 400 such answers, receiving the bodies fell from
    4.1 to 1.5 s of CPU. A read may so return more than httpcore asked for; h11, which
    parses what is read, buffers any amount (and TLS is the stream underneath).
    """

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max(max_bytes, _READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _WholeReads(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _WholeReadsBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio (anyio) backend, its connections wrapped in :class:`_WholeReads`."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout, local_address=local_address, socket_options=socket_options
        )
        return _WholeReads(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout, socket_options=socket_options
        )
        return _WholeReads(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _shard(tls: ssl.SSLContext, connections: int) -> httpx.AsyncHTTPTransport:
    """One shard: httpx's transport over a pool that reads with :class:`_WholeReads`.

    httpx has no setting for its pool's network backend, so the pool it made is
    replaced by one with the same settings and ours; should a later httpx build its
    transport differently, its own pool stays (slower, never wrong).
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits)
    if isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_WholeReadsBackend(),
        )
    return transport


class _ShardedTransport(httpx.AsyncBaseTransport):
    """Several small httpcore pools in place of one wide one.

    httpcore scans its whole pool several times per request and response, and one of
    those scans is quadratic in the number of connections (each idle connection counts
    the pool again, and each check of an idle connection polls its socket): with 32
    connections that was ~2,000 calls and ~1 ms of CPU per request. Each request goes
    to the shard with the fewest requests in flight, so a shard is only full when all
    are, and ``max_connections`` stays the bound of the whole.
    """

    def __init__(self, max_connections: int) -> None:
        total = max(1, max_connections)
        count = -(-total // _SHARD_CONNECTIONS)
        sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]
        tls = default_tls()
        self._shards = [_shard(tls, n) for n in sizes]
        # free slots per shard: a request goes where most are free
        self._free = sizes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        free = self._free
        index = free.index(max(free))
        free[index] -= 1

        def done() -> None:
            free[index] += 1

        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            done()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CountedStream(response.stream, done)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class HttpClient:
    """One provider's connection pool plus error mapping.

    ``headers`` may carry the key (built with ``Secret.reveal()``); they are never
    logged or put into errors. ``classify(response, default_error)`` lets a provider
    turn the generic error into a more precise one (e.g. a moderation 403 into
    ``ContentRefusedError``).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        classify: Classifier | None = None,
        max_connections: int = 64,
        follow_redirects: bool | None = None,
        limits: BodyLimits | None = None,
    ) -> None:
        self.provider = provider
        #: the body caps (:data:`BODY_LIMITS` unless given)
        self.limits = limits or BODY_LIMITS
        clean_url, credentials = split_url_credentials(base_url)
        self.base_url = clean_url.rstrip("/")
        if credentials is not None and auth is None:
            # httpx would send them as Basic auth anyway; moving them out of the URL keeps
            # the password out of httpx's request log, response.url and error messages
            auth = httpx.BasicAuth(credentials[0], credentials[1].reveal())
        self.timeouts = timeouts or Timeouts()
        self._classify = classify
        self.headers: dict[str, str] = dict(headers or {})
        _register_header_secrets(self.headers)
        if isinstance(auth, tuple) and len(auth) == 2 and auth[1]:
            Secret(auth[1])
        if follow_redirects is None:
            # httpx drops Authorization on a cross-origin redirect but not custom key
            # headers (x-goog-api-key, x-key...): clients that carry a key never follow.
            follow_redirects = auth is None and not any(_carries_key(n) for n in self.headers)
        self.follow_redirects = follow_redirects
        self._auth = auth
        self._transport = transport
        self._max_connections = max_connections
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._clients_lock = threading.Lock()
        self._closed = False
        with contextlib.suppress(RuntimeError):  # made inside a loop: ready for it now
            loop = asyncio.get_running_loop()
            self._clients[loop] = _LoopClient(self._new_client())

    def _refusal(self, read: httpx.Response, task_id: str | None) -> ProviderError:
        """The error for an unsuccessful answer, as the provider's ``classify`` sees it."""
        err = error_from_response(read, self.provider, task_id=task_id)
        return err if self._classify is None else self._classify(read, err)

    def _too_large(
        self, what: str, response: httpx.Response, limit: int, task_id: str | None
    ) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{self.provider}: {what}",
            provider=self.provider,
            status_code=response.status_code,
            task_id=task_id,
            limit=limit,
        )

    def _new_client(self) -> httpx.AsyncClient:
        transport = self._transport
        if transport is None and not urllib.request.getproxies():
            # Behind a proxy (environment settings, which httpx honours only for the
            # transport it builds itself) the client keeps httpx's own pool.
            transport = _ShardedTransport(self._max_connections)
        # only the codings _read_body inflates step by step (httpx would add br and zstd
        # when their packages are installed); a caller's own Accept-Encoding wins
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Accept-Encoding": _ACCEPT_ENCODING, **self.headers},
            auth=self._auth,
            timeout=self.timeouts.to_httpx(),
            transport=transport,
            limits=httpx.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
            ),
            follow_redirects=self.follow_redirects,
        )

    @property
    def _client(self) -> httpx.AsyncClient:
        """The client of the running event loop, made on first use there."""
        if self._closed:
            raise RuntimeError(f"{self.provider}: this HTTP client has been closed")
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            entry = self._clients.get(loop)
            if entry is None:
                # the client of a loop that has ended was closed by that loop's shutdown
                for old in [lp for lp in self._clients if lp.is_closed()]:
                    del self._clients[old]
                entry = self._clients[loop] = _LoopClient(self._new_client())
            return entry.client

    @property
    def closed(self) -> bool:
        return self._closed

    async def _send(
        self,
        method: str,
        url: str,
        *,
        cap: int,
        what: str,
        task_id: str | None,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        """Send, read the body under ``cap`` (an error body under ``limits.error``), map
        a non-2xx answer to its provider error; return the read 2xx response."""
        client = self._client
        send: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("auth", "follow_redirects") if k in kwargs
        }
        try:
            request = client.build_request(method, url, **kwargs)
            response = await client.send(request, stream=True, **send)
            try:
                if response.is_success:
                    body = await _read_body(response, cap)
                else:
                    body = await _read_body(response, self.limits.cap(self.limits.error), cut=True)
            finally:
                await response.aclose()
        except _BodyTooLarge:
            raise self._too_large(
                f"answer larger than {format_bytes(cap)} (the limit is {format_bytes(cap)} "
                f"for {what}); nbbatch stopped reading it. A service that sends this much is "
                "misbehaving: check the base URL, or ask for fewer or smaller images",
                response,
                cap,
                task_id,
            ) from None
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, self.provider, task_id=task_id) from None
        read = _rebuilt(response, body)
        observe_response(self, self.provider, read.headers)  # x-ratelimit-*: the endpoint's gate
        if read.is_success:
            return read
        raise self._refusal(read, task_id)

    async def request(
        self,
        method: str,
        url: str,
        *,
        task_id: str | None = None,
        max_bytes: int | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; return the 2xx response (its body read, at most ``max_bytes``,
        by default ``limits.total``) or raise a provider error."""
        wanted = self.limits.total if max_bytes is None else max_bytes
        return await self._send(
            method,
            url,
            cap=self.limits.cap(wanted),
            what="an answer",
            task_id=task_id,
            kwargs=kwargs,
        )

    async def json(
        self, method: str, url: str, *, task_id: str | None = None, **kwargs: Any
    ) -> Any:
        """:meth:`request` and parse a JSON body (MalformedResponseError when it is not)."""
        response = await self._send(
            method,
            url,
            cap=self.limits.cap(self.limits.json),
            what="a JSON answer",
            task_id=task_id,
            kwargs=kwargs,
        )
        try:
            size = len(response.content)
            if not FAST_JSON and size > _OFFLOAD_JSON_BYTES:
                return await asyncio.to_thread(_parse_json, response)
            await pass_turn(size)  # a big body waits its turn in a busy pass of the loop
            return _parse_json(response)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = response.headers.get("content-type") or "no content type"
            reason = scrub(" ".join(str(exc).split()))[:120]
            raise MalformedResponseError(
                f"{self.provider}: expected JSON; the answer ({format_bytes(size)}, "
                f"{kind[:60]}) could not be read as JSON: {reason or type(exc).__name__}",
                provider=self.provider,
                status_code=response.status_code,
                task_id=task_id,
            ) from None

    async def download(
        self, url: str, *, max_bytes: int, task_id: str | None = None, **kwargs: Any
    ) -> tuple[bytes, str | None]:
        """GET ``url``, refusing more than ``max_bytes`` (held to ``limits.total``);
        return (body, type).

        A body shorter than its Content-Length (a dropped connection) is a retryable
        connection error; nothing partial is ever returned.
        """
        response = await self._send(
            "GET",
            url,
            cap=self.limits.cap(max_bytes),
            what="an image",
            task_id=task_id,
            kwargs=kwargs,
        )
        return response.content, response.headers.get("content-type")

    async def download_to(
        self,
        url: str,
        sink: BinaryIO,
        *,
        max_bytes: int,
        task_id: str | None = None,
        **kwargs: Any,
    ) -> int:
        """GET ``url`` and write its body to ``sink`` as it arrives; return the bytes.

        For answers too large to hold (a batch API's result file: tens of GB): only one
        piece is in memory at a time. ``max_bytes`` is this call's own cap (not held to
        ``limits.total``, which is for bodies read into memory). Errors map as for
        :meth:`request`; a body cut short raises, and the caller discards what was
        written.
        """
        client = self._client
        written = 0
        try:
            request = client.build_request("GET", url, **kwargs)
            response = await client.send(request, stream=True)
            try:
                if not response.is_success:
                    body = await _read_body(response, self.limits.cap(self.limits.error), cut=True)
                else:
                    body = None
                    async for piece in response.aiter_bytes():
                        written += len(piece)
                        if written > max_bytes:
                            raise _BodyTooLarge
                        sink.write(piece)
                        await pass_turn(len(piece))
            finally:
                await response.aclose()
        except _BodyTooLarge:
            raise self._too_large(
                f"file larger than {format_bytes(max_bytes)}; nbbatch stopped reading it. "
                "Check the base URL, or raise the limit",
                response,
                max_bytes,
                task_id,
            ) from None
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, self.provider, task_id=task_id) from None
        if body is not None:
            raise self._refusal(_rebuilt(response, body), task_id)
        return written

    async def aclose(self) -> None:
        """Close every loop's client; this one's properly, others' as far as they allow."""
        self._closed = True
        with self._clients_lock:
            clients, self._clients = self._clients, {}
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, entry in clients.items():
            if loop is here:
                await entry.aclose()
            # another loop's client cannot be awaited from here: that loop's shutdown
            # closes it (see _LoopClient)
