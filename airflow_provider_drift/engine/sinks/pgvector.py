"""A pgvector table as a sink, with everything the Qdrant sinks can do.

Writes: one transaction per ``upsert`` call. Rows whose ids are new are
binary-COPYed straight into the table; rows that exist go through a session
temp table and ``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE``, so an
update really overwrites. A batch lands whole or not at all. Deletes are
``DELETE ... WHERE id = ANY(...)``.

The HNSW index is built by :meth:`flush` (which ``embed`` calls at the end
of a run) when the table has rows and no vector index yet: a first bulk load
is written unindexed and indexed once, several times faster than updating
the graph row by row; later, smaller runs update the existing index as they
write. ``close`` does not build it, so a failed run is not slowed down.
``index="none"`` never builds one (searches then scan exactly).

Aliases (atomic cutover) are views: ``set_alias`` drops and re-creates the
view in one transaction, so a reader sees the old table or the new one,
never an error. A sink opened on an alias works on the table it points at;
a write locks the view first, so a cutover waits for the batch in flight.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, SinkError
from . import bool_option, check_dimension, check_ids, check_query_vector, number_option
from .base import Distance, Hit, PointBatch, Sink, StoredPoint
from .pg_rows import SIGNATURE, TRAILER, check_batch, encode_rows, last_wins, to_payload, to_point
from .pg_uri import describe_conninfo, identity, parse_pg_uri

try:
    import psycopg
    from psycopg import sql

    from . import pg_catalog as cat
    from .pg_session import STAGE, PgSession, short
except ImportError as exc:  # pragma: no cover - the pgvector extra is not installed
    raise ConfigError(
        f"the pgvector sink needs psycopg and pgvector ({exc})",
        hint="pip install 'airflow-provider-drift[pgvector]'",
    ) from exc

log = logging.getLogger(__name__)

IndexMode = Literal["hnsw", "none"]
WriteMode = Literal["optimistic", "probe", "staged"]
_ENCODE_ROWS = 512  # rows encoded per COPY write: small enough to overlap with the server's parsing
_IO_CHUNK = 10_000
_ALIAS_COMMENT = "drift alias"
_SCORE = {"cosine": lambda d: 1.0 - d, "dot": lambda d: -d, "euclid": lambda d: d}
_OPTIONS = frozenset(
    {
        "distance",
        "store_text",
        "index",
        "hnsw_m",
        "hnsw_ef_construction",
        "hnsw_ef_search",
        "build_memory",
        "create_extension",
        "connect_timeout",
    }
)


@dataclass(frozen=True)
class _Rows:
    ids: list[bytes]
    vectors: np.ndarray
    payloads: Sequence[dict[str, Any]]


class PgVectorSink(Sink):
    """A table ``schema.table`` in a PostgreSQL database with the ``vector`` extension.

    :param conninfo: a libpq conninfo string or ``postgresql://`` URI (it may hold the password;
        the sink's ``uri`` never does).
    :param schema: default: the first schema of the role's search path.
    :param distance: for a new table; default: what the table was built with, else cosine.
    :param store_text: accepted for symmetry with ``embed(store_text=...)``, which decides what is
        stored: the ``text`` column always exists (``ensure_collection`` adds it to older tables).
    :param hnsw_ef_search: HNSW candidate list per search (pgvector's default 40; raised to
        ``limit`` when a search asks for more); higher: better recall, slower queries.
    :param build_memory: ``maintenance_work_mem`` for the index build (None: the server's).
    """

    capabilities = frozenset({"alias", "search", "list_collections"})

    def __init__(
        self,
        conninfo: str,
        *,
        table: str,
        schema: str | None = None,
        distance: Distance | str | None = None,
        store_text: bool | str = False,
        index: IndexMode = "hnsw",
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        hnsw_ef_search: int | None = None,
        build_memory: str | None = "1GB",
        create_extension: bool | str = True,
        connect_timeout: int = 10,
    ) -> None:
        self.collection = cat.check_name(table, what="table")
        self._schema_arg = cat.check_name(schema, what="schema") if schema is not None else None
        self._distance: Distance | None = cat.distance_name(distance) if distance else None
        if index not in ("hnsw", "none"):
            raise ConfigError(f"unknown index {index!r}", hint="use index='hnsw' or index='none'")
        ef_search = None if hnsw_ef_search is None else number_option(hnsw_ef_search, name="hnsw_ef_search")
        self._options: dict[str, Any] = {
            "distance": self._distance,
            "store_text": bool_option(store_text, name="store_text"),
            "index": index,
            "hnsw_m": number_option(hnsw_m, name="hnsw_m", minimum=2),
            "hnsw_ef_construction": number_option(
                hnsw_ef_construction, name="hnsw_ef_construction", minimum=4
            ),
            "hnsw_ef_search": ef_search,
            "build_memory": build_memory,
            "create_extension": bool_option(create_extension, name="create_extension"),
            "connect_timeout": number_option(connect_timeout, name="connect_timeout", minimum=1),
        }
        self._conninfo = conninfo
        self.uri = describe_conninfo(conninfo)
        self._db = PgSession(conninfo, connect_timeout=self._options["connect_timeout"], uri=self.uri)
        self._dim: int | None = None  # of the table, once checked
        self._copy_ok = False  # its column types let binary COPY go straight in
        self._indexed = True  # it has a vector index (assume so until checked: probe before writing)
        self._probe_next = True  # the last batch met existing ids: look before copying
        with self._db.errors("connect"):
            conn = self._db.connection()
            self.schema: str = self._schema_arg or conn.execute("SELECT current_schema()").fetchone()[0] or ""
            info = conn.info
        if not self.schema:
            raise SinkError(f"{self.uri}: the role's search path has no schema", hint="pass schema=...")
        self.uri = identity(
            host=info.host, port=info.port, dbname=info.dbname, schema=self.schema, table=table
        )
        self._db.uri = self.uri

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> PgVectorSink:
        """Open ``pgvector://USER:PASS@HOST:PORT/DB/TABLE`` or ``postgresql://...?table=T``.

        Keyword options override the same names in the query string.
        """
        target = parse_pg_uri(uri)
        merged = {**target.options, **options}
        for key in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "connect_timeout"):
            if isinstance(merged.get(key), str):
                merged[key] = number_option(merged[key], name=key, minimum=1)
        if merged.get("build_memory") in ("", "none", "None"):
            merged["build_memory"] = None
        unknown = set(merged) - _OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} for the pgvector sink",
                hint=f"accepted: {sorted(_OPTIONS)}",
            )
        return cls(target.conninfo, table=target.table, schema=target.schema, **merged)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the current connection (for operators and tests)."""
        return self._db.backend_pid

    # -- the table -------------------------------------------------------------------------------

    def _ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.collection)

    def _relation(self, conn: Any, name: str | None = None) -> cat.Relation | None:
        """The named relation if it exists (a table, or a view used as an alias), else None."""
        rel = cat.find_relation(conn, self.schema, name or self.collection)
        if rel is not None and not (rel.is_table or rel.is_view):
            raise SinkError(
                f"{rel} ({self.uri}) is a {rel.kind_name}, not a table",
                hint="use a table name (drift creates the table) or an alias made with set_alias",
            )
        return rel

    def _base(self, conn: Any, rel: cat.Relation) -> cat.Relation:
        """The table a relation stands for: itself, or the one table an alias view reads."""
        if rel.is_table:
            return rel
        base = cat.view_base(conn, rel)
        if base is None:
            raise SinkError(
                f"{rel} ({self.uri}) is a view over no single table, so it cannot be a drift alias",
                hint="open the sink on the table itself",
            )
        return base

    def _check(self, conn: Any, rel: cat.Relation, *, dim: int | None) -> cat.TableShape:
        shape = cat.check_table(conn, self._base(conn, rel), dim=dim, uri=self.uri)
        self._dim, self._copy_ok, self._indexed = shape.dim, shape.copy_ok, shape.indexed
        return shape

    def _require_dim(self, conn: Any) -> int:
        if self._dim is not None:
            return self._dim
        rel = self._relation(conn)
        if rel is None:
            raise SinkError(
                f"table {self.schema}.{self.collection} does not exist ({self.uri})",
                hint="call ensure_collection(dim) before writing",
            )
        shape = self._check(conn, rel, dim=None)
        if shape.missing_optional:
            self._dim = None
            raise SinkError(
                f"table {self.schema}.{self.collection} ({self.uri}) lacks column(s) "
                f"{', '.join(shape.missing_optional)}",
                hint="call ensure_collection(dim) once: it adds them",
            )
        return shape.dim

    def dimension(self) -> int | None:
        with self._db.errors("read the table"):
            conn = self._db.connection()
            rel = self._relation(conn)
            if rel is None:
                self._dim = None
                return None
            return self._check(conn, rel, dim=None).dim

    def distance(self) -> str | None:
        """The distance the table was built for (its index, else drift's comment), None if no table."""
        with self._db.errors("read the table"):
            conn = self._db.connection()
            rel = self._relation(conn)
            if rel is None:
                return None
            return cat.recorded_distance(conn, self._base(conn, rel)) or self._distance or "cosine"

    @property
    def target(self) -> str:
        """The table this handle reads and writes: itself, or the alias view's current table."""
        with self._db.errors("resolve the table"):
            conn = self._db.connection()
            rel = self._relation(conn)
            return self.collection if rel is None else self._base(conn, rel).name

    def ensure_collection(self, dim: int, *, distance: Distance = "cosine") -> None:
        distance = cat.distance_name(distance)
        dim = check_dimension(dim, maximum=cat.MAX_DIM, store="a pgvector column")
        with self._db.errors("create the table"):
            ext = self._db.ensure_extension(create=self._options["create_extension"])
            conn = self._db.connection()
            rel = self._relation(conn)
            if rel is None:
                ident = self._ident()
                with conn.transaction():
                    cat.lock_ddl(conn, self.schema)  # another writer may be creating it right now
                    if self._relation(conn) is None:
                        if self._schema_arg:
                            conn.execute(
                                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                            )
                        conn.execute(cat.create_table_sql(ident, ext=ext, dim=dim))
                        conn.execute(cat.comment_sql(ident, distance))
                rel = self._relation(conn)
                assert rel is not None
            base = self._base(conn, rel)
            shape = cat.check_table(conn, base, dim=dim, uri=self.uri)
            if shape.missing_optional:
                with conn.transaction():
                    cat.lock_ddl(conn, base.schema)
                    for column in shape.missing_optional:
                        conn.execute(cat.add_column_sql(base.ident, column))
            existing = cat.recorded_distance(conn, base)
            if existing is not None and existing != distance:
                raise SinkError(
                    f"table {base} ({self.uri}) was built for {existing} distance, not {distance}",
                    hint="use another table, or the distance it was built with",
                )
            self._dim, self._copy_ok, self._indexed = shape.dim, shape.copy_ok, shape.indexed
            self._distance = distance

    def drop(self) -> None:
        with self._db.errors("drop the table"):
            conn = self._db.connection()
            rel = self._relation(conn)
            if rel is None:
                return
            if rel.is_view:
                raise SinkError(
                    f"{rel} is an alias of {self._base(conn, rel)}; drop refuses to go through an alias",
                    hint="drop the table by its own name, or remove the alias with delete_alias()",
                )
            try:
                conn.execute(sql.SQL("DROP TABLE {}").format(rel.ident))
            except psycopg.errors.DependentObjectsStillExist as exc:
                raise SinkError(
                    f"cannot drop {rel} ({self.uri}): {short(exc)} ({exc.diag.message_detail or ''})",
                    hint="point the aliases elsewhere or delete them (delete_alias) first",
                ) from exc
            self._dim = None

    def list_collections(self) -> list[str]:
        """Tables of this schema with a vector column ``embedding`` (aliases are views, not listed)."""
        with self._db.errors("list tables"):
            return cat.list_tables(self._db.connection(), self.schema)

    def with_collection(self, collection: str) -> PgVectorSink:
        return PgVectorSink(self._conninfo, table=collection, schema=self.schema, **self._options)

    # -- aliases ---------------------------------------------------------------------------------

    def set_alias(self, alias: str, collection: str) -> None:
        """Point the view ``alias`` at table ``collection``: drop + create in one transaction."""
        cat.check_name(alias, what="alias")
        cat.check_name(collection, what="table")
        with self._db.errors("switch the alias"):
            conn = self._db.connection()
            with conn.transaction():
                key = f"drift-alias:{self.schema}.{alias}"
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
                table = self._relation(conn, collection)
                if table is None or not table.is_table:
                    raise SinkError(
                        f"cannot point alias {alias} at {collection}: no such table in schema "
                        f"{self.schema} ({self.uri})",
                        hint="create the table first (ensure_collection)",
                    )
                existing = self._relation(conn, alias)
                if existing is not None and not existing.is_view:
                    raise SinkError(
                        f"cannot create alias {alias}: a table of that name exists ({self.uri})",
                        hint="choose another alias name",
                    )
                view = sql.Identifier(self.schema, alias)
                if existing is not None:
                    conn.execute(sql.SQL("DROP VIEW {}").format(view))
                conn.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(view, table.ident))
                conn.execute(sql.SQL("COMMENT ON VIEW {} IS {}").format(view, sql.Literal(_ALIAS_COMMENT)))

    def resolve_alias(self, alias: str) -> str | None:
        with self._db.errors("read the alias"):
            conn = self._db.connection()
            rel = self._relation(conn, alias)
            base = cat.view_base(conn, rel) if rel is not None and rel.is_view else None
            if base is None:
                return None
            return base.name if base.schema == self.schema else f"{base.schema}.{base.name}"

    def delete_alias(self, alias: str) -> None:
        with self._db.errors("delete the alias"):
            conn = self._db.connection()
            rel = self._relation(conn, alias)
            if rel is not None and rel.is_view:
                conn.execute(sql.SQL("DROP VIEW {}").format(rel.ident))

    # -- points ----------------------------------------------------------------------------------

    def upsert(self, batch: PointBatch, *, also: Callable[[Any], None] | None = None) -> None:
        """Insert or overwrite ``batch`` in one transaction.

        New ids are COPYed straight into the table, existing ones go through
        the staging table and ``ON CONFLICT DO UPDATE``. Which ids exist is
        looked up first, except during a bulk load into an unindexed table
        where the last batch met none: then the COPY is simply tried, and if
        an id turns out to exist (the primary key refuses it, or another
        writer inserted it meanwhile) the transaction is rolled back and the
        batch redone with the lookup, then entirely through staging.

        ``also(conn)`` runs inside the same transaction, after the points are
        written: a ledger in this database records their provenance there,
        so the points and their records commit together or not at all.
        """
        if not len(batch):
            return
        with self._db.errors("upsert points"):
            conn = self._db.connection()
            vectors, ids = check_batch(batch, dim=self._require_dim(conn), uri=self.uri)
            payloads = batch.payloads
            keep = last_wins(ids)
            if keep is not None:
                ids, vectors, payloads = [ids[i] for i in keep], vectors[keep], [payloads[i] for i in keep]
            rows = _Rows(ids, vectors, payloads)
            modes: list[WriteMode] = ["staged"]
            if self._copy_ok:
                modes = ["probe", "staged"]
                if not self._probe_next and not self._indexed:
                    modes.insert(0, "optimistic")
            for mode in modes:
                try:
                    self._write(conn, rows, mode, also)
                    return
                except psycopg.errors.UniqueViolation:
                    self._probe_next = True
                    if mode == "staged":
                        raise

    def _write(
        self, conn: Any, rows: _Rows, mode: WriteMode, also: Callable[[Any], None] | None = None
    ) -> None:
        if mode != "optimistic":
            self._db.ensure_stage()  # outside the transaction: a rollback must not take it away
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(self._ident()))
            rel = self._relation(conn)
            if rel is None:
                raise SinkError(
                    f"table {self.schema}.{self.collection} was dropped ({self.uri})", hint="re-run"
                )
            base = self._base(conn, rel)  # an alias resolves under the lock: a cutover waits for us
            if mode == "optimistic":
                self._copy(conn, base.ident, rows, None)
                if also is not None:
                    also(conn)
                return
            existing = list(range(len(rows.ids)))
            if mode == "probe":
                stmt = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s::uuid[])").format(base.ident)
                literal = "{" + ",".join(pid.hex() for pid in rows.ids) + "}"  # one uuid[] literal
                found = {u.bytes for (u,) in conn.execute(stmt, (literal,))}
                existing = [i for i, pid in enumerate(rows.ids) if pid in found]
                self._probe_next = bool(existing)
                if len(existing) < len(rows.ids):
                    fresh = [i for i, pid in enumerate(rows.ids) if pid not in found]
                    self._copy(conn, base.ident, rows, fresh if existing else None)
            if existing:
                stage = sql.Identifier("pg_temp", STAGE)
                self._copy(conn, stage, rows, existing)
                conn.execute(cat.upsert_sql(base.ident, stage))
            if also is not None:
                also(conn)

    def _copy(self, conn: Any, into: sql.Composable, rows: _Rows, only: list[int] | None) -> None:
        """Stream ``rows`` (or those at ``only``) by binary COPY; a thread sends while we encode."""
        from psycopg.copy import QueuedLibpqWriter

        n = len(rows.ids) if only is None else len(only)
        cur = conn.cursor()
        with cur.copy(cat.copy_sql(into), writer=QueuedLibpqWriter(cur)) as copy:
            copy.write(SIGNATURE)
            for start in range(0, n, _ENCODE_ROWS):
                stop = min(start + _ENCODE_ROWS, n)
                if only is None:
                    ids, vectors, payloads = (
                        rows.ids[start:stop],
                        rows.vectors[start:stop],
                        rows.payloads[start:stop],
                    )
                else:
                    pick = only[start:stop]
                    ids, vectors = [rows.ids[i] for i in pick], rows.vectors[pick]
                    payloads = [rows.payloads[i] for i in pick]
                copy.write(encode_rows(ids, vectors, payloads, uri=self.uri))
            copy.write(TRAILER)

    def same_database_as(self, conninfo: str) -> bool:
        """True if ``conninfo`` names this sink's server, database and role: one transaction spans both."""
        from psycopg.conninfo import conninfo_to_dict

        def where(info: str) -> tuple[str, str, str, str]:
            d = conninfo_to_dict(info)
            return (
                str(d.get("host") or "localhost"),
                str(d.get("port") or "5432"),
                str(d.get("dbname") or d.get("user") or ""),
                str(d.get("user") or ""),
            )

        return where(self._db.conninfo) == where(conninfo)

    def delete(self, ids: Sequence[str]) -> None:
        wanted = [uuid.UUID(i) for i in check_ids(ids, uri=self.uri)]
        if not wanted:
            return
        with self._db.errors("delete points"):
            conn = self._db.connection()
            if self._relation(conn) is None:
                return
            stmt = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._ident())
            with conn.transaction():
                for start in range(0, len(wanted), _IO_CHUNK):
                    conn.execute(stmt, (wanted[start : start + _IO_CHUNK],))

    def fetch(self, ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, StoredPoint]:
        wanted = [uuid.UUID(i) for i in check_ids(ids, uri=self.uri)]
        out: dict[str, StoredPoint] = {}
        if not wanted:
            return out
        with self._db.errors("fetch points"):
            conn = self._db.connection()
            if self._relation(conn) is None:
                return out
            cols = cat.select_columns(with_vectors=with_vectors)
            stmt = sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(cols, self._ident())
            cur = conn.cursor(binary=True)
            for start in range(0, len(wanted), _IO_CHUNK):
                for row in cur.execute(stmt, (wanted[start : start + _IO_CHUNK],)):
                    point = to_point(row, with_vector=with_vectors)
                    out[point.id] = point
        return out

    def count(self) -> int:
        with self._db.errors("count points"):
            conn = self._db.connection()
            if self._relation(conn) is None:
                return 0
            return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident())).fetchone()[0])

    def scroll(self, *, batch_size: int = 1000, with_vectors: bool = False) -> Iterator[list[StoredPoint]]:
        """Pages in id order (keyset pagination on the primary key: no long-open cursor or transaction)."""
        size = number_option(batch_size, name="batch_size", minimum=1)
        cols = cat.select_columns(with_vectors=with_vectors)
        first = sql.SQL("SELECT {} FROM {} ORDER BY id LIMIT %s").format(cols, self._ident())
        after = sql.SQL("SELECT {} FROM {} WHERE id > %s ORDER BY id LIMIT %s").format(cols, self._ident())
        last: uuid.UUID | None = None
        while True:
            with self._db.errors("scroll points"):
                conn = self._db.connection()
                if last is None and self._relation(conn) is None:
                    return
                cur = conn.cursor(binary=True)
                rows = cur.execute(first, (size,)) if last is None else cur.execute(after, (last, size))
                page = [to_point(r, with_vector=with_vectors) for r in rows]
            if not page:
                return
            yield page
            if len(page) < size:
                return
            last = uuid.UUID(page[-1].id)

    def search(self, vector: Sequence[float] | np.ndarray, *, limit: int = 10) -> list[Hit]:
        limit = number_option(limit, name="limit", minimum=1)
        with self._db.errors("search"):
            conn = self._db.connection()
            rel = self._relation(conn)
            if rel is None:
                return []
            dim = self._require_dim(conn)
            query = np.asarray(check_query_vector(vector, dim=dim, uri=self.uri), dtype=np.float32)
            ext = self._db.vector_schema() or "public"
            distance = cat.recorded_distance(conn, self._base(conn, rel)) or self._distance or "cosine"
            stmt = cat.search_sql(self._ident(), ext=ext, dim=dim, distance=distance)
            ef = max(self._options["hnsw_ef_search"] or 40, min(limit, 1000))
            with conn.transaction():
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
                if limit > 1000:  # past ef_search's maximum: let the scan continue for more
                    conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
                rows = conn.cursor(binary=True).execute(stmt, (query, limit)).fetchall()
        score = _SCORE[distance]
        return [Hit(str(r[0]), float(score(float(r[1]))), to_payload(r[2:])) for r in rows]

    def flush(self) -> None:
        """Build the HNSW index if the table has rows and no vector index (the end of a bulk load)."""
        if self._options["index"] == "none":
            return
        with self._db.errors("build the vector index"):
            conn = self._db.connection()
            rel = self._relation(conn)
            if rel is None:
                return
            base = self._base(conn, rel)
            if cat.vector_indexes(conn, base):
                self._indexed = True
                return
            if conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(base.ident)).fetchone()[0]:
                return  # empty: index after the first load instead
            ext = self._db.ensure_extension(create=False)
            dim = self._check(conn, rel, dim=None).dim
            distance = cat.recorded_distance(conn, base) or self._distance or "cosine"
            ddl = cat.create_index_sql(
                base,
                ext=ext,
                dim=dim,
                distance=distance,
                m=self._options["hnsw_m"],
                ef_construction=self._options["hnsw_ef_construction"],
            )
            if ddl is None:
                log.warning(
                    "%s: %d-d vectors are too wide for an HNSW index; searches scan exactly", self.uri, dim
                )
                return
            with conn.transaction():
                # Two writers finishing a load into one new table both get here; the second waits for
                # the first's build, then finds the index instead of colliding with it in pg_class.
                cat.lock_ddl(conn, base.schema)
                if cat.vector_indexes(conn, base):
                    self._indexed = True
                    return
                if self._options["build_memory"]:
                    memory = str(self._options["build_memory"])
                    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (memory,))
                conn.execute(ddl)
            self._indexed = True
            log.info("%s: built the HNSW index (%s distance)", self.uri, distance)

    def close(self) -> None:
        self._db.close()
