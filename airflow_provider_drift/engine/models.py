"""What the engine knows about embedding models: dimension, limits, price.

Prices are USD per million input tokens as published by the providers on
:data:`PRICES_AS_OF`; they change, so they can be overridden (see
:func:`resolve_price`). An unknown model is never priced by guess: its cost
is recorded as unknown and a warning says how to give a price.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, UnknownModelError

log = logging.getLogger(__name__)

#: the day the built-in prices below were checked against the providers' price pages
PRICES_AS_OF = "2026-11-01"
#: environment variable naming a JSON price file ({"provider/model": usd_per_million_tokens, ...})
PRICES_FILE_ENV = "DRIFT_PRICES_FILE"
#: OpenAI Batch API price relative to the synchronous API
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class ModelInfo:
    name: str  # "provider/model"
    dim: int
    max_input_tokens: int = 8192
    usd_per_million_tokens: float | None = None
    #: dimensions the API can shorten to (Matryoshka models), if any
    flexible_dim: bool = False
    #: tokenizer the provider bills with; None when the engine cannot count it offline
    tokenizer: str | None = None
    #: API limits per request
    max_inputs_per_request: int = 2048
    max_tokens_per_request: int = 300_000


KNOWN_MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo(
            "openai/text-embedding-3-small", 1536, 8192, 0.02, flexible_dim=True, tokenizer="cl100k_base"
        ),
        ModelInfo(
            "openai/text-embedding-3-large", 3072, 8192, 0.13, flexible_dim=True, tokenizer="cl100k_base"
        ),
        ModelInfo("openai/text-embedding-ada-002", 1536, 8192, 0.10, tokenizer="cl100k_base"),
        ModelInfo("local/all-MiniLM-L6-v2", 384, 256, 0.0),
        ModelInfo("local/all-mpnet-base-v2", 768, 384, 0.0),
    ]
}


def close_models(model: str, *, n: int = 3) -> list[str]:
    """Known model names close to ``model`` (a typo, a missing or wrong provider prefix), closest first.

    Only the names about as close as the best one are kept, so a typo of
    ``text-embedding-3-small`` suggests that model, not every OpenAI model.
    """
    wanted = model.lower()
    scored: dict[str, float] = {}
    for known in KNOWN_MODELS:
        for form in (known.lower(), known.partition("/")[2].lower()):
            for text in (wanted, wanted.partition("/")[2] or wanted):
                ratio = difflib.SequenceMatcher(None, text, form).ratio()
                scored[known] = max(scored.get(known, 0.0), ratio)
    best = max(scored.values(), default=0.0)
    close = [m for m, r in scored.items() if r >= max(0.75, best - 0.04) and m != model]
    return sorted(close, key=lambda m: -scored[m])[:n]


def did_you_mean(model: str) -> str:
    """ " (did you mean 'openai/text-embedding-3-small'?)" for a near miss, else ""."""
    close = close_models(model)
    return f" (did you mean {' or '.join(repr(m) for m in close)}?)" if close else ""


def split_model(model: str) -> tuple[str, str]:
    """Split "provider/name" into its parts; a bare name is an error."""
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise UnknownModelError(
            f"model {model!r} is not of the form provider/name{did_you_mean(model)}",
            hint="write e.g. 'openai/text-embedding-3-small' or 'local/all-MiniLM-L6-v2'",
        )
    return provider, name


def model_info(model: str) -> ModelInfo | None:
    return KNOWN_MODELS.get(model)


def resolve_dim(model: str, dim: int | None = None) -> int:
    """The vector size for ``model``: an explicit ``dim`` wins, else the known one."""
    if dim is not None:
        if dim <= 0:
            raise UnknownModelError(f"dim must be positive, got {dim}")
        return dim
    info = model_info(model)
    if info is None:
        raise UnknownModelError(
            f"unknown model {model!r}{did_you_mean(model)}: its vector dimension is not known",
            hint="pass {opt:dim=N} or use a known model: " + ", ".join(sorted(KNOWN_MODELS)),
        )
    return info.dim


def _check_price(value: Any, *, model: str, origin: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"price for {model!r} from {origin} must be a non-negative number of USD per million tokens, "
            f"got {value!r}",
            hint='write e.g. {"openai/text-embedding-3-small": 0.02}',
        )
    return float(value)


def load_price_file(path: str) -> dict[str, float | None]:
    """Read a JSON price file: ``{"provider/model": usd_per_million_tokens}``.

    A top-level ``{"prices": {...}}`` wrapper is accepted too, so a file can
    carry its own ``"as_of"`` date next to the prices.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"price file {path!r} does not exist", hint=f"fix the path or unset {PRICES_FILE_ENV}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"price file {path!r} is not readable JSON: {exc}",
            hint='write a JSON object such as {"openai/text-embedding-3-small": 0.02}',
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("prices"), dict):
        data = data["prices"]
    if not isinstance(data, dict):
        raise ConfigError(
            f"price file {path!r} must hold a JSON object of model → USD per million tokens",
            hint='write e.g. {"openai/text-embedding-3-small": 0.02}',
        )
    return {str(k): _check_price(v, model=str(k), origin=path) for k, v in data.items()}


_warned_unpriced: set[str] = set()


def resolve_price(
    model: str,
    *,
    override: float | None = None,
    price_table: Mapping[str, float | None] | None = None,
    price_file: str | None = None,
) -> float | None:
    """USD per million tokens for ``model``, or None when nobody knows it.

    First match wins: ``override`` (an argument), ``price_table`` (e.g. a
    connection extra), ``price_file``, the file named by ``DRIFT_PRICES_FILE``,
    then the built-in table dated :data:`PRICES_AS_OF`. None means "cost
    unknown": callers record it as unknown, never as zero.
    """
    if override is not None:
        return _check_price(override, model=model, origin="the price argument")
    if price_table and model in price_table:
        return _check_price(price_table[model], model=model, origin="the price table")
    for path in (price_file, os.environ.get(PRICES_FILE_ENV) or None):
        if path:
            prices = load_price_file(path)
            if model in prices:
                return prices[model]
    info = model_info(model)
    if info is not None and info.usd_per_million_tokens is not None:
        return info.usd_per_million_tokens
    if model not in _warned_unpriced:
        _warned_unpriced.add(model)
        log.warning(
            "no price known for model %s: its cost will be recorded as unknown; give one with price=, "
            "a price table, or a JSON file named by %s",
            model,
            PRICES_FILE_ENV,
        )
    return None


def cost_usd(tokens: int, usd_per_million_tokens: float | None) -> float | None:
    """Cost of ``tokens`` at a price; unknown price, unknown cost."""
    if usd_per_million_tokens is None:
        return None
    return round(tokens * usd_per_million_tokens / 1e6, 10)
