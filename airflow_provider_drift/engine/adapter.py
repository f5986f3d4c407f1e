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
  ``docs/adapter-evidence.md``.)
- ``reverse``: the map that best reproduces the new model's *scores*. The
  old index can only score ``<g(q), y_j>``; the new model would score
  ``<q, x_j>``. Least squares of the new document vectors on the old ones,
  ``x ~ y @ B`` (ridge), gives ``<q, x_j> ~ <q @ B.T, y_j>`` for every
  document at once, so ``g(q) = q @ B.T`` with no bias. Unlike the maps
  above it does not pull the query towards its own old vector but towards
  the new model's neighbourhoods, which is what ARR@k counts: +0.05 mean
  ARR@10 over centred Procrustes on 12 real model pairs
  (``docs/adapter-evidence.md``).
- ``blend``: a mixture of centred Procrustes and the reverse map (weights
  tuned), which helps where the old index's model is strongly anisotropic.

Quality is measured honestly (:func:`fit_best`, metrics in
:mod:`.retrieval`): rows de-duplicated by content, kinds and penalties chosen
on a validation split, ARR@k (Drift-Adapter paper, arXiv 2509.23471) reported
on a separate test split whose queries search every row of the sample, with a
bootstrap interval and an estimate at the collection's size.
:func:`check_quality` is the gate; its default threshold and the evidence
behind it are in ``docs/adapter-evidence.md``.

File format (``.npz``, version :data:`FORMAT_VERSION`; version 1 files still
load): arrays ``weight``
(d_new x d_old float32), ``bias`` (d_old), ``mean_new`` (d_new), ``mean_old``
(d_old), and ``meta``, a JSON string with ``format`` ("drift-adapter"),
``format_version``, ``kind``, ``from_model`` (old, the index's model),
``to_model`` (new, the query model), ``d_new``, ``d_old``, ``params``,
``quality`` (test split) and ``candidates`` (validation split)
:class:`AdapterQuality` dicts, ``n_pairs``, ``n_duplicates``, ``fit_seconds``,
``created_at``. Version 2 added the ``reverse`` and ``blend`` kinds, ``n_duplicates`` and the
interval/scale fields of the quality dicts.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .adapter_maps import _RANKS, ADAPTER_KINDS, AdapterKind, _Fitter, _Moments
from .errors import AdapterQualityError, ConfigError
from .retrieval import AdapterQuality, Evaluation, distinct_rows, unit_vectors

FORMAT = "drift-adapter"
FORMAT_VERSION = 2
#: ARR@10 below which the gate refuses an adapter; why 0.5: docs/adapter-evidence.md
DEFAULT_THRESHOLD = 0.5
#: fewest pairs to fit at all, and to fit *and* measure (>= 100 held-out rows at 20%; below
#: that, ARR@10 over a tiny index cannot tell related models from unrelated ones)
MIN_FIT_PAIRS = 20
MIN_EVAL_PAIRS = 500
#: validation queries (selection only compares candidates)
_MAX_VAL_QUERIES = 1000
# ridge penalties, as multiples of the mean eigenvalue of the centred new-model covariance
_ALPHAS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
_REVERSE_ALPHAS = (0.0003, 0.001, 0.003, 0.01, 0.03)
_MIXES = (0.25, 0.5, 0.75)

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


def _grid(kind: AdapterKind, d_new: int, d_old: int) -> list[dict[str, Any]]:
    if kind == "procrustes":
        return [{}]
    if kind == "ridge":
        return [{"alpha": a} for a in _ALPHAS]
    if kind == "reverse":
        return [{"alpha": a} for a in _REVERSE_ALPHAS]
    if kind == "blend":
        return [{"alpha": 0.003, "mix": m} for m in _MIXES]
    ranks = [r for r in _RANKS if r < min(d_new, d_old)] or [1]
    return [{"alpha": 0.1, "rank": r} for r in ranks]


def _select(
    kinds: tuple[AdapterKind, ...], fitter: _Fitter, val: Evaluation
) -> tuple[dict[AdapterKind, dict[str, Any]], dict[AdapterKind, float]]:
    """Each kind's parameters, and its ARR@k, by the validation queries (never the test queries).

    Candidates are scored from the decompositions without forming more
    matrices than needed: only the adapted validation queries are.
    """
    q = val.query_new.astype(np.float64)
    d_new, d_old = fitter.m.cxy.shape
    params: dict[AdapterKind, dict[str, Any]] = {}
    scores: dict[AdapterKind, float] = {}
    for kind in kinds:
        best: tuple[float, dict[str, Any]] = (-1.0, {})
        for candidate in _grid(kind, d_new, d_old):
            if kind == "blend" and "reverse" in params:  # the penalty the reverse map chose
                candidate = candidate | {"alpha": params["reverse"]["alpha"]}
            if kind == "reverse":
                val_, vec, cv = fitter.reverse_eig()
                adapted = ((q @ cv) / (val_ + fitter.reverse_penalty(candidate["alpha"]))) @ vec.T
            else:
                weight, bias = fitter.affine(kind, candidate)
                adapted = q @ weight + bias
            score = val.recall(adapted.astype(np.float32))
            if score > best[0]:
                best = (score, candidate)
        scores[kind], params[kind] = best
    return params, scores


def _three_way(
    n: int, *, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, ...]:
    """Seeded train / validation (<= 1,000) / test (<= 2,000) positions of ``n`` distinct rows."""
    n_test = min(round(n * test_fraction), 2000)
    n_val = min(round(n * validation_fraction), _MAX_VAL_QUERIES)
    if not (0 < test_fraction < 1 and 0 < validation_fraction < 1) or n - n_test - n_val < MIN_FIT_PAIRS:
        raise ConfigError(
            f"cannot split {n} distinct pairs into train, validation ({validation_fraction:.0%}) and test "
            f"({test_fraction:.0%})",
            hint="use a larger paired sample, or fractions in (0, 1) that leave rows to fit on",
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n - n_test - n_val]), order[n - n_test - n_val : n - n_test], order[n - n_test :]


