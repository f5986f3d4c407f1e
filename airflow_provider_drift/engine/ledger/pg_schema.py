"""The ledger's schema on PostgreSQL: the same versioned steps as on SQLite, in the URL's schema.

Why the same scripts: a version number must mean the same tables on both
backends, so ``schema.MIGRATIONS`` is applied here too, with its SQLite
column types spelled the PostgreSQL way (INTEGER → BIGINT, REAL → DOUBLE
PRECISION, TEXT → TEXT COLLATE "C" so text sorts by bytes, as in SQLite,
and ``MIN(point_id)`` or paging by point id agree across backends).
The version is recorded in the table ``ledger_schema`` (one row per applied
step) instead of ``PRAGMA user_version``.

Creation and upgrades hold an advisory lock on the schema name, so several
processes opening a new ledger at once create it once. A schema written by
a newer release is refused; a schema that holds other tables but no
``ledger_schema`` is another application's and is never written to.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import LedgerError
from .base import utc_now
from .location import PostgresLedgerURL
from .pg_connection import PgLedgerConnection, lock_key
from .schema import MIGRATIONS, SCHEMA_VERSION

VERSION_TABLE = "ledger_schema"
_TYPES = ((re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"))
_TEXT = re.compile(r"\bTEXT\b")


def pg_ddl(script: str) -> list[str]:
    """The statements of one SQLite migration step, with PostgreSQL column types."""
    out = []
    for statement in script.split(";"):
        lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
        text = "\n".join(lines).strip()
        if not text:
            continue
        for pattern, replacement in _TYPES:
            text = pattern.sub(replacement, text)
        if text.upper().startswith(("CREATE TABLE", "ALTER TABLE")):
            text = _TEXT.sub('TEXT COLLATE "C"', text)
        out.append(text)
    return out


def ensure_pg_schema(db: PgLedgerConnection, *, create: bool = True) -> int:
    """Create or upgrade the ledger in its schema; return the version found before (0: new).

    ``create=False``: a schema without a ledger is an error, and nothing is created.
    """
    from psycopg import sql

    url: PostgresLedgerURL = db.url
    schema = sql.Identifier(url.schema)
    with db.session() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema", url.schema),))
        current = _version(conn, url)
        if current == 0 and not create:
            raise LedgerError(
                f"no ledger at {url}",
                hint="check the URL and its ?schema= ({opt:ledger} or DRIFT_LEDGER_URL); a ledger is "
                "created by the first run that writes (embed, watch, migrate)",
            )
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        if current > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger at {url} has schema version {current}, newer than this release understands "
                f"({SCHEMA_VERSION})",
                hint="upgrade airflow-provider-drift, or point at another ledger (another ?schema=)",
            )
        if current < SCHEMA_VERSION:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)"
                ).format(schema, sql.Identifier(VERSION_TABLE))
            )
            for version, script in MIGRATIONS:
                if version > current:
                    for statement in pg_ddl(script):
                        conn.execute(statement)  # search_path is the ledger's schema
                    conn.execute(
                        sql.SQL("INSERT INTO {}.{} (version, applied_at) VALUES (%s, %s)").format(
                            schema, sql.Identifier(VERSION_TABLE)
                        ),
                        (version, utc_now()),
                    )
    return current


def _version(conn: Any, url: PostgresLedgerURL) -> int:
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (url.schema,)
        )
    }
    if VERSION_TABLE not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:5])
            raise LedgerError(
                f"the schema {url.schema} at {url} holds tables of another application, not a drift "
                f"ledger ({shown})",
                hint="drift will not write into it; name another schema (?schema=drift_ledger)",
            )
        return 0
    row = conn.execute(f'SELECT COALESCE(MAX(version), 0) FROM "{url.schema}".{VERSION_TABLE}').fetchone()
    return int(row[0])
