"""The embed job as a Spark application: ``spark-submit``, or Airflow's ``SparkSubmitOperator``.

    JOB=$(python -c 'import airflow_provider_drift.spark_job as m; print(m.__file__)')
    spark-submit --master yarn "$JOB" embed --source s3://bucket/tickets --text-col body --key-col id \\
        --model openai/text-embedding-3-small --sink pgvector://... --ledger /shared/drift/ledger.db

also ``python -m airflow_provider_drift.spark_job embed ...`` (a local session). The
session is the one spark-submit configured (``getOrCreate``); the rows are
planned, embedded and written on its executors (``runner="spark"``) and the
run record is printed as one JSON line. Exit codes as the ``drift`` CLI:
0 success, 2 terminal (fix the input or config), 3 transient (retry).
The ledger path must be on the driver's disk; executors never open it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from airflow_provider_drift.engine.errors import DriftError, TerminalError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="airflow_provider_drift.spark_job", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed", help="embed a table on the Spark executors")
    e.add_argument("--source", required=True, help="Parquet/Delta path, or a catalog table name")
    e.add_argument("--source-name", help="stable source name in point ids (default: from the location)")
    e.add_argument("--text-col", required=True)
    e.add_argument("--key-col", required=True)
    e.add_argument("--model", required=True)
    e.add_argument(
        "--sink", required=True, help="a sink every executor can reach: pgvector://… or qdrant://…"
    )
    e.add_argument("--ledger", help="ledger path on the driver (default: $DRIFT_LEDGER_PATH or ~/.drift)")
    e.add_argument("--shadow-mode", action="store_true")
    e.add_argument("--dim", type=int)
    e.add_argument("--batch-size", type=int, default=4096)
    e.add_argument("--filter")
    e.add_argument("--store-text", action="store_true")
    e.add_argument("--delete-missing", action="store_true")
    e.add_argument("--on-invalid", choices=("error", "skip"), default="error")
    e.add_argument("--on-duplicate", choices=("error", "keep_last"), default="error")
    e.add_argument("--provider-options", type=json.loads, help="JSON object, e.g. '{\"max_concurrency\": 8}'")
    return p.parse_args(argv)


def run(args: argparse.Namespace, *, spark: Any = None) -> dict[str, Any]:
    """Run the parsed command on ``spark`` (default: the active or a new session)."""
    from airflow_provider_drift.engine.embed import embed
    from airflow_provider_drift.engine.spark.frames import spark_frame

    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.appName("airflow-provider-drift embed").getOrCreate()
    frame, name = spark_frame(spark, args.source)
    record = embed(
        frame,
        source=args.source_name or name,
        text_col=args.text_col,
        key_col=args.key_col,
        model=args.model,
        sink=args.sink,
        ledger=args.ledger,
        shadow_mode=args.shadow_mode,
        dim=args.dim,
        batch_size=args.batch_size,
        filter=args.filter,
        store_text=args.store_text,
        delete_missing=args.delete_missing,
        on_invalid=args.on_invalid,
        on_duplicate=args.on_duplicate,
        provider_options=args.provider_options,
        runner="spark",
    )
    return record.to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        record = run(args)
    except DriftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, TerminalError) else 3
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
