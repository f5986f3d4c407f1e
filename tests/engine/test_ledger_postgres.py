"""Choosing the ledger by URL, and what only the PostgreSQL ledger can get wrong: secrets, servers,
schemas."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from airflow_provider_drift.cli import main
from airflow_provider_drift.engine.errors import ConfigError, LedgerError, TerminalError, TransientError
from airflow_provider_drift.engine.ledger import SCHEMA_VERSION, Ledger, PostgresLedgerURL, resolve_location
from airflow_provider_drift.engine.ledger.postgres import PostgresLedger
from tests.fixtures.ledgers import SECRET, pg_ledger_url, role_url


def test_a_postgres_url_is_never_taken_as_a_file_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_dsn: str, pg_schema: str
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with Ledger(pg_ledger_url(pg_dsn, pg_schema)) as led:
        assert isinstance(led, PostgresLedger)
    with pytest.raises(TransientError):  # nothing listens there: a server error, not a new file
        Ledger("postgresql://drift@127.0.0.1:1/db?connect_timeout=2")
    assert list((tmp_path / "cwd").iterdir()) == []  # no folder named postgresql:, no ledger.db


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://drift:{SECRET}@db:3306/ledger",
        f"postgres+foo://drift:{SECRET}@db/ledger",
        "sqlite://host/ledger.db",
        f"postgresql://drift:{SECRET}@db:99999/ledger",
        f"postgresql://drift:{SECRET}@db/ledger?schema=drop%20table",
        f"postgresql://drift:{SECRET}@db/ledger?bogus_option=1",
    ],
)
def test_an_unsupported_ledger_uri_is_a_config_error_without_the_password(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(ConfigError) as info:
        Ledger(url)
    assert info.value.hint and SECRET not in str(info.value)
    assert list((tmp_path / "cwd").iterdir()) == []


def test_files_sqlite_urls_and_the_environment_choose_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_dsn: str, pg_schema: str
) -> None:
    assert resolve_location(f"sqlite://{tmp_path}/a.db") == tmp_path / "a.db"
    assert resolve_location(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"  # SQLAlchemy's four slashes
    assert resolve_location(tmp_path / "b.db") == tmp_path / "b.db"
    with Ledger(f"sqlite:///{tmp_path}/a.db") as led:
        assert type(led) is Ledger and led.path == tmp_path / "a.db"
    url = pg_ledger_url(pg_dsn, pg_schema)
    monkeypatch.setenv("DRIFT_LEDGER_URL", url)  # wins over DRIFT_LEDGER_PATH, which the suite sets
    with Ledger() as led:
        assert isinstance(led, PostgresLedger) and led.url.schema == pg_schema
    parsed = resolve_location("postgresql://u:pw@h:5433/db?sslmode=disable")
    assert isinstance(parsed, PostgresLedgerURL)
    assert (str(parsed), parsed.schema) == ("postgresql://u@h:5433/db?schema=drift&sslmode=disable", "drift")
    assert "pw" not in repr(parsed) and "password=pw" in parsed.conninfo


def test_the_password_is_never_stored_logged_or_shown(
    tmp_path: Path,
    pg_dsn: str,
    password_role: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow_provider_drift.engine.embed import embed

    caplog.set_level("DEBUG")
    url = role_url(pg_dsn, password_role, SECRET, "ledger_secret")
    data = pa.table({"id": [1, 2, 3], "body": ["a", "b", "c"]})
    sink = f"qdrant+local://{tmp_path}/q/c"
    model = "openai/text-embedding-3-small"
    run = embed(
        data, source="s", text_col="body", key_col="id", model=model, sink=sink, ledger=url, shadow_mode=True
    )
    assert run.n_written == 3 and SECRET not in repr(run.to_dict())
    with Ledger(url) as led:
        assert SECRET not in repr(led) and SECRET not in str(led.location)
        assert led.live_count(next(iter(led.known_sinks()))["sink"]) == 3
    assert main(["runs", "--ledger", url, "--json"]) == 0
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert SECRET not in caplog.text
    # nothing in any table of the ledger holds it
    with psycopg.connect(pg_dsn) as conn:
        for (table,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='ledger_secret'"
        ).fetchall():
            rows = conn.execute(
                sql.SQL("SELECT t::text FROM ledger_secret.{} AS t").format(sql.Identifier(table))
            )
            assert not [r for (r,) in rows if SECRET in r], table


def test_a_wrong_password_is_terminal_exit_2_and_never_echoed(
    pg_dsn: str, password_role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-" + SECRET
    url = role_url(pg_dsn, password_role, wrong, "ledger_wrong")
    with pytest.raises(LedgerError) as info:
        Ledger(url)
    assert isinstance(info.value, TerminalError)
    assert "refused" in info.value.message and wrong not in str(info.value) and SECRET not in str(info.value)
    assert main(["runs", "--ledger", url]) == 2
    err = capsys.readouterr().err
    assert "refused the ledger connection" in err and "hint:" in err and wrong not in err


def test_an_unreachable_server_is_transient_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://drift:{SECRET}@127.0.0.1:1/db?connect_timeout=2"
    with pytest.raises(TransientError) as info:
        Ledger(url)
    assert isinstance(info.value, LedgerError) and SECRET not in str(info.value)
    assert main(["runs", "--ledger", url]) == 3
    err = capsys.readouterr().err
    assert "cannot reach the ledger's PostgreSQL" in err and SECRET not in err


def test_a_schema_from_a_newer_release_is_refused(pg_dsn: str, pg_schema: str) -> None:
    url = pg_ledger_url(pg_dsn, pg_schema)
    Ledger(url).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        versions = [v for (v,) in conn.execute(f'SELECT version FROM "{pg_schema}".ledger_schema ORDER BY 1')]
        assert versions == list(range(1, SCHEMA_VERSION + 1))  # every step recorded, in order
        conn.execute(f"INSERT INTO \"{pg_schema}\".ledger_schema VALUES (%s, 'later')", (SCHEMA_VERSION + 1,))
    with pytest.raises(LedgerError, match=f"schema version {SCHEMA_VERSION + 1}, newer") as info:
        Ledger(url)
    assert isinstance(info.value, TerminalError) and "upgrade airflow-provider-drift" in (
        info.value.hint or ""
    )


def test_a_schema_of_another_application_is_never_written(pg_dsn: str, pg_schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".orders (id int)')
    with pytest.raises(LedgerError, match="another application") as info:
        Ledger(pg_ledger_url(pg_dsn, pg_schema))
    assert info.value.hint
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema=%s", (pg_schema,)
        ).fetchall()
    assert tables == [("orders",)]


def test_an_older_schema_is_upgraded_in_place_and_keeps_its_rows(pg_dsn: str, pg_schema: str) -> None:
    from airflow_provider_drift.engine.ledger.pg_schema import pg_ddl
    from airflow_provider_drift.engine.ledger.schema import MIGRATIONS

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a ledger as schema version 2 left it
        conn.execute(f'SET search_path TO "{pg_schema}"')
        conn.execute("CREATE TABLE ledger_schema (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
        for version, script in MIGRATIONS[:2]:
            for statement in pg_ddl(script):
                conn.execute(statement)
            conn.execute("INSERT INTO ledger_schema VALUES (%s, 'then')", (version,))
        conn.execute(
            "INSERT INTO sinks (sink, model, dim, distance, created_at, updated_at)"
            " VALUES ('s', 'm', 8, 'cosine', 'now', 'now')"
        )
    with Ledger(pg_ledger_url(pg_dsn, pg_schema)) as led:
        info = led.sink_info("s")
        assert info is not None and (info["point_id_scheme"], info["dim"]) == ("uuid5-v1", 8)
        assert led.pending_count("s") == 0  # the v3 column exists


def test_a_dropped_connection_is_transient_and_the_next_call_reconnects(pg_dsn: str, pg_schema: str) -> None:
    with Ledger(pg_ledger_url(pg_dsn, pg_schema)) as led:
        led.set_watermark("src", "s", 1)
        pid = led._db.connection().info.backend_pid
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(TransientError, match="lost the connection"):
            led.set_watermark("src", "s", 2)
        led.set_watermark("src", "s", 3)
        assert led.get_watermark("src", "s") == 3


def test_a_full_pass_that_lost_its_connection_prunes_nothing(pg_dsn: str, pg_schema: str) -> None:
    from airflow_provider_drift.engine.ledger import Upsert

    with Ledger(pg_ledger_url(pg_dsn, pg_schema)) as led:
        led.record_upserts(
            "s", [Upsert(f"p{i}", "src", f"k{i}", f"h{i}") for i in range(4)], model="m", run_id="r"
        )
        led.mark_seen(["p0", "p1", "p2", "p3"])
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (led._db.connection().info.backend_pid,))
        with pytest.raises(TransientError, match="lost the connection"):
            list(led.unseen_points("s", "src"))
        with pytest.raises(TransientError, match="during a full pass"):  # not: "all 4 points unseen"
            list(led.unseen_points("s", "src"))
        led.clear_seen()
        assert led.live_count("s") == 4


def test_a_reader_of_a_missing_ledger_creates_nothing(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = f"missing_{uuid.uuid4().hex[:8]}"
    url = pg_ledger_url(pg_dsn, schema)
    with pytest.raises(LedgerError, match="no ledger at"):
        Ledger(url, create=False)
    assert main(["runs", "--ledger", url]) == 2
    assert "no ledger at postgresql://" in capsys.readouterr().err
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname=%s", (schema,)).fetchall() == []
