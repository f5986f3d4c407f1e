"""The SQLite ledger file: its schema, upgrades and refusals (the backend-neutral suite is
test_ledger_backends.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from airflow_provider_drift.engine.errors import LedgerError
from airflow_provider_drift.engine.ledger import SCHEMA_VERSION, Ledger


def test_new_ledger_has_current_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ledger_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(path)


def test_a_ledger_of_an_older_schema_is_migrated_and_keeps_its_vectors(tmp_path: Path) -> None:
    from airflow_provider_drift.engine.ledger.schema import MIGRATIONS

    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0][1].split(";"):  # a ledger written by the first release
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model, run_id,"
        " created_at, updated_at) VALUES ('s', 'p1', 'src', 'k1', ?, 'sha256-v1', 'm', 'r', 'now', 'now')",
        ("ab" * 32,),
    )
    conn.commit()
    conn.close()
    with Ledger(path) as led:
        assert led.find_embedded("m", ["ab" * 32, "cd" * 32], sink="s") == {"ab" * 32: "p1"}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION > 1
    conn.close()


def test_default_path_follows_environment(ledger_path: Path) -> None:
    with Ledger() as led:
        assert led.path == ledger_path


def _ledger_at(path: Path, version: int) -> sqlite3.Connection:
    """A ledger file as the release with schema ``version`` wrote it."""
    from airflow_provider_drift.engine.ledger.schema import MIGRATIONS

    conn = sqlite3.connect(path)
    for v, script in MIGRATIONS:
        if v <= version:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_a_v2_ledger_is_migrated_to_v3_and_keeps_runs_vectors_and_sinks(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = _ledger_at(path, 2)
    conn.execute(
        "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model, run_id,"
        " created_at, updated_at) VALUES ('s', 'p1', 'src', 'k1', ?, 'sha256-v1', 'm', 'r', 'now', 'now')",
        ("ab" * 32,),
    )
    conn.execute(
        "INSERT INTO runs (run_id, kind, status, started_at) VALUES ('old', 'embed', 'running',"
        " '2020-01-01T00:00:00.000000+00:00')"
    )
    conn.execute(
        "INSERT INTO sinks (sink, model, dim, distance, created_at, updated_at)"
        " VALUES ('s', 'm', 8, 'cosine', 'now', 'now')"
    )
    conn.commit()
    conn.close()
    with Ledger(path) as led:
        assert SCHEMA_VERSION == 3
        assert led.stale_positions("s", "m", ["p1"], ["ab" * 32]) == []  # still trusted: no mark
        assert led.lookup("s", ["p1"])["p1"].pending is False
        info = led.sink_info("s")
        assert info is not None and (info["point_id_scheme"], info["vector_scheme"]) == ("uuid5-v1", None)
        # a run from before v3 has no host, pid or heartbeat: its start time is its last sign of life
        assert led.mark_abandoned() == ["old"]
        assert led.get_run("old")["status"] == "abandoned"  # type: ignore[index]
        led.register_sink("s", model="m", dim=8, distance="cosine", vector_scheme="provider")
        assert led.sink_info("s")["vector_scheme"] == "provider"  # type: ignore[index]


def test_embed_refuses_shadow_vectors_into_a_collection_of_real_ones(tmp_path: Path) -> None:
    import pyarrow as pa

    from airflow_provider_drift.engine.embed import embed
    from airflow_provider_drift.engine.ledger import SchemeMismatchError
    from airflow_provider_drift.engine.providers.shadow import ShadowProvider

    class RealModel(ShadowProvider):  # stands for a provider that calls the model: not shadow vectors
        is_shadow = False

    sink = f"qdrant+local://{tmp_path}/q/c"
    data = pa.table({"id": [1, 2], "body": ["a", "b"]})
    common = {"text_col": "body", "key_col": "id", "model": "openai/text-embedding-3-small", "sink": sink}
    embed(data, source="s", provider=RealModel("openai/text-embedding-3-small", dim=8), **common)  # type: ignore[arg-type]
    with pytest.raises(SchemeMismatchError, match="'provider'; this run makes 'shadow-v"):
        embed(data, source="s", shadow_mode=True, dim=8, **common)  # type: ignore[arg-type]
