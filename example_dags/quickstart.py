"""drift_quickstart: embed a sample table of support tickets into the embedded Qdrant sink, offline.

Shadow mode gives deterministic vectors with the model's real dimension, no
API key and no cost, so this DAG runs anywhere (``airflow dags test
drift_quickstart``). Run it twice: the second run finds every row unchanged
and embeds and writes nothing.

Everything lives under ``$DRIFT_DEMO_DIR`` (default ``$DRIFT_HOME/demo``, else
``~/.drift/demo``): the Delta table and the Qdrant collection. The ledger is
the ``drift_ledger_default`` connection's, else ``$DRIFT_LEDGER_PATH`` or
``~/.drift/ledger.db``. Parsing this file only reads environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_drift.operators import EmbedOperator

DEMO_DIR = Path(
    os.environ.get("DRIFT_DEMO_DIR") or Path(os.environ.get("DRIFT_HOME") or "~/.drift") / "demo"
).expanduser()
TICKETS_TABLE = str(DEMO_DIR / "support_tickets")
SINK = f"qdrant+local://{DEMO_DIR / 'qdrant' / 'support_tickets'}"
MODEL = "openai/text-embedding-3-small"  # 1536-d; shadow mode never calls OpenAI

with DAG(
    dag_id="drift_quickstart",
    description="Embed sample support tickets (shadow mode) into the embedded Qdrant sink",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"n_rows": Param(2_000, type="integer", minimum=1, description="tickets in the sample table")},
    tags=["drift", "example"],
) as dag:

    @task
    def create_sample_table(params: dict[str, Any] | None = None) -> str:
        """Write the sample Delta table unless it exists: re-runs and concurrent runs leave it as it is."""
        from airflow_provider_drift.engine.sources.sample import ensure_sample_tickets

        n_rows = int((params or {}).get("n_rows", 2_000))
        path, created = ensure_sample_tickets(TICKETS_TABLE, n=n_rows, seed=0)
        print(
            f"wrote {n_rows} sample tickets to {path}" if created else f"sample table already exists: {path}"
        )
        return path

    embed_tickets = EmbedOperator(
        task_id="embed_tickets",
        table=TICKETS_TABLE,
        text_col="body",
        key_col="ticket_id",
        model=MODEL,
        sink=SINK,
        shadow_mode=True,
    )

    @task
    def show_status(run: dict[str, Any]) -> dict[str, Any]:
        """Print what this run did and what the sink now holds, and whether the ledger agrees."""
        from airflow_provider_drift.engine.status import status
        from airflow_provider_drift.hooks import DriftLedgerHook

        with DriftLedgerHook().get_ledger() as ledger:
            state = status(SINK, ledger=ledger).to_dict()
        cost = "unknown" if run["cost_usd"] is None else f"${run['cost_usd']:.6f}"
        print(
            f"run {run['run_id']}: {run['n_rows_processed']} rows, {run['n_rows_deduped']} unchanged, "
            f"{run['n_embedded']} embedded, {run['n_written']} written, cost {cost}"
        )
        print(
            f"sink {state['sink']}: {state['points']} points, ledger {state['ledger_points']}, "
            f"in agreement: {state['in_agreement']}, models {state['models']}"
        )
        return state

    create_sample_table() >> embed_tickets
    show_status(embed_tickets.output)  # type: ignore[arg-type]  # an XComArg, resolved at run time
