"""``drift ledger migrate``: a SQLite ledger moved to PostgreSQL keeps every row, and runs carry on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_drift.cli import main
from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.ledger.copy import TABLES
from airflow_provider_drift.engine.status import status
from airflow_provider_drift.engine.watch import watch
from tests.engine.cdc_helpers import MODEL, write
from tests.fixtures.ledgers import pg_ledger_url

COMMON: dict[str, Any] = {"text_col": "body", "key_col": "id", "model": MODEL, "shadow_mode": True}


def _everything(location: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every copied table, sorted, as plain tuples (read through the ledger itself)."""
    with Ledger(location, create=False) as led:
        out = {}
        for table in TABLES:
            rows = led._db.query(f"SELECT * FROM {table}")
            out[table] = sorted((tuple(r) for r in rows), key=repr)
        return out


def _a_used_ledger(tmp_path: Path, ledger: str, sink: str) -> str:
    """A ledger after an embed, a watch with updates and deletes, an adapter, a migration, an erasure."""
    table = write(tmp_path / "t", {"id": list(range(300)), "body": [f"ticket {i}" for i in range(300)]})
    first = embed(table, sink=sink, ledger=ledger, **COMMON)
    from deltalake import DeltaTable

    DeltaTable(table).update(predicate="id < 10", updates={"body": "concat(body, ' (edited)')"})
    DeltaTable(table).delete("id >= 290")
    watch(table, sink=sink, ledger=ledger, **COMMON)
    with Ledger(ledger) as led:
        led.record_adapter(
            path="/a.npz", sha256="x", kind="linear", from_model="a", to_model="b", sink=first.sink, d_new=8,
            d_old=4, arr=0.91, overlap=0.8, threshold=0.5, passed=True, run_id=first.run_id, details={"k": 1},
        )  # fmt: skip
        led.create_migration(
            strategy="dual_write", from_model="a", to_model="b", sink="other", target_sink="other2",
            state="building",
        )  # fmt: skip
        led.record_erasure(
            source=first.source, key="289", sink=first.sink, point_id="p", requested_at="2026-01-01",
            verified=True, proof={"absent": True},
        )  # fmt: skip
    return table


def test_a_sqlite_ledger_moves_to_postgres_and_back_row_for_row(
    tmp_path: Path, pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite = str(tmp_path / "old.db")
    sink = f"qdrant+local://{tmp_path}/q/c"
    table = _a_used_ledger(tmp_path, sqlite, sink)
    before = _everything(sqlite)
    assert len(before["vectors"]) == 300 and len(before["runs"]) == 2

    url = pg_ledger_url(pg_dsn, pg_schema)
    assert main(["ledger", "migrate", "--from", f"sqlite://{sqlite}", "--to", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verified"] is True and report["target"] == url
    assert {t: v["rows"] for t, v in report["tables"].items()} == {t: len(rows) for t, rows in before.items()}
    assert _everything(url) == before

    # the runs go on against the new ledger: nothing is embedded again, status agrees
    again = embed(table, sink=sink, ledger=url, **COMMON)
    assert (again.n_embedded, again.n_written) == (0, 0)
    report_now = status(sink, ledger=url, verify=True)
    assert report_now.in_agreement and report_now.points == 290
    assert report_now.verify is not None and report_now.verify["disagreements"] == 0

    # and back to a new file: the same checksums prove the same rows
    back = str(tmp_path / "back.db")
    assert main(["ledger", "migrate", "--from", url, "--to", back, "--json"]) == 0
    report_back = json.loads(capsys.readouterr().out)
    moved = {t: v for t, v in report_back["tables"].items() if t not in ("runs", "vectors", "sinks")}
    assert moved == {t: v for t, v in report["tables"].items() if t not in ("runs", "vectors", "sinks")}
    assert report_back["tables"]["runs"]["rows"] == 3  # the re-run's row came along
    assert report_back["tables"]["vectors"]["rows"] == 300
    assert _everything(back) == _everything(url)


def test_a_copy_into_a_ledger_that_holds_rows_is_refused_and_changes_nothing(
    tmp_path: Path, pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite = str(tmp_path / "old.db")
    _a_used_ledger(tmp_path, sqlite, f"qdrant+local://{tmp_path}/q/c")
    url = pg_ledger_url(pg_dsn, pg_schema)
    with Ledger(url) as led:
        led.set_watermark("other", "s", 1)
    before = _everything(url)
    assert main(["ledger", "migrate", "--from", sqlite, "--to", url]) == 2
    err = capsys.readouterr().err
    assert "already holds watermarks" in err and "hint:" in err
    assert _everything(url) == before
    assert main(["ledger", "migrate", "--from", str(tmp_path / "missing.db"), "--to", url]) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


def test_the_copy_is_one_transaction_that_a_mismatch_rolls_back(
    tmp_path: Path, pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy whose read-back differs from the source commits nothing (the difference is injected:
    a real one would be a bug, which is what the check is there to catch)."""
    from airflow_provider_drift.engine.errors import LedgerError
    from airflow_provider_drift.engine.ledger import copy as ledger_copy

    sqlite = str(tmp_path / "old.db")
    _a_used_ledger(tmp_path, sqlite, f"qdrant+local://{tmp_path}/q/c")
    url = pg_ledger_url(pg_dsn, pg_schema)
    real = ledger_copy._pages
    calls = {"n": 0}

    def pages_losing_a_row(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        for rows in real(*args, **kw):
            yield rows[:-1] if calls["n"] == 6 else rows  # the read-back of the third table (vectors)

    monkeypatch.setattr(ledger_copy, "_pages", pages_losing_a_row)
    with pytest.raises(LedgerError, match="the copy of vectors does not match"):
        ledger_copy.copy_ledger(sqlite, url)
    assert all(rows == [] for rows in _everything(url).values())
