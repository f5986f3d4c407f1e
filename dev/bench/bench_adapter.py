"""Benchmark the drift adapter: quality on real model pairs (EVAL.md protocol), the gate, fit time at scale.

Run from the repo root. Real vectors default to the in-repo copy (tests/data/migration-pairs: 2,000 texts,
3 models); ``--pairs ../shared/data/migration-pairs`` uses the full set (6,000 texts, 4 models).

    .venv/bin/python dev/bench/bench_adapter.py --pairs ../shared/data/migration-pairs
    .venv/bin/python dev/bench/bench_adapter.py --skip scale   # quality only
    .venv/bin/python dev/bench/bench_adapter.py --skip eval gate   # 20k x 1536 fit time

1. eval: every ordered pair of models, EVAL.md's protocol: a seeded 80/20 split of the rows, adapters
   fitted on the 80% (``chosen``: kind and penalties picked on a 20% validation split *of the training
   rows*, then refitted on all of them), the 20% test queries searching an index of *all* rows, own row
   excluded. ARR@10 of centred Procrustes and of the chosen adapter, and the difference.
2. gate: ``fit_best`` on each pair as the gate runs it (dedup, train/validation/test, test queries over
   the rows the fit did not see), the estimate at the sample's size, its 95% interval, the default gate's
   verdict, and what the measured trend gives at a 1,000,000-row collection.
3. scale: fit time of ``fit_best`` (all kinds, selection and test measurement) on 20k synthetic shadow
   pairs at 1536 -> 1536.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from airflow_provider_drift.engine.adapter import (  # noqa: E402
    ADAPTER_KINDS,
    DEFAULT_THRESHOLD,
    DriftAdapter,
    _Fitter,
    _Moments,
    _needs,
    _select,
    _validation,
    fit_best,
)
from airflow_provider_drift.engine.providers.shadow import shadow_vectors  # noqa: E402
from airflow_provider_drift.engine.retrieval import Evaluation, unit_vectors  # noqa: E402

MODELS = ("minilm-l6", "mpnet-base", "paraphrase-minilm-l3", "e5-small-q4")


def load(folder: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    vectors = {
        m: unit_vectors(np.load(folder / f"{m}.f16.npy"), name=m)
        for m in MODELS
        if (folder / f"{m}.f16.npy").exists()
    }
    texts = [json.loads(line)["text"] for line in (folder / "texts.jsonl").read_text().splitlines()]
    return vectors, texts


def chosen_adapter(x: np.ndarray, y: np.ndarray, *, seed: int) -> DriftAdapter:
    """Select kind and penalties on a 20% validation split of (x, y), then refit on all of it."""
    order = np.random.default_rng(seed + 1).permutation(len(x))
    n_val = len(x) // 5
    fit_rows = np.sort(order[n_val:])
    fitter = _Fitter(_Moments.of(x[fit_rows], y[fit_rows], **_needs(ADAPTER_KINDS)))
    params, scores = _select(ADAPTER_KINDS, fitter, _validation(x, y, order[:n_val], k=10))
    best = max(ADAPTER_KINDS, key=lambda kd: scores[kd])
    return DriftAdapter.fit(x, y, kind=best, params=params[best])


def eval_protocol(vectors: dict[str, np.ndarray], seeds: list[int]) -> list[dict]:
    rows = []
    for old in vectors:
        for new in vectors:
            if old == new:
                continue
            x, y = vectors[new], vectors[old]
            for seed in seeds:
                order = np.random.default_rng(seed).permutation(len(x))
                n_test = round(len(x) * 0.2)
                train, test = np.sort(order[:-n_test]), order[-n_test:]
                ev = Evaluation.make(x, y, test, np.arange(len(x)), k=10, split="test")
                procrustes = DriftAdapter.fit(x[train], y[train], kind="procrustes")
                chosen = chosen_adapter(x[train], y[train], seed=seed)
                row = {
                    "old": old,
                    "new": new,
                    "seed": seed,
                    "raw": ev.raw_agreement,
                    "procrustes": ev.recall(procrustes.predict(x[test])),
                    "chosen": ev.recall(chosen.predict(x[test])),
                    "kind": chosen.kind,
                    "params": chosen.params,
                }
                rows.append(row)
                print(
                    f"  {old:21} {new:21} seed {seed}  raw {row['raw']:.3f}  "
                    f"procrustes {row['procrustes']:.3f}"
                    f"  chosen {row['chosen']:.3f} ({row['kind']} {row['params']})  "
                    f"{row['chosen'] - row['procrustes']:+.3f}",
                    flush=True,
                )
    p, c = np.mean([r["procrustes"] for r in rows]), np.mean([r["chosen"] for r in rows])
    print(f"  mean over {len(rows)} runs: procrustes {p:.4f}  chosen {c:.4f}  gain {c - p:+.4f}")
    return rows


def gate(vectors: dict[str, np.ndarray], texts: list[str]) -> list[dict]:
    """fit_best as migrate runs it (the sample is the collection); the 1M-row figure from its trend."""
    rows = []
    for old in vectors:
        for new in vectors:
            if old == new:
                continue
            x, y = vectors[new], vectors[old]
            adapter = fit_best(x, y, texts=texts[: len(x)], collection_size=len(x))
            q = adapter.quality
            assert q is not None and q.slope_per_doubling is not None
            at_1m = max(q.arr + q.slope_per_doubling * float(np.log2(1_000_000 / q.n_index)), 0.0)
            rows.append({"old": old, "new": new, "kind": adapter.kind, "at_1m": at_1m, **q.to_dict()})
            print(
                f"  {old:21} {new:21} {adapter.kind:10} {q.arr:.3f} over {q.n_index:,} unseen rows -> "
                f"{q.estimate:.3f} [{q.arr_low:.3f}, {q.arr_high:.3f}] at {q.collection_size:,} rows: "
                f"{q.verdict(DEFAULT_THRESHOLD)}; slope/doubling {q.slope_per_doubling:+.4f}, "
                f"{at_1m:.3f} at 1,000,000 rows",
                flush=True,
            )
    return rows


def corpus(n: int, texts: list[str], *, seed: int = 0) -> list[str]:
    """``n`` distinct realistic texts: a real sentence plus the last word of another."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(texts), n), rng.integers(0, len(texts), n)
    return [f"{texts[i]} {texts[j].split()[-1]} #{k}" for k, (i, j) in enumerate(zip(a, b, strict=True))]


