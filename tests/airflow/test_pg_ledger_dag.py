"""A DAG whose ledger is an Airflow ``postgres`` connection: sensor, trigger and watch share it.

Under ``dag.test()``: the deferrable sensor's trigger opens the ledger from
the connection id (its serialised kwargs carry no password), the watch
records its run there, and neither an XCom nor a log line holds the password.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.ledger.postgres import PostgresLedger
from airflow_provider_drift.hooks.ledger import DriftLedgerHook
from airflow_provider_drift.operators.watch import WatchOperator
from airflow_provider_drift.sensors import DeltaCDFSensor
from airflow_provider_drift.triggers import DeltaCDFTrigger
from tests.engine.cdc_helpers import MODEL, assert_collection_equals_table, write
from tests.fixtures.ledgers import SECRET, role_url

from .conftest import register_dag

START = pendulum.datetime(2026, 1, 1, tz="UTC")
CONN_ID = "drift_pg_ledger"


@pytest.fixture
def pg_ledger_conn(monkeypatch: pytest.MonkeyPatch, pg_dsn: str, password_role: str) -> str:
    """An Airflow ``postgres`` connection to the test server as a role with a password; the ledger URL."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(pg_dsn)
    conn = {
        "conn_type": "postgres",
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "login": password_role,
        "password": SECRET,
        "schema": params.get("dbname", "postgres"),
        "extra": {"ledger_schema": "airflow_ledger", "connect_timeout": 5},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return role_url(pg_dsn, password_role, SECRET, "airflow_ledger") + "&connect_timeout=5"


def test_the_hook_opens_a_postgres_connection_as_the_ledger(pg_ledger_conn: str) -> None:
    hook = DriftLedgerHook(drift_ledger_conn_id=CONN_ID)
    assert SECRET not in str(hook.get_path())
    with hook.get_ledger() as led:
        assert isinstance(led, PostgresLedger) and led.url.schema == "airflow_ledger"
        assert led.location.conninfo == Ledger(pg_ledger_conn).location.conninfo  # type: ignore[union-attr]
    ok, message = hook.test_connection()
    assert ok and SECRET not in message and "airflow_ledger" in message


def test_sensor_trigger_and_watch_share_a_postgres_ledger_under_dag_test(
    run_dag: Any,
    tmp_path: Path,
    pg_ledger_conn: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    table = write(tmp_path / "t", {"id": [1, 2], "body": ["one", "two"]})
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    with DAG("drift_test_pg_ledger", schedule=None, start_date=START) as dag:
        wait = DeltaCDFSensor(
            task_id="wait", table=table, sink=sink, ledger_conn_id=CONN_ID, deferrable=True,
            poke_interval=0.2, timeout=120, min_versions=1,
        )  # fmt: skip
        refresh = WatchOperator(
            task_id="refresh", table=table, text_col="body", key_col="id", model=MODEL, sink=sink,
            shadow_mode=True, ledger_conn_id=CONN_ID,
        )  # fmt: skip
        wait >> refresh
    register_dag(dag)
    first = run_dag(dag)  # nothing recorded yet: the sensor fires at once, the watch embeds the table
    assert first.state == "success"

    serialised: list[dict[str, Any]] = []
    real_check = DeltaCDFTrigger.check

    def check_then_commit(self: DeltaCDFTrigger) -> Any:
        serialised.append(self.serialize()[1])
        found = real_check(self)
        if len(serialised) == 1:
            write(table, {"id": [3], "body": ["three"]})
        return found

    monkeypatch.setattr(DeltaCDFTrigger, "check", check_then_commit)
    second = run_dag(dag)
    assert second.state == "success"
    assert serialised and serialised[0]["ledger_conn_id"] == CONN_ID
    assert SECRET not in json.dumps(serialised) and "airflow_ledger" in serialised[0]["ledger_path"]

    xcoms = {t: second.get_task_instance(t).xcom_pull(task_ids=t) for t in ("wait", "refresh")}
    assert xcoms["wait"] == {"since_version": 0, "to_version": 1, "n_versions": 1, "n_rows": None}
    assert xcoms["refresh"]["n_inserted"] == 1
    assert SECRET not in json.dumps(xcoms, default=str)
    assert_collection_equals_table(sink, table, xcoms["refresh"]["source"])
    with Ledger(pg_ledger_conn) as led:
        runs = led.recent_runs(limit=5)
        assert [(r["kind"], r["dag_id"], r["task_id"], r["status"]) for r in runs] == [
            ("watch", "drift_test_pg_ledger", "refresh", "success"),
            ("embed", "drift_test_pg_ledger", "refresh", "success"),
        ]
    out = capsys.readouterr()
    logs = "".join(p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"))
    assert SECRET not in caplog.text + out.out + out.err + logs
