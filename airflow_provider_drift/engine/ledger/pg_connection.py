"""One PostgreSQL connection per Ledger, speaking the SQL the ledger's parts write for SQLite.

Why a translating connection rather than a second copy of every part: the
parts' SQL is nearly all portable (the upserts name the target table where
they read the old row, which both databases accept). What differs is small
and mechanical — ``?`` / ``?N`` placeholders become ``%s``, ``IS NOT ?``
becomes ``IS DISTINCT FROM %s`` — and is translated here, once per
statement text. The few queries that lean on SQLite's ``json_each`` have
PostgreSQL versions in ``pg_vectors.py``.

Concurrency: every write is one transaction (READ COMMITTED). Single
statements (a forward-only watermark upsert, a compare-and-set update) are
atomic by themselves; a part that reads then writes (a lease, an exclusive
migration, a sink's schemes) first calls ``conn.lock(...)``: a transaction
advisory lock on that key, which every host sees and the server releases at
commit, rollback or a dropped connection — never a process-local lock.

Errors: an unreachable or dropped server is :class:`LedgerUnavailableError`
(transient: retry), a refused login or missing database is terminal, a
deadlock or lock timeout is :class:`LedgerBusyError`. No message carries the
password.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from ..errors import DriftError, LedgerBusyError, LedgerError, LedgerUnavailableError
from .location import PostgresLedgerURL

_TERMINAL_CONNECT = ("28000", "28P01", "3D000", "42501")
_BUSY = ("40001", "40P01", "55P03")
_PLACEHOLDER = re.compile(r"IS NOT \?(\d*)|\?(\d*)|%")
_DEFAULTS = {"application_name": "airflow-provider-drift-ledger", "connect_timeout": "10"}


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """SQLite placeholders to psycopg's; for ``?N`` also the parameter order (0-based), else None."""
    order: list[int] = []
    numbered = False
    count = 0

    def sub(match: re.Match[str]) -> str:
        nonlocal numbered, count
        if match.group(0) == "%":
            return "%%"
        digits = match.group(1) if match.group(1) is not None else match.group(2)
        if digits:
            numbered = True
            order.append(int(digits) - 1)
        else:
            order.append(count)
            count += 1
        return "IS DISTINCT FROM %s" if match.group(0).startswith("IS NOT") else "%s"

    text = _PLACEHOLDER.sub(sub, sql)
    return text, (tuple(order) if numbered else None)


def _params(sql: str, params: Sequence[Any] | dict[str, Any]) -> tuple[str, Sequence[Any]]:
    text, order = translate(sql)
    if order is None or isinstance(params, dict):
        return text, params  # type: ignore[return-value]
    return text, [params[i] for i in order]


class PgRow:
    """A result row readable by position, by name and as ``dict(row)``, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: tuple[Any, ...]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key] if isinstance(key, int) else self._values[self._index[key]]

    def keys(self) -> list[str]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)


def _plain(value: Any) -> Any:
    """PostgreSQL's numeric (SUM of bigint, ROUND) as the int or float SQLite would return."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    return value


def _row_factory(cursor: Any) -> Any:
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(index, tuple(_plain(v) for v in values))

    return make


def lock_key(*parts: object) -> int:
    """A stable signed 64-bit advisory-lock key for ``parts`` (same on every host and release)."""
    digest = hashlib.blake2b("\x1f".join(map(str, ("drift-ledger", *parts))).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class PgWrite:
    """The connection a write block sees: ``execute``/``executemany`` with SQLite SQL, and ``lock``."""

    def __init__(self, conn: Any, schema: str) -> None:
        self._conn = conn
        self._schema = schema

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        cur = self._conn.cursor(row_factory=_row_factory)
        cur.execute(*_params(sql, params))
        return cur

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> Any:
        cur = self._conn.cursor(row_factory=_row_factory)
        text, order = translate(sql)
        rows = list(seq) if order is None else [[row[i] for i in order] for row in seq]
        if rows:
            cur.executemany(text, rows)
        return cur

    @property
    def raw(self) -> Any:
        """The psycopg connection itself, for what only PostgreSQL has (COPY)."""
        return self._conn

    def lock(self, *key: object) -> None:
        """Hold an advisory lock on ``key`` until this transaction ends (waits for another holder)."""
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self._schema, *key),))


