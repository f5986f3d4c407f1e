"""drift_model_migration: measure a model upgrade, then take the path the measurement allows — offline.

The sample support tickets are embedded with all-MiniLM-L6-v2 (384-d), then
moved to all-mpnet-base-v2 (768-d):

1. ``shadow_eval`` — on a sample of the collection's own texts, how do the
   new model's neighbours agree with the old model's, and how much would an
   adapter recover (ARR@10)? Nothing is changed.
2. ``choose_strategy`` — branch on that measurement (or on the ``strategy``
   param): an adapter good enough for the gate → ``drift-adapter``, else
   ``dual-write``.
3. ``fit_adapter`` → ``query_through_adapter``: new-model queries, adapted,
   answered by the untouched old index. A gate failure fails the task
   without retries and says to use dual-write.
   ``build_new_collection`` → ``cutover`` → ``query_new_collection``: a new
   collection built beside the old one, then the serving alias switched to
   it in one step (``drift migrate ... --action rollback`` switches back).

Shadow mode gives deterministic vectors of the real dimensions with no API
key and no cost, and two shadow models relate like real ones, so the adapter
is fitted and gated for real (``airflow dags test drift_model_migration``).
Everything lives under ``$DRIFT_DEMO_DIR`` (default ``$DRIFT_HOME/demo``, else
``~/.drift/demo``). Parsing this file only reads environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_drift.operators import EmbedOperator
from airflow_provider_drift.operators.migrate import MigrateOperator

DEMO_DIR = Path(
    os.environ.get("DRIFT_DEMO_DIR") or Path(os.environ.get("DRIFT_HOME") or "~/.drift") / "demo"
).expanduser()
TICKETS_TABLE = str(DEMO_DIR / "migration_tickets")
QDRANT_ROOT = DEMO_DIR / "qdrant"
COLLECTION = "migration_tickets"
SINK = f"qdrant+local://{QDRANT_ROOT / COLLECTION}"
ALIAS = f"{COLLECTION}_live"  # what readers query; the cutover switches it
OLD_MODEL = "local/all-MiniLM-L6-v2"  # 384-d
NEW_MODEL = "local/all-mpnet-base-v2"  # 768-d
QUERY = "I was charged twice for the same invoice"

with DAG(
    dag_id="drift_model_migration",
    description="Shadow-eval, then drift-adapter or dual-write + cutover (shadow mode, embedded Qdrant)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "n_rows": Param(1_500, type="integer", minimum=600, description="tickets in the sample table"),
        "strategy": Param(
            "auto",
            enum=["auto", "drift-adapter", "dual-write"],
            description="auto: follow the shadow evaluation",
        ),
        "threshold": Param(
            0.5,
            type="number",
            minimum=0,
            maximum=1,
            description="gate on test-split ARR@10 at the collection's size",
        ),
    },
    tags=["drift", "example", "migration"],
) as dag:

    @task
    def create_sample_table(params: dict[str, Any] | None = None) -> str:
        """Write the sample Delta table unless it exists: re-runs and concurrent runs leave it as it is."""
        from airflow_provider_drift.engine.sources.sample import ensure_sample_tickets

        n_rows = int((params or {}).get("n_rows", 1_500))
        return ensure_sample_tickets(TICKETS_TABLE, n=n_rows, seed=0)[0]

    embed_tickets = EmbedOperator(
        task_id="embed_tickets",
        table=TICKETS_TABLE,
        text_col="body",
        key_col="ticket_id",
        model=OLD_MODEL,
        sink=SINK,
        shadow_mode=True,
    )

    shadow_eval = MigrateOperator(
        task_id="shadow_eval",
        from_model=OLD_MODEL,
        to_model=NEW_MODEL,
        sink=SINK,
        strategy="shadow-eval",
        threshold="{{ params.threshold }}",
        shadow_mode=True,
    )

    @task.branch
    def choose_strategy(evaluation: dict[str, Any], params: dict[str, Any] | None = None) -> str:
        """Follow the measurement unless the run forces a strategy."""
        forced = (params or {}).get("strategy", "auto")
        chosen = evaluation["metrics"]["recommended_strategy"] if forced == "auto" else forced
        print(
            f"old vs new top-10 agreement {evaluation['overlap']:.3f}, adapter ARR@10 {evaluation['arr']}, "
            f"gate {evaluation['threshold']}: {chosen}" + (" (forced)" if forced != "auto" else "")
        )
        return "fit_adapter" if chosen == "drift-adapter" else "build_new_collection"

    fit_adapter = MigrateOperator(
        task_id="fit_adapter",
        from_model=OLD_MODEL,
        to_model=NEW_MODEL,
        sink=SINK,
        strategy="drift-adapter",
        threshold="{{ params.threshold }}",
        shadow_mode=True,
    )

    @task
    def query_through_adapter(run: dict[str, Any]) -> list[dict[str, Any]]:
        """Embed with the new model, adapt, search the old collection: what serving looks like now."""
        from airflow_provider_drift.engine.query import nearest

        hits = nearest(SINK, QUERY, model=NEW_MODEL, adapter=run["adapter_path"], shadow_mode=True, limit=3)
        return [{"id": h.id, "score": round(h.score, 4), "key": h.payload.get("key")} for h in hits]

    build_new_collection = MigrateOperator(
        task_id="build_new_collection",
        from_model=OLD_MODEL,
        to_model=NEW_MODEL,
        sink=SINK,
        strategy="dual-write",
        action="start",
        alias=ALIAS,
        shadow_mode=True,
    )

    cutover = MigrateOperator(
        task_id="cutover",
        from_model=OLD_MODEL,
        to_model=NEW_MODEL,
        sink=SINK,
        strategy="dual-write",
        action="cutover",
    )

    @task
    def query_new_collection(run: dict[str, Any]) -> list[dict[str, Any]]:
        """Readers query the alias: after the cutover it serves the new model's collection."""
        from airflow_provider_drift.engine.query import nearest

        hits = nearest(
            f"qdrant+local://{QDRANT_ROOT / ALIAS}", QUERY, model=NEW_MODEL, shadow_mode=True, limit=3
        )
        return [{"id": h.id, "score": round(h.score, 4), "key": h.payload.get("key")} for h in hits]

    evaluation = shadow_eval.output
    create_sample_table() >> embed_tickets >> shadow_eval
    branch = choose_strategy(evaluation)  # type: ignore[arg-type]  # an XComArg, resolved at run time
    branch >> [fit_adapter, build_new_collection]
    query_through_adapter(fit_adapter.output)  # type: ignore[arg-type]
    build_new_collection >> cutover
    query_new_collection(cutover.output)  # type: ignore[arg-type]
