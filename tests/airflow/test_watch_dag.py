"""DeltaCDFSensor >> WatchOperator under dag.test(): the example DAG, deferral, and backfills out of order."""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, Asset
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.timetables.interval import CronDataIntervalTimetable
from deltalake import DeltaTable

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.sources.sample import write_sample_tickets
from airflow_provider_drift.engine.watch import watch
from airflow_provider_drift.operators.watch import WatchOperator
from airflow_provider_drift.sensors import DeltaCDFSensor
from airflow_provider_drift.triggers import DeltaCDFTrigger
from tests.engine.cdc_helpers import MODEL, assert_collection_equals_table, set_commit_time, write

from .conftest import load_example_dag, register_dag

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def xcom(dag_run: Any, task_id: str) -> Any:
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id)


def state(dag_run: Any, task_id: str) -> str:
    return str(dag_run.get_task_instance(task_id).state)


def test_example_dag_embeds_once_then_replays_each_hour_in_any_order(run_dag: Any, demo_dir: Path) -> None:
    dag = load_example_dag("delta_cdc_refresh.py", "delta_cdc_refresh")
    table = dag.get_task("refresh_vectors").table
    sink = dag.get_task("refresh_vectors").sink
    assert table == str(demo_dir / "support_tickets_cdc") and dag.get_task("wait_for_changes").deferrable
    assert dag.get_task("refresh_vectors").outlets == [Asset(sink)]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert (dag.get_task("refresh_vectors").watch_mode, dag.get_task("wait_for_changes").watch_mode) == (
        "interval",
        "interval",
    )

    def hour(h: int) -> Any:  # the run whose data interval is [h:00, h+1:00) of the start date
        dag_run = run_dag(dag, logical_date=START + timedelta(hours=h + 1), run_conf={"n_rows": 200})
        assert dag_run.state == "success"
        return dag_run

    first = hour(0)  # no watermark yet: the table is created and its snapshot embedded, whatever the hour
    assert xcom(first, "wait_for_changes") == {
        "since_version": None,
        "to_version": 0,
        "n_versions": 1,
        "n_rows": None,
    }
    run = xcom(first, "refresh_vectors")
    assert (run["mode"], run["to_version"], run["n_inserted"], run["cost_usd"]) == ("baseline", 0, 200, 0.0)

    # Commits of hour 1 (an update) and hour 2 (a delete and an append), on different keys.
    DeltaTable(table).update(predicate="ticket_id <= 5", updates={"body": "concat(body, ' (follow-up)')"})
    DeltaTable(table).delete("ticket_id > 197")
    write_sample_tickets(table, n=4, seed=1, mode="append", start_id=1000)
    for version, h in ((1, 1), (2, 2), (3, 2)):
        set_commit_time(table, version, START + timedelta(hours=h, minutes=version))

    runs = {h: hour(h) for h in (2, 1)}  # a backfill in the wrong order
    assert xcom(runs[2], "wait_for_changes") == {  # exclusive: the hour's commits are versions 2 and 3
        "since_version": 1,
        "to_version": 3,
        "n_versions": 2,
        "n_rows": None,
    }
    late, early = xcom(runs[2], "refresh_vectors"), xcom(runs[1], "refresh_vectors")
    assert (late["mode"], late["n_inserted"], late["n_updated"], late["n_deleted"]) == ("interval", 4, 0, 3)
    assert (early["mode"], early["n_inserted"], early["n_updated"], early["n_deleted"]) == (
        "interval",
        0,
        5,
        0,
    )
    # Only the changed rows' texts are paid for, each once (or reused where the collection holds one).
    rows = DeltaTable(table).to_pyarrow_table(columns=["ticket_id", "body"]).to_pylist()
    for done, changed in ((early, lambda k: k <= 5), (late, lambda k: k >= 1000)):
        texts = {r["body"] for r in rows if changed(r["ticket_id"])}
        assert done["n_embedded"] + done["n_reused"] == len(texts)
    assert_collection_equals_table(sink, table, run["source"], key="ticket_id")

    empty = hour(3)  # an hour without commits: nothing to wait for, the refresh is skipped
    assert (state(empty, "wait_for_changes"), state(empty, "refresh_vectors")) == ("skipped", "skipped")
    with Ledger() as led:
        kinds = [(r["kind"], r["dag_id"], r["task_id"]) for r in led.recent_runs(run["sink"], limit=3)]
    assert kinds == [("watch", "delta_cdc_refresh", "refresh_vectors")] * 2 + [
        ("embed", "delta_cdc_refresh", "refresh_vectors")
    ]


