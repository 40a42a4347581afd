"""The cost ledger: what an image cost, from what the provider billed or from a price table.

One place turns images into money, for budgets (``engine/_pace.py``), ``Batch.to_dataframe()``
(``cost``, ``cost_basis``) and ``Workspace.stats()``:

* where the provider reported **usage** for a request (OpenAI ``usage`` with text and
  image tokens, Gemini ``usageMetadata``, Replicate ``metrics.predict_time``), recorded
  in the first image's ``params["info"]["usage"]`` (or ``["predict_time"]``), and the
  **token price table** has the model, the cost is the usage priced token by token
  (``cost_basis == "usage"``);
* otherwise the **per-image price** (``Settings.prices``, keyed ``"<provider>/<model>"``
  then ``"<provider>"``) times the images (``cost_basis == "price table"``);
* otherwise the cost is unknown (``None``).

An image that came through a provider's **batch API** carries ``"batch_api": true`` in
its ``params`` or in ``params["info"]`` (:data:`BATCH_API_KEY`): it is billed at
:data:`BATCH_RATE` (half) of either basis, as OpenAI and Gemini bill their batch APIs.

The token price table (:data:`TOKEN_PRICES`) is kept here with the date each price was
read; ``Settings.token_prices`` adds to or overrides it (same shape). Prices are per one
million tokens (``per_second`` for services billed by compute time), in US dollars as the
services publish them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core._errors import ConfigError

__all__ = [
    "BATCH_API_KEY",
    "BATCH_RATE",
    "TOKEN_PRICES",
    "Cost",
    "check_token_prices",
    "image_cost",
    "price_of",
    "task_cost",
]

#: the key (in an image's ``params`` or ``params["info"]``) marking an image made through a
#: provider's batch API; such images cost :data:`BATCH_RATE` of the usual price
BATCH_API_KEY = "batch_api"
#: what a batch-API image costs, as a share of the same image made by a direct request
BATCH_RATE = 0.5

#: the fields a token price may have (dollars per million tokens; per_second: per second)
TOKEN_FIELDS = (
    "input_text",
    "input_image",
    "output_image",
    "output_text",
    "per_second",
)

#: Built-in token prices, per model, with the date they were read from the provider's
#: pricing page. ``Settings.token_prices`` overrides an entry or adds models.
TOKEN_PRICES: dict[str, dict[str, Any]] = {
    "openai/gpt-image-1": {
        "date": "2025-04-23",
        "input_text": 5.0,
        "input_image": 10.0,
        "output_image": 40.0,
    },
    "openai/gpt-image-1-mini": {
        "date": "2025-10-06",
        "input_text": 2.0,
        "input_image": 2.5,
        "output_image": 8.0,
    },
    "gemini/gemini-2.5-flash-image": {
        "date": "2025-08-26",
        "input_text": 0.30,
        "input_image": 0.30,
        "output_image": 30.0,
        "output_text": 2.50,
    },
    "gemini/gemini-2.5-flash-image-preview": {
        "date": "2025-08-26",
        "input_text": 0.30,
        "input_image": 0.30,
        "output_image": 30.0,
        "output_text": 2.50,
    },
}


def check_token_prices(table: object) -> dict[str, dict[str, Any]]:
    """A token price table as given, checked: ``{"provider/model": {"date": ..., field:
    dollars per million tokens}}``. Raises :class:`ConfigError` in words."""
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"'token_prices' must map provider/model to prices, got {type(table).__name__}"
        )
    out: dict[str, dict[str, Any]] = {}
    for key, entry in table.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"a token price needs a provider/model name, got {key!r}")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"the token prices of {key!r} must be an object, got {entry!r}")
        clean: dict[str, Any] = {}
        for name, value in entry.items():
            if name == "date":
                if not isinstance(value, str):
                    raise ConfigError(f"the date of the token prices of {key!r} must be text")
                clean["date"] = value
                continue
            if name not in TOKEN_FIELDS:
                raise ConfigError(
                    f"unknown token price {name!r} for {key!r}; known: date, "
                    + ", ".join(TOKEN_FIELDS)
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"the token price {name!r} of {key!r} must be a number")
            if not 0 <= float(value) < math.inf:
                raise ConfigError(f"the token price {name!r} of {key!r} must be zero or more")
            clean[name] = float(value)
        out[key.strip()] = clean
    return out


def price_of(prices: Mapping[str, float], provider: str, model: str | None) -> float | None:
    """The price of one image: ``"<provider>/<model>"`` first, then ``"<provider>"``."""
    if model:
        found = prices.get(f"{provider}/{model}")
        if found is not None:
            return found
    return prices.get(provider)


def _tokens_of(entry: Mapping[str, Any], *paths: str) -> int:
    total = 0
    for path in paths:
        value: Any = entry
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total += int(value)
    return total


def _modalities(details: object) -> dict[str, int]:
    """Gemini's ``[{"modality": "IMAGE", "tokenCount": 1290}, ...]`` as a dict."""
    out: dict[str, int] = {}
    if isinstance(details, list):
        for item in details:
            if isinstance(item, Mapping) and isinstance(item.get("tokenCount"), int):
                key = str(item.get("modality", "TEXT")).upper()
                out[key] = out.get(key, 0) + int(item["tokenCount"])
    return out


