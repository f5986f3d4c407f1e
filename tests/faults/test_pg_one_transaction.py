"""A pgvector sink in the ledger's own database: points and provenance commit in one transaction.

SIGKILL lands mid-run, with no pause in the writer: afterwards there are
zero points the ledger does not know, zero records of points not written,
and no marks to settle — without running a repair first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.status import status
from tests.engine.cdc_helpers import write
from tests.engine.migration_helpers import pg_uri
from tests.fixtures.ledgers import pg_ledger_url

from .crash_helpers import DIM, MODEL, REPO, assert_exact, texts

N = 20_000


@pytest.fixture
def ledger_url(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    schema = f"{pg_schema}_ledger"
    yield pg_ledger_url(pg_dsn, schema)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_the_ledger_shares_the_transaction_of_a_pgvector_sink_in_its_database(
    tmp_path: Path, pg_dsn: str, pg_schema: str, ledger_url: str
) -> None:
    sink_uri = pg_uri(pg_dsn, "docs") + f"&schema={pg_schema}"
    other_db_sink = open_sink(f"qdrant+memory://c{os.getpid()}")
    with Ledger(ledger_url) as led, open_sink(sink_uri) as sink:
        assert led.shares_transactions_with(sink)
        assert not led.shares_transactions_with(other_db_sink)
    other_db_sink.close()
    with Ledger(tmp_path / "x.db") as sqlite_ledger, open_sink(sink_uri) as sink:
        assert not sqlite_ledger.shares_transactions_with(sink)


def test_a_run_killed_mid_write_leaves_no_point_the_ledger_does_not_know(
    tmp_path: Path, pg_dsn: str, pg_schema: str, ledger_url: str
) -> None:
    sink_uri = pg_uri(pg_dsn, "docs") + f"&schema={pg_schema}"
    table = write(tmp_path / "t", texts(0, N))
    args = {"kind": "embed", "table": table, "sink": sink_uri, "ledger": ledger_url, "model": MODEL,
            "dim": DIM, "batch_size": 250}  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.crash_child", json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    upserts = 0
    for line in child.stdout:
        if line.startswith("UPSERT"):
            upserts += 1
            if upserts == 8:  # the writer is busy with the next batches: kill it wherever it is
                os.kill(child.pid, signal.SIGKILL)
                break
        assert not line.startswith("DONE"), "the run finished before it was killed"
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""

    report = status(sink_uri, ledger=ledger_url, verify=True)
    assert report.verify is not None
    assert 8 * 250 <= report.points < N  # killed mid-run
    assert (
        report.verify["unknown_to_ledger"],
        report.verify["missing_in_sink"],
        report.verify["mismatched"],
        report.verify["pending"],
    ) == (0, 0, 0, 0)
    assert report.in_agreement and report.ledger_points == report.points
    with Ledger(ledger_url) as led:
        assert led.pending_count(report.sink) == 0  # one transaction needs no marks

    again = embed(table, text_col="body", key_col="id", model=MODEL, sink=sink_uri, ledger=ledger_url,
                  shadow_mode=True, dim=DIM)  # fmt: skip
    assert again.n_embedded == N - report.points  # nothing that was written is paid for again
    assert_exact(sink_uri, ledger_url, again.source, texts(0, N))
