"""Ledger files drift must not start over or write into, read-only ledgers, and a full ledger disk."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import LedgerError, StorageFullError
from airflow_provider_drift.engine.ledger import SCHEMA_VERSION, Ledger

from .fault_helpers import (
    assert_clean_failure,
    fill_disk,
    remount_read_only,
    run_drift,
    small_tmpfs,
    write_parquet,
)

MODEL = "openai/text-embedding-3-small"


def embed_some(table: Path, sink: str, ledger: Path) -> None:
    run = embed(
        str(table), text_col="text", key_col="id", model=MODEL, sink=sink, shadow_mode=True, ledger=ledger
    )
    assert run.status == "success" and run.n_written > 0


def cli_base(table: Path, sink: str, ledger: Path) -> list[str]:
    return [
        "--table",
        str(table),
        "--text-col",
        "text",
        "--key-col",
        "id",
        "--sink",
        sink,
        "--ledger",
        str(ledger),
    ]


def test_a_zero_byte_ledger_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"")
    with pytest.raises(LedgerError, match="empty file") as caught:
        Ledger(path)
    assert caught.value.hint is not None and "backup" in caught.value.hint
    assert path.stat().st_size == 0 and not Path(f"{path}-wal").exists()

    table = write_parquet(tmp_path / "t.parquet")
    result = run_drift(["embed", *cli_base(table, f"qdrant+local://{tmp_path}/q/c", path), "--shadow-mode"])
    assert_clean_failure(result, code=2, says="empty file")
    assert path.stat().st_size == 0 and not (tmp_path / "q" / "c").exists()


def test_files_that_are_not_drift_ledgers_are_never_written(tmp_path: Path) -> None:
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    text_file = tmp_path / "notes.db"
    text_file.write_text("these are my notes, not a database\n" * 10)
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'ada')")
    conn.close()
    before = {p: p.read_bytes() for p in (text_file, foreign)}

    with pytest.raises(LedgerError, match="not an SQLite database"):
        Ledger(text_file)
    with pytest.raises(LedgerError, match=r"another application.*tables: users"):
        Ledger(foreign)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "notes.db"]  # no -wal, no scratch

    result = run_drift(["runs", "--ledger", str(foreign)])
    assert_clean_failure(result, code=2, says="not a drift ledger")


def test_a_damaged_ledger_fails_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    table = write_parquet(tmp_path / "t.parquet", n=300)
    embed_some(table, f"qdrant+local://{tmp_path}/q/c", path)
    size = path.stat().st_size
    assert size > 4 * 4096
    with open(path, "r+b") as f:  # garble every page after the first (the header stays valid)
        f.seek(4096)
        f.write(b"\xa5" * (size - 4096))

    with pytest.raises(LedgerError, match="damaged"), Ledger(path) as led:
        led.recent_runs(None, 10)
    for argv in (
        ["runs", "--ledger", str(path)],
        ["status", "--sink", f"qdrant+local://{tmp_path}/q/c", "--ledger", str(path)],
    ):
        assert_clean_failure(run_drift(argv), code=2, says="damaged")


def _open_new(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with Ledger(path) as led:
            results.put("ok" if led.recent_runs(None, 1) == [] else "unexpected runs")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_one_new_ledger_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "new" / "ledger.db"
    ctx = multiprocessing.get_context("fork")
    for _ in range(3):
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_new, args=(str(path), barrier, results)) for _ in range(6)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["ok"] * 6
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
        assert [p.name for p in path.parent.iterdir() if ".creating" in p.name] == []
        path.unlink()


def test_a_ledger_on_a_read_only_disk_serves_reports_and_refuses_writes(tmp_path: Path) -> None:
    table = write_parquet(tmp_path / "t.parquet", n=50)
    sink = f"qdrant+local://{tmp_path}/q/docs"
    with small_tmpfs(tmp_path / "ro", size="8m") as disk:
        path = disk / "ledger.db"
        embed_some(table, sink, path)
        remount_read_only(disk)
        before = path.read_bytes()

        with Ledger(path) as led:
            assert led._db.read_only
            runs = led.recent_runs(None, 10)
            assert [r["status"] for r in runs] == ["success"] and runs[0]["n_written"] == 50
            with pytest.raises(LedgerError, match="read-only"):
                led.set_watermark("delta:///x", sink, 3, run_id="r1")
        with pytest.raises(LedgerError, match="cannot be written"):
            Ledger(path, read_only=False)

        status = run_drift(["status", "--sink", sink, "--ledger", str(path), "--json"])
        assert status.code == 0, status.err
        assert '"ledger_points": 50' in status.out and '"in_agreement": true' in status.out
        assert run_drift(["runs", "--ledger", str(path)]).code == 0
        result = run_drift(["embed", *cli_base(table, sink, path), "--shadow-mode"])
        assert_clean_failure(result, code=2, says="read-only")
        assert path.read_bytes() == before


def test_a_full_ledger_disk_is_transient(tmp_path: Path) -> None:
    table = write_parquet(tmp_path / "t.parquet", n=2000)
    sink = f"qdrant+local://{tmp_path}/q/docs"
    with small_tmpfs(tmp_path / "full", size="4m") as disk:
        path = disk / "ledger.db"
        with Ledger(path):
            pass
        fill_disk(disk)
        with pytest.raises(StorageFullError, match="disk holding the ledger"):
            embed_some(table, sink, path)
        result = run_drift(["embed", *cli_base(table, f"{sink}2", path), "--shadow-mode"])
        assert_clean_failure(result, code=3, says="is full")
        assert run_drift(["runs", "--ledger", str(path)]).code == 0  # reading still works
        (disk / "filler.bin").unlink()
        embed_some(table, sink, path)  # with room again, the same run completes
        with Ledger(path) as led:
            assert led.live_count(f"qdrant+local://{tmp_path}/q/docs") == 2000


def test_a_new_ledger_on_a_full_disk_is_transient_and_leaves_nothing(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", size="1m") as disk:
        fill_disk(disk)
        with pytest.raises(StorageFullError):
            Ledger(disk / "ledger.db")
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"]


def test_a_reader_that_asks_for_read_only_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    table = write_parquet(tmp_path / "t.parquet", n=20)
    embed_some(table, f"qdrant+local://{tmp_path}/q/c", path)
    before = path.read_bytes()
    with Ledger(path, read_only=True) as led:
        assert [r["n_written"] for r in led.recent_runs(None, 5)] == [20]
        with pytest.raises(LedgerError, match="open read-only"):
            led.set_watermark("delta:///x", "s", 1)
    assert path.read_bytes() == before
