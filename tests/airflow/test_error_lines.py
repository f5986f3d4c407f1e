"""A terminal engine error reads as one line in the task log, hint first, under one traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException
from deltalake import write_deltalake

from airflow_provider_drift.engine.errors import SinkUnavailableError, SourceError
from airflow_provider_drift.operators._errors import engine_errors
from airflow_provider_drift.operators.watch import WatchOperator
from tests.engine.cdc_helpers import MODEL

from .conftest import register_dag


def test_a_failed_task_logs_one_traceback_ending_in_the_hint_first_line(
    run_dag: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = str(tmp_path / "tickets")
    write_deltalake(table, pa.table({"id": [1, 2], "body": ["one", "two"]}))
    with DAG("drift_test_error_line", schedule=None) as dag:
        WatchOperator(
            task_id="refresh", table=table, text_col="text", key_col="id", model=MODEL,
            sink=f"qdrant+local://{tmp_path}/qdrant/t", shadow_mode=True, retries=3,
        )  # fmt: skip
    register_dag(dag)
    capsys.readouterr()
    dag_run = run_dag(dag)
    log = capsys.readouterr().out  # dag.test() prints the task log to stdout

    assert dag_run.state == "failed"
    assert str(dag_run.get_task_instance("refresh").state) == "failed"  # terminal: no up_for_retry
    expected = (
        "airflow.sdk.exceptions.AirflowFailException: drift TerminalSourceError: pass the right text_col= — "
        f"text column 'text' not found in Delta table 'delta://{table}' (version 0); "
        "available columns: id, body"
    )
    assert expected in log.splitlines()
    assert log.count("Traceback (most recent call last)") == 1
    assert "direct cause" not in log and "During handling" not in log
    origin = [line for line in log.splitlines() if "SourceError raised at " in line]
    assert len(origin) == 1 and "airflow_provider_drift/engine/" in origin[0]


def test_terminal_errors_fail_without_context_and_transient_ones_pass_unchanged() -> None:
    with pytest.raises(AirflowFailException) as failed, engine_errors():
        raise SourceError("column 'x' missing", hint="pass the right {opt:text_col} or {opt:ledger}")
    # a bare domain error is raised as its terminal member; options read as the operator's arguments
    assert str(failed.value) == (
        "drift TerminalSourceError: pass the right text_col= or ledger_conn_id= — column 'x' missing"
    )
    assert failed.value.__cause__ is None and failed.value.__suppress_context__

    no_hint = r"^drift TerminalSourceError: no hint here$"
    with pytest.raises(AirflowFailException, match=no_hint), engine_errors():
        raise SourceError("no hint here")

    down = SinkUnavailableError("qdrant:6333 refused the connection", hint="retry when it is back")
    with pytest.raises(SinkUnavailableError) as passed, engine_errors():
        raise down
    assert passed.value is down  # Airflow's retries apply
