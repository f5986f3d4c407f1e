"""The ledgers a bench runs against: the SQLite file always, a PostgreSQL schema when ``--ledger`` is given.

    --ledger postgresql://postgres@127.0.0.1:5432/postgres    # a fresh ?schema= per measurement

A server for trying it: ``.venv/bin/python -m tests.fixtures.pg`` prints a DSN
(``host=... port=... user=postgres dbname=postgres``) and serves until stdin closes.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode


def ledgers(work: Path, pg_url: str | None) -> list[tuple[str, str]]:
    """(backend, ledger location) pairs: the SQLite file in ``work``, and a fresh PostgreSQL schema."""
    out = [("sqlite", str(work / "ledger.db"))]
    if pg_url:
        base, _, query = pg_url.partition("?")
        params = {k: v for k, v in parse_qsl(query) if k != "schema"}
        params["schema"] = f"drift_bench_{uuid.uuid4().hex[:10]}"
        out.append(("postgresql", f"{base}?{urlencode(params)}"))
    return out


def drop(location: str) -> None:
    """Drop a bench's PostgreSQL ledger schema (a file ledger goes with its work folder)."""
    if "://" not in location:
        return
    import psycopg
    from psycopg import sql

    from airflow_provider_drift.engine.ledger import resolve_location

    url = resolve_location(location)
    with psycopg.connect(url.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(url.schema)))
