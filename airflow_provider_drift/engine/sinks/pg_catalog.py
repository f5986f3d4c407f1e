"""What a pgvector table looks like in the catalog, and the SQL that makes and uses one.

Every name reaches SQL as a ``psycopg.sql.Identifier`` or a bound parameter,
never as pasted text: catalog lookups compare names as parameters, DDL
composes identifiers. The table layout::

    id uuid PRIMARY KEY, embedding vector(d) NOT NULL,
    source_key, source, content_hash, model, run_id text, source_version bigint,
    updated_at timestamptz, text text (the optional stored text), extra jsonb

HNSW indexes ``vector`` up to 2,000 dimensions; from 2,001 to 4,000 the
index is built on ``embedding::halfvec(d)`` and searches use the same
expression; above that, searches are exact scans.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ..errors import ConfigError, DimensionMismatchError, SinkError
from .base import Distance
from .pg_rows import EXTRA_COLUMN, PAYLOAD_COLUMNS, TEXT_COLUMN, TEXT_COLUMNS, VERSION_COLUMN, WRITE_COLUMNS

#: distance -> (opclass suffix, operator)
DISTANCE_OPS: dict[str, tuple[str, str]] = {
    "cosine": ("cosine", "<=>"),
    "dot": ("ip", "<#>"),
    "euclid": ("l2", "<->"),
}
_DISTANCE_NAMES = {
    "cosine": "cosine",
    "cos": "cosine",
    "dot": "dot",
    "ip": "dot",
    "inner_product": "dot",
    "euclid": "euclid",
    "l2": "euclid",
    "euclidean": "euclid",
}
_OPCLASS_DISTANCE = {suffix: name for name, (suffix, _op) in DISTANCE_OPS.items()}
VECTOR_INDEX_MAX_DIM = 2000
HALFVEC_INDEX_MAX_DIM = 4000
MAX_DIM = 16000
_KINDS = {
    "r": "table",
    "p": "table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
    "i": "index",
    "I": "index",
    "S": "sequence",
    "c": "composite type",
}
_TEXT_TYPES = {"text", "varchar"}
_COMMENT_PREFIX = "drift sink table; distance="


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def is_table(self) -> bool:
        return self.kind in ("r", "p")

    @property
    def is_view(self) -> bool:
        return self.kind == "v"

    @property
    def kind_name(self) -> str:
        return _KINDS.get(self.kind, f"relation of kind {self.kind!r}")

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def distance_name(value: str) -> Distance:
    """Normalise a distance name (``cosine``; ``dot``/``ip``; ``euclid``/``l2``)."""
    name = _DISTANCE_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ConfigError(
            f"unknown distance {value!r}", hint="use cosine, dot (inner product) or euclid (l2)"
        )
    return name  # type: ignore[return-value]


def check_name(name: Any, *, what: str) -> str:
    """PostgreSQL identifiers: any text but NUL, at most 63 bytes (longer ones would be silently cut)."""
    if not isinstance(name, str) or not name or "\x00" in name or len(name.encode("utf-8")) > 63:
        raise ConfigError(
            f"invalid {what} name {name!r}",
            hint="use a non-empty name of at most 63 bytes (UTF-8) without NUL characters",
        )
    return name


def find_relation(conn: Any, schema: str, name: str) -> Relation | None:
    row = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return Relation(int(row[0]), row[1], row[2], str(row[3])) if row else None


def view_base(conn: Any, view: Relation) -> Relation | None:
    """The one table a simple view (an alias) reads, following views of views; None otherwise."""
    current = view
    for _depth in range(8):
        rows = conn.execute(
            "SELECT DISTINCT c.oid, n.nspname, c.relname, c.relkind FROM pg_rewrite r"
            " JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid"
            "  AND d.refclassid = 'pg_class'::regclass"
            " JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE r.ev_class = %s AND c.oid <> %s",
            (current.oid, current.oid),
        ).fetchall()
        if len(rows) != 1:
            return None
        current = Relation(int(rows[0][0]), rows[0][1], rows[0][2], str(rows[0][3]))
        if current.is_table:
            return current
        if not current.is_view:
            return None
    return None


def extension_schema(conn: Any) -> str | None:
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'vector'"
    ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class TableShape:
    dim: int
    #: optional columns the table lacks (added by ensure_collection)
    missing_optional: list[str]
    #: every written column has the exact type of drift's layout, so binary COPY can go straight in
    copy_ok: bool
    #: the table has an HNSW/IVFFlat index (inserts then cost a graph update each)
    indexed: bool


def check_table(conn: Any, table: Relation, *, dim: int | None, uri: str) -> TableShape:
    """Describe ``table``; raise naming every way it does not fit a drift sink."""
    cols = {
        r[0]: (r[1], int(r[2]), r[3])
        for r in conn.execute(
            "SELECT a.attname, t.typname, a.atttypmod, format_type(a.atttypid, a.atttypmod)"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (table.oid,),
        ).fetchall()
    }
    wanted: dict[str, set[str]] = {"id": {"uuid"}, "embedding": {"vector"}}  # in layout order
    wanted.update({c: _TEXT_TYPES for _f, c in TEXT_COLUMNS})
    wanted[VERSION_COLUMN] = {"int8", "int4", "int2", "numeric"}
    wanted["updated_at"] = {"timestamptz", "timestamp"}
    missing = [c for c in wanted if c not in cols]
    wrong = [f"{c} is {cols[c][2]}" for c, types in wanted.items() if c in cols and cols[c][0] not in types]
    optional = {TEXT_COLUMN: _TEXT_TYPES, EXTRA_COLUMN: {"jsonb"}}
    wrong += [
        f"{c} is {cols[c][2]}" for c, types in optional.items() if c in cols and cols[c][0] not in types
    ]
    if missing or wrong:
        what = "; ".join(filter(None, [f"missing column(s) {', '.join(missing)}" if missing else "", *wrong]))
        raise SinkError(
            f"table {table} ({uri}) exists but does not fit a drift sink: {what}",
            hint="write to a new table (drift creates it), or alter this one to the layout in the "
            "pgvector sink docs (id uuid primary key, embedding vector(d), source_key text, ...)",
            missing=missing,
        )
    found = cols["embedding"][1]
    if found <= 0:
        raise SinkError(
            f"column embedding of {table} ({uri}) is a vector of no fixed dimension",
            hint="declare it as vector(d), e.g. ALTER TABLE ... ALTER COLUMN embedding TYPE vector(384)",
        )
    if dim is not None and found != dim:
        raise DimensionMismatchError(
            f"table {table} ({uri}) holds {found}-d vectors (column embedding is {cols['embedding'][2]}), "
            f"not {dim}-d",
            hint="use another table for this model, or migrate the table to it",
            expected=dim,
            actual=found,
        )
    if not _has_unique_id(conn, table):
        raise SinkError(
            f"column id of {table} ({uri}) is neither a primary key nor unique, so upserts cannot match rows",
            hint="ALTER TABLE ... ADD PRIMARY KEY (id), or write to a new table",
        )
    exact = {VERSION_COLUMN: "int8", TEXT_COLUMN: "text", EXTRA_COLUMN: "jsonb"}
    exact.update({c: "text" for _f, c in TEXT_COLUMNS})
    copy_ok = all(
        cols[c][0] in (kind, "varchar") if kind == "text" else cols[c][0] == kind
        for c, kind in exact.items()
        if c in cols
    )
    return TableShape(
        found, [c for c in optional if c not in cols], copy_ok, bool(vector_indexes(conn, table))
    )


def _has_unique_id(conn: Any, table: Relation) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index x"
        " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]"
        " WHERE x.indrelid = %s AND x.indisunique AND x.indnkeyatts = 1"
        "  AND x.indpred IS NULL AND x.indexprs IS NULL AND a.attname = 'id')",
        (table.oid,),
    ).fetchone()
    return bool(row[0])


def vector_indexes(conn: Any, table: Relation) -> list[tuple[str, str, str]]:
    """(index name, access method, opclass) of the table's HNSW/IVFFlat indexes."""
    rows = conn.execute(
        "SELECT i.relname, am.amname, opc.opcname FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam"
        " JOIN pg_opclass opc ON opc.oid = x.indclass[0]"
        " WHERE x.indrelid = %s AND am.amname IN ('hnsw', 'ivfflat') ORDER BY i.relname",
        (table.oid,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def recorded_distance(conn: Any, table: Relation) -> Distance | None:
    """The distance the table was built for: its vector index's opclass, else drift's table comment."""
    for _name, _am, opclass in vector_indexes(conn, table):
        suffix = opclass.removesuffix("_ops").rpartition("_")[2]
        if suffix in _OPCLASS_DISTANCE:
            return _OPCLASS_DISTANCE[suffix]  # type: ignore[return-value]
    row = conn.execute("SELECT obj_description(%s, 'pg_class')", (table.oid,)).fetchone()
    comment = (row[0] or "") if row else ""
    if comment.startswith(_COMMENT_PREFIX):
        name = comment[len(_COMMENT_PREFIX) :].split()[0] if comment[len(_COMMENT_PREFIX) :] else ""
        return _DISTANCE_NAMES.get(name)  # type: ignore[return-value]
    return None


def create_table_sql(ident: sql.Identifier, *, ext: str, dim: int) -> sql.Composed:
    text_cols = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for _f, c in TEXT_COLUMNS)
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {t} (id uuid PRIMARY KEY, embedding {vec}({dim}) NOT NULL, {text_cols},"
        " source_version bigint, updated_at timestamptz NOT NULL DEFAULT now(), text text, extra jsonb)"
    ).format(t=ident, vec=sql.Identifier(ext, "vector"), dim=sql.SQL(str(int(dim))), text_cols=text_cols)


def lock_ddl(conn: Any, schema: str) -> None:
    """Serialise drift's create-if-absent DDL in ``schema`` until the transaction ends.

    ``IF NOT EXISTS`` is no guard between two sessions: both see nothing, both
    create, and the loser fails on a catalog unique index (pg_namespace,
    pg_type, pg_class) with a raw error. Callers take this lock first, then
    look again, then create.
    """
    digest = hashlib.sha1(f"airflow-provider-drift ddl {schema}".encode()).digest()
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (int.from_bytes(digest[:8], "big", signed=True),))