def fit_at_scale(texts: list[str], d_new: int, d_old: int, n: int, repeat: int) -> dict:
    big = corpus(n, texts)
    x = shadow_vectors("openai/text-embedding-3-small", big, d_new)
    y = shadow_vectors("openai/text-embedding-ada-002", big, d_old)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        adapter = fit_best(x, y, texts=big)
        times.append(time.perf_counter() - started)
    q = adapter.quality
    assert q is not None
    print(
        f"  fit_best {n:,} pairs {d_new} -> {d_old}: {min(times):.1f} s best, {max(times):.1f} s worst of "
        f"{repeat} -> {adapter.kind}, test ARR@10 {q.arr:.3f} over {q.n_index:,} rows"
    )
    return {"n": n, "d_new": d_new, "d_old": d_old, "seconds": times, "kind": adapter.kind, "arr": q.arr}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, default=REPO / "tests" / "data" / "migration-pairs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--large-dims", type=int, nargs=2, default=[1536, 1536], metavar=("D_NEW", "D_OLD"))
    parser.add_argument("--large-n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip", nargs="+", default=[], choices=["eval", "gate", "scale"])
    parser.add_argument("--json", type=Path, help="write all results to this file")
    args = parser.parse_args()
    vectors, texts = load(args.pairs)
    results: dict = {"pairs": str(args.pairs), "rows": len(texts)}
    if "eval" not in args.skip:
        print(f"\n1. EVAL.md protocol, {len(texts):,} rows, seeds {args.seeds}: ARR@10")
        results["eval"] = eval_protocol(vectors, args.seeds)
    if "gate" not in args.skip:
        print(f"\n2. The gate (fit_best, default threshold {DEFAULT_THRESHOLD})")
        results["gate"] = gate(vectors, texts)
    if "scale" not in args.skip:
        print("\n3. Fit at scale")
        results["scale"] = fit_at_scale(texts, *args.large_dims, args.large_n, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
