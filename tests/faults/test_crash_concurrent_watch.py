"""Two watches of one (source, sink) never pay for one window twice; a busy lease is a transient error."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from airflow_provider_drift.engine.errors import TransientError
from airflow_provider_drift.engine.ledger import LeaseBusyError, Ledger
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.watch import watch
from tests.engine.cdc_helpers import write
from tests.engine.migration_helpers import pg_uri

from .crash_helpers import DIM, MODEL, REPO, assert_exact, child_args, texts

N = 3000


def test_two_concurrent_watches_embed_the_window_once(
    tmp_path: Path, ledger_path: Path, pg_dsn: str, pg_table_name: str
) -> None:
    sink_uri = pg_uri(pg_dsn, pg_table_name)
    table = write(tmp_path / "t", texts(0, N))
    common = {"text_col": "body", "key_col": "id", "model": MODEL, "shadow_mode": True, "dim": DIM}
    first = watch(table, sink=sink_uri, ledger=ledger_path, **common)  # type: ignore[arg-type]
    write(table, texts(1, N), mode="overwrite")
    argv = child_args(kind="watch", table=table, sink=sink_uri, ledger=ledger_path, batch_size=500)
    env = {**os.environ, "DRIFT_LEDGER_PATH": str(ledger_path)}
    children = [
        subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
        results += [
            json.loads(line[len("RESULT ") :]) for line in out.splitlines() if line.startswith("RESULT")
        ]
    assert sorted(r["n_embedded"] for r in results) == [0, N]  # the second found the window applied
    assert sorted(r["n_written"] for r in results) == [0, N]
    assert [r["to_version"] for r in results] == [1, 1]
    assert_exact(sink_uri, ledger_path, first.source, texts(1, N))


def test_a_watch_waits_for_a_live_lease_then_fails_transiently(tmp_path: Path, ledger_path: Path) -> None:
    sink_uri = f"qdrant+local://{tmp_path}/qdrant/tickets"
    table = write(tmp_path / "t", texts(0, 10))
    common = {"text_col": "body", "key_col": "id", "model": MODEL, "shadow_mode": True, "dim": DIM}
    first = watch(table, sink=sink_uri, ledger=ledger_path, **common)  # type: ignore[arg-type]
    sink = open_sink(sink_uri)
    uri = sink.uri
    sink.close()
    with (
        Ledger(ledger_path) as led,
        led.lease(first.source, uri),
        pytest.raises(LeaseBusyError, match="still held it after") as info,
    ):
        watch(table, sink=sink_uri, ledger=ledger_path, lease_wait_s=0.3, **common)  # type: ignore[arg-type]
    assert isinstance(info.value, TransientError) and info.value.hint
    again = watch(table, sink=sink_uri, ledger=ledger_path, **common)  # type: ignore[arg-type]
    assert again.status == "success" and again.n_embedded == 0
    with Ledger(ledger_path) as led:
        assert led._db.query("SELECT COUNT(*) FROM leases")[0][0] == 0  # released after each run