def comment_sql(ident: sql.Identifier, distance: Distance) -> sql.Composed:
    return sql.SQL("COMMENT ON TABLE {} IS {}").format(ident, sql.Literal(_COMMENT_PREFIX + distance))


def add_column_sql(ident: sql.Identifier, column: str) -> sql.Composed:
    kind = "jsonb" if column == EXTRA_COLUMN else "text"
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + kind).format(ident, sql.Identifier(column))


def indexed_expr(*, ext: str, dim: int) -> tuple[sql.Composable, str] | None:
    """The expression HNSW indexes (and searches order by) and its type, or None if too wide to index."""
    if dim <= VECTOR_INDEX_MAX_DIM:
        return sql.Identifier("embedding"), "vector"
    if dim <= HALFVEC_INDEX_MAX_DIM:
        expr = sql.SQL("(embedding::{}({}))").format(sql.Identifier(ext, "halfvec"), sql.SQL(str(int(dim))))
        return expr, "halfvec"
    return None


def create_index_sql(
    table: Relation, *, ext: str, dim: int, distance: Distance, m: int, ef_construction: int
) -> sql.Composed | None:
    target = indexed_expr(ext=ext, dim=dim)
    if target is None:
        return None
    expr, kind = target
    opclass = sql.Identifier(ext, f"{kind}_{DISTANCE_OPS[distance][0]}_ops")
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON {t} USING hnsw ({expr} {opclass}) WITH ({params})"
    ).format(
        name=sql.Identifier(index_name(table)),
        t=table.ident,
        expr=expr,
        opclass=opclass,
        params=sql.SQL(f"m = {int(m)}, ef_construction = {int(ef_construction)}"),
    )


