"""nearest(): new-model queries, adapted, answered by the old index — and adapters that do not fit refused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_drift.engine.adapter import DriftAdapter
from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import ConfigError, DimensionMismatchError, MigrationError
from airflow_provider_drift.engine.identity import point_id
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.migrate import migrate
from airflow_provider_drift.engine.providers.shadow import ShadowProvider
from airflow_provider_drift.engine.query import nearest
from tests.fixtures.pg import unique_name

from .migration_helpers import NEW, OLD, corpus, pg_uri, write_texts

N = 600


@dataclass(frozen=True)
class Index:
    sink: str
    ledger: Path
    adapter_path: str
    source: str


@pytest.fixture(scope="module", params=["qdrant_local", "pgvector"])
def index(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """An old-model collection of N sentences and the adapter a drift-adapter migration stored for it."""
    root = tmp_path_factory.mktemp("query")
    table = write_texts(root / "texts", N)
    if request.param == "pgvector":
        dsn, name = request.getfixturevalue("pg_dsn"), unique_name("q")
        request.addfinalizer(lambda: _drop_table(dsn, name))
        sink = pg_uri(dsn, name)
    else:
        sink = f"qdrant+local://{root}/qdrant/docs"
    with Ledger(root / "ledger.db") as led:
        embed(table, text_col="body", key_col="id", model=OLD, sink=sink, shadow_mode=True, ledger=led)
        run = migrate(
            OLD,
            NEW,
            sink,
            strategy="drift-adapter",
            shadow_mode=True,
            ledger=led,
            adapter_dir=root / "adapters",
        )
    assert run.passed and run.adapter_path
    yield Index(sink, root / "ledger.db", run.adapter_path, f"delta://{table}")


def _drop_table(dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def own(index: Index, i: int) -> str:
    return point_id(index.source, str(i))


def test_new_model_queries_through_the_adapter_find_the_same_sentence_in_the_old_index(index: Index) -> None:
    probes = range(0, N, 30)

    found = [nearest(index.sink, corpus()[i], model=NEW, adapter=index.adapter_path, shadow_mode=True,
                     limit=3) for i in probes]  # fmt: skip

    top = [hits[0].id for hits in found]
    assert sum(t == own(index, i) for t, i in zip(top, probes, strict=True)) >= 18  # of 20
    assert all(len(h) == 3 and h[0].score >= h[1].score >= h[2].score for h in found)
    # "auto" reads the adapter the migration recorded; a new-model vector works as well as its text.
    auto = nearest(index.sink, corpus()[30], model=NEW, adapter="auto", shadow_mode=True, ledger=index.ledger)
    vector = ShadowProvider(NEW).embed([corpus()[30]]).vectors[0]
    loaded = DriftAdapter.load(index.adapter_path)
    by_vector = nearest(index.sink, vector, model=NEW, adapter=loaded)
    assert [h.id for h in auto] == [h.id for h in by_vector] and auto[0].id == own(index, 30)


def test_without_an_adapter_the_collection_is_searched_with_its_own_model(index: Index) -> None:
    hits = nearest(index.sink, corpus()[7], model=OLD, shadow_mode=True, limit=5)
    assert hits[0].id == own(index, 7) and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].payload["key"] == "7"

    with pytest.raises(DimensionMismatchError, match=r"768-d queries but .* 384-d") as err:
        nearest(index.sink, corpus()[7], model=NEW, shadow_mode=True)
    assert "adapter" in (err.value.hint or "")


def test_adapters_for_other_models_or_dimensions_and_bad_queries_are_refused(
    index: Index, tmp_path: Path
) -> None:
    other_new = "openai/text-embedding-3-large"
    with pytest.raises(ConfigError, match="to_model='local/all-mpnet-base-v2', not 'openai"):
        nearest(index.sink, "a query", model=other_new, adapter=index.adapter_path, shadow_mode=True)
    wide = f"qdrant+local://{tmp_path}/wide"
    table = write_texts(tmp_path / "t", 20)
    embed(
        table, text_col="body", key_col="id", model=NEW, sink=wide, shadow_mode=True, ledger=tmp_path / "l.db"
    )
    with pytest.raises(ConfigError, match="d_old=384, not 768"):
        nearest(wide, "a query", model=NEW, adapter=index.adapter_path, shadow_mode=True)
    with pytest.raises(MigrationError, match="no adapter"):
        nearest(wide, "a query", model=NEW, adapter="auto", shadow_mode=True, ledger=tmp_path / "l.db")
    with pytest.raises(ConfigError, match="does not exist"):
        nearest(index.sink, "a query", model=NEW, adapter=tmp_path / "missing.npz", shadow_mode=True)
    with pytest.raises(ConfigError, match="empty"):
        nearest(index.sink, "  ", model=OLD, shadow_mode=True)
    with pytest.raises(ConfigError, match="NaN"):
        nearest(index.sink, np.full(384, np.nan), model=OLD)
    with pytest.raises(ConfigError, match="does not exist"):
        nearest(f"qdrant+local://{tmp_path}/nothing", "a query", model=OLD, shadow_mode=True)
