"""EmbedOperator(batch_api=True) under dag.test(): submit, defer to the trigger, resume and write."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, Asset

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.sources.sample import write_sample_tickets
from airflow_provider_drift.operators import EmbedOperator
from airflow_provider_drift.triggers.openai_batch import OpenAIBatchTrigger
from tests.fixtures.openai_server import OpenAIServer

from .conftest import register_dag

START = pendulum.datetime(2026, 1, 1, tz="UTC")
MODEL = "openai/text-embedding-3-small"
PRICE = 0.02


@pytest.fixture
def openai_conn(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {
        "conn_type": "openai",
        "host": openai_server.url,
        "password": "test-key",
        "extra": {"drift_price": PRICE},
    }
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_LOCAL", json.dumps(conn))
    return "openai_local"


def _op(**kwargs: Any) -> EmbedOperator:
    args: dict[str, Any] = {
        "task_id": "embed",
        "table": "/data/tickets",
        "text_col": "body",
        "key_col": "ticket_id",
        "model": MODEL,
        "collection": "tickets",
        "batch_api": True,
    }
    return EmbedOperator(**(args | kwargs))


def test_batch_api_task_defers_and_writes_at_half_price(
    run_dag: Any, tmp_path: Path, openai_server: OpenAIServer, openai_conn: str
) -> None:
    tickets = write_sample_tickets(tmp_path / "tickets", n=30, seed=0)
    sink = f"qdrant+local://{tmp_path / 'qdrant' / 'tickets'}"
    openai_server.batch_polls = 3  # the batch is still running at the trigger's first poll
    with DAG("drift_test_batch_api", schedule=None, start_date=START) as dag:
        _op(table=tickets, sink=sink, collection=None, openai_conn_id=openai_conn, poll_interval=0.1, dim=32)
    dag_run = run_dag(register_dag(dag))

    assert dag_run.state == "success"
    run = dag_run.get_task_instance("embed").xcom_pull(task_ids="embed")
    assert (run["status"], run["n_rows_processed"], run["n_written"]) == ("success", 30, 30)
    billed = [r for r in openai_server.requests if r.method == "BATCH" and r.status == 200]
    assert run["tokens"] == sum(r.tokens for r in billed) > 0
    assert run["cost_usd"] == pytest.approx(run["tokens"] * PRICE * 0.5 / 1e6)
    assert openai_server.embedding_requests() == []  # nothing went through the synchronous API
    inputs = [t for r in billed for t in r.inputs]
    assert len(inputs) == len(set(inputs))  # each distinct text paid once
    polls = [r for r in openai_server.requests if r.method == "GET" and r.path.startswith("/v1/batches/")]
    assert len(polls) >= 3  # the trigger polled until the batch was done, then the task fetched it
    assert dag.get_task("embed").outlets == [Asset(sink)]
    with Ledger(tmp_path / "ledger.db") as led:
        [recorded] = led.recent_runs(limit=5)
    assert (recorded["status"], recorded["dag_id"], recorded["n_written"]) == ("success", dag.dag_id, 30)
    assert recorded["cost_usd"] == pytest.approx(run["cost_usd"])

    # a re-run has nothing to send: no batch, no deferral, nothing written
    rerun = run_dag(dag)
    again = rerun.get_task_instance("embed").xcom_pull(task_ids="embed")
    assert (again["n_written"], again["n_embedded"], again["n_rows_deduped"]) == (0, 0, 30)
    assert len(openai_server.batches) == 1


def test_trigger_round_trips_through_serialisation_and_reports_done_batches(
    openai_server: OpenAIServer, openai_conn: str
) -> None:
    from airflow_provider_drift.engine.providers.openai_batch import OpenAIBatchEmbedder

    embedder = OpenAIBatchEmbedder(MODEL, dim=32, api_key="test-key", base_url=openai_server.url)
    batch_id = embedder.submit(["one", "two"])
    embedder.close()
    job = {"run_id": "r1", "batch_ids": [batch_id]}
    trigger = OpenAIBatchTrigger(
        batch_ids=[batch_id], model=MODEL, openai_conn_id=openai_conn, poll_interval=0, job=job
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_drift.triggers.openai_batch.OpenAIBatchTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs and "test-key" not in json.dumps(kwargs)
    rebuilt = OpenAIBatchTrigger(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)

    async def first_event() -> Any:
        async for event in rebuilt.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert (payload["status"], payload["job"]) == ("success", job)
    assert [(b["batch_id"], b["status"], b["total"]) for b in payload["batches"]] == [
        (batch_id, "completed", 1)
    ]


def test_trigger_reports_a_terminal_error(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "openai", "host": openai_server.url, "password": "wrong-key"}
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_BAD", json.dumps(conn))
    trigger = OpenAIBatchTrigger(
        batch_ids=["batch-x"], model=MODEL, openai_conn_id="openai_bad", poll_interval=0
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert (payload["status"], payload["terminal"], payload["error_type"]) == (
        "error",
        True,
        "TerminalProviderError",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shadow_mode": True}, "shadow_mode"),
        ({"model": "local/all-MiniLM-L6-v2"}, "needs an openai/"),
        ({"delete_missing": True}, "delete_missing"),
    ],
)
def test_batch_api_refuses_what_it_cannot_do_when_the_dag_is_parsed(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _op(**kwargs)


def test_execute_complete_rejects_unknown_events() -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    op = _op()
    with pytest.raises(AirflowException, match="does not understand"):
        op.execute_complete({}, {"status": "maybe"})  # type: ignore[arg-type]
    with pytest.raises(AirflowException, match="without the job"):
        op.execute_complete({}, {"status": "success", "batches": []})  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="ProviderError: 401"):
        op.execute_complete(
            {},  # type: ignore[arg-type]
            {"status": "error", "message": "401", "error_type": "ProviderError", "terminal": True},
        )


class _TaskInstance:
    """The ids a task instance gives its task's context (what the ledger and the resume key use)."""

    dag_id, task_id, run_id, try_number, map_index = "drift_test_kill", "embed", "manual_1", 1, -1


