"""The quickstart example DAG, end to end under ``dag.test()``: shadow mode, embedded sink, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from airflow_provider_drift.engine.ledger import Ledger

from .conftest import load_example_dag

N_ROWS = 300


def _results(dag_run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    embed_ti = dag_run.get_task_instance("embed_tickets")
    status_ti = dag_run.get_task_instance("show_status")
    return embed_ti.xcom_pull(task_ids="embed_tickets"), status_ti.xcom_pull(task_ids="show_status")


def test_quickstart_embeds_then_dedups_every_row_on_rerun(
    run_dag: Any, demo_dir: Path, tmp_path: Path
) -> None:
    dag = load_example_dag("quickstart.py", "drift_quickstart")
    assert dag.get_task("embed_tickets").sink == f"qdrant+local://{demo_dir}/qdrant/support_tickets"

    first = run_dag(dag, run_conf={"n_rows": N_ROWS})
    assert first.state == "success"
    run, state = _results(first)
    assert run["n_rows_processed"] == N_ROWS
    assert run["n_written"] == N_ROWS
    # The sample repeats a few canned texts: each distinct text is embedded once.
    bodies = DeltaTable(dag.get_task("embed_tickets").table).to_pyarrow_table(columns=["body"])
    assert run["n_embedded"] == len(set(bodies.column("body").to_pylist())) < N_ROWS
    assert run["n_rows_deduped"] == 0
    assert run["cost_usd"] == 0.0
    assert run["status"] == "success"
    assert state["points"] == N_ROWS
    assert state["ledger_points"] == N_ROWS
    assert state["in_agreement"] is True
    assert state["dim"] == 1536

    second = run_dag(dag, run_conf={"n_rows": N_ROWS})
    assert second.state == "success"
    rerun, state = _results(second)
    assert rerun["n_rows_processed"] == N_ROWS
    assert rerun["n_rows_deduped"] == N_ROWS
    assert rerun["n_embedded"] == 0
    assert rerun["n_written"] == 0
    assert state["points"] == N_ROWS
    assert state["in_agreement"] is True

    with Ledger(tmp_path / "ledger.db") as ledger:
        runs = ledger.recent_runs(run["sink"], limit=10)
    assert [(r["run_id"], r["status"]) for r in runs] == [
        (rerun["run_id"], "success"),
        (run["run_id"], "success"),
    ]
    assert {(r["dag_id"], r["task_id"]) for r in runs} == {("drift_quickstart", "embed_tickets")}
    assert [r["airflow_run_id"] for r in runs] == [second.run_id, first.run_id]
    assert all(r["try_number"] == 1 for r in runs)
