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
from .errors import ConfigError
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


def recorded_sink_uri(uri: str, *, ledger: Ledger | str | os.PathLike[str] | None = None) -> str:
    """The identity the ledger records for the sink ``uri`` names, worked out without connecting to it.

    Qdrant URIs carry their identity. A pgvector URI does not always: the
    schema defaults to the role's search path, which only a connection could
    tell. Then the ledger's known sinks decide — the one table of that name
    in that database — so a sensor needs neither the sink's credentials nor
    a connection to it.
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "qdrant+local":
        from .sinks import parse_local_uri

        root, collection, _ = parse_local_uri(uri)
        return f"qdrant+local://{root.as_posix()}/{collection}"
    if scheme in ("qdrant", "qdrants", "qdrant+memory"):
        from .sinks import parse_qdrant_uri

        return parse_qdrant_uri(uri).identity
    if scheme in ("pgvector", "postgresql", "postgres"):
        with ExitStack() as stack:
            return _pg_identity(uri, ledger_for(ledger, stack))
    raise ConfigError(f"not a sink URI: {uri!r}", hint="pass the sink URI the watch writes")


def _pg_identity(uri: str, ledger: Ledger) -> str:
    from psycopg.conninfo import conninfo_to_dict

    from .sinks.pg_uri import identity, parse_pg_uri

    target = parse_pg_uri(uri)
    params = conninfo_to_dict(target.conninfo)
    host = str(params.get("host") or "") or None
    port, dbname = params.get("port") or 5432, str(params.get("dbname") or params.get("user") or "")
    assumed = identity(
        host=host, port=port, dbname=dbname, schema=target.schema or "public", table=target.table
    )
    if target.schema is not None and host is not None:
        return assumed
    # Which recorded sink is it? The same port, database and table (and schema, and host, where the
    # URI names them: without a host libpq picks a socket, which the ledger records by its path).
    want = _PgIdentity.parse(assumed)
    assert want is not None
    found = []
    for row in ledger.known_sinks():
        have = _PgIdentity.parse(str(row["sink"]))
        if (
            have is not None
            and (have.port, have.db, have.table) == (want.port, want.db, want.table)
            and (target.schema is None or have.schema == want.schema)
            and (host is None or have.host == want.host)
        ):
            found.append(str(row["sink"]))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(
            f"the ledger knows {len(found)} tables the sink URI could name: {', '.join(found)}",
            hint="name the schema (sink_schema=, or ?schema= in the URI) and the host",
        )
    return assumed  # nothing recorded for it yet: there is no watermark either


@dataclass(frozen=True)
class _PgIdentity:
    """The parts of ``pgvector://HOST:PORT/DB/SCHEMA.TABLE`` (each still quoted as recorded)."""

    host: str
    port: str
    db: str
    schema: str
    table: str

    @classmethod
    def parse(cls, recorded: str) -> _PgIdentity | None:
        if not recorded.startswith("pgvector://"):
            return None
        where, _, rest = recorded[len("pgvector://") :].partition("/")
        db, _, relation = rest.partition("/")
        schema, _, table = relation.partition(".")
        host, _, port = where.rpartition(":")
        return cls(host, port, db, schema, table)
