"""Benchmark the pgvector sink against a raw binary COPY into the same server, in the same run.

    .venv/bin/python dev/bench/bench_pgvector.py                  # 100k x 384-d, starts its own PostgreSQL
    .venv/bin/python dev/bench/bench_pgvector.py --rows 20000     # quick
    .venv/bin/python dev/bench/bench_pgvector.py --dsn "host=... dbname=..."   # an existing server

Measured, on one server started with durable settings (fsync on):
- ``raw COPY``: the same rows (id, vector, payload columns) binary-COPYed into
  a fresh table of the sink's layout, in one transaction — with psycopg's
  ``write_row`` (what a hand-written loader does) and as pre-encoded bytes
  (encoding untimed: the server's limit).
- ``sink upsert``: ``PgVectorSink.upsert`` into a fresh table in 4096-row
  batches (what ``embed`` sends), one transaction each, encoding included.
  The three loads are interleaved ``--repeat`` times (other work on the
  machine then slows all three alike); the best of each counts, medians are
  in the JSON.
- ``HNSW build``: ``flush()`` on the loaded table.
- ``re-run 5%``: 5% of the texts changed, their new vectors upserted into the
  indexed table (the real update path, HNSW maintained row by row), against
  a raw COPY of as many changed vectors as new rows into the same indexed
  table (disjoint 5% sets, alternating; best of two each).
- ``query``: ``search(limit=10)`` latency and recall@10 against exact search.
- ``embed()``: the whole pipeline in shadow mode into pgvector (fresh, with the
  index build timed apart), then a re-run with 5% of the texts changed.
Prints a table and writes JSON to dev/bench/results/pgvector.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MODEL = "local/all-MiniLM-L6-v2"  # 384-d; shadow mode, so no model is loaded
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
SERVER = {**DURABLE, "shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}


def texts_for(n: int, *, changed: set[int] | None = None) -> list[str]:
    changed = changed or set()
    return [
        f"ticket {i}: {'EDITED ' if i in changed else ''}cannot log in after password reset #{i % 97}"
        for i in range(n)
    ]


def rows_for(texts: list[str], *, run_id: str) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    from airflow_provider_drift.engine.identity import content_hashes, point_ids
    from airflow_provider_drift.engine.providers.shadow import ShadowProvider

    keys = [str(i) for i in range(len(texts))]
    vectors = ShadowProvider(MODEL).embed(texts).vectors
    payloads = [
        {
            "key": k,
            "source": "tickets",
            "content_hash": h,
            "model": MODEL,
            "run_id": run_id,
            "source_version": 1,
        }
        for k, h in zip(keys, content_hashes(texts), strict=True)
    ]
    return point_ids("tickets", keys), vectors, payloads


def raw_copy(
    dsn: str,
    table: str,
    ids: list[str],
    vectors: np.ndarray,
    payloads: list[dict[str, Any]],
    *,
    preencoded: bool,
    create: bool = True,
) -> float:
    """Seconds to binary-COPY the rows into ``table`` (fresh, the sink's layout) in one transaction."""
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql

    from airflow_provider_drift.engine.sinks.pg_catalog import create_table_sql
    from airflow_provider_drift.engine.sinks.pg_rows import (
        SIGNATURE,
        TRAILER,
        WRITE_COLUMNS,
        encode_rows,
        uuid_bytes,
    )

    cols = list(WRITE_COLUMNS[:8])  # id, embedding, the 5 text columns, source_version
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        ident = sql.Identifier("public", table)
        if create:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
            conn.execute(create_table_sql(ident, ext="public", dim=vectors.shape[1]))
        data = b""
        if preencoded:
            cols = list(WRITE_COLUMNS)
            data = SIGNATURE + encode_rows(uuid_bytes(ids, uri=""), vectors, payloads, uri="") + TRAILER
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            ident, sql.SQL(", ").join(map(sql.Identifier, cols))
        )
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(stmt) as copy:
            if preencoded:
                view = memoryview(data)
                for start in range(0, len(view), 1 << 20):
                    copy.write(view[start : start + (1 << 20)])
            else:
                copy.set_types(["uuid", "vector", "text", "text", "text", "text", "text", "int8"])
                for pid, vec, p in zip(ids, vectors, payloads, strict=True):
                    copy.write_row(
                        (
                            uuid.UUID(pid),
                            vec,
                            p["key"],
                            p["source"],
                            p["content_hash"],
                            p["model"],
                            p["run_id"],
                            p["source_version"],
                        )
                    )
        return time.perf_counter() - t0


def sink_load(
    sink: Any, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]], batch: int
) -> float:
    from airflow_provider_drift.engine.sinks.base import PointBatch

    t0 = time.perf_counter()
    for start in range(0, len(ids), batch):
        stop = start + batch
        sink.upsert(PointBatch(ids[start:stop], vectors[start:stop], payloads[start:stop]))
    return time.perf_counter() - t0


