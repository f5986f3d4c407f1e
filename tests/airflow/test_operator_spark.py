"""spark_conn_id on EmbedOperator and WatchOperator, and the spark-submit entry point, on local Spark."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_drift import spark_job
from airflow_provider_drift.engine.errors import SourceUnavailableError
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.hooks.spark import SparkSessionHook
from airflow_provider_drift.operators import EmbedOperator
from airflow_provider_drift.operators.watch import WatchOperator
from tests.sinks.conftest import _pg_uri

MODEL = "openai/text-embedding-3-small"


def _context(task_id: str) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="adhoc", task_id=task_id, run_id="manual__1", try_number=1, map_index=-1)
    return {"ti": ti, "run_id": "manual__1"}


def _parquet(tmp_path: Path, n: int = 30) -> str:
    path = tmp_path / "tickets.parquet"
    pq.write_table(pa.table({"id": list(range(n)), "body": [f"ticket {i} is open" for i in range(n)]}), path)
    return str(path)


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))


def test_a_spark_connect_server_that_does_not_answer_is_named_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _conn(monkeypatch, "spark_down", {"conn_type": "spark_connect", "host": "127.0.0.1", "port": 9})
    with pytest.raises(
        SourceUnavailableError, match=r"connection 'spark_down'.*nothing answers at 127.0.0.1:9"
    ):
        SparkSessionHook("spark_down").session()
    op = EmbedOperator(task_id="embed", table="/data/t", text_col="body", key_col="id", model=MODEL,
                       shadow_mode=True, collection="t", spark_conn_id="spark_down")  # fmt: skip
    with pytest.raises(SourceUnavailableError, match="spark_down"):  # transient: Airflow retries it
        op.execute(_context("embed"))  # type: ignore[arg-type]


def test_a_connection_of_another_type_or_missing_fails_without_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "not_spark", {"conn_type": "postgres", "host": "db"})
    for conn_id, message in (("not_spark", "has type 'postgres'"), ("no_such_spark", "is not defined")):
        op = WatchOperator(task_id="watch", table="/data/t", text_col="body", key_col="id", model=MODEL,
                           shadow_mode=True, collection="t", spark_conn_id=conn_id)  # fmt: skip
        with pytest.raises(AirflowFailException, match=message):
            op.execute(_context("watch"))  # type: ignore[arg-type]


@pytest.mark.spark
def test_embed_operator_with_a_spark_connection_runs_on_the_executors(
    spark: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_dsn: str, pg_table_name: str
) -> None:
    _conn(monkeypatch, "spark_local", {"conn_type": "spark", "host": "local[2]"})  # joins the running session
    ledger = tmp_path / "ledger.db"
    _conn(monkeypatch, "drift_ledger_default", {"conn_type": "drift_ledger", "host": str(ledger)})
    table = _parquet(tmp_path)
    from psycopg.conninfo import conninfo_to_dict

    pg = conninfo_to_dict(pg_dsn)  # the pgvector sink as users give it: a postgres connection + collection
    conn = {"conn_type": "postgres", "host": pg.get("host", "127.0.0.1"), "port": int(pg.get("port", 5432)),
            "login": pg.get("user", "postgres"), "password": pg.get("password"),
            "schema": pg.get("dbname", "postgres")}  # fmt: skip
    _conn(monkeypatch, "pg_vectors", conn)
    op = EmbedOperator(task_id="embed", table=table, text_col="body", key_col="id", model=MODEL,
                       shadow_mode=True, dim=16, sink_conn_id="pg_vectors", collection=pg_table_name,
                       spark_conn_id="spark_local")  # fmt: skip
    record = op.execute(_context("embed"))  # type: ignore[arg-type]
    assert record["runner"] == "spark" and record["spark"]["executor_tasks"] >= 1
    assert (record["n_rows_processed"], record["n_written"], record["n_embedded"]) == (30, 30, 30)
    assert record["source"].startswith("parquet://")  # the name the local runner gives this path
    run = Ledger(ledger).get_run(record["run_id"])
    assert run is not None and run["status"] == "success"


@pytest.mark.spark
def test_the_spark_submit_entry_point_embeds_and_prints_the_record(
    spark: Any, tmp_path: Path, pg_dsn: str, pg_table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _parquet(tmp_path, n=12)
    argv = ["embed", "--source", table, "--text-col", "body", "--key-col", "id", "--model", MODEL,
            "--shadow-mode", "--dim", "16", "--sink", _pg_uri(pg_dsn, pg_table_name),
            "--ledger", str(tmp_path / "ledger.db")]  # fmt: skip
    assert spark_job.main(argv) == 0  # the active session, as under spark-submit
    record = json.loads(capsys.readouterr().out)
    assert (record["runner"], record["n_written"]) == ("spark", 12)
    assert spark_job.main([*argv[:-4], "--sink", f"qdrant+local://{tmp_path}/q/t", *argv[-2:]]) == 2
    assert "only one process can write" in capsys.readouterr().err


def test_the_example_dag_runs_the_same_job_both_ways() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "example_dags" / "spark_scale_out.py"
    spec = importlib.util.spec_from_file_location("spark_scale_out_example", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    embed_task, submit = dag.get_task("embed_on_spark"), dag.get_task("embed_with_spark_submit")
    assert embed_task.spark_conn_id == "spark_default" and embed_task.sink_conn_id == "pgvector_default"
    assert submit.application == spark_job.__file__
    args = spark_job.parse_args(submit.application_args)  # the arguments the job really accepts
    assert (args.command, args.source, args.key_col, args.model) == (
        "embed", embed_task.table, embed_task.key_col, embed_task.model,
    )  # fmt: skip
    assert dag.get_task("create_sample_parquet").downstream_task_ids == {
        "embed_on_spark", "embed_with_spark_submit",
    }  # fmt: skip
