"""Benchmark the drift adapter: quality on the real model pair, fit time at d=1536, predict cost.

Sections (run from the repo root; the real pair is ../shared/data/migration-pairs):

    .venv/bin/python dev/bench/bench_adapter.py                # real pair + predict + 20k x 1536 fit, ~1 min
    .venv/bin/python dev/bench/bench_adapter.py --seeds 0 1 2  # seed stability of the real-pair table
    .venv/bin/python dev/bench/bench_adapter.py --evidence     # + the gate-threshold evidence, ~3 min
    .venv/bin/python dev/bench/bench_adapter.py --large-dims 1536 3072  # 1536-d queries, 3072-d index
    .venv/bin/python dev/bench/bench_adapter.py --skip real     # timings only
    OPENBLAS_NUM_THREADS=1 .venv/bin/python dev/bench/bench_adapter.py --skip real  # one core: steady
                                                               # numbers on a machine others are using

1. Real pair (all-MiniLM-L6-v2 384-d <-> all-mpnet-base-v2 768-d, 6,000 sentences), both directions,
   each adapter kind: ARR@10 and overlap@10 on the seeded 80/20 split of EVAL.md, under two protocols:
   ``gate`` (held-out queries search only held-out rows: what fit_best reports and the gate uses) and
   ``EVAL`` (they search all 6,000 rows, as EVAL.md; comparable with its tables). Fit seconds per kind
   exclude hyper-parameter tuning; ``fit_best`` is the whole call (tuning + all kinds + evaluation).
2. Predict: microseconds per query, one vector per call and 1,000 per call.
3. Fit at scale: 20k synthetic shadow pairs (same family), d_new x d_old as given.
4. Shadow throughput: texts/s of the shadow provider at 384-d for ~80-character texts.
5. --evidence: held-out ARR@10 against sample size for the real pair and for pairs that should fail
   (a bag-of-words model vs the real models, two shadow families, rows paired wrongly), 3 seeds each.
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
PAIRS = REPO.parent / "shared" / "data" / "migration-pairs"

from airflow_provider_drift.engine.adapter import (  # noqa: E402
    ADAPTER_KINDS,
    DEFAULT_THRESHOLD,
    DriftAdapter,
    _Moments,
    _tune,
    fit_best,
)
from airflow_provider_drift.engine.providers.shadow import shadow_vectors  # noqa: E402
from airflow_provider_drift.engine.retrieval import HeldOutSplit, IndexRows, unit_vectors  # noqa: E402


def load_pairs() -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not PAIRS.exists():
        raise SystemExit(f"real-model vectors not found at {PAIRS}")
    minilm = unit_vectors(np.load(PAIRS / "minilm-l6.f16.npy"), name="minilm")
    mpnet = unit_vectors(np.load(PAIRS / "mpnet-base.f16.npy"), name="mpnet")
    texts = [json.loads(line)["text"] for line in (PAIRS / "texts.jsonl").read_text().splitlines()]
    return minilm, mpnet, texts


def best_of(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeat`` runs: the machine is shared, the minimum is the least disturbed."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def real_pair(minilm: np.ndarray, mpnet: np.ndarray, seeds: list[int]) -> list[dict]:
    rows = []
    directions = [("MiniLM-384", "mpnet-768", minilm, mpnet), ("mpnet-768", "MiniLM-384", mpnet, minilm)]
    for old_name, new_name, old, new in directions:
        for protocol in ("gate", "EVAL"):
            index: IndexRows = "held-out" if protocol == "gate" else "all"
            per_seed: dict[str, list] = {kind: [] for kind in ADAPTER_KINDS}
            whole = []
            for seed in seeds:
                split = HeldOutSplit.make(new, old, test_fraction=0.2, seed=seed, k=10, index=index)
                xt, yt = new[split.train], old[split.train]
                tuned = _tune(ADAPTER_KINDS, xt, yt, _Moments.of(xt, yt, with_cxx=True), k=10, seed=seed)
                for kind in ADAPTER_KINDS:
                    started = time.perf_counter()
                    adapter = DriftAdapter.fit(xt, yt, kind=kind, params=tuned[kind])
                    seconds = time.perf_counter() - started
                    quality = split.score(adapter.weight, adapter.bias)
                    per_seed[kind].append((quality, seconds, tuned[kind]))
                started = time.perf_counter()
                chosen = fit_best(new, old, seed=seed, index=index)
                whole.append((chosen.kind, time.perf_counter() - started))
            for kind in ADAPTER_KINDS:
                qs = [q for q, _, _ in per_seed[kind]]
                arr = np.array([q.arr for q in qs])
                rows.append(
                    {
                        "index": old_name,
                        "queries": new_name,
                        "protocol": protocol,
                        "kind": kind,
                        "arr": arr.mean(),
                        "arr_sd": arr.std(),
                        "overlap": np.mean([q.overlap for q in qs]),
                        "raw": np.mean([q.raw_agreement for q in qs]),
                        "cos": np.mean([q.mean_cos for q in qs]),
                        "fit_s": np.median([s for _, s, _ in per_seed[kind]]),
                        "params": per_seed[kind][0][2],
                        "n_index": qs[0].n_index,
                        "chosen": ",".join(sorted({k for k, _ in whole})),
                        "fit_best_s": np.median([s for _, s in whole]),
                    }
                )
    return rows


def predict_cost(adapter: DriftAdapter, *, n_single: int = 2000, batch: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((batch, adapter.d_new)).astype(np.float32)
    single = best_of(lambda: [adapter.predict(q) for q in queries[: min(n_single, batch)]])
    batched = best_of(lambda: adapter.predict(queries))
    return single / min(n_single, batch) * 1e6, batched / batch * 1e6


def corpus(n: int, texts: list[str], *, seed: int = 0) -> list[str]:
    """``n`` distinct realistic texts: a real sentence plus the last word of another."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(texts), n), rng.integers(0, len(texts), n)
    return [f"{texts[i]} {texts[j].split()[-1]} #{k}" for k, (i, j) in enumerate(zip(a, b, strict=True))]


