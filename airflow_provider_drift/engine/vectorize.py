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
from .providers.openai_provider import PartialEmbeddings
from .sinks.base import PAYLOAD_HASH, PAYLOAD_MODEL, Sink

log = logging.getLogger(__name__)


@dataclass
class Vectorized:
    """The vectors got for a set of texts, and — when the provider failed part-way — why the rest are missing.

    A failed call still returns what it has (``error`` set): vectors already
    embedded were paid for, so the caller writes them before raising ``error``.
    """

    by_hash: dict[str, np.ndarray] = field(default_factory=dict)
    #: hashes of the texts the provider embedded in this call (not reused)
    embedded: set[str] = field(default_factory=set)
    n_embedded: int = 0
    n_reused: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    #: the provider's error that cut the call short; ``by_hash`` holds what was got before it
    error: Exception | None = None


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
    """Vectors for the distinct texts given (content hash → text); on a provider error, what was got.

    Never raises a provider error: it comes back as ``error`` with every vector
    received before it (also those a provider hands back with its error, see
    :func:`received_before`). ``pending`` serves texts embedded earlier in this run whose batch is
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
            partial = received_before(exc)
            if partial is not None:
                # Vectors the provider already returned (and billed) before failing:
                # hand them back so the caller stores them and the re-run never pays again.
                _take(out, [part[p] for p in partial.positions], partial.embeddings)
            out.error = exc
            return out
        _take(out, part, result)
    return out


def received_before(exc: BaseException) -> PartialEmbeddings | None:
    """The vectors a provider received (and was billed for) before ``exc``, if it handed any back."""
    partial = getattr(exc, "partial", None)
    return partial if isinstance(partial, PartialEmbeddings) else None


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
