"""What the engine knows about embedding models: dimension, limits, price.

Prices are USD per million input tokens as published by the providers on
the date below; they change, so they can be overridden (see
:func:`resolve_price`). An unknown model is never priced by guess: its cost
is recorded as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownModelError

PRICES_AS_OF = "2026-11-01"


@dataclass(frozen=True)
class ModelInfo:
    name: str  # "provider/model"
    dim: int
    max_input_tokens: int = 8192
    usd_per_million_tokens: float | None = None
    #: dimensions the API can shorten to (Matryoshka models), if any
    flexible_dim: bool = False


KNOWN_MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo("openai/text-embedding-3-small", 1536, 8192, 0.02, flexible_dim=True),
        ModelInfo("openai/text-embedding-3-large", 3072, 8192, 0.13, flexible_dim=True),
        ModelInfo("openai/text-embedding-ada-002", 1536, 8192, 0.10),
        ModelInfo("local/all-MiniLM-L6-v2", 384, 256, 0.0),
        ModelInfo("local/all-mpnet-base-v2", 768, 384, 0.0),
    ]
}


def split_model(model: str) -> tuple[str, str]:
    """Split "provider/name" into its parts; a bare name is an error."""
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise UnknownModelError(
            f"model {model!r} is not of the form provider/name",
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
            f"unknown model {model!r}: its vector dimension is not known",
            hint="pass dim=N (CLI: --dim N) or use a known model: " + ", ".join(sorted(KNOWN_MODELS)),
        )
    return info.dim
