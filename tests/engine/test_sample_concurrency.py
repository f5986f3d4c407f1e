"""The sample table's create-if-absent holds when several processes race for it (concurrent DAG runs)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable

from airflow_provider_drift.engine.sources.sample import ensure_sample_tickets, write_sample_tickets

N = 300


def _create(args: tuple[str, int]) -> bool:
    path, n = args
    return ensure_sample_tickets(path, n=n, seed=0)[1]


def test_racing_processes_create_the_table_once(tmp_path: Path) -> None:
    path = str(tmp_path / "demo" / "tickets")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        created = pool.map(_create, [(path, N)] * 8)
    assert sorted(created) == [False] * 7 + [True]
    dt = DeltaTable(path)
    assert dt.version() == 0  # one commit: nobody overwrote or appended to the winner's table
    ids = dt.to_pyarrow_table(columns=["ticket_id"])["ticket_id"]
    assert (len(ids), pc.count_distinct(ids).as_py()) == (N, N)
    assert (
        dt.to_pyarrow_table()
        .sort_by("ticket_id")
        .equals(
            DeltaTable(write_sample_tickets(tmp_path / "reference", n=N, seed=0))
            .to_pyarrow_table()
            .sort_by("ticket_id")
        )
    )
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["tickets", "tickets.lock"]  # no staging


def test_an_existing_table_is_left_as_it_is(tmp_path: Path) -> None:
    path = write_sample_tickets(tmp_path / "tickets", n=10, seed=0)
    write_sample_tickets(path, n=2, seed=0, mode="append", start_id=100)
    assert ensure_sample_tickets(path, n=N) == (path, False)
    assert DeltaTable(path).version() == 1


def test_a_folder_without_a_delta_log_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "tickets").mkdir()
    (tmp_path / "tickets" / "junk.parquet").write_bytes(b"half written")
    path, created = ensure_sample_tickets(tmp_path / "tickets", n=20)
    assert created and sorted(p.name for p in Path(path).iterdir()) != ["junk.parquet"]
    assert DeltaTable(path).to_pyarrow_table().num_rows == 20
    assert not (Path(path) / "junk.parquet").exists()
