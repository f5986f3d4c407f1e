"""Embedding providers, chosen by the model string ``provider/model``.

Heavy clients (openai, torch) are imported only when their provider is built.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnknownModelError
from ..models import did_you_mean, split_model
from .base import EmbeddingProvider, Embeddings

__all__ = ["EmbeddingProvider", "Embeddings", "get_provider"]


def get_provider(
    model: str,
    *,
    shadow_mode: bool = False,
    dim: int | None = None,
    options: dict[str, Any] | None = None,
    plan_only: bool = False,
) -> EmbeddingProvider:
    """Build the provider for ``model``; shadow mode serves any model name offline.

    ``plan_only`` builds a provider that counts tokens and prices but never
    sends: a dry run needs no API key.
    """
    provider, _ = split_model(model)
    options = dict(options or {})
    if shadow_mode or provider == "shadow":
        from .shadow import ShadowProvider

        # the input limits of the model it stands in for: shadow must refuse what the real one refuses
        limits = {k: options[k] for k in ("on_too_long", "max_input_tokens", "tokenizer") if k in options}
        return ShadowProvider(model, dim=dim, **limits)
    if provider == "openai":
        from .openai_provider import OpenAIProvider

        if plan_only:
            options["client"] = _PlanOnlyClient()
        return OpenAIProvider(model, dim=dim, **options)
    if provider == "local":
        from .local import LocalProvider

        return LocalProvider(model, **options)
    raise UnknownModelError(
        f"no provider for model {model!r}{did_you_mean(model)}",
        hint="use openai/<model> (OpenAI or a compatible server), local/<model>, or {opt:shadow_mode=True}",
    )


class _PlanOnlyClient:
    """Stands in for the API client of a dry run: a plan sends nothing, so it needs no key."""

    base_url = None

    def with_options(self, **_: Any) -> _PlanOnlyClient:
        return self

    def close(self) -> None:
        pass