def _submit_and_defer(op: EmbedOperator, context: dict[str, Any]) -> Any:
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)  # type: ignore[arg-type]
    return deferred.value.trigger


def test_batch_timeout_cancels_the_job_and_fails_without_retry(
    tmp_path: Path, openai_server: OpenAIServer, openai_conn: str
) -> None:
    from airflow.sdk.bases.operator import TriggerFailureReason
    from airflow.sdk.exceptions import AirflowFailException

    tickets = write_sample_tickets(tmp_path / "tickets", n=12, seed=0)
    sink = f"qdrant+local://{tmp_path / 'qdrant' / 'tickets'}"
    openai_server.batch_polls = 1000  # the batch never finishes within the test
    args = {"table": tickets, "sink": sink, "collection": None, "openai_conn_id": openai_conn, "dim": 32}
    context = {"ti": _TaskInstance(), "run_id": _TaskInstance.run_id}
    trigger = _submit_and_defer(_op(**args), context)
    [batch_id] = trigger.batch_ids
    with Ledger(tmp_path / "ledger.db") as led:
        [submitted] = led.recent_runs(limit=5)
    assert submitted["status"] == "running"
    manifests = list((tmp_path / "batch-jobs").glob("*.json"))
    assert len(manifests) == 1

    # The deferral outlived batch_timeout: Airflow resumes the task (a fresh operator) to fail it.
    resumed = _op(**args)
    with pytest.raises(AirflowFailException, match=rf"did not finish within batch_timeout.*{batch_id}"):
        resumed.resume_execution("__fail__", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context)  # type: ignore[arg-type]

    assert openai_server.batches[batch_id]["status"] in ("cancelling", "cancelled")
    with Ledger(tmp_path / "ledger.db") as led:
        run = led.get_run(submitted["run_id"])
    assert run is not None and run["status"] == "failed" and "batch_timeout" in run["error"]
    assert list((tmp_path / "batch-jobs").glob("*.json")) == []  # a retry submits afresh
    again = _submit_and_defer(_op(**args), context)
    assert again.batch_ids != [batch_id]


def test_a_killed_task_or_trigger_cancels_its_batches(
    tmp_path: Path, openai_server: OpenAIServer, openai_conn: str
) -> None:
    tickets = write_sample_tickets(tmp_path / "tickets", n=12, seed=0)
    sink = f"qdrant+local://{tmp_path / 'qdrant' / 'tickets'}"
    openai_server.batch_polls = 1000
    args = {"table": tickets, "sink": sink, "collection": None, "openai_conn_id": openai_conn, "dim": 32}
    context = {"ti": _TaskInstance(), "run_id": _TaskInstance.run_id}

    # Killed on the worker before it deferred (SIGTERM, execution_timeout): the task cancels.
    op = _op(**args)
    [first] = _submit_and_defer(op, context).batch_ids
    op.on_kill()
    assert openai_server.batches[first]["status"] in ("cancelling", "cancelled")
    with Ledger(tmp_path / "ledger.db") as led:
        [killed] = led.recent_runs(limit=1)
    assert (killed["status"], killed["error"]) == (
        "failed", "the task was killed while submitting to the Batch API",
    )  # fmt: skip

    # Killed while deferred (mark failed, clear): the triggerer calls the trigger's on_kill.
    trigger = _submit_and_defer(_op(**args), context)
    [second] = trigger.batch_ids
    assert second != first and openai_server.batches[second]["status"] not in ("cancelling", "cancelled")
    asyncio.run(trigger.on_kill())
    assert openai_server.batches[second]["status"] in ("cancelling", "cancelled")
    # A killed task that already resumed to write its results leaves the job alone: a retry finishes it.
    _op(**args).on_kill()


def test_trigger_outlasts_a_provider_outage_while_polling(
    openai_server: OpenAIServer, openai_conn: str
) -> None:
    """A poll that fails past the client's retries is transient: logged, polled again, not an error event."""
    from airflow_provider_drift.engine.providers.openai_batch import OpenAIBatchEmbedder
    from tests.fixtures.openai_server import Fault

    embedder = OpenAIBatchEmbedder(MODEL, dim=32, api_key="test-key", base_url=openai_server.url)
    batch_id = embedder.submit(["one", "two"])
    embedder.close()
    outage = [Fault.http(503, retry_after_ms="1") for _ in range(8)]  # more than one poll's retries
    openai_server.add_batch_faults(*outage, route="GET /v1/batches")
    trigger = OpenAIBatchTrigger(
        batch_ids=[batch_id], model=MODEL, openai_conn_id=openai_conn, poll_interval=0
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert payload["status"] == "success"
    assert [(b["batch_id"], b["status"]) for b in payload["batches"]] == [(batch_id, "completed")]
    polls = [r for r in openai_server.requests if r.method == "GET" and r.path == f"/v1/batches/{batch_id}"]
    assert [r.fault for r in polls[:8]] == ["status"] * 8 and polls[-1].status == 200
