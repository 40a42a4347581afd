"""How an adapter reaches its service with a key: resolve it, send it only where it belongs.

Every keyed adapter needs the same three things: find the key (argument, then the
provider's environment variables from the catalogue), refuse to start without one when
the service needs it, and keep two HTTP clients -- one that carries the key and talks
only to the configured origin, and one without it for the URLs a server hands back
(CDN downloads, polling URLs on other hosts). :func:`open_service` does all of that;
:meth:`ServiceAccess.client_for` is the same-origin guard.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from ..core._errors import ConfigError
from ..core._secrets import Secret, resolve_key
from ._catalog import ProviderInfo
from ._http import Classifier, HttpClient, Timeouts

__all__ = ["ServiceAccess", "bearer", "open_service", "same_origin"]

KeyHeaders = Callable[[Secret], Mapping[str, str]]


def bearer(key: Secret) -> Mapping[str, str]:
    """``Authorization: Bearer <key>``, the most common scheme."""
    return {"Authorization": f"Bearer {key.reveal()}"}


def same_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base_url``.

    Adapters only send their key to the origin it was configured for: a URL a server
    hands back (polling, downloads) that points elsewhere is fetched without it.
    """
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


@dataclass
class ServiceAccess:
    """The resolved key and the two clients of one provider instance."""

    key: Secret | None
    base_url: str
    #: carries the key; used only for ``base_url``'s origin
    api: HttpClient
    #: never carries the key: for downloads and URLs on other hosts (its connections
    #: open only when it is first used)
    files: HttpClient

    def is_own(self, url: str) -> bool:
        """True when ``url`` is on the configured origin (so it may receive the key).

        Relative URLs are resolved against ``base_url`` and are therefore its own.
        """
        if not url.startswith(("http://", "https://")):
            return True
        return same_origin(url, self.base_url)

    def client_for(self, url: str) -> HttpClient:
        """The keyed client for the service's own URLs, the keyless one for the rest."""
        return self.api if self.is_own(url) else self.files

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.files.aclose()


def open_service(
    info: ProviderInfo,
    *,
    api_key: str | Secret | None,
    base_url: str | None,
    key_headers: KeyHeaders = bearer,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    classify: Classifier | None = None,
    files_max_connections: int = 16,
) -> ServiceAccess:
    """Resolve ``info``'s key and build the keyed (and optionally a keyless) client.

    Raises :class:`ConfigError` with the catalogue's message when the service needs a
    key for ``base_url`` and none was given or found in its environment variables.
    """
    url = (base_url or info.default_base_url or "").rstrip("/")
    if not url:
        raise ConfigError(f"{info.name}: a base_url is needed")
    key = resolve_key(api_key, info.key_env, required=False)
    if key is None and info.needs_key(base_url):
        raise ConfigError(info.missing_key_message())
    merged = dict(headers or {})
    if key is not None:
        merged.update(key_headers(key))
    api = HttpClient(
        info.name, url, headers=merged, timeouts=timeouts, transport=transport, classify=classify
    )
    keyless = HttpClient(
        info.name,
        url,
        timeouts=timeouts,
        transport=transport,
        max_connections=files_max_connections,
    )
    return ServiceAccess(key=key, base_url=api.base_url, api=api, files=keyless)
