"""pgvector-specific behaviour on a real PostgreSQL: names, table shapes, indexes, failures, cutover.

The behaviour every sink shares is in test_sink_contract.py; this file covers
what only a SQL store can get wrong: identifiers, an existing table of the
wrong shape, extension privileges, the deferred HNSW build, a connection
killed mid-run, and view-swap cutover seen from another connection.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from airflow_provider_drift.engine.errors import (
    ConfigError,
    DimensionMismatchError,
    SinkError,
    SinkUnavailableError,
)
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import PointBatch
from airflow_provider_drift.engine.sinks.pg_rows import SIGNATURE, encode_rows, uuid_bytes
from airflow_provider_drift.engine.sinks.pg_uri import parse_pg_uri
from airflow_provider_drift.engine.sinks.pgvector import PgVectorSink
from tests.fixtures.pg import PgServer, unique_name

DIM = 8
Opener = Callable[..., PgVectorSink]


def unit(n: int, dim: int = DIM, *, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def batch(n: int, dim: int = DIM, *, seed: int = 0, tag: str = "v1", start: int = 0) -> PointBatch:
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"p{i}")) for i in range(start, start + n)]
    payloads = [{"key": f"k{i}", "source": "s", "content_hash": f"{tag}-{i}", "model": "m"} for i in range(n)]
    return PointBatch(ids, unit(n, dim, seed=seed), payloads)


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def open_pg(pg_dsn: str, pg_schema: str) -> Iterator[Opener]:
    opened: list[PgVectorSink] = []

    def _open(table: str = "docs", **options: Any) -> PgVectorSink:
        sink = PgVectorSink(pg_dsn, table=table, schema=options.pop("schema", pg_schema), **options)
        opened.append(sink)
        return sink

    yield _open
    for sink in opened:
        sink.close()


def relations(db: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    rows = db.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'v')",
        (schema,),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def hnsw_opclasses(db: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = db.execute(
        "SELECT opc.opcname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_am am ON am.oid = i.relam AND am.amname = 'hnsw'"
        " JOIN pg_opclass opc ON opc.oid = x.indclass[0]"
        " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = %s AND t.relname = %s",
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows]


def scalar(db: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def is_superuser(db: psycopg.Connection[Any]) -> bool:
    return bool(scalar(db, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))


# -- URIs and identity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "table", "schema", "conninfo"),
    [
        (
            "pgvector://u:p%40ss@db.example:6543/app/docs",
            "docs",
            None,
            {"host": "db.example", "port": "6543"},
        ),
        ("pgvector://u@h/app/docs?schema=vec&sslmode=require", "docs", "vec", {"sslmode": "require"}),
        ("pgvector://u@h/app/vec/docs", "docs", "vec", {"dbname": "app"}),
        ("pgvector://u@h/app/vec.docs", "docs", "vec", {}),
        ("pgvector://u@h/app/a%2Eb?schema=s", "a.b", "s", {}),
        ("pgvector://u@h/app/a%2Eb", "a.b", None, {}),
        ("postgresql://u:pw@h:5433/app?table=T%22x&schema=S", 'T"x', "S", {"password": "pw", "port": "5433"}),
        ("postgres:///app?host=/var/run/postgresql&table=t", "t", None, {"host": "/var/run/postgresql"}),
        ("pgvector://%2Ftmp%2FPg:5432/app/t", "t", None, {"host": "/tmp/Pg"}),
        ("pgvector://[::1]:5432/app/t", "t", None, {"host": "::1"}),
    ],
)
def test_uri_forms_parse(uri: str, table: str, schema: str | None, conninfo: dict[str, str]) -> None:
    from psycopg.conninfo import conninfo_to_dict

    target = parse_pg_uri(uri)
    assert (target.table, target.schema) == (table, schema)
    params = conninfo_to_dict(target.conninfo)
    assert {k: str(params.get(k)) for k in conninfo} == conninfo


@pytest.mark.parametrize(
    "uri",
    [
        "pgvector://h/app",  # no table
        "postgresql://h/app",  # no table
        "pgvector://h/app/a/b/c",  # too many parts
        "pgvector://h:port/app/t",  # bad port
        "postgresql://h/app?table=t&frobnicate=1",  # not a libpq parameter
    ],
)
def test_bad_uris_are_config_errors(uri: str) -> None:
    with pytest.raises(ConfigError):
        parse_pg_uri(uri)


def test_identity_is_credential_free_and_the_same_for_every_way_in(
    pg_dsn: str, pg_schema: str, open_pg: Opener
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(pg_dsn)
    host, port, db = (
        params.get("host", "127.0.0.1"),
        params.get("port", 5432),
        params.get("dbname", "postgres"),
    )
    user = params.get("user", "postgres")
    by_conninfo = open_pg("docs")
    uri = f"pgvector://{user}:s3cret@{host}:{port}/{db}/docs?schema={pg_schema}"
    if params.get("password"):
        uri = uri.replace("s3cret", str(params["password"]))
    by_uri = open_sink(uri)
    try:
        assert isinstance(by_uri, PgVectorSink)
        assert by_uri.uri == by_conninfo.uri == f"pgvector://{host}:{port}/{db}/{pg_schema}.docs"
        assert "s3cret" not in repr(by_uri) and "@" not in by_uri.uri
    finally:
        by_uri.close()


def test_default_schema_is_the_first_of_the_search_path(pg_dsn: str, pg_table_name: str) -> None:
    with open_sink(f"{_uri(pg_dsn)}?table={pg_table_name}") as sink:
        assert sink.uri.endswith(f"/public.{pg_table_name}")
        sink.ensure_collection(DIM)
        sink.upsert(batch(2))
        assert sink.list_collections().count(pg_table_name) == 1


def _uri(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    auth = f"{p.get('user', 'postgres')}" + (f":{p['password']}" if p.get("password") else "")
    where = f"{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}"
    return f"postgresql://{auth}@{where}/{p.get('dbname', 'postgres')}"


def test_unix_socket_directory(pg_server: PgServer | None, pg_schema: str) -> None:
    if pg_server is None:
        pytest.skip("only for the server the tests start (its socket directory is known)")
    uri = f"postgresql:///postgres?host={pg_server.base_dir}&port={pg_server.port}&user=postgres"
    with open_sink(f"{uri}&table=docs&schema={pg_schema}") as sink:
        sink.ensure_collection(DIM)
        sink.upsert(batch(3))
        assert sink.count() == 3
        assert sink.uri.startswith("pgvector://%2F")


# -- identifiers -----------------------------------------------------------------------------------

HOSTILE = [
    'x"; DROP TABLE victim; --',
    "a.b",
    "semi;colon",
    "Robert'); DROP TABLE victim;--",
    "ünïcødé 表 😀",
    'quote"in"side',
    "UPPER case",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_table_names_are_only_ever_names(
    name: str, db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener
) -> None:
    db.execute(sql.SQL("CREATE TABLE {}.victim (x int)").format(sql.Identifier(pg_schema)))
    sink = open_pg(name)
    sink.ensure_collection(DIM)
    sink.upsert(batch(5))
    sink.delete([batch(5).ids[0]])
    sink.flush()
    assert sink.count() == 4
    assert sink.search(unit(5)[1], limit=1)[0].id == batch(5).ids[1]
    sink.set_alias(name + "_live", name)
    assert sink.resolve_alias(name + "_live") == name
    assert relations(db, pg_schema) == {"victim": "r", name: "r", name + "_live": "v"}
    assert sink.list_collections() == [name]
    sink.delete_alias(name + "_live")
    sink.drop()
    assert relations(db, pg_schema) == {"victim": "r"}


def test_hostile_schema_name(db: psycopg.Connection[Any], pg_dsn: str) -> None:
    schema = 'evil"; DROP SCHEMA public CASCADE; --'
    try:
        with PgVectorSink(pg_dsn, table="t.x", schema=schema) as sink:
            sink.ensure_collection(DIM)  # creates the schema too
            sink.upsert(batch(2))
            assert sink.count() == 2
        assert scalar(db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'") == 1
    finally:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize("name", ["", "x" * 64, "nul\x00byte", "é" * 32])
def test_names_postgres_would_truncate_or_reject_are_config_errors(pg_dsn: str, name: str) -> None:
    with pytest.raises(ConfigError):
        PgVectorSink(pg_dsn, table=name)


# -- existing tables of the wrong shape ------------------------------------------------------------


def test_other_dimension_is_named_and_nothing_changes(open_pg: Opener) -> None:
    open_pg().ensure_collection(DIM)
    other = open_pg()
    with pytest.raises(DimensionMismatchError, match=r"holds 8-d vectors.*vector\(8\).*not 16-d"):
        other.ensure_collection(16)
    with pytest.raises(DimensionMismatchError):
        other.upsert(batch(2, 16))
    assert (other.dimension(), other.count()) == (DIM, 0)


@pytest.mark.parametrize(
    ("ddl", "named"),
    [
        ("id uuid PRIMARY KEY, embedding vector(8)", "missing column(s) source_key, source, content_hash"),
        (
            "id text PRIMARY KEY, embedding vector(8), source_key text, source text, content_hash text,"
            " model text, run_id text, source_version bigint, updated_at timestamptz",
            "id is text",
        ),
        (
            "id uuid, embedding vector(8), source_key text, source text, content_hash text,"
            " model text, run_id text, source_version bigint, updated_at timestamptz",
            "neither a primary key nor unique",
        ),
        (
            "id uuid PRIMARY KEY, embedding vector, source_key text, source text, content_hash text,"
            " model text, run_id text, source_version bigint, updated_at timestamptz",
            "no fixed dimension",
        ),
        (
            "id uuid PRIMARY KEY, embedding vector(8), source_key int, source text, content_hash text,"
            " model text, run_id text, source_version bigint, updated_at timestamptz, extra json",
            "source_key is integer; extra is json",
        ),
    ],
)
def test_existing_table_of_another_shape_is_refused_naming_what_differs(
    ddl: str, named: str, db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener
) -> None:
    db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    db.execute(sql.SQL("CREATE TABLE {}.docs (" + ddl + ")").format(sql.Identifier(pg_schema)))
    sink = open_pg()
    with pytest.raises(SinkError, match=re.escape(named)):
        sink.ensure_collection(DIM)
    with pytest.raises(SinkError):
        sink.upsert(batch(2))
    assert scalar(db, sql.SQL("SELECT count(*) FROM {}.docs").format(sql.Identifier(pg_schema))) == 0


def test_table_without_optional_columns_gets_them(
    db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener
) -> None:
    db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    ddl = (
        "CREATE TABLE {}.docs (id uuid PRIMARY KEY, embedding vector(8), source_key varchar, source text,"
        " content_hash text, model text, run_id text, source_version int,"
        " updated_at timestamptz DEFAULT now())"
    )
    db.execute(sql.SQL(ddl).format(sql.Identifier(pg_schema)))
    sink = open_pg(store_text=True)
    sink.ensure_collection(DIM)
    b = batch(2)
    b.payloads[0]["text"] = "hello"
    sink.upsert(b)
    assert sink.fetch([b.ids[0]])[b.ids[0]].payload["text"] == "hello"


# -- the extension ---------------------------------------------------------------------------------


def test_no_permission_to_create_the_extension_says_to_ask_a_superuser(
    db: psycopg.Connection[Any], pg_dsn: str
) -> None:
    if not is_superuser(db):
        pytest.skip("needs a superuser DSN to create a role and a database")
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = unique_name("d")
    db.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(name)))
    db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    conninfo = make_conninfo(
        "", **{**conninfo_to_dict(pg_dsn), "user": name, "dbname": name, "password": None}
    )
    try:
        with PgVectorSink(conninfo, table="docs") as sink:
            with pytest.raises(SinkError, match="may not create it") as err:
                sink.ensure_collection(DIM)
            assert (
                err.value.hint
                and "superuser" in err.value.hint
                and "CREATE EXTENSION vector" in err.value.hint
            )
            assert sink.dimension() is None  # nothing was created
        with (
            PgVectorSink(conninfo, table="docs", create_extension=False) as sink,
            pytest.raises(SinkError, match="not installed"),
        ):
            sink.ensure_collection(DIM)
        with psycopg.connect(make_conninfo(pg_dsn, dbname=name), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION vector")
        with PgVectorSink(conninfo, table="docs") as sink:  # now the role can work alone
            sink.ensure_collection(DIM)
            sink.upsert(batch(3))
            sink.flush()
            assert sink.count() == 3
    finally:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


# -- writes ----------------------------------------------------------------------------------------


def test_an_update_really_updates_vector_payload_and_timestamp(
    db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener
) -> None:
    sink = open_pg()
    sink.ensure_collection(DIM)
    sink.upsert(batch(10, tag="v1"))
    table = sql.Identifier(pg_schema, "docs")
    before = scalar(db, sql.SQL("SELECT max(updated_at) FROM {}").format(table))
    mixed = batch(10, seed=1, tag="v2", start=5)  # ids 5..9 exist, 10..14 are new: both paths at once
    sink.upsert(mixed)
    assert sink.count() == 15
    got = sink.fetch(mixed.ids, with_vectors=True)
    for i, pid in enumerate(mixed.ids):
        assert got[pid].payload == mixed.payloads[i]
        np.testing.assert_allclose(np.asarray(got[pid].vector), mixed.vectors[i], rtol=0, atol=0)
    assert sink.fetch([batch(10).ids[0]])[batch(10).ids[0]].payload["content_hash"] == "v1-0"
    n_newer = sql.SQL("SELECT count(*) FROM {} WHERE updated_at > %s").format(table)
    assert scalar(db, n_newer, (before,)) == 10


def test_repeated_ids_in_one_batch_keep_the_last(open_pg: Opener) -> None:
    sink = open_pg()
    sink.ensure_collection(DIM)
    b = batch(3)
    dup = PointBatch(
        [*b.ids, b.ids[0]], np.vstack([b.vectors, unit(1, seed=9)]), [*b.payloads, {"key": "last"}]
    )
    sink.upsert(dup)
    assert sink.count() == 3
    assert sink.fetch([b.ids[0]])[b.ids[0]].payload == {"key": "last"}


def test_payloads_round_trip_exactly_whatever_their_shape(open_pg: Opener) -> None:
    sink = open_pg()
    sink.ensure_collection(DIM)
    payloads: list[dict[str, Any]] = [
        {},
        {"key": "k", "source": "s", "content_hash": "h", "model": "m", "run_id": "r", "source_version": 7},
        {"key": "k", "source_version": None, "text": None},
        {"key": 42, "source_version": "v3", "text": "ünï 表\nline"},
        {"key": "k", "nested": {"a": [1, 2.5, None, True]}, "source_version": 2**62},
        {"content_hash": "h", "text": "stored text", "extra": "a field named like the column"},
    ]
    ids = [str(uuid.uuid4()) for _ in payloads]
    sink.upsert(PointBatch(ids, unit(len(ids)), payloads))
    got = sink.fetch(ids)
    assert [got[i].payload for i in ids] == payloads
    uniform = [{"key": f"k{i}", "source_version": None} for i in range(4)]  # the batch-wide fast path
    more = [str(uuid.uuid4()) for _ in uniform]
    sink.upsert(PointBatch(more, unit(4), uniform))
    assert [p.payload for p in sink.fetch(more).values()] == uniform


def test_batch_wide_and_row_by_row_encodings_are_the_same_bytes() -> None:
    from airflow_provider_drift.engine.sinks.pg_rows import _payload_fields

    payloads: list[dict[str, Any]] = [
        {"key": f"k{i}", "source": "s", "content_hash": f"{i:064x}", "run_id": "r", "source_version": None}
        for i in range(50)
    ]
    ids = uuid_bytes([str(uuid.uuid4()) for _ in payloads], uri="t")
    vectors = unit(50)
    width = 6 + 16 + 8 + 4 * DIM  # field count, id, vector
    batch_wide = encode_rows(ids, vectors, payloads, uri="t")
    heads = [
        encode_rows(ids[i : i + 1], vectors[i : i + 1], payloads[i : i + 1], uri="t")[:width]
        for i in range(50)
    ]
    row_by_row = b"".join(heads[i] + b"".join(_payload_fields(payloads[i], "t")) for i in range(50))
    assert batch_wide == row_by_row
    assert SIGNATURE.startswith(b"PGCOPY")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_vector_fails_the_whole_batch_before_any_write(open_pg: Opener, bad: float) -> None:
    sink = open_pg()
    sink.ensure_collection(DIM)
    b = batch(100)
    b.vectors[57, 3] = bad
    with pytest.raises(SinkError, match=f"1 vector.*{b.ids[57]}.*nothing of this batch"):
        sink.upsert(b)
    assert sink.count() == 0


def test_a_concurrent_insert_of_the_same_id_falls_back_to_a_real_upsert(
    db: psycopg.Connection[Any], pg_dsn: str, pg_schema: str, open_pg: Opener
) -> None:
    """Another writer inserts an id after our probe saw it absent: the COPY fails, the staged upsert wins."""
    sink = open_pg()
    sink.ensure_collection(DIM)
    b = batch(5)
    errors: list[BaseException] = []
    with psycopg.connect(pg_dsn) as other:  # a transaction left open on purpose
        other.execute(
            sql.SQL("INSERT INTO {} (id, embedding, source_key) VALUES (%s, %s::vector, 'other')").format(
                sql.Identifier(pg_schema, "docs")
            ),
            (b.ids[2], str([0.5] * DIM)),
        )

        def write() -> None:
            try:
                sink.upsert(b)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until our COPY blocks on the other's row
            waiting = scalar(
                db,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid = %s",
                (sink.backend_pid,),
            )
            if waiting:
                break
            time.sleep(0.02)
        other.commit()
        writer.join(timeout=10)
    assert not writer.is_alive() and errors == []
    got = sink.fetch(b.ids)
    assert sink.count() == 5 and got[b.ids[2]].payload == b.payloads[2]


# -- the HNSW index --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance", "opclass"),
    [("cosine", "vector_cosine_ops"), ("dot", "vector_ip_ops"), ("euclid", "vector_l2_ops")],
)
def test_hnsw_index_is_built_after_the_load_with_the_distance_opclass(
    distance: str, opclass: str, db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener
) -> None:
    sink = open_pg()
    sink.ensure_collection(DIM, distance=distance)  # type: ignore[arg-type]
    sink.flush()  # empty: nothing to index yet
    assert hnsw_opclasses(db, pg_schema, "docs") == []
    for start in range(0, 300, 100):
        sink.upsert(batch(100, seed=start, start=start))
    assert hnsw_opclasses(db, pg_schema, "docs") == []  # not maintained row by row during the load
    sink.flush()
    sink.flush()
    assert hnsw_opclasses(db, pg_schema, "docs") == [opclass]
    reopened = open_pg()  # no distance given: read back from the index
    assert reopened.distance() == distance
    op = {"cosine": "<=>", "dot": "<#>", "euclid": "<->"}[distance]
    with db.transaction():
        db.execute("SET LOCAL enable_seqscan = off")
        plan = db.execute(
            sql.SQL("EXPLAIN SELECT id FROM {} ORDER BY embedding " + op + " %s::vector LIMIT 5").format(
                sql.Identifier(pg_schema, "docs")
            ),
            (str(unit(1)[0].tolist()),),
        ).fetchall()
    assert "docs_embedding_hnsw" in " ".join(r[0] for r in plan)
    loaded = batch(100, seed=100, start=100)
    assert reopened.search(loaded.vectors[23], limit=1)[0].id == loaded.ids[23]


def test_wide_vectors_are_indexed_as_halfvec(
    db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener
) -> None:
    sink = open_pg()
    sink.ensure_collection(2048)
    b = batch(40, 2048)
    sink.upsert(b)
    sink.flush()
    assert hnsw_opclasses(db, pg_schema, "docs") == ["halfvec_cosine_ops"]
    hits = sink.search(b.vectors[7], limit=3)
    assert hits[0].id == b.ids[7] and hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_index_none_never_builds_one(db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener) -> None:
    sink = open_pg(index="none")
    sink.ensure_collection(DIM)
    sink.upsert(batch(20))
    sink.flush()
    assert hnsw_opclasses(db, pg_schema, "docs") == []
    assert sink.search(batch(20).vectors[4], limit=1)[0].id == batch(20).ids[4]


def test_search_scores_and_limits_beyond_ef_search(open_pg: Opener) -> None:
    sink = open_pg(distance="dot")
    sink.ensure_collection(DIM, distance="dot")
    b = batch(120)
    sink.upsert(b)
    sink.flush()
    q = unit(1, seed=5)[0]
    hits = sink.search(q, limit=100)
    assert len(hits) == 100
    exact = b.vectors @ q
    assert hits[0].id == b.ids[int(np.argmax(exact))]
    assert hits[0].score == pytest.approx(float(exact.max()), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_distance_recorded_at_creation_wins(open_pg: Opener) -> None:
    open_pg().ensure_collection(DIM, distance="euclid")
    sink = open_pg()
    assert sink.distance() == "euclid"
    with pytest.raises(SinkError, match="built for euclid distance, not cosine"):
        sink.ensure_collection(DIM, distance="cosine")
    sink.upsert(batch(3))
    hit = sink.search(batch(3).vectors[1] * 2, limit=1)[0]
    assert hit.id == batch(3).ids[1] and hit.score == pytest.approx(1.0, abs=1e-5)  # euclid distance


# -- failures --------------------------------------------------------------------------------------


def test_a_killed_connection_is_transient_and_the_next_call_reconnects(
    db: psycopg.Connection[Any], open_pg: Opener
) -> None:
    sink = open_pg()
    sink.ensure_collection(DIM)
    sink.upsert(batch(4))
    db.execute("SELECT pg_terminate_backend(%s)", (sink.backend_pid,))
    with pytest.raises(SinkUnavailableError, match="lost PostgreSQL") as err:
        sink.upsert(batch(10))
    assert err.value.hint and "retry" in err.value.hint
    assert sink.count() == 4  # the failed batch left nothing; a new connection answers
    sink.upsert(batch(10))
    assert sink.count() == 10


def test_embed_killed_mid_run_fails_clearly_and_a_rerun_completes_exactly(
    db: psycopg.Connection[Any], open_pg: Opener, ledger_path: Any
) -> None:
    from airflow_provider_drift.engine.embed import embed
    from airflow_provider_drift.engine.identity import content_hash, point_id
    from airflow_provider_drift.engine.providers.shadow import ShadowProvider

    n = 600
    rows = pa.table({"id": list(range(n)), "body": [f"ticket {i}: printer on fire" for i in range(n)]})
    sink = open_pg()
    killed: list[int] = []

    def kill_once(run: Any) -> None:
        if not killed and run.n_written:
            killed.append(sink.backend_pid or 0)
            db.execute("SELECT pg_terminate_backend(%s)", (killed[0],))

    args: dict[str, Any] = {"text_col": "body", "key_col": "id", "model": "local/all-MiniLM-L6-v2"}
    args |= {"sink": sink, "source": "tickets", "shadow_mode": True, "batch_size": 100, "ledger": ledger_path}
    with pytest.raises(SinkUnavailableError, match="lost PostgreSQL"):
        embed(rows, progress=kill_once, **args)
    written_before = sink.count()
    assert 0 < written_before < n
    run = embed(rows, **args)
    assert run.status != "failed" and run.n_written == n - written_before
    assert sink.count() == n
    texts = rows.column("body").to_pylist()
    ids = [point_id("tickets", str(i)) for i in range(n)]
    got = sink.fetch(ids, with_vectors=True)
    expected = ShadowProvider("local/all-MiniLM-L6-v2").embed(texts).vectors
    for i, pid in enumerate(ids):
        assert got[pid].payload["content_hash"] == content_hash(texts[i]) and got[pid].payload["key"] == str(
            i
        )
        np.testing.assert_allclose(np.asarray(got[pid].vector), expected[i], rtol=0, atol=1e-7)


def test_unreachable_server_is_transient_and_a_missing_database_terminal(pg_dsn: str) -> None:
    from psycopg.conninfo import make_conninfo

    with pytest.raises(SinkUnavailableError):
        PgVectorSink("host=127.0.0.1 port=1 user=postgres dbname=postgres", table="t", connect_timeout=2)
    with pytest.raises(SinkError, match="does not exist") as err:
        PgVectorSink(make_conninfo(pg_dsn, dbname=unique_name("nodb")), table="t")
    assert not isinstance(err.value, SinkUnavailableError)


def test_a_closed_sink_says_so(open_pg: Opener) -> None:
    sink = open_pg()
    sink.close()
    with pytest.raises(SinkError, match="was closed"):
        sink.count()


# -- aliases and cutover ---------------------------------------------------------------------------


def test_alias_rules(db: psycopg.Connection[Any], pg_schema: str, open_pg: Opener) -> None:
    old, new = open_pg("docs_v1"), open_pg("docs_v2")
    old.ensure_collection(DIM)
    new.ensure_collection(2 * DIM)  # a new model may have another dimension
    with pytest.raises(SinkError, match="no such table"):
        old.set_alias("docs", "nope")
    with pytest.raises(SinkError, match="a table of that name exists"):
        old.set_alias("docs_v2", "docs_v1")
    old.set_alias("docs", "docs_v1")
    live = open_pg("docs")
    live.upsert(batch(3))  # writes through the alias land in the table it points at
    assert (old.count(), live.dimension(), live.target) == (3, DIM, "docs_v1")
    old.set_alias("docs", "docs_v2")
    assert (live.dimension(), live.target, live.count()) == (2 * DIM, "docs_v2", 0)
    assert old.resolve_alias("docs") == "docs_v2" and old.resolve_alias("docs_v1") is None
    assert old.list_collections() == ["docs_v1", "docs_v2"]
    with pytest.raises(SinkError, match="refuses to go through an alias"):
        live.drop()
    with pytest.raises(SinkError, match="delete_alias"):
        new.drop()
    old.delete_alias("docs")
    old.delete_alias("docs")  # absent: nothing to do
    assert relations(db, pg_schema) == {"docs_v1": "r", "docs_v2": "r"}


def test_view_swap_cutover_is_atomic_for_a_concurrent_reader(
    pg_dsn: str, pg_schema: str, open_pg: Opener
) -> None:
    a, b = open_pg("docs_a"), open_pg("docs_b")
    for sink, tag, seed in ((a, "a", 0), (b, "b", 1)):
        sink.ensure_collection(DIM)
        points = batch(50, seed=seed)
        for p in points.payloads:
            p["model"] = tag
        sink.upsert(points)
    a.set_alias("live", "docs_a")
    seen: list[tuple[int, str, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    query = sql.SQL("SELECT count(*), min(model), max(model) FROM {}").format(
        sql.Identifier(pg_schema, "live")
    )

    def read() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                deadline = time.monotonic() + 20
                while not stop.is_set() and time.monotonic() < deadline and len(seen) < 20_000:
                    row = conn.execute(query).fetchone()
                    assert row is not None
                    seen.append((row[0], row[1], row[2]))
        except BaseException as exc:
            errors.append(exc)

    def reads_after(n: int) -> None:  # a read that started after the swap committed
        deadline = time.monotonic() + 10
        while len(seen) < n + 2 and time.monotonic() < deadline and not errors:
            time.sleep(0.001)

    reader = threading.Thread(target=read)
    reader.start()
    reads_after(0)
    for i in range(30):
        a.set_alias("live", "docs_b" if i % 2 == 0 else "docs_a")
        reads_after(len(seen))
    stop.set()
    reader.join(timeout=30)
    assert errors == [] and len(seen) > 30
    assert set(seen) <= {(50, "a", "a"), (50, "b", "b")}
    assert {s[1] for s in seen} == {"a", "b"}
