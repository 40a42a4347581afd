"""API keys: kept in memory only, masked everywhere they could be printed.

A :class:`Secret` never shows its value in ``repr``/``str``/f-strings; ``reveal()`` is the
only way to read it (used when building a request header). Every secret created is
remembered (weakly, by value) so :func:`scrub` can remove it from any text — error
messages, server responses echoed back, log records — before that text goes anywhere.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
from collections.abc import Iterable

__all__ = ["Secret", "redact_url", "resolve_key", "scrub", "split_url_credentials"]

_MASK = "***"
_known: set[str] = set()
_known_lock = threading.Lock()


class Secret:
    """A key or token. ``str(secret)`` is ``'***'``; ``secret.reveal()`` is the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("a secret must be a non-empty string")
        self._value = value.strip()
        if len(self._value) >= 4:  # masking 1-3 character strings would mangle all text
            with _known_lock:
                _known.add(self._value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled (it would be written out in clear)")


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """Replace every known secret (and ``extra`` values) in ``text`` with ``***``."""
    with _known_lock:
        values = sorted({*_known, *(e for e in extra if e and len(e) >= 4)}, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, _MASK)
    return text


def resolve_key(
    explicit: str | Secret | None, env_names: Iterable[str], *, required: bool = True
) -> Secret | None:
    """The key to use: the explicit argument, else the first set environment variable."""
    if isinstance(explicit, Secret):
        return explicit
    if explicit:
        return Secret(explicit)
    for name in env_names:
        value = os.environ.get(name)
        if value and value.strip():
            return Secret(value)
    return None


def split_url_credentials(url: str) -> tuple[str, tuple[str, Secret] | None]:
    """``url`` without its ``user:password@`` part, and (user, password) when it had one.

    The password becomes a :class:`Secret` (so :func:`scrub` masks it from then on). A
    URL with a user name but no password keeps nothing: there is no secret to protect.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url, None
    if parts.password is None and parts.username is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    password = urllib.parse.unquote(parts.password or "")
    if not password.strip():
        return clean, None
    user = urllib.parse.unquote(parts.username or "")
    return clean, (user, Secret(password))


def redact_url(url: str) -> str:
    """``url`` with any password in it replaced by ``***`` (for messages and listings)."""
    clean, credentials = split_url_credentials(url)
    if credentials is None:
        return url if clean == url else clean
    parts = urllib.parse.urlsplit(clean)
    user = urllib.parse.quote(credentials[0], safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{_MASK}@{parts.netloc}"))


class _RedactingFilter(logging.Filter):
    """Masks known secrets in every record of the ``nbbatch`` logger tree."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        # Handlers format tracebacks after filters run; format it here so that the
        # scrubbed text is what every handler prints (they reuse exc_text when set).
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


# httpx logs every request's URL at INFO, and its records do not pass through the
# "nbbatch" logger: its loggers get the same filter (a logger's filters see only the
# records logged on it, so httpcore's per-module loggers are listed one by one).
for _name in (
    "nbbatch",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactingFilter) for f in _logger.filters):
        _logger.addFilter(_RedactingFilter())