def _pair(dag_id: str, table: str, sink: str, **sensor_kw: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        wait = DeltaCDFSensor(task_id="wait", table=table, sink=sink, **sensor_kw)
        refresh = WatchOperator(
            task_id="refresh",
            table=table,
            text_col="body",
            key_col="id",
            model=MODEL,
            sink=sink,
            shadow_mode=True,
        )
        wait >> refresh
    return register_dag(dag)


def test_sensor_defers_and_its_trigger_fires_when_a_commit_lands(
    run_dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = write(tmp_path / "t", {"id": [1, 2], "body": ["one", "two"]})
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, shadow_mode=True)  # watermark at v0
    dag = _pair("drift_test_deferral", table, sink, deferrable=True, poke_interval=0.2, timeout=120)

    # The real check runs every time; a commit lands between the trigger's first and second poll.
    polls: list[bool] = []
    real_check = DeltaCDFTrigger.check

    def check_then_commit(self: DeltaCDFTrigger) -> Any:
        found = real_check(self)
        polls.append(found.ready)
        if len(polls) == 1:
            write(table, {"id": [3], "body": ["three"]})
        return found

    monkeypatch.setattr(DeltaCDFTrigger, "check", check_then_commit)
    dag_run = run_dag(dag)
    assert polls == [False, True]  # the sensor deferred (the trigger ran) before the commit existed
    assert dag_run.state == "success"
    assert xcom(dag_run, "wait") == {"since_version": 0, "to_version": 1, "n_versions": 1, "n_rows": None}
    assert xcom(dag_run, "refresh")["n_inserted"] == 1
    assert_collection_equals_table(sink, table, xcom(dag_run, "refresh")["source"])


def test_sensor_pokes_until_timeout_and_soft_fail_skips_the_watch(run_dag: Any, tmp_path: Path) -> None:
    table = write(tmp_path / "t", {"id": [1], "body": ["one"]})
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, shadow_mode=True)
    dag = _pair("drift_test_poke", table, sink, poke_interval=0.1, timeout=0.5, soft_fail=True)
    dag_run = run_dag(dag)
    assert (state(dag_run, "wait"), state(dag_run, "refresh")) == ("skipped", "skipped")


def test_min_changed_rows_waits_for_enough_churn(tmp_path: Path) -> None:
    table = write(tmp_path / "t", {"id": [1], "body": ["one"]})
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, shadow_mode=True)
    write(table, {"id": [2, 3], "body": ["two", "three"]})
    sensor = DeltaCDFSensor(task_id="wait", table=table, sink=sink, min_changed_rows=3)
    assert sensor.poke({}).is_done is False  # type: ignore[arg-type]
    write(table, {"id": [4], "body": ["four"]})
    done = sensor.poke({})  # type: ignore[arg-type]
    assert done.is_done and done.xcom_value == {
        "since_version": 0,
        "to_version": 2,
        "n_versions": 2,
        "n_rows": 3,
    }


