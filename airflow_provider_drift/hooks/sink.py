"""Resolve a vector sink from an existing Airflow connection: ``qdrant`` or ``postgres``.

No new connection type: users already have ``qdrant`` connections (the
official Qdrant provider's fields) and ``postgres`` connections. A connection
names a server; the collection (Qdrant) or table (pgvector) comes from the task.
Secrets stay out of the credential-free part of the sink identity: the Qdrant
API key travels as an option; the Postgres password only inside the URI the
engine parses (the sink records its URI without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from airflow.sdk import BaseHook, Connection

from airflow_provider_drift.engine.errors import ConfigError

from ._connections import as_bool, as_int, fetch_connection

if TYPE_CHECKING:
    from airflow_provider_drift.engine.sinks.base import Sink

QDRANT_CONN_TYPES = frozenset({"qdrant"})
POSTGRES_CONN_TYPES = frozenset({"postgres", "postgresql", "pgvector"})
#: libpq parameters a ``postgres`` connection may carry in its extra; forwarded as URI query parameters.
LIBPQ_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "target_session_attrs",
    "options",
)


@dataclass(frozen=True)
class SinkSpec:
    """What ``open_sink`` needs: a sink URI and its options (secrets only there or in the URI's userinfo)."""

    uri: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Sink:
        from airflow_provider_drift.engine.sinks import open_sink

        return open_sink(self.uri, **self.options)


def sink_spec(
    conn: Connection, *, collection: str | None = None, table: str | None = None, schema: str | None = None
) -> SinkSpec:
    """Build the sink URI and options for ``conn`` plus a collection (Qdrant) or table (pgvector)."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type in QDRANT_CONN_TYPES:
        if table or schema:
            raise ConfigError(
                f"connection {conn.conn_id!r} is a Qdrant connection: it has collections, not tables/schemas",
                hint="pass collection= instead of table=/schema=",
            )
        return qdrant_spec(conn, collection=_required(collection, conn, "collection"))
    if conn_type in POSTGRES_CONN_TYPES:
        return pgvector_spec(conn, table=_required(table or collection, conn, "table"), schema=schema)
    raise ConfigError(
        f"connection {conn.conn_id!r} has type {conn.conn_type!r}, which is not a vector sink",
        hint="use a 'qdrant' connection (with collection=) or a 'postgres' connection with pgvector "
        "(with table=), or pass a sink URI instead of sink_conn_id",
    )


def qdrant_spec(conn: Connection, *, collection: str) -> SinkSpec:
    """Read the official Qdrant provider's fields: host, port, password = API key, extras."""
    cid = conn.conn_id
    extra = conn.extra_dejson
    https = as_bool(extra.get("https"), field="https", conn_id=cid)
    prefix = extra.get("prefix") or None
    host = conn.host or None
    port = conn.port
    url = extra.get("url") or (host if host and "://" in host else None)
    if url:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = parts.hostname
        port = parts.port or port
        if https is None and parts.scheme in ("https", "http"):
            https = parts.scheme == "https"
        if prefix is None and parts.path.strip("/"):
            prefix = parts.path.strip("/")
    # The official hook spells it "prefer_gprc"; accept both.
    prefer = extra.get("prefer_grpc", extra.get("prefer_gprc"))
    options: dict[str, Any] = {
        "api_key": conn.password or None,
        "https": https,
        "grpc": as_bool(prefer, field="prefer_grpc", conn_id=cid),
        "grpc_port": as_int(extra.get("grpc_port"), field="grpc_port", conn_id=cid),
        "prefix": prefix,
    }
    netloc = f"{_host(host or 'localhost')}:{as_int(port, field='port', conn_id=cid) or 6333}"
    return SinkSpec(
        uri=f"qdrant://{netloc}/{quote(collection, safe='')}",
        options={k: v for k, v in options.items() if v is not None},
    )


def pgvector_spec(conn: Connection, *, table: str, schema: str | None = None) -> SinkSpec:
    """Read a ``postgres`` connection: the database is its ``schema`` field (Airflow's convention)."""
    extra = conn.extra_dejson
    database = conn.schema or extra.get("database") or extra.get("dbname")
    if not database:
        raise ConfigError(
            f"postgres connection {conn.conn_id!r} names no database",
            hint="set the connection's Database field (the 'schema' of a postgres connection)",
        )
    userinfo = ""
    if conn.login:
        userinfo = quote(conn.login, safe="")
        if conn.password:
            userinfo += ":" + quote(conn.password, safe="")
        userinfo += "@"
    port = as_int(conn.port, field="port", conn_id=conn.conn_id) or 5432
    query = {"schema": schema} if schema else {}
    query.update({k: str(extra[k]) for k in LIBPQ_EXTRAS if extra.get(k) not in (None, "")})
    uri = f"pgvector://{userinfo}{_host(conn.host or 'localhost')}:{port}/{quote(database, safe='')}/"
    uri += quote(table, safe="")
    if query:
        uri += "?" + urlencode(query)
    return SinkSpec(uri=uri)


def sink_from_connection(
    conn_id: str, collection: str | None = None, table: str | None = None, schema: str | None = None
) -> Sink:
    """Open the sink a ``qdrant`` or ``postgres`` connection names, for one collection/table."""
    return DriftSinkHook(conn_id, collection=collection, table=table, schema=schema).get_sink()


class DriftSinkHook(BaseHook):
    """
    Open a drift vector sink from a ``qdrant`` or ``postgres`` connection.

    :param sink_conn_id: a ``qdrant`` connection (host, port, password = API
        key; extras ``url``, ``https``, ``prefix``, ``grpc_port``,
        ``prefer_grpc``/``prefer_gprc``) or a ``postgres`` connection to a
        database with the ``vector`` extension.
    :param collection: the Qdrant collection (or the pgvector table when ``table`` is not given).
    :param table: the pgvector table.
    :param schema: the Postgres schema of the table (default: the server's search path).
    """

    conn_name_attr = "sink_conn_id"
    default_conn_name = "qdrant_default"
    hook_name = "Drift vector sink"

    def __init__(
        self,
        sink_conn_id: str = default_conn_name,
        *,
        collection: str | None = None,
        table: str | None = None,
        schema: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sink_conn_id = sink_conn_id
        self.collection = collection
        self.table = table
        self.schema = schema

    def get_spec(self) -> SinkSpec:
        conn = fetch_connection(
            self.sink_conn_id,
            example={"conn_type": "qdrant", "host": "qdrant", "port": 6333, "password": "<api key>"},
        )
        return sink_spec(conn, collection=self.collection, table=self.table, schema=self.schema)

    def get_sink(self) -> Sink:
        spec = self.get_spec()
        self.log.info("drift sink: %s", spec.uri.split("@")[-1])
        return spec.open()

    @cached_property
    def sink(self) -> Sink:
        return self.get_sink()


def _required(value: str | None, conn: Connection, what: str) -> str:
    if not value:
        raise ConfigError(
            f"connection {conn.conn_id!r} names a server, not a {what}",
            hint=f"pass {what}= (the {what} to write) together with the connection id",
        )
    return value


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
