"""Shared plumbing for the ledger's parts (runs, vectors, watermarks, ...)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .connection import LedgerConnection


def utc_now() -> str:
    """ISO-8601 UTC timestamp with microseconds: sorts as text, reads as a date."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class LedgerPart:
    """Base of the ledger mixins: they all share one connection."""

    _db: LedgerConnection
    path: Path