def _usage_dollars(info: Mapping[str, Any], rates: Mapping[str, Any]) -> float | None:
    """Money for one request's usage at ``rates``; None when it reports nothing usable."""
    usage = info.get("usage")
    per_m = 1_000_000.0

    def rate(name: str) -> float:
        value = rates.get(name)
        return float(value) if isinstance(value, (int, float)) else 0.0

    if isinstance(usage, Mapping):
        if "promptTokenCount" in usage or "candidatesTokenCount" in usage:  # Gemini
            prompt = _modalities(usage.get("promptTokensDetails"))
            answer = _modalities(usage.get("candidatesTokensDetails"))
            if not prompt:
                prompt = {"TEXT": _tokens_of(usage, "promptTokenCount")}
            if not answer:
                answer = {"IMAGE": _tokens_of(usage, "candidatesTokenCount")}
            thoughts = _tokens_of(usage, "thoughtsTokenCount")
            dollars = (
                prompt.get("TEXT", 0) * rate("input_text")
                + prompt.get("IMAGE", 0) * rate("input_image")
                + answer.get("IMAGE", 0) * rate("output_image")
                + (answer.get("TEXT", 0) + thoughts) * rate("output_text")
            )
            return dollars / per_m
        if "input_tokens" in usage or "output_tokens" in usage:  # OpenAI images
            text_in = _tokens_of(usage, "input_tokens_details.text_tokens")
            image_in = _tokens_of(usage, "input_tokens_details.image_tokens")
            if not text_in and not image_in:
                text_in = _tokens_of(usage, "input_tokens")
            out_details = usage.get("output_tokens_details")
            if isinstance(out_details, Mapping):
                image_out = _tokens_of(usage, "output_tokens_details.image_tokens")
                text_out = _tokens_of(usage, "output_tokens_details.text_tokens")
            else:
                image_out, text_out = _tokens_of(usage, "output_tokens"), 0
            dollars = (
                text_in * rate("input_text")
                + image_in * rate("input_image")
                + image_out * rate("output_image")
                + text_out * rate("output_text")
            )
            return dollars / per_m
    seconds = info.get("predict_time")  # Replicate's metrics.predict_time
    if isinstance(seconds, (int, float)) and "per_second" in rates:
        return float(seconds) * rate("per_second")
    return None


@dataclass(frozen=True)
class Cost:
    """What a task (or an image) cost: ``amount`` (None: unknown) and how it was found."""

    amount: float | None
    #: "usage" (billed usage x token prices), "price table" (images x price), or None
    basis: str | None


def _model_of(params: Mapping[str, Any], fallback: str | None) -> str | None:
    model = params.get("model")
    if isinstance(model, str) and model:
        return model
    info = params.get("info")
    if isinstance(info, Mapping) and isinstance(info.get("modelVersion"), str):
        return str(info["modelVersion"])
    return fallback


def _batch_api(params: Mapping[str, Any]) -> bool:
    info = params.get("info")
    return bool(params.get(BATCH_API_KEY)) or (
        isinstance(info, Mapping) and bool(info.get(BATCH_API_KEY))
    )


def image_cost(
    params: Mapping[str, Any],
    prices: Mapping[str, float],
    token_prices: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    provider: str | None = None,
    model: str | None = None,
    usage_of_task: bool = False,
) -> Cost:
    """The cost of one stored image from its ``params`` (as the runner records them).

    ``usage_of_task``: another image of the same request carries the request's usage
    (it is recorded on the first image only), so this one adds nothing on that basis.
    """
    name = params.get("provider") or provider or ""
    if not isinstance(name, str):
        name = str(name)
    model = _model_of(params, model)
    rate = BATCH_RATE if _batch_api(params) else 1.0
    table = TOKEN_PRICES if token_prices is None else token_prices
    rates = (table.get(f"{name}/{model}") if model else None) or table.get(name)
    info = params.get("info")
    if rates is not None and isinstance(info, Mapping):
        dollars = _usage_dollars(info, rates)
        if dollars is not None:
            return Cost(dollars * rate, "usage")
    if usage_of_task and rates is not None:
        return Cost(0.0, "usage")
    price = price_of(prices, name, model)
    if price is None:
        return Cost(None, None)
    return Cost(price * rate, "price table")


def task_cost(
    images: Iterable[Mapping[str, Any]],
    prices: Mapping[str, float],
    token_prices: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    provider: str | None = None,
    model: str | None = None,
) -> Cost:
    """The cost of a task's images (each image's ``params``); ``Cost(None, None)`` when
    it made none or the price of one is unknown."""
    items = list(images)
    if not items:
        return Cost(None, None)
    table = TOKEN_PRICES if token_prices is None else token_prices
    # usage is recorded once per request (on its first image): when one image has it,
    # the request's other images are covered by it
    has_usage = False
    for p in items:
        info = p.get("info")
        name = str(p.get("provider") or provider or "")
        m = _model_of(p, model)
        rates = (table.get(f"{name}/{m}") if m else None) or table.get(name)
        if (
            rates is not None
            and isinstance(info, Mapping)
            and _usage_dollars(info, rates) is not None
        ):
            has_usage = True
            break
    total = 0.0
    bases: set[str] = set()
    for p in items:
        cost = image_cost(p, prices, table, provider=provider, model=model, usage_of_task=has_usage)
        if cost.amount is None:
            return Cost(None, None)
        total += cost.amount
        if cost.basis:
            bases.add(cost.basis)
    basis = "usage" if "usage" in bases else ("price table" if bases else None)
    return Cost(total, basis)