def fit_at_scale(texts: list[str], d_new: int, d_old: int, n: int) -> dict:
    big = corpus(n, texts)
    x = shadow_vectors("openai/text-embedding-3-small", big, d_new)
    y = shadow_vectors("openai/text-embedding-ada-002", big, d_old)
    moments = best_of(lambda: _Moments.of(x, y, with_cxx=True), repeat=2)
    out: dict = {"n": n, "d_new": d_new, "d_old": d_old, "moments_s": moments}
    for kind, params in [
        ("procrustes", {}),
        ("ridge", {"alpha": 0.01}),
        ("lowrank", {"alpha": 0.01, "rank": 16}),
    ]:
        out[f"{kind}_s"] = best_of(
            lambda k=kind, p=params: DriftAdapter.fit(x, y, kind=k, params=p), repeat=2
        )
    started = time.perf_counter()
    adapter = fit_best(x, y)
    out["fit_best_s"] = time.perf_counter() - started
    out["fit_best_kind"] = adapter.kind
    out["fit_best_arr"] = adapter.quality.arr if adapter.quality else None
    out["predict_us_single"], out["predict_us_batched"] = predict_cost(adapter)
    return out


def shadow_throughput(texts: list[str], n: int = 100_000) -> dict:
    rng = np.random.default_rng(0)
    short = [f"{texts[i][:72]} #{k}" for k, i in enumerate(rng.integers(0, len(texts), n))]
    shadow_vectors("local/all-MiniLM-L6-v2", short[:10], 384)  # warm the caches
    one_call = best_of(lambda: shadow_vectors("local/all-MiniLM-L6-v2", short, 384))
    batched = best_of(
        lambda: [
            shadow_vectors("local/all-MiniLM-L6-v2", short[i : i + 1000], 384) for i in range(0, n, 1000)
        ]
    )
    return {
        "n": n,
        "mean_chars": float(np.mean([len(t) for t in short])),
        "texts_per_s_one_call": n / one_call,
        "texts_per_s_batches_of_1000": n / batched,
    }


