"""The lineage ledger: runs, per-vector provenance, cost, watermarks, migrations, erasures.

SQLite, one file (``~/.drift/ledger.db`` by default), safe for several
processes writing at once; or PostgreSQL (``postgresql://...?schema=drift``)
for workers on many hosts. See ``schema.py`` for the tables, ``location.py``
for how a ledger is named.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LedgerError
from .connection import DEFAULT_LEDGER_PATH, LEDGER_PATH_ENV, LedgerConnection, resolve_ledger_path
from .erasures import ErasuresPart
from .leases import LeaseBusyError, LeasesPart
from .location import LEDGER_URL_ENV, LedgerLocation, PostgresLedgerURL, resolve_location
from .migrations import MigrationsPart
from .reports import ReportsPart
from .runs import RunsPart, new_run_id
from .schema import SCHEMA_VERSION, ensure_schema
from .vectors import Observed, SchemeMismatchError, Upsert, VectorsPart, VectorState
from .watermarks import WatermarksPart

__all__ = [
    "DEFAULT_LEDGER_PATH",
    "LEDGER_PATH_ENV",
    "LEDGER_URL_ENV",
    "SCHEMA_VERSION",
    "LeaseBusyError",
    "Ledger",
    "LedgerLocation",
    "Observed",
    "PostgresLedgerURL",
    "SchemeMismatchError",
    "Upsert",
    "VectorState",
    "new_run_id",
    "resolve_ledger_path",
    "resolve_location",
]


class Ledger(RunsPart, VectorsPart, ReportsPart, WatermarksPart, ErasuresPart, MigrationsPart, LeasesPart):
    """The ledger, opened (and migrated to the current schema) on construction.

    ``Ledger(path)`` (or ``sqlite:///path``, or nothing: the default file) is
    the SQLite ledger; ``Ledger("postgresql://...")`` returns a
    :class:`~.postgres.PostgresLedger`, a subclass with the same methods
    (see :class:`~.port.LedgerPort`). Any other URI is a ConfigError.

    ``create=False`` opens only a ledger that exists: readers (reports, status)
    must not leave an empty ledger, or its folder, behind a mistyped path.
    ``read_only`` as in :class:`LedgerConnection`.
    """

    path: Path

    def __new__(
        cls,
        path: str | os.PathLike[str] | PostgresLedgerURL | None = None,
        *,
        create: bool = True,
        read_only: bool | None = None,
    ) -> Ledger:
        if cls is Ledger and isinstance(resolve_location(path), PostgresLedgerURL):
            from .postgres import PostgresLedger

            return super().__new__(PostgresLedger)
        return super().__new__(cls)

    def __init__(
        self,
        path: str | os.PathLike[str] | PostgresLedgerURL | None = None,
        *,
        create: bool = True,
        read_only: bool | None = None,
    ) -> None:
        location = resolve_location(path)
        assert isinstance(location, Path)
        self.path = self.location = location
        if not create and not self.path.is_file():
            raise LedgerError(
                f"no ledger at {self.path}",
                hint="check the path ({opt:ledger}, DRIFT_LEDGER_PATH or DRIFT_HOME); a ledger is created "
                "by the first run that writes (embed, watch, migrate)",
            )
        self._db = LedgerConnection(
            self.path, schema_version=SCHEMA_VERSION, ensure_schema=ensure_schema, read_only=read_only
        )

    def shares_transactions_with(self, sink: object) -> bool:
        """True if ``sink``'s writes and this ledger's records can commit in one transaction."""
        del sink
        return False

    @property
    def local_dir(self) -> Path:
        """The folder for files that accompany the ledger on this machine (batch-job manifests)."""
        return self.path.parent

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"
