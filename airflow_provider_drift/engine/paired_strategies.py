"""The two strategies that work on a paired sample and leave the index alone: drift-adapter, shadow-eval.

Both read ~``sample_size`` live points of the old collection with their
stored vectors and current texts (:mod:`.pairs`), embed the texts with the new
model (paid once per distinct text; tokens and cost go to the run), and
measure neighbours exhaustively (:mod:`.retrieval`). drift-adapter then
stores an adapter that passes the gate; shadow-eval writes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AdapterQualityError, ConfigError
from .ledger import Ledger
from .ledger.connection import DRIFT_HOME_ENV
from .ledger.migrations import OPEN_STATES
from .pairs import PairedSample
from .providers import EmbeddingProvider
from .records import MigrateRun
from .sinks.base import Sink
from .vectorize import add_cost

#: queries of the live comparison (old collection vs an open dual-write target)
_LIVE_QUERIES = 100
_EMBED_CHUNK = 2048


def embed_texts(run: MigrateRun, provider: EmbeddingProvider, texts: list[str]) -> np.ndarray:
    """New-model vectors of ``texts`` (each distinct text paid once); tokens and cost go to ``run``."""
    distinct = list(dict.fromkeys(texts))
    by_text: dict[str, np.ndarray] = {}
    for lo in range(0, len(distinct), _EMBED_CHUNK):
        part = distinct[lo : lo + _EMBED_CHUNK]
        got = provider.embed(part)
        by_text.update(zip(part, np.asarray(got.vectors, dtype=np.float32), strict=True))
        run.tokens += got.tokens
        run.cost_usd = add_cost(run.cost_usd, got.cost_usd)
    run.n_embedded += len(distinct)
    if not texts:
        return np.zeros((0, provider.dim), np.float32)
    return np.vstack([by_text[t] for t in texts])


def default_adapter_dir() -> Path:
    """``$DRIFT_HOME/adapters``, else ``~/.drift/adapters``."""
    home = os.environ.get(DRIFT_HOME_ENV)
    return (Path(home) if home else Path("~/.drift")).expanduser() / "adapters"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "x"


def _too_few(sample: PairedSample, need: int, what: str) -> ConfigError:
    return ConfigError(
        f"too few points to {what}: {len(sample)} paired texts (need at least {need}; "
        f"sample: {sample.counts()})",
        hint="raise sample_size, or migrate a bigger collection; a collection this small is cheapest to "
        "re-embed with strategy='dual-write'",
    )


def run_drift_adapter(
    run: MigrateRun,
    ledger: Ledger,
    sample: PairedSample,
    provider: EmbeddingProvider,
    *,
    k: int,
    seed: int,
    adapter_dir: str | os.PathLike[str] | None,
    old: Sink,
) -> None:
    """Fit on the paired sample, gate on test-split ARR@k at the collection's size, store and record.

    A rejection is recorded too.
    """
    from .adapter import MIN_EVAL_PAIRS, check_quality, fit_best

    if len(sample) < MIN_EVAL_PAIRS:
        raise _too_few(sample, MIN_EVAL_PAIRS, "fit and measure an adapter")
    run.n_points = len(sample)
    run.metrics["sample"] = sample.counts()
    new_vectors = embed_texts(run, provider, sample.texts)
    adapter = fit_best(
        new_vectors,
        sample.old_vectors,
        from_model=run.from_model,
        to_model=run.to_model,
        k=k,
        seed=seed,
        texts=sample.texts,
        collection_size=old.count(),
    )
    q = adapter.quality
    assert q is not None and run.threshold is not None
    run.arr, run.overlap, run.adapter_kind = q.estimate, q.overlap, adapter.kind
    run.passed = bool(q.estimate >= run.threshold)
    run.metrics["adapter"] = adapter.describe()
    run.metrics["gate"] = {"verdict": q.verdict(run.threshold), "index_rows": q.collection_size}
    adapter_id = uuid.uuid4().hex
    path, sha = "", None
    if run.passed:
        folder = Path(adapter_dir).expanduser() if adapter_dir else default_adapter_dir()
        name = f"{_slug(run.from_model)}--{_slug(run.to_model)}-{adapter_id[:12]}.npz"
        saved = adapter.save(folder / _slug(old.collection) / name)
        path, sha = str(saved.resolve()), hashlib.sha256(saved.read_bytes()).hexdigest()
        run.adapter_path = path
    ledger.record_adapter(
        adapter_id=adapter_id,
        path=path,
        sha256=sha,
        kind=adapter.kind,
        from_model=run.from_model,
        to_model=run.to_model,
        sink=run.sink,
        d_new=adapter.d_new,
        d_old=adapter.d_old,
        arr=q.estimate,
        overlap=q.overlap,
        threshold=run.threshold,
        passed=run.passed,
        run_id=run.run_id,
        details=adapter.describe(),
    )
    run.metrics["adapter_id"] = adapter_id
    ledger.create_migration(
        strategy="drift-adapter",
        from_model=run.from_model,
        to_model=run.to_model,
        sink=run.sink,
        target_sink=None,
        state="finished" if run.passed else "failed",
        details={
            "adapter_id": adapter_id,
            "adapter_path": path or None,
            "quality": q.to_dict(),
            "run_id": run.run_id,
        },
    )
    if not run.passed:
        check_quality(adapter, threshold=run.threshold)
        raise AdapterQualityError(  # pragma: no cover - check_quality raises for arr < threshold
            f"adapter ARR@{k} {q.estimate:.3f} is below the gate {run.threshold:.2f}",
            hint="use strategy='dual-write'",
        )


def run_shadow_eval(
    run: MigrateRun,
    ledger: Ledger,
    sample: PairedSample,
    provider: EmbeddingProvider,
    *,
    old: Sink,
    k: int,
    seed: int,
) -> None:
    """Measure old-vs-new agreement (and an adapter's ARR) on the sample; write nothing but the run."""
    from .adapter import MIN_EVAL_PAIRS, DriftAdapter, fit_best
    from .retrieval import overlap_at_k, top_k, unit_vectors

    if len(sample) < k + 2:
        raise _too_few(sample, k + 2, f"measure top-{k} agreement")
    run.n_points = len(sample)
    x_new = unit_vectors(embed_texts(run, provider, sample.texts), name="new-model vectors")
    x_old = unit_vectors(sample.old_vectors, name="stored old-model vectors")
    own = np.arange(len(sample))
    truth_old, truth_new = top_k(x_old, x_old, k, exclude=own), top_k(x_new, x_new, k, exclude=own)
    run.overlap = overlap_at_k(truth_old, truth_new)
    adapter_info: dict[str, Any] = {"source": None}
    for rec in ledger.adapters(run.sink, from_model=run.from_model, to_model=run.to_model, passed=True):
        if rec["path"] and Path(rec["path"]).is_file():
            adapter = DriftAdapter.load(
                rec["path"],
                from_model=run.from_model,
                to_model=run.to_model,
                d_new=x_new.shape[1],
                d_old=x_old.shape[1],
            )
            got = top_k(adapter.predict(x_new), x_old, k, exclude=own)
            run.arr = overlap_at_k(got, truth_new)
            run.adapter_path, run.adapter_kind = rec["path"], adapter.kind
            adapter_info = {
                "source": "ledger",
                "adapter_id": rec["adapter_id"],
                "overlap": overlap_at_k(got, truth_old),
            }
            break
    else:
        if len(sample) >= MIN_EVAL_PAIRS:
            # Procrustes only: one SVD, no tuning, a lower bound; drift-adapter then fits every kind.
            trial = fit_best(
                x_new, x_old, from_model=run.from_model, to_model=run.to_model, k=k, seed=seed,
                kinds=("procrustes",), texts=sample.texts, collection_size=old.count(),
            )  # fmt: skip
            assert trial.quality is not None
            run.arr, run.adapter_kind = trial.quality.estimate, trial.kind
            adapter_info = {"source": "trial fit on this sample, not stored", **trial.quality.to_dict()}
    run.passed = None if run.arr is None or run.threshold is None else bool(run.arr >= run.threshold)
    run.metrics.update(
        {
            "k": k,
            "n_queries": len(sample),
            "sample": sample.counts(),
            "adapter": adapter_info,
            "recommended_strategy": "drift-adapter" if run.passed else "dual-write",
            "live": _live_overlap(run, ledger, old, sample, x_new, k),
        }
    )


def _live_overlap(
    run: MigrateRun, ledger: Ledger, old: Sink, sample: PairedSample, x_new: np.ndarray, k: int
) -> dict[str, Any] | None:
    """If an open dual-write target exists, compare real searches: old collection vs new collection."""
    targets = [m for m in ledger.migrations(run.sink, states=OPEN_STATES) if m["strategy"] == "dual-write"]
    if not targets or targets[0]["sink"] != run.sink:
        return None
    m = targets[0]
    target = old.with_collection(m["details"]["target_collection"])
    try:
        if target.dimension() != x_new.shape[1]:
            return None
        scores = []
        for i in range(min(_LIVE_QUERIES, len(sample))):
            me = sample.point_ids[i]
            a = [h.id for h in old.search(sample.old_vectors[i], limit=k + 1) if h.id != me][:k]
            b = [h.id for h in target.search(x_new[i], limit=k + 1) if h.id != me][:k]
            scores.append(len(set(a) & set(b)) / k)
        return {
            "target_collection": target.collection,
            "n_queries": len(scores),
            "overlap": float(np.mean(scores)),
        }
    finally:
        target.close()
