"""The ledger on PostgreSQL: the same parts and SQL as the SQLite ledger, over a psycopg connection.

Why a subclass and not a parallel implementation: the parts (runs,
vectors, watermarks, leases, ...) hold the ledger's logic and SQL once;
:class:`~.pg_connection.PgLedgerConnection` speaks their SQL to PostgreSQL
and :class:`~.pg_vectors.PgVectorsPart` replaces only the batch look-ups
that SQLite writes with ``json_each``. Workers on many hosts share one
ledger this way: dedup, provenance, watermarks and cost stay one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import Ledger
from .connection import DRIFT_HOME_ENV
from .location import PostgresLedgerURL, resolve_location
from .pg_connection import PgLedgerConnection, PgWrite
from .pg_schema import ensure_pg_schema
from .pg_vectors import PgVectorsPart, refresh_statistics
from .vectors import Upsert


class PostgresLedger(PgVectorsPart, Ledger):
    """A ledger in one schema of a PostgreSQL database (created and migrated on construction)."""

    _db: PgLedgerConnection  # type: ignore[assignment]

    def __init__(
        self,
        path: str | os.PathLike[str] | PostgresLedgerURL | None = None,
        *,
        create: bool = True,
        read_only: bool | None = None,
    ) -> None:
        location = resolve_location(path)
        assert isinstance(location, PostgresLedgerURL)
        self.location = self.url = location
        self._db = PgLedgerConnection(location)
        try:
            ensure_pg_schema(self._db, create=create)
            refresh_statistics(self._db)  # a ledger a previous run filled: plan with its real size
        except BaseException:
            self._db.close()
            raise
        del read_only  # reports and writes share one role; PostgreSQL's grants decide what may be written

    @property
    def path(self) -> Path:  # type: ignore[override]
        """There is no file: code that needs one must use ``location`` or ``local_dir``."""
        from ..errors import LedgerError

        raise LedgerError(
            f"the ledger at {self.url} is in PostgreSQL and has no file path",
            hint="use ledger.location to open it again, or ledger.local_dir for files beside it",
        )

    def shares_transactions_with(self, sink: object) -> bool:
        """True for a pgvector sink in this ledger's database, reached as the same role."""
        same = getattr(sink, "same_database_as", None)
        return bool(same is not None and same(self.url.conninfo))

    def record_upserts_in(
        self, conn: Any, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str
    ) -> None:
        """Record provenance on the sink's own connection, inside the transaction writing the points.

        Then no crash can leave points the ledger does not know (or records
        of points never written): both commit, or neither. ``SET LOCAL``
        points the statements at the ledger's schema until that commit.
        """
        from psycopg import sql

        if not rows:
            return
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.url.schema)))
        self._record_upserts(PgWrite(conn, self.url.schema), sink, rows, model=model, run_id=run_id)
        self._note_recorded(len(rows))

    @property
    def local_dir(self) -> Path:
        """``$DRIFT_HOME`` (default ``~/.drift``): batch-job manifests stay on the machine that submits."""
        return Path(os.environ.get(DRIFT_HOME_ENV) or "~/.drift").expanduser()

    def __repr__(self) -> str:
        return f"PostgresLedger({str(self.url)!r})"
