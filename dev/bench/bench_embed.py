"""Benchmark embed(): fresh run, no-change re-run, and the raw sink upsert rate, per table size.

    .venv/bin/python dev/bench/bench_embed.py                      # N = 100k and 1M, 384-d, qdrant+local
    .venv/bin/python dev/bench/bench_embed.py --sizes 100000 --sink-root /tmp/x
    .venv/bin/python dev/bench/bench_embed.py --sizes 100000 --ledger postgresql://postgres@HOST:PORT/postgres
                                              # the embed runs once per ledger backend, side by side

Each measurement runs in its own child process so its peak RSS is its own:
- ``raw``: the same points embed() writes — ids, shadow vectors and payloads,
  all computed outside the timer — upserted straight into a fresh collection
  of the same sink engine, in 4096-point batches: the physical limit the
  pipeline is compared with;
- ``embed``: embed() from the Delta table into another fresh collection (shadow
  mode), then the same call again with nothing changed.
Prints a table and writes JSON to dev/bench/results/embed.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dev.bench.ledger_backends import drop, ledgers  # noqa: E402

MODEL = "local/all-MiniLM-L6-v2"  # 384-d; shadow mode, so no model is loaded


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_raw(table: str, sink_uri: str, batch: int) -> dict:
    from airflow_provider_drift.engine.identity import content_hashes, point_ids
    from airflow_provider_drift.engine.providers.shadow import ShadowProvider
    from airflow_provider_drift.engine.sinks import open_sink
    from airflow_provider_drift.engine.sinks.base import (
        PAYLOAD_HASH,
        PAYLOAD_KEY,
        PAYLOAD_MODEL,
        PAYLOAD_RUN,
        PAYLOAD_SOURCE,
        PAYLOAD_VERSION,
        PointBatch,
    )
    from airflow_provider_drift.engine.sources import open_source

    provider = ShadowProvider(MODEL)
    sink = open_sink(sink_uri)
    sink.ensure_collection(provider.dim)
    src = open_source(table, key_col="ticket_id", text_col="body", batch_size=batch)
    n, spent, run_id = 0, 0.0, uuid.uuid4().hex
    for rb in src.batches():
        keys = rb.column("key").to_pylist()
        texts = rb.column("text").to_pylist()
        payloads = [  # the very payload embed() writes, so both sides store the same points
            {
                PAYLOAD_KEY: k,
                PAYLOAD_SOURCE: src.name,
                PAYLOAD_HASH: h,
                PAYLOAD_MODEL: MODEL,
                PAYLOAD_RUN: run_id,
                PAYLOAD_VERSION: src.version,
            }
            for k, h in zip(keys, content_hashes(texts), strict=True)
        ]
        pb = PointBatch(point_ids(src.name, keys), provider.embed(texts).vectors, payloads)
        t0 = time.perf_counter()
        sink.upsert(pb)
        spent += time.perf_counter() - t0
        n += len(keys)
    t0 = time.perf_counter()
    sink.flush()
    spent += time.perf_counter() - t0
    sink.close()
    return {"rows": n, "seconds": spent, "rows_per_s": n / spent, "peak_rss_mib": _peak_rss_mib()}


def child_embed(table: str, sink_uri: str, ledger: str, batch: int) -> dict:
    from airflow_provider_drift.engine.embed import embed

    out = {}
    for label in ("fresh", "rerun"):
        t0 = time.perf_counter()
        run = embed(
            table,
            text_col="body",
            key_col="ticket_id",
            model=MODEL,
            sink=sink_uri,
            shadow_mode=True,
            ledger=ledger,
            batch_size=batch,
        )
        spent = time.perf_counter() - t0
        out[label] = {
            "rows": run.n_rows_processed,
            "embedded": run.n_embedded,
            "written": run.n_written,
            "seconds": spent,
            "rows_per_s": run.n_rows_processed / spent,
        }
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--sink-root", default=None, help="directory for tables, sinks and ledgers")
    ap.add_argument("--ledger", help="also run embed with this PostgreSQL ledger (a fresh schema each run)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        result = child_raw(rest[0], rest[1], a.batch) if kind == "raw" else child_embed(*rest[:3], a.batch)
        print(json.dumps(result))
        return

    from airflow_provider_drift.engine.sources.sample import write_sample_tickets

    root = Path(a.sink_root or tempfile.mkdtemp(prefix="drift-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(s) for s in a.sizes.split(",")):
        table = str(root / f"tickets_{n}")
        if not (Path(table) / "_delta_log").exists():
            write_sample_tickets(table, n=n)
        work = Path(tempfile.mkdtemp(prefix=f"run_{n}_", dir=root))  # fresh sinks and ledger every time
        raw = _run_child("raw", table, f"qdrant+local://{work}/raw/points")
        for backend, ledger in ledgers(work, a.ledger):
            emb = _run_child("embed", table, f"qdrant+local://{work}/embed_{backend}/points", ledger)
            drop(ledger)
            ratio = emb["fresh"]["rows_per_s"] / raw["rows_per_s"]
            results.append({"n": n, "ledger": backend, "raw": raw, **emb, "ratio_fresh_to_raw": ratio})
            fresh, rerun = emb["fresh"], emb["rerun"]
            print(
                f"N={n:>9,} {backend:<10} raw upsert {raw['rows_per_s']:>9,.0f} rows/s"
                f" | fresh embed {fresh['rows_per_s']:>9,.0f} rows/s (ratio {ratio:.2f})"
                f" | re-run {rerun['rows_per_s']:>9,.0f} rows/s"
                f" ({rerun['embedded']} embedded, {rerun['written']} written)"
                f" | peak RSS embed {emb['peak_rss_mib']:,.0f} MiB",
                flush=True,
            )
    sqlite_runs = [r for r in results if r["ledger"] == "sqlite"]
    if len(sqlite_runs) > 1:
        growth = sqlite_runs[-1]["peak_rss_mib"] / sqlite_runs[0]["peak_rss_mib"]
        first, last = sqlite_runs[0]["n"], sqlite_runs[-1]["n"]
        print(f"peak RSS growth {first:,} -> {last:,} rows: {growth:.2f}x (target <= 1.5x)")
        shutil.rmtree(work, ignore_errors=True)
    out = REPO / "dev" / "bench" / "results" / "embed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
