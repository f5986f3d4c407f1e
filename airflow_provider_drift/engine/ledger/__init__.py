"""The lineage ledger: runs, per-vector provenance, cost, watermarks, migrations, erasures.

SQLite, one file (``~/.drift/ledger.db`` by default), safe for several
processes writing at once. See ``schema.py`` for the tables.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LedgerError
from .connection import DEFAULT_LEDGER_PATH, LEDGER_PATH_ENV, LedgerConnection, resolve_ledger_path
from .erasures import ErasuresPart
from .leases import LeaseBusyError, LeasesPart
from .migrations import MigrationsPart
from .reports import ReportsPart
from .runs import RunsPart, new_run_id
from .schema import SCHEMA_VERSION, ensure_schema
from .vectors import Observed, SchemeMismatchError, Upsert, VectorsPart, VectorState
from .watermarks import WatermarksPart

__all__ = [
    "DEFAULT_LEDGER_PATH",
    "LEDGER_PATH_ENV",
    "SCHEMA_VERSION",
    "LeaseBusyError",
    "Ledger",
    "Observed",
    "SchemeMismatchError",
    "Upsert",
    "VectorState",
    "new_run_id",
    "resolve_ledger_path",
]


class Ledger(RunsPart, VectorsPart, ReportsPart, WatermarksPart, ErasuresPart, MigrationsPart, LeasesPart):
    """The ledger file, opened (and migrated to the current schema) on construction.

    ``create=False`` opens only a ledger that exists: readers (reports, status)
    must not leave an empty ledger, or its folder, behind a mistyped path.
    ``read_only`` as in :class:`LedgerConnection`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        read_only: bool | None = None,
    ) -> None:
        self.path: Path = resolve_ledger_path(path)
        if not create and not self.path.is_file():
            raise LedgerError(
                f"no ledger at {self.path}",
                hint="check the path ({opt:ledger}, DRIFT_LEDGER_PATH or DRIFT_HOME); a ledger is created "
                "by the first run that writes (embed, watch, migrate)",
            )
        self._db = LedgerConnection(
            self.path, schema_version=SCHEMA_VERSION, ensure_schema=ensure_schema, read_only=read_only
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"