def test_the_sensor_works_from_the_ledger_and_the_table_alone(
    tmp_path: Path, pg_dsn: str, pg_table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sink credentials, no connection: the sink URI is resolved to what the ledger records."""
    from tests.engine.migration_helpers import pg_uri

    table = write(tmp_path / "t", {"id": [1], "body": ["one"]})
    sink = pg_uri(pg_dsn, pg_table_name)  # no schema: the sink learns it from the server
    done = watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, shadow_mode=True)
    write(table, {"id": [2], "body": ["two"]})

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sensor tried to connect to the sink")

    import psycopg

    wrong = sink.replace("postgresql://postgres@", "postgresql://postgres:not-the-password@")
    sensor = DeltaCDFSensor(task_id="wait", table=table, sink=wrong)
    with monkeypatch.context() as no_connections:
        no_connections.setattr(psycopg, "connect", refuse)
        no_connections.setattr(psycopg.Connection, "connect", refuse)
        assert sensor.sink_uri == done.sink  # pgvector://HOST:PORT/DB/public.TABLE, as the ledger has it
        found = sensor.poke({})  # type: ignore[arg-type]
    assert found.is_done and found.xcom_value == {
        "since_version": 0,
        "to_version": 1,
        "n_versions": 1,
        "n_rows": None,
    }


def test_backfill_intervals_out_of_order_and_twice(run_dag: Any, tmp_path: Path) -> None:
    table = write(tmp_path / "t", {"id": list(range(6)), "body": [f"ticket {i}" for i in range(6)]})
    set_commit_time(table, 0, START + timedelta(minutes=10))
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    with DAG(
        "drift_test_backfill",
        schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
        start_date=START,
        catchup=False,
    ) as dag:
        wait = DeltaCDFSensor(task_id="wait", table=table, sink=sink, watch_mode="interval", deferrable=True)
        refresh = WatchOperator(
            task_id="refresh",
            table=table,
            text_col="body",
            key_col="id",
            model=MODEL,
            sink=sink,
            shadow_mode=True,
            mode="interval",
        )
        wait >> refresh
    register_dag(dag)

    def hour(h: int) -> Any:  # the run whose data interval is [h:00, h+1:00)
        dag_run = run_dag(dag, logical_date=START + timedelta(hours=h + 1))
        assert dag_run.state == "success"
        return dag_run

    first = hour(0)  # no watermark yet: the snapshot (v0) is embedded
    assert xcom(first, "refresh")["mode"] == "baseline"

    changes = [
        (1, lambda: DeltaTable(table).update(predicate="id = 1", updates={"body": "'hour 1'"})),
        (1, lambda: write(table, {"id": [50], "body": ["born in hour 1"]})),
        (2, lambda: DeltaTable(table).delete("id = 50 OR id = 2")),
        (2, lambda: DeltaTable(table).update(predicate="id = 1", updates={"body": "'hour 2'"})),
        (3, lambda: write(table, {"id": [2], "body": ["ticket 2 is back"]})),
        (3, lambda: DeltaTable(table).update(predicate="id = 1", updates={"body": "'ticket 1'"})),
    ]
    for version, (h, change) in enumerate(changes, start=1):
        change()
        set_commit_time(table, version, START + timedelta(hours=h, minutes=version))

    runs = {h: xcom(hour(h), "refresh") for h in (3, 1, 2)}
    assert [(runs[h]["since_version"], runs[h]["to_version"]) for h in (1, 2, 3)] == [(0, 2), (2, 4), (4, 6)]
    assert_collection_equals_table(sink, table, runs[1]["source"])

    replay3 = hour(3)  # its commits are past the watermark (4): re-applied, all stale, nothing written
    assert state(replay3, "wait") == "success"
    assert (xcom(replay3, "refresh")["n_written"], xcom(replay3, "refresh")["n_deleted"]) == (0, 0)
    replay1 = hour(1)  # at or below the watermark: nothing pending, the watch is skipped
    assert (state(replay1, "wait"), state(replay1, "refresh")) == ("skipped", "skipped")
    assert_collection_equals_table(sink, table, runs[1]["source"])


def test_trigger_serialises_to_its_class_path_and_exact_kwargs() -> None:
    trigger = DeltaCDFTrigger(
        table="/lake/tickets",
        source="delta:///lake/tickets",
        sink_uri="qdrant://qdrant:6333/tickets",
        ledger_path="/var/drift/ledger.db",
        interval_start="2026-01-01T01:00:00+00:00",
        interval_end="2026-01-01T02:00:00+00:00",
        min_versions=2,
        min_changed_rows=100,
        poll_interval=30.0,
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert path == "airflow_provider_drift.triggers.delta_cdf.DeltaCDFTrigger"
    assert all(isinstance(v, str | int | float | type(None)) for v in kwargs.values())


def test_trigger_reports_an_engine_error_as_an_event_the_sensor_fails_on(tmp_path: Path) -> None:
    table = write(tmp_path / "t", {"id": [1], "body": ["one"]})
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, shadow_mode=True)
    sensor = DeltaCDFSensor(
        task_id="wait", table=str(tmp_path / "gone"), sink=sink, source_name=f"delta://{table}"
    )
    trigger = DeltaCDFTrigger(
        table=sensor.table, source=sensor.source, sink_uri=sensor.sink_uri, ledger_path=sensor.ledger_path,
        poll_interval=0.0,
    )  # fmt: skip

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert (event["status"], event["terminal"]) == ("error", True)
    assert event["error_type"] == "TerminalSourceError" and "gone" in event["message"]
    with pytest.raises(AirflowFailException, match=r"TerminalSourceError: .*gone"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "raised"),
    [
        (
            {"status": "error", "message": "gone", "error_type": "ChangeFeedError", "terminal": True},
            AirflowFailException,
        ),
        (
            {"status": "error", "message": "down", "error_type": "SinkUnavailableError", "terminal": False},
            AirflowException,
        ),
        ({"status": "skipped", "pending": {}}, AirflowSkipException),
        ({"status": "timeout"}, AirflowException),
        ({"status": "success"}, AirflowException),
        (None, AirflowException),
    ],
)
def test_execute_complete_validates_the_event(event: Any, raised: type[Exception]) -> None:
    sensor = DeltaCDFSensor(task_id="wait", table="/lake/t", collection="t")
    with pytest.raises(raised):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]
    pending = {"since_version": 1, "to_version": 3, "n_versions": 2, "n_rows": None}
    assert sensor.execute_complete({}, {"status": "success", "pending": pending}) == pending  # type: ignore[arg-type]


def test_watch_operator_templates_and_rejects_bad_arguments() -> None:
    op = WatchOperator(
        task_id="w", table="{{ params.root }}/t", text_col="body", key_col="id", model=MODEL, collection="c",
        until_version="{{ params.v }}",
    )  # fmt: skip
    op.render_template_fields({"params": {"root": "/lake", "v": 7}})
    assert (op.table, op.until_version) == ("/lake/t", "7")
    with pytest.raises(ConfigError, match="mode"):
        WatchOperator(
            task_id="x", table="/t", text_col="b", key_col="k", model=MODEL, collection="c", mode="cdc"
        )  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not both"):
        DeltaCDFSensor(task_id="y", table="/t", sink="qdrant+local:///q/c", sink_conn_id="qdrant_default")
