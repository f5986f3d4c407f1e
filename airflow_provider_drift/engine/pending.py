"""Are there committed changes a watch has not applied yet? The question sensors and triggers ask.

Kept in the engine so the sensor (poking on a worker) and the trigger
(polling in the triggerer) give the same answer. It reads only the ledger's
watermark and the table's log — never the sink — so it needs no sink
credentials: the sink is named by the credential-free URI the ledger records.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .changes import PendingChanges, pending_changes
from .handles import ledger_for
from .ledger import Ledger
from .sources import source_name


@dataclass(frozen=True)
class ChangeCheck:
    """The answer: what is pending, whether it is enough to run, and whether waiting can change that.

    ``final`` is True when waiting longer cannot make more changes pending:
    in interval mode once the data interval has ended (its commits are fixed).
    """

    pending: PendingChanges
    ready: bool
    final: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_changes(
    table: str,
    *,
    sink_uri: str,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    source: str | None = None,
    interval: tuple[datetime, datetime] | None = None,
    min_versions: int = 1,
    min_changed_rows: int | None = None,
    now: datetime | None = None,
    spark: Any = None,
) -> ChangeCheck:
    """Check the table against the watermark of (source, sink): ready when enough has been committed.

    :param sink_uri: the sink's identity as the ledger records it (``Sink.uri``).
    :param interval: only commits whose time is in ``[start, end)`` count (interval mode).
    :param min_versions: commits needed to be ready.
    :param min_changed_rows: also require this many changed rows (reads the feed's change types).
    """
    name = source or source_name(table)
    with ExitStack() as stack:
        watermark = ledger_for(ledger, stack).get_watermark(name, sink_uri)
    found = pending_changes(
        table,
        after_version=watermark,
        interval=interval,
        count_rows=min_changed_rows is not None and watermark is not None,
        spark=spark,
    )
    if found.since_version is None:
        ready = True  # no watermark: the first watch embeds the snapshot
    else:
        ready = found.n_versions >= max(min_versions, 1) and (
            min_changed_rows is None or (found.n_rows or 0) >= min_changed_rows
        )
    moment = now or datetime.now(UTC)
    final = interval is not None and _utc(interval[1]) <= _utc(moment)
    return ChangeCheck(pending=found, ready=ready, final=final)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
