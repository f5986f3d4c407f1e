"""Parse pgvector sink URIs into a libpq conninfo plus table, and render the credential-free identity.

Accepted forms::

    pgvector://USER:PASS@HOST:5432/DB/TABLE            (?schema=S, or DB/SCHEMA/TABLE, or DB/SCHEMA.TABLE)
    postgresql://USER:PASS@HOST:5432/DB?table=T&schema=S   (also postgres://)
    ...?host=/var/run/postgresql                        a unix-socket directory (or %2F-encoded in the host)

Other query parameters are libpq's (``sslmode``, ``connect_timeout``,
``application_name``, ...) or sink options (``distance``, ``index``, ...).
A dot in the table part splits schema from table only when it is written
literally and no ``schema`` parameter is given; a table whose name holds a
dot is written with ``%2E``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..errors import ConfigError
from . import split_query

#: query parameters that configure the sink rather than the connection
SINK_OPTIONS = frozenset(
    {
        "distance",
        "index",
        "store_text",
        "hnsw_m",
        "hnsw_ef_construction",
        "hnsw_ef_search",
        "build_memory",
        "create_extension",
    }
)
SCHEMES = ("pgvector", "postgresql", "postgres")
FORMS = "pgvector://USER:PASS@HOST:5432/DB/TABLE or postgresql://USER:PASS@HOST:5432/DB?table=TABLE"


@dataclass(frozen=True)
class PgTarget:
    """What a URI names: how to connect (may hold a password), which table, and sink options."""

    conninfo: str
    table: str
    schema: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_pg_uri(uri: str) -> PgTarget:
    """Split a pgvector/postgresql URI; raise ConfigError naming what is wrong."""
    from psycopg.conninfo import make_conninfo

    base, params = split_query(uri)
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"not a pgvector sink URI: {_redact(uri)}", hint=f"write {FORMS}")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = _split_hostport(hostport, uri)
    segments = parts.path.split("/")[1:] if parts.path else []
    if segments and segments[-1] == "":
        segments.pop()
    schema = params.pop("schema", None) or None
    table = params.pop("table", None) or None
    dbname = unquote(segments[0]) if segments else None
    rest = segments[1:]
    if len(rest) > 2 or (rest and table):
        raise ConfigError(
            f"sink URI {_redact(uri)} names the table twice or has too many path parts", hint=f"write {FORMS}"
        )
    if len(rest) == 2:
        if schema:
            raise ConfigError(f"sink URI {_redact(uri)} names the schema twice", hint=f"write {FORMS}")
        schema, table = unquote(rest[0]), unquote(rest[1])
    elif len(rest) == 1:
        raw = rest[0]
        if "." in raw and not schema:
            raw_schema, _, raw = raw.partition(".")
            schema = unquote(raw_schema)
        table = unquote(raw)
    if not table:
        raise ConfigError(
            f"sink URI {_redact(uri)} names no table",
            hint="add the table: pgvector://HOST:5432/DB/TABLE or postgresql://HOST:5432/DB?table=TABLE",
        )
    if scheme == "pgvector" and not dbname:
        raise ConfigError(f"sink URI {_redact(uri)} names no database", hint=f"write {FORMS}")
    options = {k: params.pop(k) for k in list(params) if k in SINK_OPTIONS}
    libpq: dict[str, Any] = {
        "host": params.pop("host", None) or host,
        "port": params.pop("port", None) or port,
        "user": unquote(user) or None,
        "password": unquote(password) or None,
        "dbname": params.pop("dbname", None) or dbname,
        **params,
    }
    _check_ports(libpq["port"], uri)
    try:
        conninfo = make_conninfo("", **{k: v for k, v in libpq.items() if v not in (None, "")})
    except Exception as exc:  # psycopg.ProgrammingError: an option libpq does not know
        raise ConfigError(
            f"sink URI {_redact(uri)} has a parameter PostgreSQL does not know: {exc}",
            hint=f"sink options are {sorted(SINK_OPTIONS)}; other parameters must be libpq's (sslmode, ...)",
        ) from None
    return PgTarget(conninfo=conninfo, table=table, schema=schema, options=options)


def identity(*, host: str | None, port: int | str | None, dbname: str, schema: str, table: str) -> str:
    """The credential-free URI the ledger records: ``pgvector://HOST:PORT/DB/SCHEMA.TABLE``."""
    if not host:
        where = "localhost"
    elif host.startswith("/") or host.startswith("@"):
        where = quote(host, safe="")  # a unix-socket directory
    elif ":" in host:
        where = f"[{host}]"
    else:
        where = host.lower()
    return f"pgvector://{where}:{port or 5432}/{_q(dbname)}/{_q(schema)}.{_q(table)}"


def describe_conninfo(conninfo: str) -> str:
    """A credential-free ``postgresql://host:port/db`` for messages before a connection exists."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(conninfo)
    except Exception:
        return "postgresql://<unparsable conninfo>"
    host = str(params.get("host") or "localhost")
    return f"postgresql://{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


def _split_hostport(hostport: str, uri: str) -> tuple[str | None, str | None]:
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    else:
        host, _, port = hostport.partition(":")
    if port and not port.isdigit():
        raise ConfigError(f"bad port {port!r} in sink URI {_redact(uri)}", hint=f"write {FORMS}")
    return (unquote(host) or None), (port or None)


def _check_ports(port: Any, uri: str) -> None:
    """Refuse a port libpq would refuse (it may list one per host: ``5432,5433``) before connecting."""
    if port in (None, ""):
        return
    for one in str(port).split(","):
        if one and not (one.isdigit() and 0 < int(one) <= 65535):
            raise ConfigError(
                f"bad port {one!r} in sink URI {_redact(uri)}", hint="use a port from 1 to 65535"
            )


def _q(name: str) -> str:
    return quote(name, safe="").replace(".", "%2E")


def _redact(uri: str) -> str:
    head, sep, rest = uri.split("?", 1)[0].partition("://")
    userinfo, at, _ = rest.split("/", 1)[0].rpartition("@")
    return head + sep + ("***@" + rest[len(userinfo) + 1 :] if at else rest)
