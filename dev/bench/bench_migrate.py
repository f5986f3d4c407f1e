"""Benchmark migrate(): dual-write build rate, re-sync, cutover, and the adapter path end to end.

    .venv/bin/python dev/bench/bench_migrate.py                       # 100k rows, embedded Qdrant
    .venv/bin/python dev/bench/bench_migrate.py --rows 20000 --sinks qdrant_local,pgvector

Set-up (not timed): a Delta table of sample tickets embedded with
all-MiniLM-L6-v2 (384-d, shadow mode) into a fresh collection. Then, timed:

- ``dual-write start``: the whole new collection built with all-mpnet-base-v2
  (768-d, shadow) from the source: read, dedup, embed, write, record;
  rows/s = rows / wall time;
- ``dual-write sync``: the same again with nothing changed (dedup only);
- ``cutover``: the checks plus the alias switch;
- ``drift-adapter``: paired sample (5,000) read back by key, embedded, fitted
  (every kind, held-out gate), stored and recorded;
- ``shadow-eval``: 1,000 texts measured;
- ``nearest``: one new-model text query embedded, adapted and searched, median.

Prints a table and writes JSON to dev/bench/results/migrate.json. Shadow
vectors cost no API time, so these rates are drift's own overhead plus the sink.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

OLD = "local/all-MiniLM-L6-v2"  # 384-d
NEW = "local/all-mpnet-base-v2"  # 768-d


def _sink_uri(kind: str, root: Path, dsn: str | None, name: str) -> str:
    if kind == "qdrant_local":
        return f"qdrant+local://{root / 'qdrant'}/{name}"
    from tests.engine.migration_helpers import pg_uri

    assert dsn is not None
    return pg_uri(dsn, name)


def bench_sink(kind: str, rows: int, root: Path, dsn: str | None) -> dict[str, Any]:
    from airflow_provider_drift.engine.embed import embed
    from airflow_provider_drift.engine.ledger import Ledger
    from airflow_provider_drift.engine.migrate import migrate
    from airflow_provider_drift.engine.query import nearest
    from airflow_provider_drift.engine.sources.sample import write_sample_tickets

    table = str(root / "tickets")
    if not (Path(table) / "_delta_log").is_dir():
        write_sample_tickets(table, n=rows, seed=0)
    sink = _sink_uri(kind, root, dsn, f"bench_{kind}")
    out: dict[str, Any] = {"sink": kind, "rows": rows}
    with Ledger(root / f"ledger-{kind}.db") as led:
        t0 = time.perf_counter()
        embed(table, text_col="body", key_col="ticket_id", model=OLD, sink=sink, shadow_mode=True, ledger=led)
        out["setup_embed_s"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        built = migrate(OLD, NEW, sink, strategy="dual-write", shadow_mode=True, ledger=led)
        spent = time.perf_counter() - t0
        out["dual_write_start_s"] = round(spent, 2)
        out["dual_write_rows_per_s"] = round(built.n_points / spent)
        out["dual_write_texts_embedded"] = built.n_embedded

        t0 = time.perf_counter()
        again = migrate(OLD, NEW, sink, strategy="dual-write", action="sync", shadow_mode=True, ledger=led)
        spent = time.perf_counter() - t0
        out["sync_unchanged_s"] = round(spent, 2)
        out["sync_unchanged_rows_per_s"] = round(again.n_points / spent)
        assert again.n_embedded == 0

        t0 = time.perf_counter()
        migrate(OLD, NEW, sink, strategy="dual-write", action="cutover", ledger=led)
        out["cutover_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        migrate(OLD, NEW, sink, strategy="dual-write", action="rollback", ledger=led)

        t0 = time.perf_counter()
        fitted = migrate(OLD, NEW, sink, strategy="drift-adapter", shadow_mode=True, ledger=led,
                         adapter_dir=root / "adapters")  # fmt: skip
        out["drift_adapter_s"] = round(time.perf_counter() - t0, 2)
        out["drift_adapter_pairs"] = fitted.n_points
        out["drift_adapter_kind"] = fitted.adapter_kind
        out["drift_adapter_arr10"] = round(fitted.arr or 0.0, 3)
        out["drift_adapter_overlap10"] = round(fitted.overlap or 0.0, 3)

        t0 = time.perf_counter()
        evaluated = migrate(OLD, NEW, sink, strategy="shadow-eval", shadow_mode=True, ledger=led)
        out["shadow_eval_s"] = round(time.perf_counter() - t0, 2)
        out["shadow_eval_overlap10"] = round(evaluated.overlap or 0.0, 3)

        from airflow_provider_drift.engine.adapter import DriftAdapter
        from airflow_provider_drift.engine.sinks import open_sink

        adapter = DriftAdapter.load(fitted.adapter_path or "")
        handle = open_sink(sink)
        try:
            times = []
            for i in range(200):
                t0 = time.perf_counter()
                nearest(
                    handle,
                    f"I was charged twice for invoice {i}",
                    model=NEW,
                    adapter=adapter,
                    shadow_mode=True,
                )
                times.append(time.perf_counter() - t0)
        finally:
            handle.close()
        out["nearest_adapted_median_ms"] = round(statistics.median(times) * 1000, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sinks", default="qdrant_local", help="comma-separated: qdrant_local,pgvector")
    parser.add_argument("--root", help="work directory (default: a temporary one)")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="drift-bench-migrate-"))
    os.environ["DRIFT_HOME"] = str(root / "home")
    results = []
    server = None
    try:
        for kind in args.sinks.split(","):
            dsn = None
            if kind == "pgvector":
                from tests.fixtures.pg import start_postgres

                server = server or start_postgres()
                dsn = server.dsn
            results.append(bench_sink(kind, args.rows, root, dsn))
            print(json.dumps(results[-1], indent=1), flush=True)
    finally:
        if server is not None:
            server.stop()
    target = REPO / "dev" / "bench" / "results" / "migrate.json"
    # Keep other sinks' (or sizes') last results: runs of one sink at a time can take minutes.
    previous = json.loads(target.read_text())["results"] if target.exists() else []
    mine = {(r["sink"], r["rows"]) for r in results}
    kept = [r for r in previous if (r.get("sink"), r.get("rows")) not in mine]
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()}
    for r in results:
        r["machine"] = machine
    target.write_text(json.dumps({"results": kept + results}, indent=1) + "\n")
    print(f"{'sink':<14}{'rows':>9}{'dual-write rows/s':>19}{'re-sync rows/s':>16}{'cutover ms':>12}"
          f"{'adapter s':>11}{'ARR@10':>8}{'eval s':>8}{'nearest ms':>12}")  # fmt: skip
    for r in results:
        print(f"{r['sink']:<14}{r['rows']:>9,}{r['dual_write_rows_per_s']:>19,}{r['sync_unchanged_rows_per_s']:>16,}"
              f"{r['cutover_ms']:>12}{r['drift_adapter_s']:>11}{r['drift_adapter_arr10']:>8}"
              f"{r['shadow_eval_s']:>8}{r['nearest_adapted_median_ms']:>12}")  # fmt: skip
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