def evidence(minilm: np.ndarray, mpnet: np.ndarray, texts: list[str]) -> list[dict]:
    bow = shadow_vectors("shadow/bag-of-words", texts, 384)
    cases = {
        "real: mpnet -> MiniLM index": (minilm, mpnet),
        "real: MiniLM -> mpnet index": (mpnet, minilm),
        "bag-of-words -> MiniLM index": (minilm, bow),
        "MiniLM -> bag-of-words index": (bow, minilm),
        "bag-of-words -> mpnet index": (mpnet, bow),
        "mpnet -> bag-of-words index": (bow, mpnet),
        "shadow, two families (384-d)": (
            shadow_vectors("shadow/a@x", texts, 384),
            shadow_vectors("shadow/b@y", texts, 384),
        ),
        "shadow, one family 384 -> 768": (
            shadow_vectors("local/all-mpnet-base-v2", texts, 768),
            shadow_vectors("local/all-MiniLM-L6-v2", texts, 384),
        ),
        "rows paired wrongly (real)": (minilm, mpnet[np.random.default_rng(7).permutation(len(mpnet))]),
    }
    rows = []
    for n in (500, 1000, 2000, 4000, 6000):
        for name, (old, new) in cases.items():
            arrs = []
            for seed in range(3):
                pick = np.random.default_rng(100 + seed).permutation(len(old))[:n]
                quality = fit_best(new[pick], old[pick], seed=seed).quality
                assert quality is not None
                arrs.append(quality.arr)
            rows.append({"n": n, "case": name, "arr": float(np.mean(arrs)), "sd": float(np.std(arrs))})
            print(f"  n={n:5d}  {name:32s} ARR@10 {np.mean(arrs):.3f} ± {np.std(arrs):.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--large-dims", type=int, nargs=2, default=[1536, 1536], metavar=("D_NEW", "D_OLD"))
    parser.add_argument("--large-n", type=int, default=20_000)
    parser.add_argument("--evidence", action="store_true", help="also the gate-threshold evidence (~3 min)")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=["real", "predict", "scale", "shadow"],
        help="sections to skip",
    )
    parser.add_argument("--json", type=Path, help="write all results to this file")
    args = parser.parse_args()
    minilm, mpnet, texts = load_pairs()
    results: dict = {}

    if "real" not in args.skip:
        print(f"\n1. Real pair, seeds {args.seeds} (ARR@10 mean ± sd over seeds)")
        results["real_pair"] = real_pair(minilm, mpnet, args.seeds)
        print_real_pair(results["real_pair"])
    if "predict" not in args.skip:
        print("\n2. Predict, microseconds per query (best of 3)")
        for old, new, name in [(minilm, mpnet, "768 -> 384"), (mpnet, minilm, "384 -> 768")]:
            single, batched = predict_cost(DriftAdapter.fit(new, old))
            results[f"predict {name}"] = {"single_us": single, "batched_us": batched}
            print(f"  {name}: one per call {single:7.1f} us   1,000 per call {batched:6.2f} us/query")
    if "scale" not in args.skip:
        d_new, d_old = args.large_dims
        print(f"\n3. Fit at scale: {args.large_n:,} shadow pairs, {d_new} -> {d_old} (best of 2)")
        results["fit_at_scale"] = scale = fit_at_scale(texts, d_new, d_old, args.large_n)
        print(
            f"  moments (2 GEMMs) {scale['moments_s']:.2f} s | procrustes {scale['procrustes_s']:.2f} s | "
            f"ridge {scale['ridge_s']:.2f} s | lowrank {scale['lowrank_s']:.2f} s\n"
            f"  fit_best (tune + 3 kinds + held-out ARR on 2,000 queries) {scale['fit_best_s']:.2f} s -> "
            f"{scale['fit_best_kind']} ARR@10 {scale['fit_best_arr']:.3f}\n"
            f"  predict {scale['predict_us_single']:.1f} us single, "
            f"{scale['predict_us_batched']:.2f} us/query batched"
        )
    if "shadow" not in args.skip:
        print("\n4. Shadow provider throughput, 384-d (best of 3)")
        results["shadow"] = shadow = shadow_throughput(texts)
        print(
            f"  {shadow['n']:,} texts of {shadow['mean_chars']:.0f} chars: "
            f"{shadow['texts_per_s_one_call']:,.0f} texts/s in one call, "
            f"{shadow['texts_per_s_batches_of_1000']:,.0f} texts/s in calls of 1,000"
        )
    if args.evidence:
        print(f"\n5. Gate evidence: held-out ARR@10 (default threshold {DEFAULT_THRESHOLD}), 3 seeds")
        results["evidence"] = evidence(minilm, mpnet, texts)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))
        print(f"\nwrote {args.json}")


def print_real_pair(rows: list[dict]) -> None:
    print(
        f"{'index':11} {'queries':11} {'protocol':8} {'kind':10} {'ARR@10':>13} {'overlap@10':>10} "
        f"{'raw':>6} {'cos':>6} {'fit s':>6}  params / chosen by fit_best (its time)"
    )
    for r in rows:
        print(
            f"{r['index']:11} {r['queries']:11} {r['protocol']:8} {r['kind']:10} "
            f"{r['arr']:.3f} ± {r['arr_sd']:.3f} {r['overlap']:10.3f} {r['raw']:6.3f} {r['cos']:6.3f} "
            f"{r['fit_s']:6.2f}  {r['params']} / {r['chosen']} "
            f"({r['fit_best_s']:.2f} s, index {r['n_index']})"
        )


if __name__ == "__main__":
    main()
