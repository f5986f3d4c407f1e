"""Sink fixtures: every contract test runs once per sink kind, on real stores.

``make_sink(collection)`` opens a handle on a collection of one store private
to the test (a temporary directory, a named memory store, or uniquely prefixed
Postgres tables), so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import Sink

SINK_KINDS = ["qdrant_local", "qdrant_memory", "pgvector"]


def _pg_uri(dsn: str, table: str) -> str:
    """A ``postgresql://...?table=`` URI from a libpq DSN (URI or key=value form)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return f"{dsn}{'&' if '?' in dsn else '?'}table={quote(table)}"
    from psycopg.conninfo import conninfo_to_dict

    params: dict[str, Any] = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "postgres")), safe="")
    password = params.pop("password", None)
    userinfo = user + (":" + quote(str(password), safe="") if password else "")
    host = params.pop("host", "127.0.0.1")
    port = params.pop("port", 5432)
    db = quote(str(params.pop("dbname", "postgres")), safe="")
    query = urlencode({**{k: str(v) for k, v in params.items()}, "table": table})
    return f"postgresql://{userinfo}@{host}:{port}/{db}?{query}"


class SinkFactory:
    """Opens handles on collections of one per-test store and cleans up after the test."""

    def __init__(self, kind: str, tmp_path: Path, pg_dsn: str | None) -> None:
        self.kind = kind
        self.root = tmp_path / "qdrant"
        self.store = f"t{uuid.uuid4().hex[:10]}"
        self.prefix = f"c{uuid.uuid4().hex[:8]}_"
        self.pg_dsn = pg_dsn
        self.opened: list[Sink] = []
        self.names: set[str] = set()

    def name(self, base: str) -> str:
        """A collection/alias name private to this test."""
        full = self.prefix + base
        self.names.add(full)
        return full

    def uri(self, collection: str) -> str:
        if self.kind == "qdrant_local":
            return f"qdrant+local://{self.root}/{collection}"
        if self.kind == "qdrant_memory":
            return f"qdrant+memory://{collection}?store={self.store}"
        assert self.pg_dsn is not None
        return _pg_uri(self.pg_dsn, collection)

    def __call__(self, collection: str = "main", **options: Any) -> Sink:
        sink = open_sink(self.uri(self.name(collection)), **options)
        self.opened.append(sink)
        return sink

    def cleanup(self) -> None:
        for sink in self.opened:
            sink.close()
        if self.kind == "qdrant_memory":
            from airflow_provider_drift.engine.sinks.qdrant_server import forget_memory_store

            forget_memory_store(self.store)
        elif self.kind == "pgvector" and self.pg_dsn:
            import psycopg
            from psycopg import sql

            kinds = {"v": "VIEW", "r": "TABLE", "p": "TABLE", "m": "MATERIALIZED VIEW"}
            with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT relname, relkind FROM pg_class WHERE relname LIKE %s AND relkind = ANY(%s)",
                    (self.prefix + "%", list(kinds)),
                ).fetchall()
                for name, kind in sorted(rows, key=lambda r: r[1] != "v"):  # views first
                    drop = sql.SQL("DROP {} IF EXISTS {} CASCADE")
                    conn.execute(drop.format(sql.SQL(kinds[kind]), sql.Identifier(name)))


@pytest.fixture(params=SINK_KINDS)
def make_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkFactory]:
    kind = request.param
    pg_dsn = None
    if kind == "pgvector":
        pg_dsn = request.getfixturevalue("pg_dsn")
    factory = SinkFactory(kind, tmp_path, pg_dsn)
    yield factory
    factory.cleanup()


@pytest.fixture
def sink(make_sink: SinkFactory) -> Sink:
    """A handle on an empty, not yet created collection."""
    return make_sink("main")