class PgLedgerConnection:
    """A serialised psycopg connection with explicit write transactions, re-opened after a loss."""

    read_only = False

    def __init__(self, url: PostgresLedgerURL) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._conn: Any = None
        #: how many connections were opened: session state (temporary tables) lives in one only
        self.generation = 0

    # -- connecting ------------------------------------------------------------------------------

    def connection(self) -> Any:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        given = conninfo_to_dict(self.url.conninfo)
        conninfo = make_conninfo(self.url.conninfo, **{k: v for k, v in _DEFAULTS.items() if k not in given})
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        try:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.url.schema)))
        except psycopg.Error as exc:
            conn.close()
            raise self.translate(exc, "open") from None
        self._conn = conn
        self.generation += 1
        return conn

    def _connect_error(self, exc: Exception) -> DriftError:
        text = self._short(exc)
        state = getattr(exc, "sqlstate", None)
        if state in _TERMINAL_CONNECT or "authentication failed" in text or "does not exist" in text:
            return LedgerError(
                f"PostgreSQL refused the ledger connection to {self.url}: {text}",
                hint="check the user, password and database of the ledger URL (or its Airflow connection)",
            )
        if "invalid" in text or "unrecognized" in text:
            return LedgerError(
                f"cannot connect to the ledger at {self.url}: {text}",
                hint="fix the ledger URL's parameters; retrying cannot help",
            )
        return LedgerUnavailableError(
            f"cannot reach the ledger's PostgreSQL at {self.url}: {text}",
            hint="check that the server is running and reachable from here; nothing was recorded, "
            "so retrying once it is up is safe",
        )

    def _short(self, exc: BaseException) -> str:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        return self.url.scrub(lines[0] if lines else type(exc).__name__)

    def translate(self, exc: Exception, action: str) -> DriftError:
        """One clear ledger error for what psycopg said while doing ``action``."""
        import psycopg

        text = self._short(exc)
        state = getattr(exc, "sqlstate", None)
        if state in _BUSY:
            return LedgerBusyError(
                f"could not {action} the ledger at {self.url}: {text}",
                hint="another process held the rows this run needed; retry the run",
            )
        conn = self._conn
        if isinstance(exc, psycopg.OperationalError) and (conn is None or conn.broken or conn.closed):
            self._drop()
            return LedgerUnavailableError(
                f"lost the connection to the ledger at {self.url} while trying to {action} it: {text}",
                hint="nothing half-written was kept (every write is one transaction); retry the run",
            )
        return LedgerError(
            f"could not {action} the ledger at {self.url}: {text}",
            hint="if the ledger's tables were changed by hand, restore them; otherwise report this message",
        )

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        import psycopg

        try:
            yield
        except DriftError:
            raise
        except psycopg.Error as exc:
            raise self.translate(exc, action) from None

    # -- statements ------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[PgWrite]:
        """Run the block in one transaction; commit on success, roll back on error."""
        with self._lock, self._translated("write"):
            conn = self.connection()
            with conn.transaction():
                yield PgWrite(conn, self.url.schema)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[PgRow]:
        with self._lock, self._translated("read"):
            cur = self.connection().cursor(row_factory=_row_factory)
            cur.execute(*_params(sql, params))
            return list(cur.fetchall())

    @contextmanager
    def session(self) -> Iterator[Any]:
        """The raw connection (autocommit) for session state such as temporary tables."""
        with self._lock, self._translated("use"):
            yield self.connection()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()