def _validation(x: np.ndarray, y: np.ndarray, val: np.ndarray, *, k: int) -> Evaluation:
    """Validation queries searching the validation rows: unseen by the fit, so memorising cannot win."""
    return Evaluation.make(x, y, val, val, k=k, split="validation")


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
    n_duplicates: int = 0  # paired rows dropped before the split because their text was already there
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
        """Fit one kind on all pairs; without ``params``, they are chosen on a 20% validation split first."""
        if kind not in ADAPTER_KINDS:
            raise ConfigError(f"unknown adapter kind {kind!r}", hint=f"use one of {', '.join(ADAPTER_KINDS)}")
        started = time.perf_counter()
        x, y = _check_pairs(x_new, x_old, MIN_FIT_PAIRS)
        if params is None:
            grid = _grid(kind, x.shape[1], y.shape[1])
            params = grid[min(2, len(grid) - 1)]
            if len(grid) > 1 and len(x) >= MIN_EVAL_PAIRS:
                order = np.random.default_rng(seed + 1).permutation(len(x))
                n_val = min(len(x) // 5, _MAX_VAL_QUERIES)
                train = np.sort(order[n_val:])
                inner = _Fitter(_Moments.of(x[train], y[train], **_needs((kind,))))
                params = _select((kind,), inner, _validation(x, y, order[:n_val], k=k))[0][kind]
        fitter = _Fitter(_Moments.of(x, y, **_needs((kind,))))
        weight, bias = fitter.affine(kind, params)
        return cls._from_fit(kind, fitter.m, weight, bias, from_model, to_model, params, started)

    @classmethod
    def _from_fit(
        cls,
        kind: AdapterKind,
        m: _Moments,
        weight: np.ndarray,
        bias: np.ndarray,
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
            bias=bias.astype(np.float32),
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
            "n_duplicates": self.n_duplicates,
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
            n_duplicates=int(meta.get("n_duplicates", 0)),
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


def _needs(kinds: tuple[AdapterKind, ...]) -> dict[str, bool]:
    return {
        "with_cxx": any(kind in ("ridge", "lowrank", "blend") for kind in kinds),
        "with_cyy": any(kind in ("reverse", "blend") for kind in kinds),
    }


def fit_best(
    x_new: Any,
    x_old: Any,
    *,
    from_model: str = "",
    to_model: str = "",
    kinds: tuple[AdapterKind, ...] = ADAPTER_KINDS,
    texts: list[str] | None = None,
    collection_size: int | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    k: int = 10,
) -> DriftAdapter:
    """Fit every kind, choose by validation ARR@k, and report the choice's ARR@k on a separate test split.

    Rows are first de-duplicated by content (``texts`` hashed; without
    texts, identical new-model vectors), so a text is never on both sides of
    the split. A seeded permutation then gives train, validation (at most
    1,000) and test (at most 2,000) rows. Penalties, ranks and the kind are
    chosen on the validation queries (searching the validation rows) only;
    the chosen adapter (fitted on the train rows, so its quality is exactly
    what it scored) is measured once on the test queries, which search every
    row the fit did not see (validation and test rows, own row excluded):
    rows the map was fitted on would flatter it, since a map can memorise
    its training pairs (wrongly paired rows score 0.12 instead of chance
    with them in the index). That figure is carried to ``collection_size``
    rows (default: the distinct rows of the sample) by the decline of ARR@k
    measured over indexes of 1/4, 1/2 and all of those rows, and comes with
    a 95% bootstrap interval over the test queries (``quality``).
    ``candidates`` holds every kind's validation score.
    """
    started = time.perf_counter()
    unknown = [kd for kd in kinds if kd not in ADAPTER_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"unknown adapter kinds {unknown or kinds!r}", hint=f"choose from {ADAPTER_KINDS}")
    if collection_size is not None and collection_size < 1:
        raise ConfigError(f"collection_size must be positive, got {collection_size}", hint="count the index")
    x_all, y_all = _check_pairs(x_new, x_old, MIN_EVAL_PAIRS)
    rows = distinct_rows(x_all, texts)
    if len(rows) < MIN_EVAL_PAIRS:
        raise ConfigError(
            f"too few distinct pairs to fit and measure an adapter: {len(rows)} of {len(x_all)} "
            f"(need at least {MIN_EVAL_PAIRS})",
            hint="embed a larger paired sample of distinct texts",
        )
    x, y = x_all[rows], y_all[rows]
    train, val, test = _three_way(
        len(x), validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed
    )
    fitter = _Fitter(_Moments.of(x[train], y[train], **_needs(kinds)))
    validation = _validation(x, y, val, k=k)
    params, val_arr = _select(kinds, fitter, validation)
    best = max(kinds, key=lambda kd: val_arr[kd])
    candidates = {}
    for kind in kinds:
        w, b = fitter.affine(kind, params[kind])
        candidates[kind] = validation.score_adapted(x[val] @ w.astype(np.float32) + b.astype(np.float32))
    weight, bias = fitter.affine(best, params[best])
    split_params = {
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "k": k,
    }
    unseen = np.concatenate([val, test])  # rows the map was not fitted on
    testing = Evaluation.make(x, y, test, unseen, k=k, split="test", nested=True, seed=seed)
    adapted = testing.query_new @ weight.astype(np.float32) + bias.astype(np.float32)
    quality = testing.score_adapted(adapted, collection_size=collection_size or len(x), seed=seed)
    return DriftAdapter._from_fit(
        best,
        fitter.m,
        weight,
        bias,
        from_model,
        to_model,
        params[best] | split_params,
        started,
        quality=quality,
        candidates=candidates,
        n_pairs=len(x_all),
        n_duplicates=len(x_all) - len(x),
    )


def check_quality(adapter: DriftAdapter, *, threshold: float = DEFAULT_THRESHOLD) -> AdapterQuality:
    """Refuse an adapter whose ARR@k estimate at the collection's scale is below ``threshold``."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}", hint="ARR@k is a recall")
    q = adapter.quality
    if q is None:
        raise AdapterQualityError(
            f"adapter {adapter.to_model} -> {adapter.from_model} has no held-out quality measurement",
            hint="fit it with fit_best() on a paired sample so the gate can judge it",
        )
    if not q.estimate >= threshold:
        interval = "" if q.arr_low is None else f" (95% interval {q.arr_low:.3f}-{q.arr_high:.3f})"
        raise AdapterQualityError(
            f"{adapter.kind} adapter {adapter.to_model} -> {adapter.from_model} recovers ARR@{q.k} "
            f"{q.estimate:.3f}{interval} of the new model's results at an index of "
            f"{q.collection_size or q.n_index:,} rows "
            f"(measured {q.arr:.3f} over {q.n_index:,}; "
            f"overlap@{q.k} with the old model {q.overlap:.3f}, "
            f"raw agreement of the models {q.raw_agreement:.3f}), "
            f"below the gate {threshold:.2f}: {q.verdict(threshold)}",
            hint="use strategy='dual-write' (re-embed into a new collection), "
            "or lower the threshold if that quality is acceptable",
            arr=q.estimate,
            overlap=q.overlap,
            threshold=threshold,
            kind=adapter.kind,
            verdict=q.verdict(threshold),
        )
    return q
