"""The model-migration example DAG under ``dag.test()``; MigrateOperator's templating and error mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sources.sample import write_sample_tickets
from airflow_provider_drift.operators.migrate import MigrateOperator

from .conftest import load_example_dag, register_dag

N_ROWS = 600


def _states(dag_run: Any) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _xcom(dag_run: Any, task_id: str) -> Any:
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id)


def test_example_dag_measures_then_fits_an_adapter_and_queries_through_it(
    run_dag: Any, demo_dir: Path, tmp_path: Path
) -> None:
    dag = load_example_dag("model_migration.py", "drift_model_migration")

    dag_run = run_dag(dag, run_conf={"n_rows": N_ROWS})

    assert dag_run.state == "success"
    assert _states(dag_run) == {
        "create_sample_table": "success",
        "embed_tickets": "success",
        "shadow_eval": "success",
        "choose_strategy": "success",
        "fit_adapter": "success",
        "query_through_adapter": "success",
        "build_new_collection": "skipped",
        "cutover": "skipped",
        "query_new_collection": "skipped",
    }
    evaluation, adapter = _xcom(dag_run, "shadow_eval"), _xcom(dag_run, "fit_adapter")
    assert evaluation["metrics"]["recommended_strategy"] == "drift-adapter" and evaluation["passed"] is True
    assert adapter["passed"] is True and adapter["arr"] >= 0.5 and Path(adapter["adapter_path"]).is_file()
    hits = _xcom(dag_run, "query_through_adapter")
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"]
    with Ledger(tmp_path / "ledger.db") as ledger:
        [rec] = ledger.adapters(adapter["sink"])
        runs = ledger.recent_runs(adapter["sink"], limit=5)
    assert rec["path"] == adapter["adapter_path"] and rec["passed"] is True
    assert [(r["kind"], r["task_id"]) for r in runs] == [
        ("migrate", "fit_adapter"),
        ("migrate", "shadow_eval"),
        ("embed", "embed_tickets"),
    ]
    # The index was not touched: one collection, old model, every ticket.
    sink = open_sink(dag.get_task("embed_tickets").sink)
    assert (sink.list_collections(), sink.dimension(), sink.count()) == (["migration_tickets"], 384, N_ROWS)


def test_example_dag_forced_to_dual_write_builds_cuts_over_and_is_idempotent(
    run_dag: Any, demo_dir: Path
) -> None:
    dag = load_example_dag("model_migration.py", "drift_model_migration")
    conf = {"n_rows": N_ROWS, "strategy": "dual-write"}

    first = run_dag(dag, run_conf=conf)

    assert first.state == "success"
    states = _states(first)
    assert (states["fit_adapter"], states["build_new_collection"], states["cutover"]) == (
        "skipped",
        "success",
        "success",
    )
    built, cut = _xcom(first, "build_new_collection"), _xcom(first, "cutover")
    assert (built["metrics"]["state"], built["n_points"]) == ("ready", N_ROWS)
    assert (cut["metrics"]["state"], cut["metrics"]["alias"]) == ("cut_over", "migration_tickets_live")
    root = demo_dir / "qdrant"
    alias = open_sink(f"qdrant+local://{root}/migration_tickets_live")
    assert alias.resolve_alias("migration_tickets_live") == "migration_tickets__local_all-mpnet-base-v2"
    assert (alias.dimension(), alias.count()) == (768, N_ROWS)
    assert len(_xcom(first, "query_new_collection")) == 3
    alias.close()

    again = run_dag(dag, run_conf=conf)  # a re-run: nothing to build, already cut over

    assert again.state == "success"
    rebuilt = _xcom(again, "build_new_collection")
    assert (rebuilt["metrics"]["state"], rebuilt["n_embedded"]) == ("cut_over", 0)


def test_a_failed_quality_gate_fails_the_task_at_once_and_says_why(run_dag: Any, tmp_path: Path) -> None:
    tickets = write_sample_tickets(tmp_path / "tickets", n=N_ROWS, seed=0)
    sink = f"qdrant+local://{tmp_path / 'qdrant' / 'tickets'}"
    embed(tickets, text_col="body", key_col="ticket_id", model="local/all-MiniLM-L6-v2", sink=sink,
          shadow_mode=True)  # fmt: skip
    with DAG(
        "drift_test_gate",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        default_args={"retries": 3, "retry_delay": dt.timedelta(0)},
    ) as dag:
        MigrateOperator(
            task_id="fit_adapter",
            from_model="local/all-MiniLM-L6-v2",
            to_model="local/all-mpnet-base-v2",
            sink=sink,
            strategy="drift-adapter",
            threshold=0.99,
            shadow_mode=True,
        )

    dag_run = run_dag(register_dag(dag))

    ti = dag_run.get_task_instance("fit_adapter")
    assert (dag_run.state, ti.state, ti.try_number) == ("failed", "failed", 1)
    with Ledger(tmp_path / "ledger.db") as ledger:
        [run] = [r for r in ledger.recent_runs(limit=5) if r["kind"] == "migrate"]
        [rec] = ledger.adapters()
    assert run["status"] == "failed" and run["task_id"] == "fit_adapter"
    assert "AdapterQualityError" in run["error"] and "below the gate 0.99" in run["error"]
    assert "strategy='dual-write'" in run["error"]
    assert rec["passed"] is False and rec["threshold"] == 0.99


def test_templated_fields_render_and_bad_choices_fail_when_parsed() -> None:
    op = MigrateOperator(
        task_id="m",
        from_model="{{ params.old }}",
        to_model="{{ params.new }}",
        strategy="{{ params.strategy }}",
        action="{{ params.action }}",
        collection="docs_{{ params.env }}",
        threshold="{{ params.threshold }}",
        sample_size="{{ params.n }}",
    )
    op.render_template_fields(
        {"params": {"old": "a/x", "new": "a/y", "strategy": "dual-write", "action": "cutover", "env": "prod",
                    "threshold": 0.6, "n": 800}}
    )  # fmt: skip
    assert (op.from_model, op.to_model, op.strategy, op.action, op.collection) == (
        "a/x",
        "a/y",
        "dual-write",
        "cutover",
        "docs_prod",
    )
    assert (str(op.threshold), str(op.sample_size)) == ("0.6", "800")
    with pytest.raises(ConfigError, match="unknown strategy 'reindex'"):
        MigrateOperator(task_id="m", from_model="a", to_model="b", collection="c", strategy="reindex")
    with pytest.raises(ConfigError, match="unknown action 'switch'"):
        MigrateOperator(task_id="m", from_model="a", to_model="b", collection="c", strategy="dual-write",
                        action="switch")  # fmt: skip
    with pytest.raises(ConfigError, match="either sink= or sink_conn_id="):
        MigrateOperator(task_id="m", from_model="a", to_model="b", sink="qdrant+local:///x/c",
                        sink_conn_id="q", strategy="shadow-eval")  # fmt: skip
