"""The embedded Qdrant sink on a disk that really fills up (a small tmpfs): exit 3 with a hint, never SIGBUS.

Its engine memory-maps its files, so a write the disk cannot hold kills the
process by SIGBUS; every write here runs in a ``drift`` subprocess so such a
crash shows as its exit status instead of taking pytest down.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.sinks import open_sink

from .fault_helpers import assert_clean_failure, fill_disk, run_drift, small_tmpfs

N = 12_000


@pytest.fixture
def texts(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    rows = {str(i): f"ticket {i}: the printer on floor {i % 9} is jammed again" for i in range(N)}
    path = tmp_path / "tickets.parquet"
    pq.write_table(pa.table({"id": [int(k) for k in rows], "text": list(rows.values())}), path)
    return path, rows


def embed_argv(table: Path, sink: str) -> list[str]:
    return [
        "embed",
        "--table",
        str(table),
        "--text-col",
        "text",
        "--key-col",
        "id",
        "--sink",
        sink,
        "--model",
        "custom/small",
        "--dim",
        "256",
        "--shadow-mode",
        "--batch-size",
        "2000",
    ]


def test_embedded_qdrant_on_a_full_disk_fails_transiently_and_recovers(
    tmp_path: Path, texts: tuple[Path, dict[str, str]]
) -> None:
    table, rows = texts
    env = {"DRIFT_HOME": str(tmp_path / "home")}  # the ledger lives off the small disk
    with small_tmpfs(tmp_path / "disk", size="20m") as disk:
        sink = f"qdrant+local://{disk}/q/docs"

        full = run_drift(embed_argv(table, sink), env=env)
        assert full.code != -7, "SIGBUS"
        assert_clean_failure(full, code=3, says="not enough free disk space")
        assert "free space on the disk" in full.err

        # a read has room to load the collection, or says there is none; it never crashes
        status = run_drift(["status", "--sink", sink, "--json"], env=env)
        if status.code == 0:
            report = json.loads(status.out)
            assert 0 < report["points"] < N and report["in_agreement"] is True
        else:
            assert_clean_failure(status, code=3, says="not enough free disk space to load the collection")

        # with the disk completely full, reading fails in one line instead of crashing
        fill_disk(disk)
        blocked = run_drift(["status", "--sink", sink], env=env)
        assert blocked.code != -7, "SIGBUS"
        assert_clean_failure(blocked, code=3, says="not enough free disk space")
        again = run_drift(embed_argv(table, sink), env=env)
        assert_clean_failure(again, code=3, says="not enough free disk space")

        # room again (a bigger disk): the same command completes, and every point is exact
        (disk / "filler.bin").unlink()
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        done = run_drift(embed_argv(table, sink), env=env)
        assert done.code == 0, done.err
        source = f"parquet://{table}"
        with open_sink(sink) as opened:
            assert opened.count() == N
            ids = {point_id(source, k): k for k in rows}
            got = opened.fetch(list(ids))
        assert {ids[p]: s.payload["content_hash"] for p, s in got.items()} == {
            k: content_hash(t) for k, t in rows.items()
        }
