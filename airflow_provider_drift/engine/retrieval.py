"""Exact top-k search and the retrieval-agreement metrics behind the adapter gate and shadow-eval.

Everything is exhaustive (blocked matmul + ``argpartition``), because the
point is to *measure*: an approximate index would add its own error to the
number the gate acts on. Vectors are compared by inner product, so callers
pass unit vectors (:func:`unit_vectors` checks and normalises).

ARR@k (Drift-Adapter, arXiv 2509.23471) here is recall of the adapted
new-model query searched in the old index against the new model's own
exhaustive top-k (divided by the oracle recall of the new index against
itself, 1.0); overlap@k compares with the old model's own top-k.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from .errors import ConfigError

#: which rows held-out queries search: only unseen rows, or all rows (the shared EVAL.md protocol)
IndexRows = Literal["held-out", "all"]


def unit_vectors(value: Any, *, name: str, dim: int | None = None) -> np.ndarray:
    """Check ``value`` is a finite (n, d) matrix of non-zero rows and return it L2-normalised, float32."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name} is not a numeric matrix: {exc}", hint="pass a numpy array of vectors"
        ) from exc
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ConfigError(
            f"{name} must be a 2-D (n, d) array, got shape {arr.shape}", hint="stack the vectors"
        )
    if dim is not None and arr.shape[1] != dim:
        raise ConfigError(
            f"{name} has dimension {arr.shape[1]}, the adapter expects {dim}",
            hint=f"pass {dim}-d vectors (for an adapter: embed with its new model, to_model)",
        )
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if bad.size:
        what = "NaN/inf" if not np.isfinite(norms[bad[0]]) else "all-zero"
        raise ConfigError(
            f"{name} row {int(bad[0])} is {what} ({bad.size} bad row(s) of {len(arr)})",
            hint="re-embed those texts; a provider returned broken vectors",
        )
    return (arr / norms[:, None].astype(np.float32)).astype(np.float32, copy=False)


def top_k(queries: np.ndarray, index: np.ndarray, k: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Exact inner-product top-``k`` row ids of ``index`` per query (unordered); ``exclude[i]`` is skipped."""
    if not 0 < k <= len(index) - (exclude is not None):
        raise ConfigError(f"cannot take the top {k} of {len(index)} indexed vectors", hint="use a smaller k")
    out = np.empty((len(queries), k), dtype=np.int64)
    block = max(1, (1 << 24) // max(len(index), 1))  # ~64 MB of scores at a time
    for lo in range(0, len(queries), block):
        scores = queries[lo : lo + block] @ index.T
        if exclude is not None:
            scores[np.arange(len(scores)), exclude[lo : lo + block]] = -np.inf
        out[lo : lo + block] = np.argpartition(scores, -k, axis=1)[:, -k:]
    return out


def overlap_at_k(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a_i & b_i| / k over rows of two (n, k) id arrays (ids unique within a row)."""
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    return float((both[:, 1:] == both[:, :-1]).sum(axis=1).mean() / a.shape[1])


@dataclass(frozen=True)
class AdapterQuality:
    """Held-out retrieval quality of an adapter (means over the test queries)."""

    arr: float  # ARR@k: recall against the new model's own exhaustive top-k
    overlap: float  # overlap@k with the old model's own top-k in the old index
    raw_agreement: float  # old model's top-k vs new model's top-k, no adapter
    mean_cos: float  # cosine of the adapted query with the same text's old vector
    k: int
    n_queries: int
    n_index: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterQuality:
        return cls(**{f: data[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class HeldOutSplit:
    """A seeded train/test split with the ground-truth neighbour lists computed once.

    Test queries search the held-out rows only (``index="held-out"``) or all
    rows (``"all"``, the shared EVAL.md protocol), their own row excluded;
    truths come from exhaustive search. Queries are capped at
    ``max_queries`` (2,000 give ~0.005 standard error on ARR) because every
    candidate costs queries x index x d flops.
    """

    train: np.ndarray  # row ids used for fitting
    test: np.ndarray  # row ids of the held-out queries
    index_old: np.ndarray  # old-model vectors of the searched rows
    query_new: np.ndarray  # new-model vectors of the queries
    query_pos: np.ndarray  # position of each query's own row in the index (excluded)
    truth_new: np.ndarray
    truth_old: np.ndarray
    raw_agreement: float
    k: int

    @classmethod
    def make(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        *,
        test_fraction: float,
        seed: int,
        k: int,
        max_queries: int = 2000,
        index: IndexRows = "held-out",
    ) -> HeldOutSplit:
        n = len(x)
        n_test = min(round(n * test_fraction), max_queries)
        n_index = n_test if index == "held-out" else n
        if not 0.0 < test_fraction < 1.0 or n - n_test < 2 or n_index - 1 < k:
            raise ConfigError(
                f"cannot hold out {test_fraction:.0%} of {n} pairs for a top-{k} measure "
                f"({n_test} held-out rows; the search needs more than {k})",
                hint="use a larger paired sample or test_fraction in (0, 1)",
            )
        order = np.random.default_rng(seed).permutation(n)
        train, test = np.sort(order[: n - n_test]), order[n - n_test :]
        rows = np.sort(test) if index == "held-out" else np.arange(n)
        query_pos = np.searchsorted(rows, test)
        index_new, index_old = x[rows], y[rows]
        truth_new = top_k(x[test], index_new, k, exclude=query_pos)
        truth_old = top_k(y[test], index_old, k, exclude=query_pos)
        raw = overlap_at_k(truth_old, truth_new)
        return cls(train, test, index_old, x[test], query_pos, truth_new, truth_old, raw, k)

    def score(self, weight: np.ndarray, bias: np.ndarray) -> AdapterQuality:
        """Quality of the affine map (weight, bias) on the held-out queries."""
        return self.score_adapted(self.query_new @ weight.astype(np.float32) + bias.astype(np.float32))

    def score_adapted(self, adapted: np.ndarray) -> AdapterQuality:
        """Quality of already-adapted queries (rows in the order of ``test``)."""
        adapted = adapted / np.maximum(np.linalg.norm(adapted, axis=1, keepdims=True), 1e-12)
        got = top_k(adapted, self.index_old, self.k, exclude=self.query_pos)
        cos = np.einsum("ij,ij->i", adapted, self.index_old[self.query_pos])
        return AdapterQuality(
            arr=overlap_at_k(got, self.truth_new),
            overlap=overlap_at_k(got, self.truth_old),
            raw_agreement=self.raw_agreement,
            mean_cos=float(cos.mean()),
            k=self.k,
            n_queries=len(self.test),
            n_index=len(self.index_old),
        )
