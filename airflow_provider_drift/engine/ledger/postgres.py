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
from pathlib import Path

from . import Ledger
from .connection import DRIFT_HOME_ENV
from .location import PostgresLedgerURL, resolve_location
from .pg_connection import PgLedgerConnection
from .pg_schema import ensure_pg_schema
from .pg_vectors import PgVectorsPart


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

    @property
    def local_dir(self) -> Path:
        """``$DRIFT_HOME`` (default ``~/.drift``): batch-job manifests stay on the machine that submits."""
        return Path(os.environ.get(DRIFT_HOME_ENV) or "~/.drift").expanduser()

    def __repr__(self) -> str:
        return f"PostgresLedger({str(self.url)!r})"
