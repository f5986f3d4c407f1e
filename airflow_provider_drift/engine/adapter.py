"""Drift-Adapter: serve a new embedding model's queries from an index built with the old one.

An adapter is an affine map ``y = x @ W + b`` from the NEW model's space
(``d_new``) into the OLD index's space (``d_old``), fitted on a paired sample
(the same texts embedded by both models). The index is never touched: queries
are embedded with the new model, adapted, and searched in the old index.
Everything works in cosine geometry: inputs are L2-normalised before fitting
and predicting, and outputs are L2-normalised.

Kinds (all fitted from d x d moments, never from an SVD of the n x d data):

- ``procrustes``: orthogonal Procrustes with mean-centring, ``W = U @ V.T``
  from the SVD of the d_new x d_old centred cross-covariance;
  semi-orthogonal when the dimensions differ (1536 -> 3072 embeds
  isometrically, 3072 -> 1536 projects). Uncentred Procrustes collapses on
  anisotropic model pairs, hence the centring.
- ``ridge``: affine least squares with a ridge penalty (closed form).
- ``lowrank``: Procrustes plus a rank-r ridge correction of its residual: a
  low-rank affine correction between the two. (A *pure* low-rank map loses
  most of a 384/768-d space: overlap@10 0.52 vs 0.63 on the real pair, see
  ``docs/adapter-evidence.md``.) A small residual MLP was measured on the
  real pair and did not beat the linear maps with 4,800 pairs, so there is
  none.

Quality is measured honestly on held-out pairs (:func:`fit_best`, metrics
in :mod:`.retrieval`): ARR@k as the Drift-Adapter paper (arXiv 2509.23471)
defines it and overlap@k with the old model's own top-k, searching only
rows the fit never saw. :func:`check_quality` is the gate; its default
threshold and the evidence behind it are in ``docs/adapter-evidence.md``.

File format (``.npz``, version :data:`FORMAT_VERSION`): arrays ``weight``
(d_new x d_old float32), ``bias`` (d_old), ``mean_new`` (d_new), ``mean_old``
(d_old), and ``meta``, a JSON string with ``format`` ("drift-adapter"),
``format_version``, ``kind``, ``from_model`` (old, the index's model),
``to_model`` (new, the query model), ``d_new``, ``d_old``, ``params``,
``quality`` and ``candidates`` (held-out :class:`AdapterQuality` dicts),
``n_pairs``, ``fit_seconds``, ``created_at``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from .errors import AdapterQualityError, ConfigError
from .retrieval import AdapterQuality, HeldOutSplit, IndexRows, unit_vectors

AdapterKind = Literal["procrustes", "ridge", "lowrank"]
ADAPTER_KINDS: tuple[AdapterKind, ...] = get_args(AdapterKind)
FORMAT = "drift-adapter"
FORMAT_VERSION = 1
#: ARR@10 below which the gate refuses an adapter; why 0.5: docs/adapter-evidence.md
DEFAULT_THRESHOLD = 0.5
#: fewest pairs to fit at all, and to fit *and* measure (>= 100 held-out rows at 20%; below
#: that, ARR@10 over a tiny index cannot tell related models from unrelated ones)
MIN_FIT_PAIRS = 20
MIN_EVAL_PAIRS = 500
# ridge penalties, as multiples of the mean eigenvalue of the centred new-model covariance
_ALPHAS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
_RANKS = (4, 8, 16, 32, 64, 128)

__all__ = [
    "ADAPTER_KINDS",
    "DEFAULT_THRESHOLD",
    "FORMAT_VERSION",
    "AdapterKind",
    "AdapterQuality",
    "DriftAdapter",
    "check_quality",
    "fit_best",
]


@dataclass(frozen=True)
class _Moments:
    """Means and centred (cross-)covariances of paired rows: all a fit needs."""

    n: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    cxy: np.ndarray
    cxx: np.ndarray | None

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, *, with_cxx: bool) -> _Moments:
        mean_x, mean_y = x.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)
        xc = x - mean_x.astype(np.float32)
        yc = y - mean_y.astype(np.float32)
        cxy = (xc.T @ yc).astype(np.float64)  # float32 GEMMs: the only O(n d^2) steps
        cxx = (xc.T @ xc).astype(np.float64) if with_cxx else None
        return cls(len(x), mean_x, mean_y, cxy, cxx)

    def without(self, x: np.ndarray, y: np.ndarray) -> _Moments:
        """Moments of the other rows once (x, y), rows of this sample, are taken out: no second big pass."""
        dx = (x - self.mean_x.astype(np.float32)).astype(np.float64)
        dy = (y - self.mean_y.astype(np.float32)).astype(np.float64)
        rest = self.n - len(x)
        ex, ey = -dx.sum(axis=0) / rest, -dy.sum(axis=0) / rest  # shift of the remaining rows' mean
        cxy = self.cxy - dx.T @ dy - rest * np.outer(ex, ey)
        cxx = None if self.cxx is None else self.cxx - dx.T @ dx - rest * np.outer(ex, ex)
        return _Moments(rest, self.mean_x + ex, self.mean_y + ey, cxy, cxx)

    def bias(self, weight: np.ndarray) -> np.ndarray:
        return self.mean_y - self.mean_x @ weight


class _Fitter:
    """Every kind's weight from one set of moments, sharing the expensive decompositions."""

    def __init__(self, m: _Moments) -> None:
        self.m = m
        self._procrustes: np.ndarray | None = None
        self._eig: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._corrections: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def cxx(self) -> np.ndarray:
        assert self.m.cxx is not None, "moments were computed without Cxx"
        return self.m.cxx

    def procrustes(self) -> np.ndarray:
        """Semi-orthogonal ``U @ V.T`` from the (thin) SVD of the centred cross-covariance.

        No least-squares scale: shrinking the centred part towards the old
        mean costs 0.01-0.02 ARR@10 on the real pair (docs/adapter-evidence.md).
        """
        if self._procrustes is None:
            self._procrustes = _polar(self.m.cxy)
        return self._procrustes

    def penalty(self, alpha: float) -> float:
        """The ridge lambda: ``alpha`` times the mean eigenvalue of Cxx (scale-free across n and d)."""
        return alpha * max(float(np.trace(self.cxx)) / len(self.cxx), 1e-12)

    def eig(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(eigenvalues, eigenvectors, eigenvectors.T @ Cxy) of Cxx: many penalties for one decomposition."""
        if self._eig is None:
            val, vec = np.linalg.eigh(self.cxx)
            self._eig = (np.maximum(val, 0.0), vec, vec.T @ self.m.cxy)
        return self._eig

    def solve(self, rhs: np.ndarray, alpha: float) -> np.ndarray:
        """(Cxx + lambda I)^-1 @ rhs."""
        if self._eig is None:  # one penalty: a linear solve is ~10x cheaper than eigh
            return np.linalg.solve(self.cxx + self.penalty(alpha) * np.eye(len(self.cxx)), rhs)
        val, vec, _ = self._eig
        return vec @ ((vec.T @ rhs) / (val + self.penalty(alpha))[:, None])

    def ridge(self, alpha: float) -> np.ndarray:
        return self.solve(self.m.cxy, alpha)

    def correction(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Ridge fit ``delta`` of the Procrustes residual and its output directions by variance."""
        if alpha not in self._corrections:
            delta = self.solve(self.m.cxy - self.cxx @ self.procrustes(), alpha)
            self._corrections[alpha] = (delta, _top_output_directions(delta, self.cxx, max(_RANKS)))
        return self._corrections[alpha]

    def lowrank(self, alpha: float, rank: int) -> np.ndarray:
        """Procrustes plus the rank-``rank`` reduced-rank-ridge correction of its residual."""
        delta, directions = self.correction(alpha)
        top = directions[:, :rank]
        return self.procrustes() + (delta @ top) @ top.T

    def weight(self, kind: AdapterKind, params: dict[str, Any]) -> np.ndarray:
        if kind == "procrustes":
            return self.procrustes()
        if kind == "ridge":
            return self.ridge(params["alpha"])
        return self.lowrank(params["alpha"], params["rank"])


def _polar(c: np.ndarray) -> np.ndarray:
    """The orthogonal polar factor ``U @ V.T`` of ``c`` (thin SVD ``U S V.T``), via the smaller Gram matrix.

    An eigendecomposition of the min(d_new, d_old)-sized Gram matrix is ~3x
    faster than an SVD at 1536 x 1536 and far faster at 3072 x 1536.
    Directions with singular values below 1e-6 of the largest carry no
    paired data; they map to zero instead of to an arbitrary rotation.
    """
    if c.shape[0] < c.shape[1]:
        return _polar(c.T).T
    s2, v = np.linalg.eigh(c.T @ c)
    keep = s2 > max(float(s2[-1]), 1e-300) * 1e-12
    v, s = v[:, keep], np.sqrt(s2[keep])
    return ((c @ v) / s) @ v.T


def _top_output_directions(delta: np.ndarray, cxx: np.ndarray, rank: int, iters: int = 3) -> np.ndarray:
    """Top-``rank`` eigenvectors of ``delta.T @ Cxx @ delta`` (the correction's output covariance).

    Seeded subspace iteration with thin products only: the d_old x d_old
    matrix is never formed, which matters at 3072-d. Columns are
    re-orthonormalised by Cholesky-QR (two GEMMs and a tiny factorisation),
    much cheaper than LAPACK QR on a busy multi-threaded BLAS.
    """
    d_old = delta.shape[1]
    width = min(d_old, rank + 16)

    def orthonormal(a: np.ndarray) -> np.ndarray:
        gram = a.T @ a
        gram += np.eye(len(gram)) * (np.trace(gram) * 1e-12 + 1e-300)
        return np.linalg.solve(np.linalg.cholesky(gram), a.T).T

    def apply(q: np.ndarray) -> np.ndarray:
        return delta.T @ (cxx @ (delta @ q))

    q = orthonormal(np.random.default_rng(0).standard_normal((d_old, width)))
    for _ in range(iters):
        q = orthonormal(apply(q))
    _, vec = np.linalg.eigh(q.T @ apply(q))
    return (q @ vec[:, ::-1])[:, : min(rank, width)]


def _tune(
    kinds: tuple[AdapterKind, ...], x: np.ndarray, y: np.ndarray, m: _Moments, *, k: int, seed: int
) -> dict[AdapterKind, dict[str, Any]]:
    """Pick the ridge penalty and correction rank by ARR@k on an inner split of the training pairs (x, y).

    Candidates are scored from the eigendecomposition without forming their
    d_new x d_old matrices: only the adapted validation queries are needed.
    """
    ranks = [r for r in _RANKS if r < min(x.shape[1], y.shape[1])] or [1]
    tuned: dict[AdapterKind, dict[str, Any]] = {
        "procrustes": {},
        "ridge": {"alpha": 0.1},
        "lowrank": {"alpha": 0.1, "rank": ranks[min(2, len(ranks) - 1)]},
    }
    if kinds == ("procrustes",) or len(x) < MIN_EVAL_PAIRS:
        return {kind: tuned[kind] for kind in kinds}
    split = HeldOutSplit.make(x, y, test_fraction=0.2, seed=seed + 1, k=k, max_queries=1000)
    inner = m.without(x[split.test], y[split.test])
    fitter = _Fitter(inner)
    val, vec, vtc = fitter.eig()
    q_eig, mean_eig = split.query_new @ vec, inner.mean_x @ vec

    def ridge_score(alpha: float) -> tuple[float, float]:
        inv = 1.0 / (val + fitter.penalty(alpha))
        adapted = (q_eig * inv) @ vtc + (inner.mean_y - (mean_eig * inv) @ vtc)
        quality = split.score_adapted(adapted)
        return (quality.arr, quality.overlap)

    alpha = max(_ALPHAS, key=ridge_score)
    tuned["ridge"] = {"alpha": alpha}
    if "lowrank" in kinds:
        base = fitter.procrustes()
        delta, directions = fitter.correction(alpha)
        q_base, q_delta = split.query_new @ base, split.query_new @ delta
        m_base, m_delta = inner.mean_x @ base, inner.mean_x @ delta

        def rank_score(rank: int) -> tuple[float, float]:
            top = directions[:, :rank]
            adapted = q_base + (q_delta @ top) @ top.T
            adapted += inner.mean_y - m_base - (m_delta @ top) @ top.T
            quality = split.score_adapted(adapted)
            return (quality.arr, quality.overlap)

        tuned["lowrank"] = {"alpha": alpha, "rank": max(ranks, key=rank_score)}
    return {kind: tuned[kind] for kind in kinds}


def _check_pairs(x_new: Any, x_old: Any, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x = unit_vectors(x_new, name="x_new (new-model vectors)")
    y = unit_vectors(x_old, name="x_old (old-model vectors)")
    if len(x) != len(y):
        raise ConfigError(
            f"mismatched sample sizes: {len(x)} new-model vectors vs {len(y)} old-model vectors",
            hint="embed the same texts with both models, row i of each being the same text",
        )
    if len(x) < minimum:
        raise ConfigError(
            f"too few pairs to fit an adapter: {len(x)} (need at least {minimum})",
            hint="embed a larger paired sample (a few thousand pairs give a stable fit and measure)",
        )
    return x, y


@dataclass(frozen=True, eq=False)
class DriftAdapter:
    """A fitted map from the new model's space into the old index's space; see the module docs."""

    kind: AdapterKind
    from_model: str  # old: the model the index was built with
    to_model: str  # new: the model that embeds queries
    weight: np.ndarray  # (d_new, d_old) float32
    bias: np.ndarray  # (d_old,) float32
    mean_new: np.ndarray
    mean_old: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    quality: AdapterQuality | None = None
    candidates: dict[str, AdapterQuality] = field(default_factory=dict)
    n_pairs: int = 0
    fit_seconds: float = 0.0

    @property
    def d_new(self) -> int:
        return int(self.weight.shape[0])

    @property
    def d_old(self) -> int:
        return int(self.weight.shape[1])

    @classmethod
    def fit(
        cls,
        x_new: Any,
        x_old: Any,
        *,
        kind: AdapterKind = "procrustes",
        from_model: str = "",
        to_model: str = "",
        params: dict[str, Any] | None = None,
        k: int = 10,
        seed: int = 0,
    ) -> DriftAdapter:
        """Fit one kind on all pairs; ridge/lowrank tune on an inner split unless ``params`` are given."""
        if kind not in ADAPTER_KINDS:
            raise ConfigError(f"unknown adapter kind {kind!r}", hint=f"use one of {', '.join(ADAPTER_KINDS)}")
        started = time.perf_counter()
        x, y = _check_pairs(x_new, x_old, MIN_FIT_PAIRS)
        m = _Moments.of(x, y, with_cxx=kind != "procrustes")
        if params is None:
            params = _tune((kind,), x, y, m, k=k, seed=seed)[kind]
        weight = _Fitter(m).weight(kind, params)
        return cls._from_fit(kind, m, weight, from_model, to_model, params, started)

    @classmethod
    def _from_fit(
        cls,
        kind: AdapterKind,
        m: _Moments,
        weight: np.ndarray,
        from_model: str,
        to_model: str,
        params: dict[str, Any],
        started: float,
        **extra: Any,
    ) -> DriftAdapter:
        return cls(
            kind=kind,
            from_model=from_model,
            to_model=to_model,
            weight=weight.astype(np.float32),
            bias=m.bias(weight).astype(np.float32),
            mean_new=m.mean_x.astype(np.float32),
            mean_old=m.mean_y.astype(np.float32),
            params=params,
            n_pairs=extra.pop("n_pairs", m.n),
            fit_seconds=time.perf_counter() - started,
            **extra,
        )

    def predict(self, q: Any) -> np.ndarray:
        """Adapt one query vector (d_new,) or a batch (n, d_new) into unit vectors of the old space."""
        arr = np.asarray(q, dtype=np.float32)
        single = arr.ndim == 1
        x = unit_vectors(arr[None, :] if single else arr, name="query", dim=self.d_new)
        out = x @ self.weight
        out += self.bias
        norms = np.sqrt(np.einsum("ij,ij->i", out, out))
        out /= np.maximum(norms, 1e-12)[:, None]
        return out[0] if single else out

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary (no matrices): what the ledger and a MigrateRun record."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "from_model": self.from_model,
            "to_model": self.to_model,
            "d_new": self.d_new,
            "d_old": self.d_old,
            "params": self.params,
            "quality": self.quality.to_dict() if self.quality else None,
            "candidates": {k: q.to_dict() for k, q in self.candidates.items()},
            "n_pairs": self.n_pairs,
            "fit_seconds": round(self.fit_seconds, 4),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the adapter atomically (temp file + rename) and return its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = self.describe() | {"created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    meta=np.array(json.dumps(meta, sort_keys=True)),
                    weight=self.weight,
                    bias=self.bias,
                    mean_new=self.mean_new,
                    mean_old=self.mean_old,
                )
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        from_model: str | None = None,
        to_model: str | None = None,
        d_new: int | None = None,
        d_old: int | None = None,
    ) -> DriftAdapter:
        """Read an adapter file; the keyword checks refuse a file made for other models or dimensions."""
        meta, arrays = _read_file(Path(path))
        expected = {"from_model": from_model, "to_model": to_model, "d_new": d_new, "d_old": d_old}
        for key, want in expected.items():
            if want is not None and meta[key] != want:
                maps = f"{meta['to_model']} [{meta['d_new']}-d] -> {meta['from_model']} [{meta['d_old']}-d]"
                raise ConfigError(
                    f"adapter file {path} is for {key}={meta[key]!r}, not {want!r} (it maps {maps})",
                    hint="use the adapter fitted for this model pair, or fit a new one with migrate",
                )
        quality = meta.get("quality")
        return cls(
            kind=meta["kind"],
            from_model=meta["from_model"],
            to_model=meta["to_model"],
            weight=arrays["weight"],
            bias=arrays["bias"],
            mean_new=arrays["mean_new"],
            mean_old=arrays["mean_old"],
            params=meta.get("params") or {},
            quality=AdapterQuality.from_dict(quality) if quality else None,
            candidates={k: AdapterQuality.from_dict(v) for k, v in (meta.get("candidates") or {}).items()},
            n_pairs=int(meta.get("n_pairs", 0)),
            fit_seconds=float(meta.get("fit_seconds", 0.0)),
        )


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse and validate an adapter file: a clear ConfigError for anything that is not one we can use."""
    hint = "point to a file written by DriftAdapter.save (migrate records its path in the ledger)"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
    except FileNotFoundError as exc:
        raise ConfigError(f"adapter file {path} does not exist", hint=hint) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path} is not a readable adapter file ({exc})", hint=hint) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a {FORMAT} file", hint=hint)
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(
            f"adapter file {path} has format version {version!r}; this version reads up to {FORMAT_VERSION}",
            hint="upgrade airflow-provider-drift, or re-fit the adapter with this version",
        )
    d_new, d_old = meta.get("d_new"), meta.get("d_old")
    shapes = {"weight": (d_new, d_old), "bias": (d_old,), "mean_new": (d_new,), "mean_old": (d_old,)}
    for name, shape in shapes.items():
        arr = arrays.get(name)
        if arr is None or arr.shape != shape or not np.isfinite(arr).all():
            raise ConfigError(
                f"adapter file {path}: array {name!r} is missing, mis-shaped or not finite", hint=hint
            )
    if not all(isinstance(meta.get(key), str) for key in ("from_model", "to_model")):
        raise ConfigError(f"adapter file {path} does not name its models", hint=hint)
    if meta.get("kind") not in ADAPTER_KINDS:
        raise ConfigError(f"adapter file {path} has unknown kind {meta.get('kind')!r}", hint=hint)
    return meta, {name: arrays[name].astype(np.float32, copy=False) for name in shapes}


def fit_best(
    x_new: Any,
    x_old: Any,
    *,
    from_model: str = "",
    to_model: str = "",
    kinds: tuple[AdapterKind, ...] = ADAPTER_KINDS,
    test_fraction: float = 0.2,
    seed: int = 0,
    k: int = 10,
    index: IndexRows = "held-out",
) -> DriftAdapter:
    """Fit every kind on a seeded train split and keep the best by held-out ARR@k (then overlap@k).

    A seeded permutation puts the last ``test_fraction`` of rows (at most
    2,000) aside as queries. By default they search an index of the held-out
    rows only (own row excluded): an index holding training rows flatters
    small samples, where a map can memorise its training pairs.
    ``index="all"`` searches all rows, as the shared EVAL.md protocol does.
    The returned adapter is the one that was measured (fitted on the train
    rows only), so ``quality`` is exactly what it scored; ``candidates``
    holds every kind's score.
    """
    started = time.perf_counter()
    unknown = [kd for kd in kinds if kd not in ADAPTER_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"unknown adapter kinds {unknown or kinds!r}", hint=f"choose from {ADAPTER_KINDS}")
    x, y = _check_pairs(x_new, x_old, MIN_EVAL_PAIRS)
    split = HeldOutSplit.make(x, y, test_fraction=test_fraction, seed=seed, k=k, index=index)
    xt, yt = x[split.train], y[split.train]
    m = _Moments.of(xt, yt, with_cxx=any(kind != "procrustes" for kind in kinds))
    tuned = _tune(kinds, xt, yt, m, k=k, seed=seed)
    fitter = _Fitter(m)
    weights = {kind: fitter.weight(kind, tuned[kind]) for kind in kinds}
    scores = {kind: split.score(w, m.bias(w)) for kind, w in weights.items()}
    best = max(kinds, key=lambda kd: (scores[kd].arr, scores[kd].overlap))
    params = tuned[best] | {"test_fraction": test_fraction, "seed": seed, "k": k}
    return DriftAdapter._from_fit(
        best,
        m,
        weights[best],
        from_model,
        to_model,
        params,
        started,
        quality=scores[best],
        candidates=scores,
        n_pairs=len(x),
    )


def check_quality(adapter: DriftAdapter, *, threshold: float = DEFAULT_THRESHOLD) -> AdapterQuality:
    """Refuse an adapter whose held-out ARR@k is below ``threshold``; return its quality otherwise."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}", hint="ARR@k is a recall")
    q = adapter.quality
    if q is None:
        raise AdapterQualityError(
            f"adapter {adapter.to_model} -> {adapter.from_model} has no held-out quality measurement",
            hint="fit it with fit_best() on a paired sample so the gate can judge it",
        )
    if not q.arr >= threshold:
        raise AdapterQualityError(
            f"{adapter.kind} adapter {adapter.to_model} -> {adapter.from_model} recovers ARR@{q.k} "
            f"{q.arr:.3f} of the new model's results (overlap@{q.k} with the old model {q.overlap:.3f}, "
            f"raw agreement of the models {q.raw_agreement:.3f}), below the gate {threshold:.2f}",
            hint="use strategy='dual-write' (re-embed into a new collection), "
            "or lower the threshold if that quality is acceptable",
            arr=q.arr,
            overlap=q.overlap,
            threshold=threshold,
            kind=adapter.kind,
        )
    return q