def index_name(table: Relation) -> str:
    name = f"{table.name}_embedding_hnsw"
    if len(name.encode("utf-8")) <= 63:
        return name
    return "drift_hnsw_" + hashlib.sha1(f"{table.schema}.{table.name}".encode()).hexdigest()[:20]


def list_tables(conn: Any, schema: str) -> list[str]:
    """Tables of ``schema`` with a ``vector`` column named embedding."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'embedding' AND NOT a.attisdropped"
        " JOIN pg_type t ON t.oid = a.atttypid AND t.typname = 'vector'"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        (schema,),
    ).fetchall()
    return [r[0] for r in rows]


# -- statements on points ------------------------------------------------------------------------


def select_columns(*, with_vectors: bool) -> sql.Composed:
    """``id, [embedding,] <payload columns>``: the order ``pg_rows.to_point`` reads."""
    names = ["id", *(["embedding"] if with_vectors else []), *PAYLOAD_COLUMNS]
    return sql.SQL(", ").join(map(sql.Identifier, names))


def copy_sql(into: sql.Composable) -> sql.Composed:
    cols = sql.SQL(", ").join(map(sql.Identifier, WRITE_COLUMNS))
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(into, cols)


def upsert_sql(target: sql.Composable, stage: sql.Composable) -> sql.Composed:
    """Move the staged rows into ``target``, overwriting every column of rows that exist."""
    cols = [*WRITE_COLUMNS, "updated_at"]
    return sql.SQL(
        "INSERT INTO {t} ({cols}) SELECT {src}, now() FROM {stage} ON CONFLICT (id) DO UPDATE SET {sets}"
    ).format(
        t=target,
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        src=sql.SQL(", ").join(map(sql.Identifier, WRITE_COLUMNS)),
        stage=stage,
        sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in cols[1:]),
    )


def search_sql(relation: sql.Composable, *, ext: str, dim: int, distance: Distance) -> sql.Composed:
    """Nearest rows by ``distance``, ordered by the expression the HNSW index was built on."""
    op = sql.SQL("OPERATOR({}.{})").format(sql.Identifier(ext), sql.SQL(DISTANCE_OPS[distance][1]))
    expr: sql.Composable = sql.Identifier("embedding")
    param: sql.Composable = sql.Placeholder()
    indexed = indexed_expr(ext=ext, dim=dim)
    if indexed is not None and indexed[1] == "halfvec":
        expr = indexed[0]
        param = sql.SQL("%s::{}({})").format(sql.Identifier(ext, "halfvec"), sql.SQL(str(int(dim))))
    return sql.SQL(
        "SELECT id, {expr} {op} {param} AS dist, {payload} FROM {t} ORDER BY dist LIMIT %s"
    ).format(
        expr=expr,
        op=op,
        param=param,
        payload=sql.SQL(", ").join(map(sql.Identifier, PAYLOAD_COLUMNS)),
        t=relation,
    )
