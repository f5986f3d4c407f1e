"""SIGKILL in the middle of an update, then a revert: no point may keep another text's vector.

The repro: embed generation 0, change every text (generation 1), start the
update in a child process while another connection keeps the ledger busy
(so a sink that wrote first would run ahead of the ledger), kill it after
the sink accepted some batches, restore generation 0 and re-run twice.
Checked key by key against the shadow embedding of each text, on
qdrant+local and on a real PostgreSQL with pgvector, for embed and watch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.watch import watch
from tests.engine.cdc_helpers import write
from tests.engine.migration_helpers import pg_uri

from .crash_helpers import DIM, MODEL, assert_exact, run_and_kill, texts

N = 20_000
BATCH = 1024


@pytest.fixture(params=["qdrant_local", "pgvector"])
def sink_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "pgvector":
        return pg_uri(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_table_name"))
    return f"qdrant+local://{tmp_path}/qdrant/tickets"


def _embed(table: str, sink_uri: str, ledger: Path) -> object:
    return embed(
        table, text_col="body", key_col="id", model=MODEL, shadow_mode=True, dim=DIM, sink=sink_uri,
        ledger=ledger, batch_size=BATCH,
    )  # fmt: skip


def _watch(table: str, sink_uri: str, ledger: Path) -> object:
    return watch(
        table, text_col="body", key_col="id", model=MODEL, shadow_mode=True, dim=DIM, sink=sink_uri,
        ledger=ledger, batch_size=BATCH,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["embed", "watch"])
def test_a_kill_during_an_update_then_a_revert_leaves_no_wrong_vector(
    tmp_path: Path, ledger_path: Path, sink_uri: str, kind: str
) -> None:
    run = _embed if kind == "embed" else _watch
    table = write(tmp_path / "tickets", texts(0, N))
    first = run(table, sink_uri, ledger_path)
    source = first.source  # type: ignore[attr-defined]
    write(table, texts(1, N), mode="overwrite")

    announced = run_and_kill(kind=kind, table=table, sink=sink_uri, ledger=ledger_path, after_upserts=4)
    assert announced >= 4

    write(table, texts(0, N), mode="overwrite")  # the revert
    with Ledger(ledger_path) as led:
        killed = [r for r in led.recent_runs(limit=10) if r["kind"] == kind and r["status"] != "success"]
    assert [r["status"] for r in killed] == ["abandoned"]  # drift runs no longer shows it running
    assert killed[0]["host"] and killed[0]["pid"]

    run(table, sink_uri, ledger_path)
    again = run(table, sink_uri, ledger_path)
    assert again.n_embedded == 0  # type: ignore[attr-defined]
    assert_exact(sink_uri, ledger_path, source, texts(0, N))
