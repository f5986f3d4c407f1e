"""Exact top-k search and the retrieval-agreement metrics behind the adapter gate and shadow-eval.

Everything is exhaustive (blocked matmul + ``argpartition``), because the
point is to *measure*: an approximate index would add its own error to the
number the gate acts on. Vectors are compared by inner product, so callers
pass unit vectors (:func:`unit_vectors` checks and normalises).

ARR@k (Drift-Adapter, arXiv 2509.23471) here is recall of the adapted
new-model query searched in the old index against the new model's own
exhaustive top-k (divided by the oracle recall of the new index against
itself, 1.0); overlap@k compares with the old model's own top-k.

The gate's estimate is honest about three things (docs/adapter-evidence.md):
rows are de-duplicated by content before the split, so one text never sits
on both sides; kinds and penalties are chosen on a validation split and the
reported number comes from a separate test split; and test queries search
every row of the sample (not only held-out rows), the figure being carried
to the collection's size by the measured decline of ARR with the index size,
with a bootstrap interval over queries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .identity import content_hashes

#: bootstrap resamples of the test queries behind the interval of ARR@k
_BOOTSTRAP = 1000


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


def per_query_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i & b_i| / k per row of two (n, k) id arrays (ids unique within a row)."""
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    return (both[:, 1:] == both[:, :-1]).sum(axis=1) / a.shape[1]