def query_stats(sink: Any, vectors: np.ndarray, n_queries: int) -> dict[str, float]:
    rng = np.random.default_rng(7)
    picks = rng.choice(len(vectors), size=n_queries, replace=False)
    queries = vectors[picks] + rng.normal(scale=0.02, size=(n_queries, vectors.shape[1])).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sink.search(queries[0], limit=10)  # warm the index into shared buffers
    latencies, recalls = [], []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        hits = sink.search(q, limit=10)
        latencies.append(time.perf_counter() - t0)
        if i < 100:
            exact = np.argsort(-(unit @ (q / np.linalg.norm(q))))[:10]
            recalls.append(len({h.payload["key"] for h in hits} & {str(j) for j in exact}) / 10)
    ms = sorted(x * 1000 for x in latencies)
    return {
        "queries": n_queries,
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "recall_at_10": round(statistics.fmean(recalls), 4),
    }


def bench_embed(dsn: str, n: int, work: Path) -> dict[str, Any]:
    import pyarrow as pa

    from airflow_provider_drift.engine.embed import embed
    from airflow_provider_drift.engine.sinks.pgvector import PgVectorSink

    sink = PgVectorSink(dsn, table="embed_docs")
    sink.drop()
    flush_seconds: list[float] = []
    real_flush = sink.flush

    def timed_flush() -> None:
        t0 = time.perf_counter()
        real_flush()
        flush_seconds.append(time.perf_counter() - t0)

    sink.flush = timed_flush  # type: ignore[method-assign]
    out: dict[str, Any] = {}
    changed = set(range(0, n, 20))  # 5%
    for label, texts in (("fresh", texts_for(n)), ("rerun_5pct", texts_for(n, changed=changed))):
        table = pa.table({"id": list(range(n)), "body": texts})
        t0 = time.perf_counter()
        run = embed(
            table,
            text_col="body",
            key_col="id",
            model=MODEL,
            sink=sink,
            source="tickets",
            shadow_mode=True,
            ledger=str(work / "ledger.db"),
        )
        total = time.perf_counter() - t0
        build = flush_seconds[-1]
        out[label] = {
            "rows": run.n_rows_processed,
            "embedded": run.n_embedded,
            "written": run.n_written,
            "seconds": round(total, 2),
            "flush_seconds": round(build, 2),
            "rows_per_s": round(run.n_rows_processed / total),
            "rows_per_s_without_index_build": round(run.n_rows_processed / (total - build)),
        }
    assert sink.count() == n
    sink.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=4096, help="rows per upsert call (embed's default)")
    ap.add_argument("--repeat", type=int, default=5, help="fresh loads per method; the best counts")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument(
        "--dsn", default=os.environ.get("DRIFT_TEST_PG_DSN"), help="use this server, not a new one"
    )
    ap.add_argument("--no-embed", action="store_true", help="skip the embed() pipeline runs")
    a = ap.parse_args()

    from tests.fixtures.pg import start_postgres

    server = None if a.dsn else start_postgres(settings=SERVER)
    dsn = a.dsn or server.dsn  # type: ignore[union-attr]
    try:
        result = run(dsn, a)
    finally:
        if server is not None:
            server.stop()
    out = REPO / "dev" / "bench" / "results" / "pgvector.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def run(dsn: str, a: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from airflow_provider_drift.engine.sinks.pgvector import PgVectorSink

    n = a.rows
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        versions = conn.execute(
            "SELECT current_setting('server_version'), extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    assert versions is not None
    print(
        f"PostgreSQL {versions[0]}, pgvector {versions[1]}; {n:,} rows x 384-d; "
        f"load avg {os.getloadavg()[0]:.1f}"
    )
    ids, vectors, payloads = rows_for(texts_for(n), run_id="run-1")

    sink = PgVectorSink(dsn, table="sink_docs")
    raw_rows, raw_bytes, loads = [], [], []
    for _ in range(a.repeat):  # interleaved, so a burst of load elsewhere on the machine hits all three
        raw_rows.append(raw_copy(dsn, "raw_copy", ids, vectors, payloads, preencoded=False))
        raw_bytes.append(raw_copy(dsn, "raw_copy", ids, vectors, payloads, preencoded=True))
        sink.drop()
        sink.ensure_collection(vectors.shape[1])
        loads.append(sink_load(sink, ids, vectors, payloads, a.batch))
    best = {"raw_write_row": min(raw_rows), "raw_preencoded": min(raw_bytes), "sink": min(loads)}
    fresh = {
        "raw_copy_write_row_rows_per_s": round(n / best["raw_write_row"]),
        "raw_copy_preencoded_rows_per_s": round(n / best["raw_preencoded"]),
        "sink_upsert_rows_per_s": round(n / best["sink"]),
        "ratio_to_raw_write_row": round(best["raw_write_row"] / best["sink"], 3),
        "ratio_to_raw_preencoded": round(best["raw_preencoded"] / best["sink"], 3),
        "median_ratio_to_raw_write_row": round(statistics.median(raw_rows) / statistics.median(loads), 3),
        "seconds": {
            k: [round(x, 3) for x in v]
            for k, v in {"raw_write_row": raw_rows, "raw_preencoded": raw_bytes, "sink": loads}.items()
        },
    }
    print(
        f"fresh load   sink {fresh['sink_upsert_rows_per_s']:>8,} rows/s | raw COPY write_row "
        f"{fresh['raw_copy_write_row_rows_per_s']:>8,} (ratio {fresh['ratio_to_raw_write_row']:.2f}) | "
        f"raw COPY pre-encoded {fresh['raw_copy_preencoded_rows_per_s']:>8,} "
        f"(ratio {fresh['ratio_to_raw_preencoded']:.2f})",
        flush=True,
    )

    t0 = time.perf_counter()
    sink.flush()
    build = time.perf_counter() - t0
    print(f"HNSW build   {build:.1f} s (m=16, ef_construction=64, maintenance_work_mem 1GB)", flush=True)

    # Four disjoint 5% sets, alternating sink / raw so neither profits from running second (an HNSW
    # insert of a vector the graph already holds is cheaper, so the raw rows never repeat the sink's).
    t_sink, t_raw = [], []
    for offset, who in enumerate(("sink", "raw", "raw", "sink")):
        changed = set(range(offset, n, 20))
        new_ids, new_vectors, new_payloads = rows_for(
            texts_for(n, changed=changed), run_id=f"run-{offset + 2}"
        )
        pick = sorted(changed)
        c_vec, c_pl = new_vectors[pick], [new_payloads[i] for i in pick]
        if who == "sink":
            c_ids = [new_ids[i] for i in pick]
            t_sink.append(sink_load(sink, c_ids, c_vec, c_pl, a.batch))
            fetched = sink.fetch(c_ids[:50])
            assert all(fetched[p].payload["run_id"] == f"run-{offset + 2}" for p in c_ids[:50]), "no update"
        else:
            fresh_ids = [str(uuid.uuid4()) for _ in pick]  # new rows in the same indexed table
            t_raw.append(raw_copy(dsn, "sink_docs", fresh_ids, c_vec, c_pl, preencoded=False, create=False))
            sink.delete(fresh_ids)
    n_changed = len(range(0, n, 20))
    rerun = {
        "rows": n_changed,
        "sink_upsert_rows_per_s": round(n_changed / min(t_sink)),
        "raw_copy_into_indexed_table_rows_per_s": round(n_changed / min(t_raw)),
        "ratio": round(min(t_raw) / min(t_sink), 3),
        "seconds": {"sink": [round(x, 3) for x in t_sink], "raw": [round(x, 3) for x in t_raw]},
    }
    print(
        f"re-run 5%    sink {rerun['sink_upsert_rows_per_s']:>8,} rows/s (updates, index maintained) | "
        f"raw COPY "
        f"of as many new rows {rerun['raw_copy_into_indexed_table_rows_per_s']:>8,} "
        f"(ratio {rerun['ratio']:.2f})",
        flush=True,
    )
    current = np.array(vectors)
    for offset in (0, 3):  # what the table holds now
        changed = sorted(range(offset, n, 20))
        current[changed] = rows_for(texts_for(n, changed=set(changed)), run_id="")[1][changed]

    queries = query_stats(sink, current, a.queries)
    wider = PgVectorSink(dsn, table="sink_docs", hnsw_ef_search=100)  # a longer candidate list
    queries_ef100 = query_stats(wider, current, a.queries)
    wider.close()
    for label, q in (("ef_search 40", queries), ("ef_search 100", queries_ef100)):
        print(
            f"query        {label}: p50 {q['p50_ms']} ms, p95 {q['p95_ms']} ms, "
            f"recall@10 {q['recall_at_10']:.3f} ({q['queries']} queries)",
            flush=True,
        )
    sink.close()

    result: dict[str, Any] = {
        "rows": n,
        "dim": 384,
        "batch": a.batch,
        "postgres": versions[0],
        "pgvector": versions[1],
        "fresh_load": fresh,
        "hnsw_build_seconds": round(build, 1),
        "rerun_5pct": rerun,
        "query": queries,
        "query_ef_search_100": queries_ef100,
    }
    if not a.no_embed:
        with tempfile.TemporaryDirectory(prefix="drift-bench-pg-") as work:
            emb = bench_embed(dsn, n, Path(work))
        result["embed"] = emb
        f, r = emb["fresh"], emb["rerun_5pct"]
        print(
            f"embed()      fresh {f['rows_per_s_without_index_build']:>8,} rows/s without the index build "
            f"({f['seconds']} s incl. {f['flush_seconds']} s HNSW) | re-run 5% {r['rows_per_s']:>8,} rows/s "
            f"({r['embedded']:,} embedded, {r['written']:,} written, {r['seconds']} s)",
            flush=True,
        )
    return result


if __name__ == "__main__":
    main()
