"""Writers creating one new pgvector table (and its index) at once: all succeed, one table, one index."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import PointBatch
from tests.sinks.conftest import _pg_uri

from .fault_helpers import write_parquet

WRITERS = 4


@pytest.fixture
def fresh_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name nobody has created yet (the writers create it), dropped afterwards."""
    name = f"fault_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _indexes(pg_dsn: str, schema: str, table: str) -> list[str]:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s AND indexdef LIKE %s",
            (schema, table, "%USING hnsw%"),
        ).fetchall()
    return [r[0] for r in rows]


def _write_then_index(uri: str, n: int, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        with open_sink(uri) as sink:
            keys = [f"{n}-{i}" for i in range(50)]
            vectors = np.random.default_rng(n).standard_normal((50, 8)).astype(np.float32)
            payloads = [{"key": k, "content_hash": content_hash(f"t{k}")} for k in keys]
            barrier.wait()
            sink.ensure_collection(8)
            sink.upsert(
                PointBatch(ids=[point_id("src", k) for k in keys], vectors=vectors, payloads=payloads)
            )
            barrier.wait()
            sink.flush()  # every writer builds the index of the table it just filled
    except BaseException as exc:  # collected and asserted on by the test
        errors.append(exc)
        barrier.abort()


def test_threads_creating_one_new_table_and_index_all_succeed(pg_dsn: str, fresh_schema: str) -> None:
    for round_ in range(3):
        table = f"docs_{round_}"
        uri = _pg_uri(pg_dsn, table) + f"&schema={fresh_schema}"
        barrier = threading.Barrier(WRITERS, timeout=60)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_write_then_index, args=(uri, n, barrier, errors)) for n in range(WRITERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert [repr(e) for e in errors if not isinstance(e, threading.BrokenBarrierError)] == []
        assert errors == []
        keys = {f"{n}-{i}" for n in range(WRITERS) for i in range(50)}
        with open_sink(uri) as sink:
            assert sink.count() == len(keys)
            got = sink.fetch([point_id("src", k) for k in keys])
        assert {p.payload["key"]: p.payload["content_hash"] for p in got.values()} == {
            k: content_hash(f"t{k}") for k in keys
        }
        assert len(_indexes(pg_dsn, fresh_schema, table)) == 1


def test_two_drift_processes_embedding_into_one_new_table(
    tmp_path: Path, pg_dsn: str, fresh_schema: str
) -> None:
    table = write_parquet(tmp_path / "t.parquet", n=3000)
    uri = _pg_uri(pg_dsn, "docs") + f"&schema={fresh_schema}"

    def start(n: int) -> subprocess.Popen[str]:
        argv = ["embed", "--table", str(table), "--text-col", "text", "--key-col", "id", "--sink", uri]
        argv += ["--shadow-mode", "--ledger", str(tmp_path / f"ledger{n}.db"), "--batch-size", "500"]
        return subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_drift.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [start(n) for n in range(2)]
    outcomes: list[Any] = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    with open_sink(uri) as sink:
        assert sink.count() == 3000
        got = sink.fetch([point_id(f"parquet://{table}", str(i)) for i in range(3000)])
        assert {p.payload["content_hash"] for p in got.values()} == {
            content_hash(f"text number {i}") for i in range(3000)
        }
    assert len(_indexes(pg_dsn, fresh_schema, "docs")) == 1
