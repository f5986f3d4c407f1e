"""nearest(): search a collection with the new model's query, adapted into the old index's space.

After a ``drift-adapter`` migration the index still holds old-model vectors;
queries are embedded with the new model and mapped by the adapter before the
search. Without an adapter this is a plain search with ``model``, which must
then be the collection's own model (same dimension).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import ConfigError, DimensionMismatchError, MigrationError
from .handles import ledger_for, sink_for
from .ledger import Ledger
from .providers import EmbeddingProvider, get_provider
from .sinks.base import Hit, Sink

if TYPE_CHECKING:
    from .adapter import DriftAdapter


def nearest(
    sink: str | Sink,
    query: str | Sequence[float] | np.ndarray,
    *,
    model: str,
    adapter: DriftAdapter | str | os.PathLike[str] | Literal["auto"] | None = None,
    limit: int = 10,
    shadow_mode: bool = False,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    dim: int | None = None,
    provider: EmbeddingProvider | None = None,
    provider_options: dict[str, Any] | None = None,
    sink_options: dict[str, Any] | None = None,
) -> list[Hit]:
    """Return the ``limit`` nearest points of ``sink`` to ``query`` (a text, or a ``model`` vector).

    :param model: the model the query is embedded with (the *new* model when adapting).
    :param adapter: a :class:`DriftAdapter`, the path of an adapter file, or ``"auto"``: the
        newest adapter that passed the gate for this sink and model, from the ledger. The
        adapter must map ``model`` into the collection's dimension; a file made for other
        models or dimensions is refused.
    """
    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}", hint="e.g. limit=10")
    with ExitStack() as stack:
        sink_obj = sink_for(sink, stack, sink_options)
        index_dim = sink_obj.dimension()
        if index_dim is None:
            raise ConfigError(f"{sink_obj.uri} does not exist", hint="embed into it first")
        fitted = _adapter(adapter, sink_obj, model=model, index_dim=index_dim, ledger=ledger)
        vector = _query_vector(query, model, fitted, shadow_mode, dim, provider, provider_options)
        if fitted is not None:
            vector = fitted.predict(vector)
        elif vector.shape[0] != index_dim:
            raise DimensionMismatchError(
                f"{model} gives {vector.shape[0]}-d queries but {sink_obj.uri} holds {index_dim}-d vectors",
                hint="pass the adapter of a drift-adapter migration (adapter='auto' or its path), "
                "or query with the collection's own model",
                expected=index_dim,
                actual=int(vector.shape[0]),
            )
        return sink_obj.search(vector, limit=limit)


def _query_vector(
    query: str | Sequence[float] | np.ndarray,
    model: str,
    fitted: DriftAdapter | None,
    shadow_mode: bool,
    dim: int | None,
    provider: EmbeddingProvider | None,
    provider_options: dict[str, Any] | None,
) -> np.ndarray:
    if isinstance(query, str):
        if not query.strip():
            raise ConfigError("the query text is empty", hint="pass a non-empty text")
        embedder = provider or get_provider(
            model,
            shadow_mode=shadow_mode,
            dim=dim or (fitted.d_new if fitted else None),
            options=provider_options,
        )
        return np.asarray(embedder.embed([query]).vectors[0], dtype=np.float32)
    vector = np.asarray(query, dtype=np.float32)
    if vector.ndim != 1:
        raise ConfigError(f"a query vector must be 1-D, got shape {vector.shape}", hint="pass one vector")
    if not np.isfinite(vector).all():
        raise ConfigError("the query vector contains NaN or inf", hint="check the embedding of the query")
    return vector


def _adapter(
    adapter: DriftAdapter | str | os.PathLike[str] | None,
    sink: Sink,
    *,
    model: str,
    index_dim: int,
    ledger: Ledger | str | os.PathLike[str] | None,
) -> DriftAdapter | None:
    """Load and check the adapter: it must take ``model`` queries and give ``index_dim`` vectors."""
    from .adapter import DriftAdapter

    if adapter is None:
        return None
    if isinstance(adapter, DriftAdapter):
        fitted = adapter
    elif adapter == "auto":
        with ExitStack() as stack:
            led = ledger_for(ledger, stack)
            found = [a for a in led.adapters(sink.uri, to_model=model, passed=True) if a["path"]]
        if not found:
            raise MigrationError(
                f"the ledger has no adapter for {model} queries on {sink.uri} that passed the gate",
                hint="run migrate(strategy='drift-adapter') first, or pass adapter=<path>",
            )
        return DriftAdapter.load(found[0]["path"], to_model=model, d_old=index_dim)
    else:
        fitted = DriftAdapter.load(Path(adapter), to_model=model, d_old=index_dim)
    if fitted.to_model and fitted.to_model != model:
        raise ConfigError(
            f"the adapter maps {fitted.to_model} queries, not {model}",
            hint="query with the adapter's new model, or use the adapter fitted for this model",
        )
    if fitted.d_old != index_dim:
        raise DimensionMismatchError(
            f"the adapter gives {fitted.d_old}-d vectors but {sink.uri} holds {index_dim}-d vectors",
            hint="use the adapter fitted for this collection",
            expected=index_dim,
            actual=fitted.d_old,
        )
    return fitted
