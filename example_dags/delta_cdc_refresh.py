"""delta_cdc_refresh: every hour, apply what changed in a Delta table to its vector collection, offline.

``wait_for_changes`` (a deferrable DeltaCDFSensor) waits in the triggerer
until the table has commits after the ledger's watermark; ``refresh_vectors``
(a WatchOperator) then embeds only the rows whose text changed, deletes the
points of deleted rows and moves the watermark. The first run finds no
watermark: it embeds the whole table once and sets the watermark to its
version. An hour without commits skips the refresh (``soft_fail``).

Shadow mode gives deterministic vectors with the model's real dimension, no
API key and no cost. Everything lives under ``$DRIFT_DEMO_DIR`` (default
``$DRIFT_HOME/demo``, else ``~/.drift/demo``): the sample Delta table of
support tickets (created on the first run) and the embedded Qdrant
collection. Change the table (``DeltaTable(path).update(...)``) and run the DAG
again to see only those rows embedded. Parsing this file only reads
environment variables.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_drift.operators.watch import WatchOperator
from airflow_provider_drift.sensors import DeltaCDFSensor

DEMO_DIR = Path(
    os.environ.get("DRIFT_DEMO_DIR") or Path(os.environ.get("DRIFT_HOME") or "~/.drift") / "demo"
).expanduser()
TICKETS_TABLE = str(DEMO_DIR / "support_tickets_cdc")
SINK = f"qdrant+local://{DEMO_DIR / 'qdrant' / 'support_tickets_cdc'}"
MODEL = "openai/text-embedding-3-small"  # 1536-d; shadow mode never calls OpenAI

with DAG(
    dag_id="delta_cdc_refresh",
    description="Keep a vector collection equal to a Delta table through its change data feed (shadow mode)",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one watch per (table, sink) at a time; the watermark serialises them anyway
    params={"n_rows": Param(2_000, type="integer", minimum=1, description="tickets in the sample table")},
    tags=["drift", "example", "cdc"],
) as dag:

    @task
    def create_sample_table(params: dict[str, Any] | None = None) -> str:
        """Write the sample Delta table (change data feed on) unless it already exists."""
        from airflow_provider_drift.engine.sources.sample import write_sample_tickets

        if (Path(TICKETS_TABLE) / "_delta_log").is_dir():
            return TICKETS_TABLE
        n_rows = int((params or {}).get("n_rows", 2_000))
        print(f"writing {n_rows} sample tickets to {TICKETS_TABLE}")
        return write_sample_tickets(TICKETS_TABLE, n=n_rows, seed=0)

    wait_for_changes = DeltaCDFSensor(
        task_id="wait_for_changes",
        table=TICKETS_TABLE,
        sink=SINK,
        deferrable=True,
        poke_interval=60,
        timeout=timedelta(minutes=55),
        soft_fail=True,  # nothing committed this hour: skip the refresh, not a failure
    )

    refresh_vectors = WatchOperator(
        task_id="refresh_vectors",
        table=TICKETS_TABLE,
        text_col="body",
        key_col="ticket_id",
        model=MODEL,
        sink=SINK,
        shadow_mode=True,
        # apply exactly the versions the sensor saw; later commits wait for the next run
        until_version="{{ ti.xcom_pull(task_ids='wait_for_changes')['to_version'] }}",
    )

    create_sample_table() >> wait_for_changes >> refresh_vectors
