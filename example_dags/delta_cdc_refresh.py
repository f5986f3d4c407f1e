"""delta_cdc_refresh: every hour, apply that hour's Delta commits to a vector collection, offline.

The DAG runs in interval mode on a data-interval timetable
(``CronDataIntervalTimetable``): the run for ``[10:00, 11:00)`` applies exactly
the commits made in that hour, however late it runs and however often it is
re-run. That is what makes backfills work: ``airflow backfill create --dag-id
delta_cdc_refresh --from-date ... --to-date ...`` replays each past hour's
commits, in any order and concurrently (a per-key version guard in the ledger
keeps an older change from overwriting a newer one).

``wait_for_changes`` (a DeltaCDFSensor) finds the hour's commits; an hour
without commits past the watermark skips the refresh (``soft_fail``) instead
of waiting, because a closed interval can get no new commits.
``refresh_vectors`` (a WatchOperator) embeds only the rows whose text
changed, deletes the points of deleted rows and moves the watermark. The very
first run finds no watermark: it embeds the whole table once and sets the
watermark to its version.

Shadow mode gives deterministic vectors with the model's real dimension, no
API key and no cost. Everything lives under ``$DRIFT_DEMO_DIR`` (default
``$DRIFT_HOME/demo``, else ``~/.drift/demo``): the sample Delta table of
support tickets (created on the first run, once even when many runs start
together) and the embedded Qdrant collection. Parsing this file only reads
environment variables.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable

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
    # Data intervals of one hour, [start, end): the default cron timetable's intervals have zero length.
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"n_rows": Param(2_000, type="integer", minimum=1, description="tickets in the sample table")},
    tags=["drift", "example", "cdc"],
) as dag:

    @task
    def create_sample_table(params: dict[str, Any] | None = None) -> str:
        """Write the sample Delta table (change data feed on) once, however many runs race for it."""
        from airflow_provider_drift.engine.sources.sample import ensure_sample_tickets

        n_rows = int((params or {}).get("n_rows", 2_000))
        path, created = ensure_sample_tickets(TICKETS_TABLE, n=n_rows, seed=0)
        print(
            f"wrote {n_rows} sample tickets to {path}" if created else f"sample table already exists: {path}"
        )
        return path

    wait_for_changes = DeltaCDFSensor(
        task_id="wait_for_changes",
        table=TICKETS_TABLE,
        sink=SINK,
        watch_mode="interval",  # only this run's hour counts: a closed hour without commits skips at once
        deferrable=True,  # a run whose hour is still open waits in the triggerer, not in a worker slot
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
        mode="interval",  # apply the commits of this run's data interval: the same ones on every re-run
    )

    create_sample_table() >> wait_for_changes >> refresh_vectors
