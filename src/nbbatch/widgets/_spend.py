"""The "Spend and pace" part of the settings panel: a view over the engine's settings.

What the panel shows and takes here, all kept where the engine keeps it:

* the **notification webhook** (``engine/_pace.py``): a secret like a key. The page gets
  only where it comes from and its scheme and host (``https://ntfy.sh/…``); a URL typed
  in travels once by message, the field empties itself, and it lives in the kernel as a
  ``Secret`` (``Remember`` also writes it to the 0600 secrets file, never config.json);
* the **rate limits** per endpoint (``Settings.rate_limits``, ``core/_ratelimit.py``):
  requests and images per minute, keyed by a provider name or a base URL; saved ones
  apply to this kernel at once;
* the **token price table** (``Settings.token_prices`` over the built-in
  ``engine._ledger.TOKEN_PRICES``): per model, dollars per million tokens, with the date
  each price was read; only rows that differ from the built-in table are saved;
* the **account balance** of the provider the form shows, where the service has an API
  for it (``Provider.balance``); where it has none the page says so.

Input is checked here and refused with a :class:`UserFacingError` in words.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from nbbatch.core._ratelimit import RateLimit, set_rate_limit
from nbbatch.core._secrets import Secret
from nbbatch.engine._ledger import TOKEN_FIELDS, TOKEN_PRICES
from nbbatch.engine._pace import (
    WEBHOOK_ENV,
    WEBHOOK_SECRET,
    masked_webhook,
    set_webhook,
    webhook_source,
    webhook_url,
)
from nbbatch.engine._settings import Settings, delete_secret, load_secrets, save_secret
from nbbatch.errors import ConfigError, NbbatchError
from nbbatch.providers import Provider
from nbbatch.providers._registry import _REGISTRY

from ._words import UserFacingError, clip

__all__ = [
    "apply_rate_limits",
    "forget_webhook",
    "has_balance_api",
    "pace_from",
    "pace_info",
    "set_webhook_from",
]

_MAX_TEXT = 300


# ---------------------------------------------------------------- what the page sees
def webhook_info(secrets_path: os.PathLike[str] | str) -> dict[str, Any]:
    """Whether a webhook is set, where from, and what may be shown of it."""
    source = webhook_source(secrets_path)
    url: Secret | None = None
    if source == "saved":
        try:
            url = load_secrets(secrets_path).get(WEBHOOK_SECRET)
        except NbbatchError:
            url = None
    elif source is not None:
        url = webhook_url()
    return {
        "set": url is not None,
        "source": source if url is not None else None,
        "env": WEBHOOK_ENV,
        "shown": masked_webhook(url) if url is not None else None,
    }


def _shown_endpoint(name: str) -> str:
    """A rate limit's endpoint as the page may see it: a base URL set in Python with a
    password or a query in it shows its scheme and host only (``https://host/…``)."""
    return masked_webhook(name) if _has_credentials(name) else name


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def pace_info(settings: Settings, secrets_path: os.PathLike[str] | str) -> dict[str, Any]:
    """The webhook, rate limits and token prices as the form shows them (text)."""
    tokens: list[dict[str, Any]] = []
    for model in sorted({*TOKEN_PRICES, *settings.token_prices}):
        entry = settings.token_prices.get(model) or TOKEN_PRICES[model]
        tokens.append(
            {
                "model": model,
                "date": str(entry.get("date") or ""),
                **{f: _number(entry.get(f)) for f in TOKEN_FIELDS},
                "builtin": model in TOKEN_PRICES,
                "changed": model in settings.token_prices,
            }
        )
    return {
        "webhook": webhook_info(secrets_path),
        "rate_limits": [
            {
                "endpoint": _shown_endpoint(name),
                "requests_per_minute": _number(limit.requests_per_minute),
                "images_per_minute": _number(limit.images_per_minute),
            }
            for name, limit in settings.rate_limits.items()
        ],
        "token_prices": tokens,
        "token_fields": list(TOKEN_FIELDS),
    }


# ---------------------------------------------------------------- webhook
def set_webhook_from(content: dict[str, Any], secrets_path: os.PathLike[str] | str) -> None:
    """The webhook typed into the form: used by this kernel now, kept in the secrets
    file too when ``remember``. The plain text is dropped from the message at once."""
    raw = content.pop("url", None)
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 4096:
        raise UserFacingError("bad_webhook")
    url = Secret(raw.strip())
    del raw
    try:
        parts = urllib.parse.urlsplit(url.reveal())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise UserFacingError("bad_webhook")
    set_webhook(url.reveal())
    if content.get("remember") is True:
        save_secret(WEBHOOK_SECRET, url, secrets_path)


def forget_webhook(secrets_path: os.PathLike[str] | str) -> None:
    """No webhook in this kernel, none in the secrets file (one in the environment stays:
    the page says it comes from there)."""
    set_webhook(None)
    try:
        delete_secret(WEBHOOK_SECRET, secrets_path)
    except NbbatchError as exc:
        raise UserFacingError("key_not_forgotten", message=clip(exc.message, 300)) from None


# ---------------------------------------------------------------- rate limits
def _rate(text: object, endpoint: str, name: str) -> float | None:
    value = str(text).strip() if isinstance(text, (str, int, float)) else None
    if value == "":
        return None
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise UserFacingError(
            f"bad_rate_{name}", endpoint=clip(endpoint, 80), value=clip(str(text), 40)
        )
    return number


def _has_credentials(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return bool(parts.username or parts.password or parts.query)


def rate_limits_from(raw: object, old: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
    """The rate limit rows of the form, checked. A row with both numbers empty is
    removed, unless Python set an endpoint concurrency on it (kept)."""
    if not isinstance(raw, list):
        raise UserFacingError("bad_request", type="rate_limits")
    out: dict[str, RateLimit] = {}
    for row in raw:
        if not isinstance(row, dict):
            raise UserFacingError("bad_request", type="rate_limits")
        endpoint = str(row.get("endpoint") or "").strip().rstrip("/")
        rpm_text, ipm_text = row.get("requests_per_minute", ""), row.get("images_per_minute", "")
        if not endpoint:
            if str(rpm_text).strip() or str(ipm_text).strip():
                raise UserFacingError("rate_endpoint_missing")
            continue  # an empty row
        if len(endpoint) > _MAX_TEXT:
            raise UserFacingError("bad_request", type="endpoint")
        # a row the page got masked stands for the endpoint set in Python
        endpoint = next((k for k in old if _shown_endpoint(k) == endpoint), endpoint)
        if _has_credentials(endpoint) and endpoint not in old:
            # never kept, never sent back: the reply names no part of it
            raise UserFacingError("rate_endpoint_credentials")
        if endpoint in out:
            raise UserFacingError("rate_duplicate", endpoint=clip(endpoint, 80))
        rpm = _rate(rpm_text, endpoint, "requests_per_minute")
        ipm = _rate(ipm_text, endpoint, "images_per_minute")
        before = old.get(endpoint, RateLimit())
        limit = dataclasses.replace(before, requests_per_minute=rpm, images_per_minute=ipm)
        if limit != RateLimit():
            out[endpoint] = limit
    return out


def apply_rate_limits(old: Mapping[str, RateLimit], new: Mapping[str, RateLimit]) -> None:
    """Make this kernel's gates follow the saved limits at once."""
    for name in set(old) - set(new):
        set_rate_limit(name)  # all defaults: removed
    for name, limit in new.items():
        set_rate_limit(
            name,
            requests_per_minute=limit.requests_per_minute,
            images_per_minute=limit.images_per_minute,
            concurrency=limit.concurrency,
            adaptive=limit.adaptive,
        )


# ---------------------------------------------------------------- token prices
def token_prices_from(raw: object) -> dict[str, dict[str, Any]]:
    """The token price rows of the form, checked: the rows that differ from the built-in
    table (or are new), each with its date."""
    if not isinstance(raw, list):
        raise UserFacingError("bad_request", type="token_prices")
    out: dict[str, dict[str, Any]] = {}
    for row in raw:
        if not isinstance(row, dict):
            raise UserFacingError("bad_request", type="token_prices")
        model = str(row.get("model") or "").strip()
        prices: dict[str, float] = {}
        for name in TOKEN_FIELDS:
            text = row.get(name, "")
            value = str(text).strip() if isinstance(text, (str, int, float)) else None
            if value == "":
                continue
            try:
                number = float(value) if value is not None else math.nan
            except ValueError:
                number = math.nan
            if not 0 <= number < math.inf:
                raise UserFacingError(
                    "bad_token_price",
                    model=clip(model or "?", 80),
                    name=name.replace("_", " "),
                    value=clip(str(text), 40),
                )
            prices[name] = number
        date = str(row.get("date") or "").strip()
        if not model and not prices and not date:
            continue  # an empty row
        provider, _, name = model.partition("/")
        if not provider or not name or len(model) > _MAX_TEXT:
            raise UserFacingError("bad_token_model", value=clip(model, 80))
        if model in out:
            raise UserFacingError("dup_token_price", model=clip(model, 80))
        if not prices:
            raise UserFacingError("empty_token_price", model=clip(model, 80))
        entry: dict[str, Any] = {"date": date, **prices}
        builtin = TOKEN_PRICES.get(model)
        if builtin is not None and entry == builtin:
            continue  # the built-in price as it is: not saved, so later updates reach it
        try:
            datetime.date.fromisoformat(date)
        except ValueError:
            raise UserFacingError(
                "bad_token_date", model=clip(model, 80), value=clip(date, 40)
            ) from None
        out[model] = entry
    return out


def pace_from(content: dict[str, Any], settings: Settings) -> Settings:
    """``settings`` with the form's rate limits and token prices (when it sent them)."""
    raw = content.get("pace")
    if raw is None:
        return settings
    if not isinstance(raw, dict):
        raise UserFacingError("bad_request", type="pace")
    limits = rate_limits_from(raw.get("rate_limits", []), settings.rate_limits)
    tokens = token_prices_from(raw.get("token_prices", []))
    try:
        return dataclasses.replace(settings, rate_limits=limits, token_prices=tokens)
    except ConfigError as exc:
        raise UserFacingError("bad_pace", message=clip(exc.message, 200)) from None


# ---------------------------------------------------------------- balance
def has_balance_api(provider: str) -> bool:
    """True when the provider's class asks its service for the account balance."""
    factory = _REGISTRY.get(provider)
    method = getattr(factory, "balance", None) if isinstance(factory, type) else None
    return method is not None and method is not Provider.balance
