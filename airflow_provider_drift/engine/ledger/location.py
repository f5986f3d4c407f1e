"""Where a ledger lives: an SQLite file (a path or ``sqlite:///path``) or a PostgreSQL schema.

Accepted forms::

    /path/to/ledger.db, ~/.drift/ledger.db        an SQLite file
    sqlite:///path/to/ledger.db                    the same, as a URI
    postgresql://USER:PASS@HOST:5432/DB?schema=drift   (also postgres://; schema defaults to drift)

Anything else that looks like a URI (``scheme://``) is refused: taken as a
path, ``postgresql://...`` would silently become an SQLite file in a folder
named ``postgresql:`` and every process would write its own ledger.

The password of a PostgreSQL URL is a secret: :class:`PostgresLedgerURL`
keeps it out of ``str()``, ``repr()`` and every message; only
:attr:`PostgresLedgerURL.conninfo` (handed to libpq) carries it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ..errors import ConfigError
from .connection import DEFAULT_LEDGER_PATH, DRIFT_HOME_ENV, LEDGER_PATH_ENV

#: a ledger URL (``postgresql://...`` or ``sqlite:///...``); wins over DRIFT_LEDGER_PATH when both are set
LEDGER_URL_ENV = "DRIFT_LEDGER_URL"
DEFAULT_PG_SCHEMA = "drift"
PG_SCHEMES = ("postgresql", "postgres")
FORMS = "a file path, sqlite:///PATH, or postgresql://USER:PASS@HOST:5432/DB?schema=drift"
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class PostgresLedgerURL:
    """A ledger in one schema of a PostgreSQL database; ``str()`` is the URL without its password."""

    display: str
    schema: str
    conninfo: str = field(repr=False)
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"PostgresLedgerURL({self.display!r})"

    def scrub(self, text: str) -> str:
        """``text`` with the password (should a library ever echo it) replaced by ``***``."""
        if self.password:
            text = text.replace(self.password, "***").replace(quote(self.password, safe=""), "***")
        return text


LedgerLocation = Path | PostgresLedgerURL


def resolve_location(location: str | os.PathLike[str] | PostgresLedgerURL | None = None) -> LedgerLocation:
    """The ledger an argument names: explicit, else ``$DRIFT_LEDGER_URL``, ``$DRIFT_LEDGER_PATH``,
    ``$DRIFT_HOME/ledger.db``, ``~/.drift/ledger.db``."""
    if isinstance(location, PostgresLedgerURL):
        return location
    if location is None:
        location = os.environ.get(LEDGER_URL_ENV) or None
    if location is None:
        home = os.environ.get(DRIFT_HOME_ENV)
        location = os.environ.get(LEDGER_PATH_ENV) or (
            Path(home) / "ledger.db" if home else DEFAULT_LEDGER_PATH
        )
    if isinstance(location, os.PathLike):
        return Path(location).expanduser()
    text = str(location)
    match = _URI.match(text)
    if match is None:
        return Path(text).expanduser()
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        rest = text[len("sqlite://") :]
        if not rest.startswith("/"):
            raise ConfigError(
                f"the SQLite ledger URL {text} has a host part", hint="write sqlite:///PATH (three slashes)"
            )
        return Path("/" + rest.partition("?")[0].lstrip("/"))  # sqlite:////abs (SQLAlchemy's) too
    if scheme in PG_SCHEMES:
        return parse_postgres_url(text)
    raise ConfigError(
        f"the ledger cannot be stored at {_redact(text)}: {scheme}:// is not a ledger backend",
        hint=f"write {FORMS} (--ledger, DRIFT_LEDGER_URL or the drift_ledger connection)",
    )


def parse_postgres_url(url: str) -> PostgresLedgerURL:
    """Split a ``postgresql://`` ledger URL into a libpq conninfo, a schema and a password-free display."""
    from psycopg.conninfo import make_conninfo

    base, _, query = url.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    parts = urlsplit(base)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = _split_hostport(hostport, url)
    dbname = unquote(parts.path.strip("/")) or None
    if dbname and "/" in dbname:
        raise ConfigError(
            f"the ledger URL {_redact(url)} has more than a database in its path",
            hint="write postgresql://USER:PASS@HOST:5432/DB?schema=SCHEMA",
        )
    schema = params.pop("schema", None) or DEFAULT_PG_SCHEMA
    if not _SCHEMA_NAME.match(schema):
        raise ConfigError(
            f"the ledger URL {_redact(url)} names the schema {schema!r}",
            hint="use a plain PostgreSQL name: letters, digits and _, not starting with a digit",
        )
    libpq = {
        "host": params.pop("host", None) or host,
        "port": params.pop("port", None) or port,
        "user": unquote(user) or None,
        "password": unquote(password) or None,
        "dbname": params.pop("dbname", None) or dbname,
        **params,
    }
    try:
        conninfo = make_conninfo("", **{k: v for k, v in libpq.items() if v not in (None, "")})
    except Exception:  # psycopg.ProgrammingError: an option libpq does not know
        raise ConfigError(
            f"the ledger URL {_redact(url)} has a parameter PostgreSQL does not know",
            hint="besides schema, query parameters must be libpq's (sslmode, connect_timeout, ...)",
        ) from None
    shown_query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in {"schema": schema, **params}.items())
    who = f"{quote(unquote(user), safe='')}@" if user else ""
    display = f"postgresql://{who}{hostport}/{quote(dbname or '', safe='')}?{shown_query}"
    return PostgresLedgerURL(
        display=display, schema=schema, conninfo=conninfo, password=unquote(password) or None
    )


def _split_hostport(hostport: str, url: str) -> tuple[str | None, str | None]:
    if hostport.startswith("["):  # [::1]:5432
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":") or None
    else:
        host, _, port_text = hostport.partition(":")
        port = port_text or None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(
            f"the ledger URL {_redact(url)} has the port {port!r}", hint="use a port in 1-65535"
        )
    return unquote(host) or None, port


def _redact(url: str) -> str:
    """``url`` with the password of its user-info replaced by ``***``."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/@?#]*)@", url)
    if match is None:
        return url
    user = match.group(2).partition(":")[0]
    return f"{match.group(1)}{user}:***@{url[match.end() :]}" if ":" in match.group(2) else url
