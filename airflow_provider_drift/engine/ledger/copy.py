"""Copy a whole ledger into another (SQLite → PostgreSQL, or back), verified by counts and checksums.

Why one transaction: the target is empty before and complete after, never
half-filled. The copy is verified inside that transaction — row counts and
an order-independent checksum of every table, read back from the target —
so a copy that does not match the source is rolled back, not committed.

What is copied: every table of the current schema except ``leases`` (a
lease belongs to a live process of the old ledger). Both ledgers are opened,
and so migrated, to the current schema first. Stop the runs that write the
source while copying: rows written meanwhile may be missed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, LedgerError

#: table → its key columns (the order rows are read and paged in)
TABLES: dict[str, tuple[str, ...]] = {
    "sinks": ("sink",),
    "runs": ("run_id",),
    "vectors": ("point_id", "sink"),
    "watermarks": ("source", "sink"),
    "migrations": ("migration_id",),
    "adapters": ("adapter_id",),
    "erasures": ("erasure_id",),
}
_PAGE = 5000
_MOD = 1 << 256


@dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int
    checksum: str


@dataclass(frozen=True)
class LedgerCopy:
    """What ``copy_ledger`` copied: per table the row count and checksum found on both sides."""

    source: str
    target: str
    tables: list[TableCopy] = field(default_factory=list)
    verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "verified": self.verified,
            "rows": sum(t.rows for t in self.tables),
            "tables": {t.table: {"rows": t.rows, "checksum": t.checksum} for t in self.tables},
        }


def row_digest(values: Sequence[Any]) -> int:
    """One row's hash as an integer; floats by repr, so 0.1 is 0.1 on both backends."""
    text = json.dumps([repr(v) if isinstance(v, float) else v for v in values], separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


class _Checksum:
    """Sum of row digests modulo 2^256: the same for the same rows in any order."""

    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, values: Sequence[Any]) -> None:
        self.rows += 1
        self.total = (self.total + row_digest(values)) % _MOD

    @property
    def hex(self) -> str:
        return f"{self.total:064x}"


def copy_ledger(
    source: str | os.PathLike[str], target: str | os.PathLike[str], *, page: int = _PAGE
) -> LedgerCopy:
    """Copy the ledger at ``source`` into the empty ledger at ``target``; verify, then commit."""
    from . import Ledger

    with Ledger(source, create=False) as src, Ledger(target) as dst:
        if str(src.location) == str(dst.location):
            raise ConfigError(
                f"the ledger {src.location} cannot be copied onto itself", hint="name another ledger as --to"
            )
        for table in TABLES:
            if dst._db.query(f"SELECT COUNT(*) FROM {table}")[0][0]:
                raise LedgerError(
                    f"the target ledger {dst.location} already holds {table}: drift copies only into an "
                    "empty ledger, so no history is mixed or overwritten",
                    hint="name a new ledger (another file, or another ?schema=) as --to",
                )
        columns = {t: _columns(src, t) for t in TABLES}
        copied: list[TableCopy] = []
        with dst._db.write() as conn:

            def read_back(sql: str, params: Sequence[Any] = ()) -> list[Any]:
                return list(conn.execute(sql, params).fetchall())  # inside the copy's own transaction

            for table, keys in TABLES.items():
                cols = columns[table]
                made = _Checksum()
                insert = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                for rows in _pages(src._db.query, table, cols, keys, page):
                    for r in rows:
                        made.add(r)
                    conn.executemany(insert, rows)
                check = _Checksum()

                for rows in _pages(read_back, table, cols, keys, page):
                    for r in rows:
                        check.add(r)
                if (check.rows, check.hex) != (made.rows, made.hex):
                    raise LedgerError(
                        f"the copy of {table} does not match the source ({check.rows} rows, checksum "
                        f"{check.hex[:16]}… vs {made.rows} rows, {made.hex[:16]}…); nothing was copied",
                        hint="report this message; the source ledger is unchanged",
                    )
                copied.append(TableCopy(table, made.rows, made.hex))
        return LedgerCopy(str(src.location), str(dst.location), copied, verified=True)


def _columns(ledger: Any, table: str) -> list[str]:
    """The table's columns in the source (the same in the target: both are at the current schema)."""
    from .postgres import PostgresLedger

    if isinstance(ledger, PostgresLedger):
        rows = ledger._db.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?"
            " ORDER BY ordinal_position",
            (ledger.url.schema, table),
        )
        return [r[0] for r in rows]
    return [r["name"] for r in ledger._db.query(f"PRAGMA table_info({table})")]


def _pages(
    query: Callable[..., list[Any]], table: str, cols: list[str], keys: tuple[str, ...], page: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Every row of ``table`` as tuples of ``cols``, in key order, ``page`` rows at a time."""
    select = f"SELECT {', '.join(cols)} FROM {table}"
    order = f" ORDER BY {', '.join(keys)} LIMIT {int(page)}"
    after: tuple[Any, ...] | None = None
    at = [cols.index(k) for k in keys]
    while True:
        if after is None:
            rows = query(select + order)
        else:
            cond = f" WHERE ({', '.join(keys)}) > ({', '.join('?' * len(keys))})"
            rows = query(select + cond + order, after)
        if not rows:
            return
        out = [tuple(r) for r in rows]
        yield out
        after = tuple(out[-1][i] for i in at)
