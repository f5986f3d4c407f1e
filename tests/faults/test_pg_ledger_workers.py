"""Many worker processes, one PostgreSQL ledger: what a Celery or Kubernetes deployment does.

Four processes embed four different tables while two more watch one table,
all at once, all recording into one ledger schema. Nothing may be lost,
the watched window must be applied (and paid for) once, and ``status``
must agree with every sink point by point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.watch import watch
from tests.engine.cdc_helpers import write
from tests.engine.migration_helpers import pg_uri
from tests.fixtures.ledgers import pg_ledger_url

from .crash_helpers import DIM, MODEL, REPO, assert_exact

N = 1500
EMBEDDERS = 4
WATCHERS = 2


def rows(name: str, generation: int, n: int) -> dict[str, Any]:
    return {"id": list(range(n)), "body": [f"{name} generation {generation}: ticket {i}" for i in range(n)]}


@pytest.fixture
def ledger_url(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A ledger schema of its own beside the sinks' schema, dropped afterwards."""
    schema = f"{pg_schema}_ledger"
    yield pg_ledger_url(pg_dsn, schema)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _child(kind: str, table: str, sink: str, ledger: str) -> subprocess.Popen[str]:
    args = {"kind": kind, "table": table, "sink": sink, "ledger": ledger, "model": MODEL, "dim": DIM}
    argv = [sys.executable, "-m", "tests.faults.crash_child", json.dumps({**args, "batch_size": 300})]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_six_processes_share_one_postgres_ledger_and_lose_nothing(
    tmp_path: Path, pg_dsn: str, pg_schema: str, ledger_url: str
) -> None:
    def sink_for(name: str) -> str:
        return pg_uri(pg_dsn, name) + f"&schema={pg_schema}"

    watched = write(tmp_path / "watched", rows("watched", 0, N))
    common = {"text_col": "body", "key_col": "id", "model": MODEL, "shadow_mode": True, "dim": DIM}
    first = watch(watched, sink=sink_for("watched"), ledger=ledger_url, **common)  # type: ignore[arg-type]
    assert first.n_embedded == N
    write(watched, rows("watched", 1, N), mode="overwrite")  # the window both watchers will see
    tables = {f"src{i}": write(tmp_path / f"src{i}", rows(f"src{i}", 0, N)) for i in range(EMBEDDERS)}

    children = [_child("embed", table, sink_for(name), ledger_url) for name, table in tables.items()]
    children += [_child("watch", watched, sink_for("watched"), ledger_url) for _ in range(WATCHERS)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err[-3000:]
        (line,) = [line for line in out.splitlines() if line.startswith("RESULT ")]
        results.append(json.loads(line[len("RESULT ") :]))
    embeds, watches = results[:EMBEDDERS], results[EMBEDDERS:]
    assert [(r["status"], r["n_embedded"], r["n_written"]) for r in embeds] == [("success", N, N)] * EMBEDDERS
    # the window was applied, and paid for, by exactly one watcher; the other found it applied
    assert sorted((r["n_embedded"], r["n_written"]) for r in watches) == [(0, 0), (N, N)]
    assert {r["to_version"] for r in watches} == {1}

    for name in tables:
        source = next(r["source"] for r in embeds if r["source"].rstrip("/").endswith(name))
        assert_exact(sink_for(name), ledger_url, source, rows(name, 0, N))
    assert_exact(sink_for("watched"), ledger_url, first.source, rows("watched", 1, N))
    with Ledger(ledger_url) as led:
        runs = led.recent_runs(limit=20)
        assert sorted(r["status"] for r in runs) == ["success"] * (1 + EMBEDDERS + WATCHERS)
        assert led._db.query("SELECT COUNT(*) FROM leases")[0][0] == 0
        assert os.environ.get("DRIFT_LEDGER_URL") is None  # the children used the URL they were given
