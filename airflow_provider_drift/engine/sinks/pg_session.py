"""The pgvector sink's connection: opened lazily, re-opened after a loss, errors mapped to the engine's.

A lost connection (server restart, ``pg_terminate_backend``, network) becomes
:class:`SinkUnavailableError`, a transient error, and the next call opens a
new connection: every write is one transaction, so nothing half-written is
left behind and a retry or re-run completes the work. Refused logins and
missing databases are terminal :class:`SinkError`\\ s: retrying cannot help.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from ..errors import ConfigError, DriftError, SinkError, SinkUnavailableError
from .pg_rows import PAYLOAD_COLUMNS

STAGE = "drift_stage"
_TERMINAL_CONNECT = ("28000", "28P01", "3D000", "42501")
#: libpq's words for a connection option it cannot use at all (port 99999, sslmode=bogus): no
#: server was asked, so this is an input error, unlike a refused or timed-out connection
_BAD_OPTION = re.compile(
    r"invalid (port number|integer value|connection option|\w+ value)|unrecognized|bad value for|"
    r"invalid URI|missing \"=\"",
    re.IGNORECASE,
)
_DEFAULTS = {"application_name": "airflow-provider-drift"}


class PgSession:
    """One connection (autocommit; transactions are explicit) and what is set up on it."""

    def __init__(self, conninfo: str, *, connect_timeout: int, uri: str) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        #: how messages name the store (the sink's credential-free identity once known)
        self.uri = uri
        self._conn: Any = None
        self._closed = False
        self._ext: str | None = None  # schema of the vector extension, once seen on this connection
        self._stage_ready = False
        self._lock = threading.RLock()

    def connection(self) -> Any:
        """The live connection, opening a new one if there is none or it was lost."""
        if self._closed:
            raise SinkError(f"the sink {self.uri} was closed", hint="open a new sink")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self.forget()
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        given = conninfo_to_dict(self.conninfo)
        defaults: dict[str, Any] = {**_DEFAULTS, "connect_timeout": self.connect_timeout}
        conninfo = make_conninfo(self.conninfo, **{k: v for k, v in defaults.items() if k not in given})
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.ProgrammingError as exc:  # psycopg's own check of an option (connect_timeout=abc)
            raise self._bad_option(exc) from exc
        except psycopg.OperationalError as exc:
            text = short(exc)
            if _BAD_OPTION.search(text):
                raise self._bad_option(exc) from exc
            if (
                exc.sqlstate in _TERMINAL_CONNECT
                or "authentication failed" in text
                or "does not exist" in text
            ):
                raise SinkError(
                    f"PostgreSQL at {self.uri} refused the connection: {text}",
                    hint="check the user, password and database of the connection",
                ) from exc
            raise SinkUnavailableError(
                f"cannot reach PostgreSQL at {self.uri}: {text}",
                hint="check that the server is running and reachable from here (host, port, network); "
                "nothing was written, so retrying once it is up is safe",
            ) from exc
        conn.execute("SET temp_buffers = '128MB'")  # before any temp table: staging stays in memory
        self._conn = conn
        self.vector_schema()
        return conn

    def _bad_option(self, exc: psycopg.Error) -> ConfigError:
        return ConfigError(
            f"cannot connect to PostgreSQL at {self.uri}: {short(exc)}",
            hint="fix the connection's parameters (port 1-65535, sslmode disable/allow/prefer/require/"
            "verify-ca/verify-full, ...); retrying cannot help",
        )

    def forget(self) -> None:
        """Drop the current connection (after a loss); the next call opens a new one."""
        conn, self._conn = self._conn, None
        self._ext = None
        self._stage_ready = False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._lock:
            self.forget()
            self._closed = True

    @property
    def backend_pid(self) -> int | None:
        conn = self._conn
        return None if conn is None or conn.closed else int(conn.info.backend_pid)

    def vector_schema(self) -> str | None:
        """The vector extension's schema, its types taught to psycopg by that schema; None if missing."""
        if self._ext is None and self._conn is not None:
            from pgvector.psycopg.vector import register_vector_info
            from psycopg.types import TypeInfo

            from .pg_catalog import extension_schema

            ext = extension_schema(self._conn)
            if ext is not None:
                register_vector_info(self._conn, TypeInfo.fetch(self._conn, sql.Identifier(ext, "vector")))
                self._ext = ext
        return self._ext

    def ensure_extension(self, *, create: bool) -> str:
        """The vector extension's schema, creating the extension if allowed and permitted."""
        conn = self.connection()
        ext = self.vector_schema()
        if ext is not None:
            return ext
        db, ask = (
            conn.info.dbname,
            f"ask a superuser to run CREATE EXTENSION vector; in database {conn.info.dbname}",
        )
        if not create:
            raise SinkError(f"the vector extension is not installed in database {db} ({self.uri})", hint=ask)
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SinkError(
                f"the vector extension is not installed in database {db} and role {conn.info.user} "
                f"may not create it ({self.uri})",
                hint=ask,
            ) from exc
        except psycopg.errors.UniqueViolation:
            pass  # created concurrently by another session
        except (
            psycopg.errors.FeatureNotSupported,
            psycopg.errors.UndefinedFile,
            psycopg.errors.UndefinedObject,
        ) as exc:
            raise SinkError(
                f"PostgreSQL at {self.uri} has no pgvector: {short(exc)}",
                hint="install pgvector on the database server (https://github.com/pgvector/pgvector)",
            ) from exc
        ext = self.vector_schema()
        if ext is None:
            raise SinkError(
                f"the vector extension did not appear in database {db}", hint="see the server log"
            )
        return ext

    def ensure_stage(self) -> None:
        """The session's staging table for upserts of existing rows (emptied at every commit)."""
        if self._stage_ready:
            return
        conn = self.connection()
        cols = [
            sql.SQL("id uuid"),
            sql.SQL("embedding {}").format(sql.Identifier(self.vector_schema() or "public", "vector")),
        ]
        cols += [sql.SQL("{} text").format(sql.Identifier(c)) for c in PAYLOAD_COLUMNS[:-3]]
        cols += [sql.SQL("source_version bigint, text text, extra jsonb")]
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(STAGE), sql.SQL(", ").join(cols)
            )
        )
        self._stage_ready = True

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Do ``action`` alone on the connection, mapping psycopg errors to the engine's sink errors.

        The lock keeps two threads sharing a sink (e.g. a writer thread and a
        reader) from interleaving statements inside each other's transaction.
        """
        with self._lock:
            try:
                yield
            except DriftError:
                raise
            except psycopg.Error as exc:
                raise self.translate(exc, action) from exc

    def translate(self, exc: psycopg.Error, action: str) -> DriftError:
        text = short(exc)
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            self.forget()
            return SinkUnavailableError(
                f"lost PostgreSQL at {self.uri} while trying to {action}: {text}",
                hint="the failed batch was rolled back whole; retry the run once the server is reachable",
            )
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return SinkError(
                f"PostgreSQL at {self.uri} denied permission to {action}: {text}",
                hint="grant the connection's role the privilege on the schema/table, or use another role",
            )
        return SinkError(
            f"PostgreSQL at {self.uri} failed to {action}: {text}", hint="see PostgreSQL's message"
        )


def short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
