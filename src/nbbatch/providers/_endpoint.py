"""Which endpoint a provider talks to, and sending one request through its gate.

:func:`endpoint_key` names an endpoint as ``"<provider>|<base URL>|<key fingerprint>"``
(the fingerprint is a short hash of the credential headers: never the key itself), so
every run and every pool member of the process that uses the same server with the same
key shares one :class:`~nbbatch.core._ratelimit.Gate`. A provider without an HTTP client
(the demo, a plug-in) is its own endpoint. :func:`generate_paced` is the one way the
runner and the pool send a request: the gate's limits first, then the request, then what
it answered (success, 429 with its ``Retry-After``) back to the gate.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Mapping
from typing import Any

from ..core._errors import ProviderError, RateLimitedError
from ..core._ratelimit import Gate, gate_for, gates
from ._base import GenerationRequest, ImageData, ProgressCallback, Provider

__all__ = ["endpoint_key", "gate_of", "generate_paced", "observe_response"]

_KEY_WORDS = ("auth", "key", "token", "secret", "cookie", "password", "credential")


def _client_key(name: str, client: Any) -> str:
    digest = hashlib.sha256()
    headers = getattr(client, "headers", None) or {}
    for header in sorted(headers):
        if any(word in header.lower() for word in _KEY_WORDS):
            digest.update(f"{header.lower()}={headers[header]}\n".encode())
    auth = getattr(client, "_auth", None)
    if auth is not None:
        digest.update(repr(getattr(auth, "_auth_header", auth)).encode())
    return f"{name}|{getattr(client, 'base_url', '')}|{digest.hexdigest()[:16]}"


_keys: weakref.WeakKeyDictionary[Provider, str | None] = weakref.WeakKeyDictionary()


def endpoint_key(provider: Provider) -> str | None:
    """The endpoint ``provider`` sends to; ``None`` for a pool (its members have theirs)."""
    try:
        return _keys[provider]
    except (KeyError, TypeError):
        pass
    key: str | None
    if getattr(provider, "endpoints", None) is not None and provider.name == "pool":
        key = None
    else:
        client = getattr(provider, "_http", None)
        if client is not None and hasattr(client, "base_url"):
            key = _client_key(provider.name, client)
        else:
            key = f"{provider.name}|object-{id(provider):x}|"
    with contextlib.suppress(TypeError):  # a provider that cannot be weakly referenced
        _keys[provider] = key
    return key


def gate_of(provider: Provider) -> Gate | None:
    """The gate of ``provider``'s endpoint (made on first use); None for a pool."""
    key = endpoint_key(provider)
    if key is None:
        return None
    _, url, _ = key.split("|")
    return gate_for(key, url, provider.name)


async def generate_paced(
    provider: Provider, request: GenerationRequest, on_progress: ProgressCallback | None = None
) -> list[ImageData]:
    """``provider.generate(...)`` after its endpoint's gate lets it go; tells the gate."""
    gate = gate_of(provider)
    if gate is None:
        return await provider.generate(request, on_progress)
    stamp = await gate.throttle(max(1, request.params.n))
    try:
        images = await provider.generate(request, on_progress)
    except RateLimitedError as exc:
        gate.rate_limited(stamp, exc.retry_after)
        raise
    except ProviderError:
        gate.failed(stamp)
        raise
    except BaseException:
        gate.failed(stamp)
        raise
    gate.succeeded(stamp)
    return images


def observe_response(client: Any, provider: str, headers: Mapping[str, str]) -> None:
    """Let an endpoint's gate read the rate-limit headers of an answer (if it has a gate)."""
    if not any(k.lower().startswith("x-ratelimit-") for k in headers):
        return
    gate = gates().get(_client_key(provider, client))
    if gate is not None:
        gate.observe_headers(headers)
