"""Get a vector for each distinct text: reuse one the sink already holds, else pay once.

"Be pessimistic": a vector is reused only if the sink still returns the
point *and* its payload still carries the same content hash and model —
the ledger alone is not trusted to know what the sink holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from .ledger import Ledger
from .providers.base import EmbeddingProvider, Embeddings
from .sinks.base import PAYLOAD_HASH, PAYLOAD_MODEL, Sink

log = logging.getLogger(__name__)


@dataclass
class Vectorized:
    by_hash: dict[str, np.ndarray] = field(default_factory=dict)
    #: hashes of the texts the provider embedded in this call (not reused)
    embedded: set[str] = field(default_factory=set)
    n_embedded: int = 0
    n_reused: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0


def add_cost(total: float | None, more: float | None) -> float | None:
    """Sum costs where any unknown part makes the whole unknown."""
    return None if total is None or more is None else total + more


def vectorize(
    texts_by_hash: dict[str, str],
    *,
    provider: EmbeddingProvider,
    sink: Sink,
    ledger: Ledger,
    reuse: bool,
    pending: Callable[[str], np.ndarray | None] | None = None,
    sink_lock: AbstractContextManager[object] | None = None,
    chunk: int | None = None,
) -> Vectorized:
    """Vectors for the distinct texts given (content hash → text).

    ``pending`` serves texts embedded earlier in this run whose batch is
    still on its way to the sink (see writer.py).
    """
    out = Vectorized()
    wanted = list(texts_by_hash)
    if reuse and pending is not None:
        for h in wanted:
            vec = pending(h)
            if vec is not None:
                out.by_hash[h] = vec
        wanted = [h for h in wanted if h not in out.by_hash]
    if reuse and wanted:
        holders = ledger.find_embedded(provider.model, wanted, sink=sink.uri)
        if holders:
            with sink_lock or nullcontext():
                stored = sink.fetch(list(set(holders.values())), with_vectors=True)
            for h, pid in holders.items():
                point = stored.get(pid)
                if (
                    point is not None
                    and point.vector is not None
                    and point.payload.get(PAYLOAD_HASH) == h
                    and point.payload.get(PAYLOAD_MODEL) == provider.model
                ):
                    out.by_hash[h] = np.asarray(point.vector, dtype=np.float32)
    out.n_reused = len(out.by_hash)
    missing = [h for h in wanted if h not in out.by_hash]
    step = chunk or int(getattr(provider, "preferred_chunk", 4096))
    for start in range(0, len(missing), step):
        part = missing[start : start + step]
        try:
            result = provider.embed([texts_by_hash[h] for h in part])
        except Exception as exc:
            partial = getattr(exc, "partial", None)
            if partial is not None:
                # Vectors the provider already returned (and billed) before failing:
                # hand them back so the caller stores them and the re-run never pays again.
                _take(out, [part[p] for p in partial.positions], partial.embeddings)
            exc.vectorized = out  # type: ignore[attr-defined]
            raise
        _take(out, part, result)
    return out


def _take(out: Vectorized, hashes: Sequence[str], result: Embeddings) -> None:
    for h, vec in zip(hashes, result.vectors, strict=True):
        out.by_hash[h] = vec
    out.embedded.update(hashes)
    out.n_embedded += len(hashes)
    out.tokens += result.tokens
    out.cost_usd = add_cost(out.cost_usd, result.cost_usd)


def stack(vectors: Sequence[np.ndarray], dim: int) -> np.ndarray:
    if not vectors:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.vstack(vectors), dtype=np.float32)