def distinct_rows(x: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
    """Row ids of the first occurrence of each distinct text (by content hash; by the vector without texts).

    A duplicate left in would put the same text in the fitted rows and among
    the queries, and reward memorising it.
    """
    if texts is not None:
        if len(texts) != len(x):
            raise ConfigError(
                f"{len(texts)} texts for {len(x)} vector pairs", hint="pass one text per paired row"
            )
        keys: list[Any] = content_hashes(texts)
    else:
        keys = [row.tobytes() for row in np.ascontiguousarray(x)]
    seen: dict[Any, int] = {}
    for i, key in enumerate(keys):
        seen.setdefault(key, i)
    return np.fromiter(seen.values(), dtype=np.int64, count=len(seen))


@dataclass(frozen=True)
class AdapterQuality:
    """Test-split retrieval quality of an adapter (means over the test queries).

    ``arr`` is measured over an index of ``n_index`` rows; ``arr_at_scale`` is
    the estimate for an index of ``collection_size`` rows (equal to ``arr`` when
    the whole collection was searched), ``arr_low``/``arr_high`` its 95%
    bootstrap interval over queries. The gate acts on ``arr_at_scale``.
    """

    arr: float  # ARR@k: recall against the new model's own exhaustive top-k
    overlap: float  # overlap@k with the old model's own top-k in the old index
    raw_agreement: float  # old model's top-k vs new model's top-k, no adapter
    mean_cos: float  # cosine of the adapted query with the same text's old vector
    k: int
    n_queries: int
    n_index: int
    collection_size: int | None = None  # rows of the collection the estimate is for
    arr_at_scale: float | None = None  # ARR@k estimated at collection_size
    arr_low: float | None = None  # 95% bootstrap interval of arr_at_scale
    arr_high: float | None = None
    slope_per_doubling: float | None = None  # measured change of ARR@k when the index doubles
    split: str = "test"  # which rows the queries were: "test", "validation" (older files: "held-out")

    @property
    def estimate(self) -> float:
        """The number the gate compares with its threshold."""
        return self.arr if self.arr_at_scale is None else self.arr_at_scale

    def verdict(self, threshold: float) -> str:
        """'pass'/'fail', plus ', within the uncertainty interval' when the interval straddles it."""
        outcome = "pass" if self.estimate >= threshold else "fail"
        if (
            self.arr_low is not None
            and self.arr_high is not None
            and self.arr_low < threshold <= self.arr_high
        ):
            outcome += ", within the uncertainty interval"
        return outcome

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterQuality:
        """Also reads the shorter dicts of format-version-1 files (no interval, no scale)."""
        fields = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        fields.setdefault("split", "held-out")
        return cls(**fields)


@dataclass(frozen=True)
class Evaluation:
    """Queries with their exhaustive ground truths over an index of sample rows, computed once.

    Queries are rows ``queries``; they search the rows ``index`` (which
    contains them; each query's own row is excluded), old-model vectors for
    the adapted query and the old truth, new-model vectors for the new truth.
    """

    queries: np.ndarray  # row ids of the queries
    index: np.ndarray  # row ids of the searched rows
    index_old: np.ndarray
    query_new: np.ndarray
    query_pos: np.ndarray  # position of each query's own row in ``index``
    truth_new: np.ndarray
    truth_old: np.ndarray
    raw_agreement: float
    k: int
    split: str
    #: smaller indexes for the scale trend: (index positions, queries inside, their positions, truth)
    nested: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...] = ()

    @classmethod
    def make(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        queries: np.ndarray,
        index: np.ndarray,
        *,
        k: int,
        split: str,
        nested: bool = False,
        seed: int = 0,
    ) -> Evaluation:
        """``nested`` also prepares indexes of 1/4 and 1/2 of the rows: the trend of ARR with index size."""
        index = np.sort(index)
        if len(index) - 1 < k or len(queries) == 0:
            raise ConfigError(
                f"cannot measure top-{k} over {len(index)} indexed rows with {len(queries)} queries",
                hint="use a larger paired sample",
            )
        query_pos = np.searchsorted(index, queries)
        truth_new = top_k(x[queries], x[index], k, exclude=query_pos)
        truth_old = top_k(y[queries], y[index], k, exclude=query_pos)
        smaller = []
        if nested:  # random 1/4 and 1/2 of the rows, with the queries that fall in them
            rng = np.random.default_rng(seed + 7)
            for share in (4, 2):
                keep = np.sort(rng.choice(len(index), len(index) // share, replace=False))
                inside = np.flatnonzero(np.isin(query_pos, keep))
                if len(keep) - 1 < k or len(inside) < 10:
                    continue
                pos = np.searchsorted(keep, query_pos[inside])
                truth = top_k(x[queries[inside]], x[index[keep]], k, exclude=pos)
                smaller.append((keep, inside, pos, truth))
        raw = overlap_at_k(truth_old, truth_new)
        return cls(
            queries,
            index,
            y[index],
            x[queries],
            query_pos,
            truth_new,
            truth_old,
            raw,
            k,
            split,
            tuple(smaller),
        )

    def recall(self, adapted: np.ndarray) -> float:
        """Mean ARR@k of already-adapted queries (cheap: no interval, no scale trend) — for selection."""
        return overlap_at_k(self._top(adapted, self.index_old, self.query_pos), self.truth_new)

    def _top(self, adapted: np.ndarray, index_old: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return top_k(adapted, index_old, self.k, exclude=pos)

    def score_adapted(
        self, adapted: np.ndarray, *, collection_size: int | None = None, seed: int = 0
    ) -> AdapterQuality:
        """Quality of already-adapted queries (rows in the order of ``queries``), with interval and scale."""
        adapted = adapted / np.maximum(np.linalg.norm(adapted, axis=1, keepdims=True), 1e-12)
        got = self._top(adapted, self.index_old, self.query_pos)
        per_query = per_query_overlap(got, self.truth_new)
        arr = float(per_query.mean())
        cos = np.einsum("ij,ij->i", adapted, self.index_old[self.query_pos])
        n_index = len(self.index)
        slope = None
        if self.nested:
            sizes, arrs = [n_index], [arr]
            for keep, inside, pos, truth in self.nested:
                sizes.append(len(keep))
                arrs.append(overlap_at_k(self._top(adapted[inside], self.index_old[keep], pos), truth))
            fitted = np.polyfit(np.log2(sizes), arrs, 1)[0]
            slope = float(min(fitted, 0.0))  # never extrapolate upwards
        size = collection_size if collection_size and collection_size > n_index else n_index
        shift = (slope or 0.0) * float(np.log2(size / n_index))
        rng = np.random.default_rng(seed + 11)
        means = per_query[rng.integers(0, len(per_query), (_BOOTSTRAP, len(per_query)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        return AdapterQuality(
            arr=arr,
            overlap=overlap_at_k(got, self.truth_old),
            raw_agreement=self.raw_agreement,
            mean_cos=float(cos.mean()),
            k=self.k,
            n_queries=len(self.queries),
            n_index=n_index,
            collection_size=size,
            arr_at_scale=max(arr + shift, 0.0),
            arr_low=max(float(low) + shift, 0.0),
            arr_high=max(float(high) + shift, 0.0),
            slope_per_doubling=slope,
            split=self.split,
        )
