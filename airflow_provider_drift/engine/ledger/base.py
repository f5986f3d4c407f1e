"""Shared plumbing for the ledger's parts (runs, vectors, watermarks, ...)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .connection import LedgerConnection
from .location import LedgerLocation


def utc_now() -> str:
    """ISO-8601 UTC timestamp with microseconds: sorts as text, reads as a date."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class LedgerPart:
    """Base of the ledger mixins: they all share one connection.

    ``_db`` is the backend's connection (``LedgerConnection`` for SQLite,
    ``PgLedgerConnection`` for PostgreSQL): both offer ``write()`` (one
    transaction yielding a connection with ``execute``/``executemany``/
    ``lock``), ``query()`` and ``read_only``; the parts' SQL is written once
    for both (see ``pg_connection.py``).
    """

    _db: LedgerConnection
    #: what ``Ledger(...)`` opens again: the SQLite file, or the PostgreSQL URL (password kept out of str())
    location: LedgerLocation
